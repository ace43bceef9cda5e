//! `criterion`: the criterion suites' latest results as a section of
//! docs/benchmarks.md, so that `make bench` rewrites those figures too and
//! nobody copies numbers by hand.
//!
//! criterion keeps, for every benchmark, `<dir>/<id>/new/benchmark.json`
//! (its id and declared throughput) and `<dir>/<id>/new/estimates.json`
//! (bootstrap estimates in nanoseconds). The table gives what criterion
//! prints as `time: [low estimate high]`: the slope estimate where
//! criterion has one, otherwise the mean, with its 95 % interval.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// First line of the rewritten section.
pub const BEGIN: &str =
    "<!-- criterion:begin: rewritten by `make bench`; edit outside these markers -->";
/// Last line of the rewritten section.
pub const END: &str = "<!-- criterion:end -->";

#[derive(Debug, Deserialize)]
struct Benchmark {
    full_id: String,
    #[serde(default)]
    throughput: Option<Throughput>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
enum Throughput {
    Bytes(u64),
    BytesDecimal(u64),
    Elements(u64),
    Bits(u64),
}

#[derive(Debug, Deserialize)]
struct Interval {
    lower_bound: f64,
    upper_bound: f64,
}

#[derive(Debug, Deserialize)]
struct Estimate {
    point_estimate: f64,
    confidence_interval: Interval,
}

#[derive(Debug, Deserialize)]
struct Estimates {
    mean: Estimate,
    #[serde(default)]
    slope: Option<Estimate>,
}

/// One benchmark's result.
#[derive(Debug)]
pub struct Row {
    /// criterion's id (`group/function/parameter`).
    pub id: String,
    /// Nanoseconds per iteration: low, estimate, high.
    pub ns: (f64, f64, f64),
    throughput: Option<Throughput>,
}

impl Row {
    /// Throughput at the estimate, as criterion would print it.
    pub fn throughput(&self) -> Option<String> {
        let per_s = |n: u64| n as f64 / (self.ns.1 * 1e-9);
        Some(match self.throughput? {
            Throughput::Elements(n) => format!("{} elem/s", si(per_s(n))),
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => {
                format!("{}B/s", si(per_s(n)))
            }
            Throughput::Bits(n) => format!("{}bit/s", si(per_s(n))),
        })
    }
}

/// Every benchmark under `dir` (normally `target/criterion`), sorted by id.
pub fn collect(dir: &Path) -> Result<Vec<Row>> {
    let mut files = Vec::new();
    find(dir, &mut files).with_context(|| format!("reading {}", dir.display()))?;
    let mut rows = Vec::new();
    for new in files {
        let read = |name: &str| -> Result<String> {
            let path = new.join(name);
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
        };
        let b: Benchmark = serde_json::from_str(&read("benchmark.json")?)
            .with_context(|| format!("parsing {}/benchmark.json", new.display()))?;
        let e: Estimates = serde_json::from_str(&read("estimates.json")?)
            .with_context(|| format!("parsing {}/estimates.json", new.display()))?;
        let typical = e.slope.unwrap_or(e.mean);
        rows.push(Row {
            id: b.full_id,
            ns: (
                typical.confidence_interval.lower_bound,
                typical.point_estimate,
                typical.confidence_interval.upper_bound,
            ),
            throughput: b.throughput,
        });
    }
    if rows.is_empty() {
        bail!(
            "no criterion results under {} (run `cargo bench -p confab-benches` first)",
            dir.display()
        );
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(rows)
}

/// Directories named `new` that hold a `benchmark.json`.
fn find(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") && path.join("benchmark.json").exists() {
            out.push(path);
        } else {
            find(&path, out)?;
        }
    }
    Ok(())
}

/// The section: machine, command, one row per benchmark.
pub fn section(rows: &[Row], machine: &str, date: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{BEGIN}");
    let _ = writeln!(o, "## criterion suites (`make bench`)\n");
    let _ = writeln!(
        o,
        "Measured {date} on {machine}, `bench` profile. Latest results of every \
         criterion benchmark under `target/criterion`; the reading of them is in \
         the sections above.\n"
    );
    let _ = writeln!(
        o,
        "```sh\ncargo bench -p confab-benches\n\
         confab-loadgen criterion --write docs/benchmarks.md\n```\n"
    );
    let _ = writeln!(o, "| Benchmark | Time [low estimate high] | Throughput |");
    let _ = writeln!(o, "|---|---|---|");
    for r in rows {
        let _ = writeln!(
            o,
            "| {} | [{} **{}** {}] | {} |",
            r.id,
            time(r.ns.0),
            time(r.ns.1),
            time(r.ns.2),
            r.throughput().unwrap_or_default()
        );
    }
    let _ = write!(o, "{END}");
    o
}

