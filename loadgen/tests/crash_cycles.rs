//! `confab-loadgen crash` end to end: five SIGKILLs of a real node under
//! 1:1 and group traffic, each followed by a restart on the same data; the
//! run must report every cycle done and every acknowledged message stored
//! and delivered exactly once (its ledger, a fresh device's inbox sync and
//! every channel's history agree). `make soak` runs fifty.
//!
//! Then the same with every kill also a power cut (the node's data on the
//! `confab-powercut` FUSE filesystem, which forgets each unsynced write):
//! twenty under `sync = batch`, where still nothing acknowledged may be
//! lost, and five under `interval:100`, where only messages acknowledged
//! within the interval before a cut may be, and the log must reopen with
//! every channel's history whole. These need /dev/fuse and root, as the
//! machines `make test` runs on have.
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
    let tests: [(&str, fn()); 3] = [
        (
            "kill_9_cycles_lose_and_duplicate_nothing",
            kill_9_cycles_lose_and_duplicate_nothing,
        ),
        (
            "power_cuts_under_batch_lose_nothing_acknowledged",
            power_cuts_under_batch_lose_nothing_acknowledged,
        ),
        (
            "power_cuts_under_interval_lose_only_the_window",
            power_cuts_under_interval_lose_only_the_window,
        ),
    ];
    for (name, test) in tests {
        if filter.is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        test();
        println!("test {name} ... ok");
    }
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

/// `confab-loadgen crash` with `args`; its JSON report and its output.
fn crash(args: &[&str]) -> (serde_json::Value, String) {
    let me = std::env::current_exe().unwrap();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("crash.json");
    let output = Command::new(LOADGEN)
        .args(["crash", "--quiet", "--rate", "60"])
        .args(["--min-up", "0.5", "--max-up", "2"])
        .args(args)
        .arg("--confab")
        .arg(&me)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "crash run failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (report, stdout)
}

fn kill_9_cycles_lose_and_duplicate_nothing() {
    let cycles = std::env::var("CONFAB_CRASH_CYCLES").unwrap_or_else(|_| "5".into());
    let (report, stdout) = crash(&["--cycles", &cycles]);
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

fn power_cuts_under_batch_lose_nothing_acknowledged() {
    let (report, stdout) = crash(&["--cycles", "20", "--power-cut", "--sync", "batch"]);
    let n = |f: &str| {
        report[f]
            .as_u64()
            .unwrap_or_else(|| panic!("{f}: {report}"))
    };
    assert_eq!(n("cycles"), 20, "{stdout}");
    assert_eq!(report["power_cuts"], true);
    assert!(n("acknowledged") > 300, "{stdout}");
    assert_eq!(
        (n("lost"), n("duplicated"), n("gaps")),
        (0, 0, 0),
        "{stdout}"
    );
    assert_eq!(report["run"]["history"]["missing"], 0, "{stdout}");
    // The cuts had something to forget: the layer was in the data path.
    let forgotten: u64 = report["cut_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap())
        .sum();
    assert!(forgotten > 0, "{stdout}");
    assert_eq!(report["passed"], true);
    println!("{stdout}");
}

fn power_cuts_under_interval_lose_only_the_window() {
    let (report, stdout) = crash(&["--cycles", "5", "--power-cut", "--sync", "interval:100"]);
    let n = |f: &str| {
        report[f]
            .as_u64()
            .unwrap_or_else(|| panic!("{f}: {report}"))
    };
    assert_eq!(n("cycles"), 5, "{stdout}");
    assert_eq!(n("lost_outside_window"), 0, "{stdout}");
    let history = &report["run"]["history"];
    assert_eq!(
        (history["duplicated"].as_u64(), history["gaps"].as_u64()),
        (Some(0), Some(0)),
        "{stdout}"
    );
    assert!(history["messages"].as_u64().unwrap() > 100, "{stdout}");
    assert_eq!(report["passed"], true);
    println!("{stdout}");
}
