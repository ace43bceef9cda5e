//! What one thread hand-off costs in CPU: a producer that wakes a sleeping
//! consumer, with no queue, no event loop and no confab code in the way.
//!
//! A 1:1 message crosses threads inside the server (the core that reads it,
//! the storage writer, the core that acks it, the recipient's core) and
//! at rates where messages come one at a time each crossing finds its
//! consumer asleep: the producer pays the wake-up syscall (and the
//! inter-processor interrupt behind it), the consumer pays being scheduled
//! back in and going back to sleep. This bench says what that costs on
//! this kernel and machine, so that the CPU per message can be read
//! against it. The producer wakes the consumer `N` times, one wake-up
//! every `interval` µs (the consumer is asleep at each), and both threads'
//! CPU clocks are read around the run: the producer's CPU per wake-up is
//! charged only for its `unpark` calls (its own pacing sleeps are timed
//! out of it), the consumer's for everything it does, which is nothing
//! but wake and sleep again. `std::thread::park` is a futex, as the
//! cores', the storage writer's and tokio's own sleeps are (the cores wake
//! through an eventfd, which costs the same wake-up path).
//!
//! ```text
//! cargo bench -p confab-benches --bench wake_floor
//! CONFAB_BENCH_WAKES=20000 CONFAB_BENCH_INTERVALS_US=500,100,20,0 cargo bench -p confab-benches --bench wake_floor
//! ```
//!
//! An interval of 0 is a ping-pong: the producer waits for the consumer's
//! answer (a wake-up back) before it wakes it again, so both sides sleep
//! and wake once per round, and each side's whole CPU is its cost. Under `cargo test` (no `--bench` argument) it
//! runs a few wake-ups to prove it still works.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

mod floor;
use floor::{env_or, thread_cpu_ns};

/// What one run measured, per wake-up.
struct Cost {
    producer_ns: f64,
    consumer_ns: f64,
    /// From the `unpark` to the consumer running, median.
    latency_us: f64,
    /// Wake-ups the consumer saw (fewer than sent where two landed before
    /// it looked).
    woken: usize,
}

/// Wakes a parked consumer `n` times, `interval` apart (or ping-pong).
fn run(n: u64, interval: Duration) -> Cost {
    // The producer's wake-ups so far, and the last the consumer saw (two
    // that land before the consumer looks count as the one it sees).
    let sent = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // When the producer woke the consumer, in ns since `epoch`.
    let woke_at = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let producer = thread::current();
    let pong = interval.is_zero();
    let consumer = {
        let (sent, seen, stop, woke_at) =
            (sent.clone(), seen.clone(), stop.clone(), woke_at.clone());
        thread::spawn(move || {
            let start = thread_cpu_ns();
            let mut latencies = Vec::with_capacity(n as usize);
            let mut last = 0;
            while !stop.load(Ordering::Acquire) {
                thread::park();
                let s = sent.load(Ordering::Acquire);
                if s != last {
                    last = s;
                    let now = epoch.elapsed().as_nanos() as u64;
                    latencies.push(now.saturating_sub(woke_at.load(Ordering::Acquire)));
                    seen.store(s, Ordering::Release);
                    if pong {
                        producer.unpark();
                    }
                }
            }
            (thread_cpu_ns() - start, latencies)
        })
    };
    // Let the consumer reach its first sleep.
    thread::sleep(Duration::from_millis(20));
    let mut producer_ns = 0;
    let loop_start = thread_cpu_ns();
    let mut next = Instant::now();
    for i in 1..=n {
        if pong {
            while seen.load(Ordering::Acquire) < i - 1 {
                thread::park();
            }
        } else {
            next += interval;
            let wait = next.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                thread::sleep(wait);
            }
        }
        let t0 = thread_cpu_ns();
        woke_at.store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
        sent.store(i, Ordering::Release);
        consumer.thread().unpark();
        producer_ns += thread_cpu_ns() - t0;
    }
    if pong {
        // Both sides sleep and wake once per round: the producer's whole
        // loop is its cost.
        producer_ns = thread_cpu_ns() - loop_start;
    }
    while seen.load(Ordering::Acquire) < n {
        thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Release);
    consumer.thread().unpark();
    let (consumer_ns, mut latencies) = consumer.join().expect("the consumer");
    latencies.sort_unstable();
    Cost {
        producer_ns: producer_ns as f64 / n as f64,
        consumer_ns: consumer_ns as f64 / latencies.len() as f64,
        latency_us: latencies[latencies.len() / 2] as f64 / 1e3,
        woken: latencies.len(),
    }
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let n = env_or("CONFAB_BENCH_WAKES", if benching { 10_000 } else { 50 });
    let intervals: Vec<u64> = std::env::var("CONFAB_BENCH_INTERVALS_US")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![500, 100, 0]);
    println!("wake_floor: {n} wake-ups per row; CPU per wake-up, µs");
    println!("interval µs | producer (unpark) | consumer (woken, asleep again) | both | wake-up latency p50 µs | wake-ups seen");
    for us in intervals {
        let c = run(n, Duration::from_micros(us));
        let label = if us == 0 {
            "ping-pong".to_string()
        } else {
            us.to_string()
        };
        println!(
            "{label} | {:.2} | {:.2} | {:.2} | {:.1} | {}",
            c.producer_ns / 1e3,
            c.consumer_ns / 1e3,
            (c.producer_ns + c.consumer_ns) / 1e3,
            c.latency_us,
            c.woken
        );
        assert!(c.consumer_ns > 0.0, "a woken thread spends CPU");
    }
}
