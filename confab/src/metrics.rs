//! Prometheus text exposition for `/metrics`. Counters live where they are
//! incremented (the storage writer's relaxed atomics, later per-core
//! counters) and are only summed here, at scrape time.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

use confab_storage::writer::WriterStats;

/// Reads the process's resident set size from /proc (Linux); 0 elsewhere.
pub fn resident_memory_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // The page size is 4 KiB on every platform confab targets.
    pages * 4096
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

/// Renders every metric of the node.
pub fn render(started: Instant, storage: &WriterStats) -> String {
    let mut out = String::with_capacity(2048);
    let _ = writeln!(out, "# HELP confab_build_info Build of the running confab.");
    let _ = writeln!(out, "# TYPE confab_build_info gauge");
    let _ = writeln!(
        out,
        "confab_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    metric(
        &mut out,
        "confab_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
        started.elapsed().as_secs(),
    );
    metric(
        &mut out,
        "confab_process_resident_memory_bytes",
        "gauge",
        "Resident set size of the server process.",
        resident_memory_bytes(),
    );
    metric(
        &mut out,
        "confab_storage_group_commits_total",
        "counter",
        "Group commits staged by the storage writers.",
        storage.groups.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "confab_storage_append_requests_total",
        "counter",
        "Append requests committed by the storage writers (duplicates included).",
        storage.requests.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "confab_storage_wal_syncs_total",
        "counter",
        "WAL fsyncs (each covers one or more group commits).",
        storage.syncs.load(Ordering::Relaxed),
    );
    out
}
