//! Runs the web client's JavaScript unit tests (`tests/js/*.test.mjs`)
//! with node's test runner, so that `cargo test` covers the protocol logic
//! the page runs. `scripts/deps.sh` installs node (Debian's nodejs).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_session_logic_passes_its_javascript_tests() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    let mut child = Command::new("node")
        .arg("--test")
        .arg(dir.join("session.test.mjs"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (Debian package nodejs; scripts/deps.sh installs it)");
    // A timer left running would keep the runner alive for ever.
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    // Every test ran: a file that failed to load reports no test at all.
    assert!(report.contains("# pass 12"), "{report}");
    assert!(report.contains("# fail 0"), "{report}");
}
