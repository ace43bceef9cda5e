//! The markdown the command writes into docs/benchmarks.md: the section
//! with the scenario table and every step, the machine and date it was
//! measured on, and the splicing of a section between its markers so that
//! the rest of the document is kept.

use std::fmt::Write as _;

use anyhow::{bail, Result};

use super::search::Step;
use super::{BenchOptions, BEGIN, END};
use crate::cpu::us;

pub fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map(|kib| format!("{:.0} GiB", kib as f64 / (1 << 20) as f64))
        .unwrap_or_else(|| "unknown memory".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}), {mem}, Linux {kernel}")
}

pub(super) fn section(
    opts: &BenchOptions,
    rows: &[(String, String, String)],
    steps: &[Step],
) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{BEGIN}");
    let _ = writeln!(o, "## Load generator (`make bench`)\n");
    let _ = writeln!(
        o,
        "Measured {} on {}. The server (release build, `{}`) and the load generator \
         (2 threads) share the machine, over loopback.\n",
        today(),
        machine(),
        opts.confab.display()
    );
    let args: Vec<String> = std::env::args().skip(1).collect();
    let _ = writeln!(
        o,
        "```sh\nconfab-loadgen {}   # `make bench` runs it with the defaults\n```\n",
        args.join(" ")
    );
    let _ = writeln!(
        o,
        "Each step runs {:.0} s after a 2 s warm-up. A rate counts as sustained when the ledger is clean, \
         the acked rate is at least 95% of the offered rate, and the ack p99 (1:1) or delivery p99 \
         (groups) is within the limit. Rates double until one is not sustained, then two bisection steps follow. \
         Every step's JSON report is in `{}`.\n",
        opts.seconds,
        opts.reports.display()
    );
    let _ = writeln!(o, "| Scenario | Result | Target |\n|---|---|---|");
    for (a, b, c) in rows {
        let _ = writeln!(o, "| {a} | {b} | {c} |");
    }
    let _ = writeln!(o, "\nAll steps:\n");
    let _ = writeln!(
        o,
        "| Step | Offered msgs/s | Acked msgs/s | Deliveries/s | Ack p50 / p99 µs | Delivery p50 / p99 µs | Server CPU µs/msg | Server CPU µs/delivery | Loadgen CPU µs/msg | Connections | Ledger |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for s in steps {
        let r = &s.report;
        let _ = writeln!(
            o,
            "| {} | {:.0} | {:.0} | {:.0} | {} / {} | {} / {} | {} | {} | {} | {} | {} |",
            s.label,
            r.offered_msgs_per_s,
            r.msgs_per_s,
            r.deliveries_per_s,
            r.ack_p50_us,
            r.ack_p99_us,
            r.delivery_p50_us,
            r.delivery_p99_us,
            us(r.cpu.server_cpu_us_per_msg),
            us(r.cpu.server_cpu_us_per_delivery),
            us(r.cpu.loadgen_cpu_us_per_msg),
            r.connections,
            if r.passed {
                "clean".to_owned()
            } else {
                format!(
                    "lost {} dup {} gaps {} errors {:?}",
                    r.lost, r.duplicated, r.gaps, r.errors
                )
            }
        );
    }
    let _ = write!(o, "{END}");
    o
}

pub fn today() -> String {
    // Days since the epoch to a civil date (Howard Hinnant's algorithm),
    // to avoid a date crate for one line.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let z = secs / 86_400 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `text` with the section between the markers replaced by `section`
/// (which carries the markers), or with `section` appended when there are
/// none yet.
pub fn replace_section(text: &str, section: &str) -> Result<String> {
    replace_marked(text, BEGIN, END, section)
}

/// `text` with the section between `begin` and `end` replaced by
/// `section` (which carries the markers), or with `section` appended when
/// there are none yet.
pub fn replace_marked(text: &str, begin: &str, end: &str, section: &str) -> Result<String> {
    match (text.find(begin), text.find(end)) {
        (Some(a), Some(b)) if a < b => {
            Ok(format!("{}{section}{}", &text[..a], &text[b + end.len()..]))
        }
        (None, None) => Ok(format!("{}\n\n{section}\n", text.trim_end())),
        _ => bail!("the markers {begin:?} and {end:?} are broken (one missing, or out of order)"),
    }
}
