//! CPU per message: the server's (its `process_cpu_seconds_total`) and the
//! load generator's own (`/proc/self/stat`) over the measured window. Unlike
//! msgs/s, these do not depend on how many cores the box has or who else
//! uses them, so they are the figures optimisations are judged by.

use serde::Serialize;

/// This process's user plus system CPU so far, in seconds (all threads).
pub fn own_cpu_seconds() -> Option<f64> {
    process_cpu_seconds(std::process::id())
}

/// Another local process's user plus system CPU so far, in seconds.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = procfs::process::Process::new(pid as i32)
        .ok()?
        .stat()
        .ok()?;
    Some((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

/// CPU used by both sides at one instant, and the server's fsync
/// histogram then (empty when it could not be read).
#[derive(Debug, Clone)]
pub struct CpuMark {
    pub at: std::time::Instant,
    /// None when the server's metrics could not be read.
    pub server_s: Option<f64>,
    pub loadgen_s: Option<f64>,
    /// The other processes charged to the deployment (`--pids`), summed.
    pub others_s: Option<f64>,
    pub fsync_buckets: Vec<(f64, f64)>,
}

/// What the window between two marks cost.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CpuCost {
    pub cpu_window_s: f64,
    pub server_cpu_s: Option<f64>,
    pub loadgen_cpu_s: Option<f64>,
    /// Average cores busy over the window.
    pub server_cores: Option<f64>,
    pub loadgen_cores: Option<f64>,
    /// Server CPU per acked message, µs.
    pub server_cpu_us_per_msg: Option<f64>,
    /// Server CPU per delivery, µs.
    pub server_cpu_us_per_delivery: Option<f64>,
    /// Load generator CPU per acked message, µs.
    pub loadgen_cpu_us_per_msg: Option<f64>,
    /// The other processes' (`--pids`) CPU per acked message, µs.
    pub others_cpu_us_per_msg: Option<f64>,
}

impl CpuCost {
    /// The cost of `msgs` acked messages and `deliveries` deliveries made
    /// between `from` and `to`.
    pub fn between(from: &CpuMark, to: &CpuMark, msgs: u64, deliveries: u64) -> CpuCost {
        let cpu_window_s = to.at.saturating_duration_since(from.at).as_secs_f64();
        let used = |a: Option<f64>, b: Option<f64>| Some((b? - a?).max(0.0));
        let server = used(from.server_s, to.server_s);
        let loadgen = used(from.loadgen_s, to.loadgen_s);
        let others = used(from.others_s, to.others_s);
        let per = |cpu: Option<f64>, n: u64| cpu.filter(|_| n > 0).map(|c| c * 1e6 / n as f64);
        let cores = |cpu: Option<f64>| cpu.filter(|_| cpu_window_s > 0.0).map(|c| c / cpu_window_s);
        CpuCost {
            cpu_window_s,
            server_cpu_s: server,
            loadgen_cpu_s: loadgen,
            server_cores: cores(server),
            loadgen_cores: cores(loadgen),
            server_cpu_us_per_msg: per(server, msgs),
            server_cpu_us_per_delivery: per(server, deliveries),
            loadgen_cpu_us_per_msg: per(loadgen, msgs),
            others_cpu_us_per_msg: per(others, msgs),
        }
    }
}

/// `v` to the nearest µs, or "–" when it was not measured.
pub fn us(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 10.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn cost_divides_each_side_by_the_window_and_the_work() {
        let t = Instant::now();
        let a = CpuMark {
            at: t,
            server_s: Some(10.0),
            loadgen_s: Some(3.0),
            others_s: None,
            fsync_buckets: Vec::new(),
        };
        let b = CpuMark {
            at: t + Duration::from_secs(10),
            server_s: Some(15.0),
            loadgen_s: Some(4.0),
            others_s: None,
            fsync_buckets: Vec::new(),
        };
        let c = CpuCost::between(&a, &b, 20_000, 40_000);
        assert_eq!(c.server_cpu_s, Some(5.0));
        assert_eq!(c.server_cores, Some(0.5));
        assert_eq!(c.loadgen_cores, Some(0.1));
        assert_eq!(c.server_cpu_us_per_msg, Some(250.0));
        assert_eq!(c.server_cpu_us_per_delivery, Some(125.0));
        assert_eq!(c.loadgen_cpu_us_per_msg, Some(50.0));
    }

    #[test]
    fn nothing_measured_or_nothing_sent_gives_no_figure() {
        let t = Instant::now();
        let a = CpuMark {
            at: t,
            server_s: None,
            loadgen_s: Some(1.0),
            others_s: None,
            fsync_buckets: Vec::new(),
        };
        let b = CpuMark {
            at: t + Duration::from_secs(1),
            server_s: Some(2.0),
            loadgen_s: Some(1.5),
            others_s: None,
            fsync_buckets: Vec::new(),
        };
        let c = CpuCost::between(&a, &b, 0, 0);
        assert_eq!(c.server_cpu_s, None);
        assert_eq!(c.server_cpu_us_per_msg, None);
        assert_eq!(c.loadgen_cpu_s, Some(0.5));
        assert_eq!(c.loadgen_cpu_us_per_msg, None);
        assert_eq!(us(None), "–");
        assert_eq!(us(Some(212.4)), "212");
        assert_eq!(us(Some(0.734)), "0.73");
    }

    #[test]
    fn own_cpu_is_read() {
        let a = own_cpu_seconds().expect("/proc/self/stat");
        assert!(a >= 0.0);
    }
}
