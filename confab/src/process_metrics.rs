//! The standard `process_*` series, read from `/proc/self` at each scrape.
//!
//! The `prometheus` crate ships a collector for these, but it counts CPU
//! in whole seconds; the load generator derives CPU per message from two
//! scrapes ten seconds apart, where a whole second is a 20 % error. This
//! one keeps the kernel's resolution (one clock tick, 10 ms).

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge, Opts};

/// What the process has used so far, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ProcessSample {
    /// User plus system CPU of every thread, in seconds.
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    threads: i64,
    /// Seconds since the epoch.
    start_time_seconds: f64,
}

impl ProcessSample {
    /// Reads `me`'s `stat`.
    fn read(me: &procfs::process::Process) -> procfs::ProcResult<ProcessSample> {
        let stat = me.stat()?;
        let tps = procfs::ticks_per_second() as f64;
        let boot = procfs::boot_time_secs().unwrap_or(0) as f64;
        Ok(ProcessSample {
            cpu_seconds: (stat.utime + stat.stime) as f64 / tps,
            resident_bytes: stat.rss * procfs::page_size(),
            virtual_bytes: stat.vsize,
            threads: stat.num_threads,
            start_time_seconds: boot + stat.starttime as f64 / tps,
        })
    }
}

/// This process's resident memory now, as the series reports it.
pub fn resident_bytes() -> Option<u64> {
    let me = procfs::process::Process::myself().ok()?;
    Some(ProcessSample::read(&me).ok()?.resident_bytes)
}

/// The collector registered in the node's registry.
pub struct ProcessCollector {
    cpu: Counter,
    resident: IntGauge,
    virtual_memory: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    threads: IntGauge,
    start_time: Gauge,
    descs: Vec<Desc>,
    /// A counter only goes up by increments: two scrapes at once must not
    /// both add the same stretch of CPU.
    collecting: Mutex<()>,
}

impl ProcessCollector {
    /// The series, unregistered.
    pub fn new() -> prometheus::Result<ProcessCollector> {
        let cpu = Counter::with_opts(Opts::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        ))?;
        let gauge = |name: &str, help: &str| IntGauge::with_opts(Opts::new(name, help));
        let resident = gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )?;
        let virtual_memory = gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
        )?;
        let open_fds = gauge("process_open_fds", "Number of open file descriptors.")?;
        let max_fds = gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
        )?;
        let threads = gauge("process_threads", "Number of OS threads in the process.")?;
        let start_time = Gauge::with_opts(Opts::new(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        ))?;
        let mut descs = Vec::new();
        descs.extend(cpu.desc().into_iter().cloned());
        for g in [&resident, &virtual_memory, &open_fds, &max_fds, &threads] {
            descs.extend(g.desc().into_iter().cloned());
        }
        descs.extend(start_time.desc().into_iter().cloned());
        Ok(ProcessCollector {
            cpu,
            resident,
            virtual_memory,
            open_fds,
            max_fds,
            threads,
            start_time,
            descs,
            collecting: Mutex::new(()),
        })
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one = self.collecting.lock().unwrap_or_else(|e| e.into_inner());
        // Without /proc there is nothing to report; an empty scrape says so
        // better than zeros would.
        let Ok(me) = procfs::process::Process::myself() else {
            return Vec::new();
        };
        let Ok(sample) = ProcessSample::read(&me) else {
            return Vec::new();
        };
        let more = sample.cpu_seconds - self.cpu.get();
        if more > 0.0 {
            self.cpu.inc_by(more);
        }
        self.resident.set(sample.resident_bytes as i64);
        self.virtual_memory.set(sample.virtual_bytes as i64);
        self.threads.set(sample.threads);
        self.start_time.set(sample.start_time_seconds);
        if let Ok(n) = me.fd_count() {
            self.open_fds.set(n as i64);
        }
        if let Ok(limits) = me.limits() {
            if let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit {
                self.max_fds.set(max as i64);
            }
        }
        let mut out = self.cpu.collect();
        for g in [
            &self.resident,
            &self.virtual_memory,
            &self.open_fds,
            &self.max_fds,
            &self.threads,
        ] {
            out.extend(g.collect());
        }
        out.extend(self.start_time.collect());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_keep_the_fraction_and_grow_with_work() {
        let c = ProcessCollector::new().unwrap();
        let first = c.collect();
        let cpu = |fams: &[MetricFamily]| {
            fams.iter()
                .find(|f| f.name() == "process_cpu_seconds_total")
                .map(|f| f.get_metric()[0].get_counter().get_value())
                .unwrap()
        };
        let before = cpu(&first);
        // Burn a little over 50 ms of CPU: more than whole-second counting
        // would ever show, several clock ticks at ours.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = cpu(&c.collect());
        assert!(after > before, "{before} -> {after}");
        assert!(after - before < 5.0, "{before} -> {after}");
        let names: Vec<_> = first.iter().map(|f| f.name().to_owned()).collect();
        for n in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_threads",
            "process_start_time_seconds",
        ] {
            assert!(names.iter().any(|m| m == n), "{n} missing from {names:?}");
        }
    }
}
