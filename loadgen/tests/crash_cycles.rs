//! `confab-loadgen crash` end to end: five SIGKILLs of a real node under
//! 1:1 and group traffic, each followed by a restart on the same data; the
//! run must report every cycle done and every acknowledged message stored
//! and delivered exactly once (its ledger, a fresh device's inbox sync and
//! every channel's history agree). `make soak` runs fifty.
//!
//! `harness = false`: this binary is also the server the load generator
//! kills. Run as `<this> serve --config FILE` it starts a `confab::Node`
//! exactly as `confab serve` does; the `confab` binary of another package
//! is not something a test can rely on being built.

use std::process::{Command, ExitCode};
use std::time::Duration;

const LOADGEN: &str = env!("CARGO_BIN_EXE_confab-loadgen");

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        return serve(&args[3]);
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-'));
    if filter.is_some_and(|f| !"kill_9_cycles_lose_and_duplicate_nothing".contains(f.as_str())) {
        return ExitCode::SUCCESS;
    }
    kill_9_cycles_lose_and_duplicate_nothing();
    println!("test kill_9_cycles_lose_and_duplicate_nothing ... ok");
    ExitCode::SUCCESS
}

/// The server half: a node on `config` until it is killed.
fn serve(config: &str) -> ExitCode {
    let config = confab::config::Config::from_file(std::path::Path::new(config)).unwrap();
    let node = confab::Node::start(config).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
        let _ = &node;
    }
}

fn kill_9_cycles_lose_and_duplicate_nothing() {
    let me = std::env::current_exe().unwrap();
    let cycles = std::env::var("CONFAB_CRASH_CYCLES").unwrap_or_else(|_| "5".into());
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("crash.json");
    let output = Command::new(LOADGEN)
        .args(["crash", "--quiet", "--cycles", &cycles, "--rate", "60"])
        .args(["--min-up", "0.5", "--max-up", "2"])
        .arg("--confab")
        .arg(&me)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "crash run failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let n = |f: &str| {
        report[f]
            .as_u64()
            .unwrap_or_else(|| panic!("{f}: {report}"))
    };
    assert_eq!(n("cycles"), cycles.parse::<u64>().unwrap(), "{stdout}");
    assert!(n("acknowledged") > 100, "{stdout}");
    assert_eq!(
        (n("lost"), n("duplicated"), n("gaps")),
        (0, 0, 0),
        "{stdout}"
    );
    let history = &report["run"]["history"];
    assert_eq!(history["missing"], 0, "{stdout}");
    assert!(history["messages"].as_u64().unwrap() >= n("acknowledged"));
    // The devices really lost their connections to the kills.
    assert!(report["run"]["reconnects"].as_u64().unwrap() >= n("cycles"));
    assert_eq!(report["passed"], true);
    println!("{stdout}");
}
