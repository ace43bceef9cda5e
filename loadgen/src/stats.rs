//! Latency histograms and the per-second timeline of a run.
//!
//! Latencies are HDR histograms in microseconds (1 µs to 10 minutes, three
//! significant digits), recorded from the time a send was *scheduled*, not
//! the time it went out: when the server stalls, the sends behind the stall
//! show its full length (no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded, µs (larger values are clamped to it).
const MAX_US: u64 = 600_000_000;

/// A latency histogram that several tasks record into.
pub struct Latency {
    h: Mutex<Histogram<u64>>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            h: Mutex::new(Histogram::new_with_bounds(1, MAX_US, 3).expect("valid bounds")),
        }
    }
}

/// Percentiles of one histogram, µs.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl Latency {
    /// Records one latency.
    pub fn record_us(&self, us: u64) {
        let _ = self.h.lock().unwrap().record(us.clamp(1, MAX_US));
    }

    /// Percentiles so far.
    pub fn summary(&self) -> Summary {
        let h = self.h.lock().unwrap();
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }

    /// The cumulative distribution as (latency µs, share at or below), for
    /// plots: one point per histogram step, at most `points` of them.
    pub fn cdf(&self, points: usize) -> Vec<(u64, f64)> {
        let h = self.h.lock().unwrap();
        if h.is_empty() {
            return Vec::new();
        }
        let total = h.len() as f64;
        let mut out: Vec<(u64, f64)> = h
            .iter_quantiles(10)
            .map(|v| (v.value_iterated_to(), v.count_since_last_iteration()))
            .scan(0u64, |acc, (value, n)| {
                *acc += n;
                Some((value, *acc as f64 / total))
            })
            .collect();
        out.dedup_by_key(|p| p.0);
        if out.len() > points {
            let step = out.len() as f64 / points as f64;
            let last = *out.last().unwrap();
            out = (0..points)
                .map(|i| out[(i as f64 * step) as usize])
                .chain(std::iter::once(last))
                .collect();
        }
        out
    }
}

/// Counters sampled once a second.
#[derive(Default)]
pub struct Counters {
    /// Sends handed to the SDK.
    pub sent: AtomicU64,
    /// Sends acknowledged.
    pub acked: AtomicU64,
    /// Messages delivered to devices.
    pub delivered: AtomicU64,
    /// Devices with a session now.
    pub connected: AtomicU64,
    /// Sessions established, reconnects included.
    pub connects: AtomicU64,
    /// Connections lost.
    pub disconnects: AtomicU64,
}

/// One second of the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Second {
    /// Seconds since traffic started.
    pub t: u64,
    /// Sends in this second.
    pub sent: u64,
    /// Acks in this second.
    pub acked: u64,
    /// Deliveries in this second.
    pub delivered: u64,
    /// Connected devices at its end.
    pub connections: u64,
}

/// Takes the per-second differences of the counters.
pub struct Timeline {
    last: (u64, u64, u64),
    /// The seconds so far.
    pub seconds: Vec<Second>,
}

impl Timeline {
    /// A timeline starting at the counters' current values.
    pub fn new(c: &Counters) -> Timeline {
        Timeline {
            last: (
                c.sent.load(Ordering::Relaxed),
                c.acked.load(Ordering::Relaxed),
                c.delivered.load(Ordering::Relaxed),
            ),
            seconds: Vec::new(),
        }
    }

    /// Appends the second that just ended.
    pub fn tick(&mut self, c: &Counters) -> Second {
        let now = (
            c.sent.load(Ordering::Relaxed),
            c.acked.load(Ordering::Relaxed),
            c.delivered.load(Ordering::Relaxed),
        );
        let s = Second {
            t: self.seconds.len() as u64 + 1,
            sent: now.0 - self.last.0,
            acked: now.1 - self.last.1,
            delivered: now.2 - self.last.2,
            connections: c.connected.load(Ordering::Relaxed),
        };
        self.last = now;
        self.seconds.push(s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_cdf() {
        let l = Latency::default();
        for us in 1..=1000 {
            l.record_us(us);
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50_us, 500);
        assert_eq!(s.p99_us, 990);
        assert_eq!(s.max_us, 1000);
        let cdf = l.cdf(20);
        assert!(cdf.len() <= 21);
        assert!(cdf.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(cdf.last().unwrap().1, 1.0);
    }

    #[test]
    fn timeline_takes_differences() {
        let c = Counters::default();
        c.sent.store(5, Ordering::Relaxed);
        let mut t = Timeline::new(&c);
        c.sent.store(15, Ordering::Relaxed);
        c.connected.store(3, Ordering::Relaxed);
        let s = t.tick(&c);
        assert_eq!((s.t, s.sent, s.connections), (1, 10, 3));
    }
}
