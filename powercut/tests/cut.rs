//! The filesystem mounted for real (FUSE, as root): what a cut keeps and
//! what it forgets, read back through the mount as a restarted program
//! would read it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use confab_powercut::{Cut, PowerCut};

fn mounted() -> (tempfile::TempDir, PowerCut) {
    let dir = tempfile::tempdir().unwrap();
    let (backing, mnt) = (dir.path().join("disk"), dir.path().join("mnt"));
    fs::create_dir(&backing).unwrap();
    fs::create_dir(&mnt).unwrap();
    let fs = PowerCut::mount(&backing, &mnt).unwrap_or_else(|e| panic!("{e}"));
    (dir, fs)
}

fn read(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    File::open(path).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn a_cut_keeps_what_was_fsynced_and_forgets_the_rest() {
    let (_dir, fs) = mounted();
    let m = fs.mountpoint().to_owned();

    // A log: synced records, then one more not synced.
    let mut log = File::create(m.join("log")).unwrap();
    log.write_all(b"record-1;record-2;").unwrap();
    log.sync_data().unwrap();
    log.write_all(b"record-3;").unwrap();
    // A page overwritten in place after its sync.
    let mut page = File::create(m.join("page")).unwrap();
    page.write_all(b"AAAAAAAA").unwrap();
    page.sync_all().unwrap();
    page.seek(SeekFrom::Start(2)).unwrap();
    page.write_all(b"bb").unwrap();
    // A file written and never synced; a synced one truncated after.
    File::create(m.join("fresh"))
        .unwrap()
        .write_all(b"lost")
        .unwrap();
    let mut cut_short = File::create(m.join("cut-short")).unwrap();
    cut_short.write_all(b"0123456789").unwrap();
    cut_short.sync_all().unwrap();
    cut_short.set_len(3).unwrap();
    // Metadata is durable at once: a synced file renamed, another removed.
    let mut renamed = File::create(m.join("tmp")).unwrap();
    renamed.write_all(b"CURRENT").unwrap();
    renamed.sync_all().unwrap();
    fs::rename(m.join("tmp"), m.join("current")).unwrap();
    File::create(m.join("gone")).unwrap().sync_all().unwrap();
    fs::remove_file(m.join("gone")).unwrap();
    fs::create_dir(m.join("sub")).unwrap();
    fs::write(m.join("sub/inner"), b"x").unwrap();

    assert_eq!(read(&m.join("log")), b"record-1;record-2;record-3;");
    let before = fs.unsynced();
    assert_eq!(before.files, 5, "log, page, fresh, cut-short, sub/inner");
    drop((log, page, cut_short, renamed));

    let cut = fs.cut().unwrap();
    assert_eq!(cut, before);
    assert_eq!(fs.unsynced(), Cut::default());

    assert_eq!(read(&m.join("log")), b"record-1;record-2;");
    assert_eq!(read(&m.join("page")), b"AAAAAAAA");
    assert_eq!(read(&m.join("fresh")), b"", "created, never synced: empty");
    assert_eq!(read(&m.join("cut-short")), b"0123456789");
    assert_eq!(read(&m.join("current")), b"CURRENT");
    assert!(!m.join("tmp").exists() && !m.join("gone").exists());
    assert_eq!(read(&m.join("sub/inner")), b"");
    let mut names: Vec<_> = fs::read_dir(&m)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["current", "cut-short", "fresh", "log", "page", "sub"]
    );
}

#[test]
fn writes_after_a_cut_start_over_and_a_second_cut_keeps_the_first_cuts_state() {
    let (_dir, fs) = mounted();
    let m = fs.mountpoint().to_owned();
    let path = m.join("wal");
    let mut f = File::create(&path).unwrap();
    f.write_all(b"one;").unwrap();
    f.sync_data().unwrap();
    f.write_all(b"two;").unwrap();
    drop(f);
    fs.cut().unwrap();

    // The restarted writer appends where the durable data ends.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"three;").unwrap();
    f.sync_data().unwrap();
    f.write_all(b"four;").unwrap();
    drop(f);
    assert_eq!(read(&path), b"one;three;four;");
    fs.cut().unwrap();
    assert_eq!(read(&path), b"one;three;");
}

#[test]
fn the_backing_directory_holds_only_durable_bytes_after_a_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (backing, mnt) = (dir.path().join("disk"), dir.path().join("mnt"));
    fs::create_dir(&backing).unwrap();
    fs::create_dir(&mnt).unwrap();
    let fs = PowerCut::mount(&backing, &mnt).unwrap();
    let mut f = File::create(mnt.join("f")).unwrap();
    f.write_all(&[7; 100_000]).unwrap();
    f.sync_all().unwrap();
    f.write_all(&[9; 300_000]).unwrap();
    drop(f);
    assert_eq!(fs.unsynced().bytes, 300_000);
    fs.cut().unwrap();
    fs.unmount().unwrap();
    assert_eq!(fs::read(backing.join("f")).unwrap(), vec![7; 100_000]);
}