fn time(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn si(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.2} k", v / 1e3)
    } else {
        format!("{v:.1} ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes one benchmark the way criterion 0.8 lays it out on disk.
    fn write_bench(root: &Path, dir: &str, benchmark: &str, estimates: &str) {
        let new = root.join(dir).join("new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(new.join("benchmark.json"), benchmark).unwrap();
        std::fs::write(new.join("estimates.json"), estimates).unwrap();
        // criterion also keeps the previous run and a report; both ignored.
        std::fs::create_dir_all(root.join(dir).join("base")).unwrap();
        std::fs::create_dir_all(root.join("report")).unwrap();
    }

    fn estimate(low: f64, point: f64, high: f64) -> String {
        format!(
            r#"{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":{low},"upper_bound":{high}}},"point_estimate":{point},"standard_error":1.0}}"#
        )
    }

    /// An `estimates.json` with the given mean and slope (criterion has no
    /// slope for `iter_custom` benchmarks); the other statistics are filler.
    fn estimates(mean: (f64, f64, f64), slope: Option<(f64, f64, f64)>) -> String {
        let slope = slope.map_or("null".to_string(), |(l, p, h)| estimate(l, p, h));
        format!(
            r#"{{"mean":{},"median":{},"median_abs_dev":{},"slope":{slope},"std_dev":{}}}"#,
            estimate(mean.0, mean.1, mean.2),
            estimate(1.0, 2.0, 3.0),
            estimate(0.1, 0.2, 0.3),
            estimate(0.1, 0.2, 0.3)
        )
    }

    #[test]
    fn results_become_one_table_row_each() {
        let dir = tempfile::tempdir().unwrap();
        let with_slope = estimates((1.0, 2.0, 3.0), Some((14_000.0, 14_400.0, 15_000.0)));
        write_bench(
            dir.path(),
            "append/log_sync=none/1",
            r#"{"group_id":"append","function_id":"log/sync=none","value_str":"1","throughput":{"Elements":1},"full_id":"append/log/sync=none/1","directory_name":"append/log_sync=none/1","title":"append/log/sync=none/1"}"#,
            &with_slope,
        );
        let mean_only = estimates((150e6, 154e6, 160e6), None);
        write_bench(
            dir.path(),
            "writer_pipeline/sync=batch_1_writer",
            r#"{"group_id":"writer_pipeline","function_id":"sync=batch/1_writer","value_str":null,"throughput":{"Elements":16384},"full_id":"writer_pipeline/sync=batch/1_writer","directory_name":"writer_pipeline/sync=batch_1_writer","title":"writer_pipeline/sync=batch/1_writer"}"#,
            &mean_only,
        );
        let rows = collect(dir.path()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].id, "append/log/sync=none/1");
        assert_eq!(rows[0].ns, (14_000.0, 14_400.0, 15_000.0), "the slope");
        assert_eq!(rows[0].throughput().unwrap(), "69.44 k elem/s");
        assert_eq!(rows[1].ns.1, 154e6, "the mean when there is no slope");
        assert_eq!(rows[1].throughput().unwrap(), "106.39 k elem/s");

        let text = section(&rows, "2 CPUs (test)", "2026-12-02");
        assert!(text.starts_with(BEGIN) && text.ends_with(END));
        assert!(text.contains(
            "| append/log/sync=none/1 | [14.00 µs **14.40 µs** 15.00 µs] | 69.44 k elem/s |"
        ));
        assert!(text.contains("| writer_pipeline/sync=batch/1_writer | [150.00 ms **154.00 ms** 160.00 ms] | 106.39 k elem/s |"));
        let doc = crate::bench::replace_marked("# Benchmarks\n", BEGIN, END, &text).unwrap();
        let again = crate::bench::replace_marked(&doc, BEGIN, END, &text).unwrap();
        assert_eq!(doc, again, "rewriting is idempotent");
    }

    #[test]
    fn no_results_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = collect(dir.path()).unwrap_err().to_string();
        assert!(err.contains("cargo bench"), "{err}");
        let err = collect(&dir.path().join("missing")).unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
    }
}
