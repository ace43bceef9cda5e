//! The distribution archive as an operator installs it (`make dist` runs
//! `scripts/dist.sh` on the release binary; here it packages the test
//! build, which carries line tables, the same way): a stripped binary that
//! runs and checks the shipped configuration, its debug info in an archive
//! of its own that debuggers find through the binary's debug link, and a
//! systemd unit that systemd accepts without a warning.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sections(file: &Path) -> String {
    text(&run(Command::new("readelf").arg("-S").arg("-W").arg(file)))
}

/// The line `fn main` is on in the binary's source: what gdb is asked for.
fn main_line() -> usize {
    let source = std::fs::read_to_string(root().join("confab/src/main.rs")).unwrap();
    source
        .lines()
        .position(|l| l.starts_with("fn main("))
        .expect("confab/src/main.rs has fn main")
        + 1
}

/// What gdb answers for `fn main`'s line, from the binary alone.
fn gdb_line(binary: &Path) -> String {
    let out = Command::new("gdb")
        .args(["-batch", "-nx", "-ex"])
        .arg(format!("info line confab/src/main.rs:{}", main_line()))
        .arg(binary)
        .output()
        .expect("running gdb");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn the_archive_installs_a_stripped_binary_its_debug_info_and_a_unit() {
    let out = tempfile::tempdir().unwrap();
    let version = env!("CARGO_PKG_VERSION");
    let arch = text(&run(Command::new("uname").arg("-m")))
        .trim()
        .to_string();
    let name = format!("confab-{version}-{arch}-linux");
    run(Command::new(root().join("scripts/dist.sh"))
        .arg(env!("CARGO_BIN_EXE_confab"))
        .arg(out.path())
        .current_dir(root()));

    // What an operator gets: unpack the archives somewhere else.
    let unpacked = tempfile::tempdir().unwrap();
    for archive in [format!("{name}.tar.gz"), format!("{name}-debug.tar.gz")] {
        run(Command::new("tar")
            .arg("-xzf")
            .arg(out.path().join(&archive))
            .arg("-C")
            .arg(unpacked.path()));
    }
    let dir = unpacked.path().join(&name);
    for file in ["confab", "confab.service", "confab.toml", "INSTALL"] {
        assert!(dir.join(file).is_file(), "{file} missing from the archive");
    }
    let binary = dir.join("confab");
    let debug = unpacked.path().join("confab.debug");

    // Stripped, and linked to its debug file by name.
    let stripped = sections(&binary);
    assert!(
        !stripped.contains(".debug_line") && !stripped.contains(".debug_info"),
        "the shipped binary still carries debug info:\n{stripped}"
    );
    assert!(stripped.contains(".gnu_debuglink"));
    let link = text(&run(Command::new("readelf")
        .args(["--string-dump=.gnu_debuglink"])
        .arg(&binary)));
    assert!(link.contains("confab.debug"), "{link}");
    assert!(sections(&debug).contains(".debug_line"));
    let full = std::fs::metadata(env!("CARGO_BIN_EXE_confab"))
        .unwrap()
        .len();
    let shipped = std::fs::metadata(&binary).unwrap().len();
    assert!(
        shipped * 2 < full,
        "stripping left {shipped} of {full} bytes"
    );

    // The stripped binary runs and accepts the configuration it ships with.
    let v = text(&run(Command::new(&binary).arg("--version")));
    assert!(v.contains(version), "{v}");
    let effective = text(&run(Command::new(&binary)
        .arg("check-config")
        .arg(dir.join("confab.toml"))));
    assert!(
        effective.contains("data_dir = \"/var/lib/confab\""),
        "{effective}"
    );
    assert!(effective.contains("sync = \"batch\""), "{effective}");

    // A debugger finds the source lines once the debug file sits beside
    // the binary, and not before: the link's checksum matches.
    let alone = gdb_line(&binary);
    assert!(!alone.contains("starts at address"), "{alone}");
    std::fs::copy(&debug, dir.join("confab.debug")).unwrap();
    let linked = gdb_line(&binary);
    assert!(
        linked.contains("confab/src/main.rs") && linked.contains("starts at address"),
        "gdb did not find the debug info through the link:\n{linked}"
    );

    // systemd accepts the unit, pointed at the unpacked files, without a
    // warning (it reports bad values on stderr and still exits 0).
    let unit = std::fs::read_to_string(dir.join("confab.service"))
        .unwrap()
        .replace("/usr/local/bin/confab", binary.to_str().unwrap())
        .replace(
            "/etc/confab/confab.toml",
            dir.join("confab.toml").to_str().unwrap(),
        );
    assert!(unit.contains("LimitNOFILE=1048576"));
    let units = tempfile::tempdir().unwrap();
    std::fs::write(units.path().join("confab.service"), unit).unwrap();
    let verified = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.path().join("confab.service")));
    let warnings = String::from_utf8_lossy(&verified.stderr);
    assert!(warnings.trim().is_empty(), "systemd-analyze: {warnings}");
}

#[test]
fn a_binary_without_debug_info_is_refused() {
    let out = tempfile::tempdir().unwrap();
    let bare = out.path().join("confab");
    run(Command::new("objcopy")
        .arg("--strip-debug")
        .arg(env!("CARGO_BIN_EXE_confab"))
        .arg(&bare));
    let refused = Command::new(root().join("scripts/dist.sh"))
        .arg(&bare)
        .arg(out.path().join("dist"))
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("no debug info"), "{why}");
}
