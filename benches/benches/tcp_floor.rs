//! The kernel's floor under a 1:1 message: what one small frame costs on a
//! loopback TCP connection, with no confab code in the way.
//!
//! The load generator's CPU figures (docs/benchmarks.md, "CPU per
//! message") say what a message costs end to end; this says how much of
//! that no server design can avoid while every frame is its own write and
//! its own read, which is what traffic spread over many connections comes
//! to (at 2,000 msgs/s over 1,500 connections no two frames share a
//! syscall). One thread owns both ends of N connected pairs and, round
//! after round, writes a frame into every pair and then reads every pair,
//! so the figures hold no wake-up, no context switch and no event loop:
//! only the two syscalls and the TCP stack between them. On loopback the
//! writer's syscall also runs the receiver's half of the stack (softirq),
//! which is why a write costs more than a read.
//!
//! CPU is the thread's own clock (`CLOCK_THREAD_CPUTIME_ID`), read
//! separately for the write half and the read half of each round.
//!
//! ```text
//! cargo bench -p confab-benches --bench tcp_floor
//! CONFAB_BENCH_PAIRS=1500 CONFAB_BENCH_FRAME=120 CONFAB_BENCH_ROUNDS=400 cargo bench -p confab-benches --bench tcp_floor
//! ```
//!
//! Besides one frame per syscall it measures `K` frames per syscall
//! (`CONFAB_BENCH_BATCHES`, default `1,4,16`): the share a server saves when
//! traffic per connection is dense enough for frames to ride one write.
//! Under `cargo test` (no `--bench` argument) it runs a few rounds on a few
//! pairs to prove it still works.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

mod floor;
use floor::{env_or, thread_cpu_ns};

/// `n` connected pairs: (the writing end, the reading end).
fn pairs(n: usize) -> Vec<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    (0..n)
        .map(|_| {
            let out = TcpStream::connect(addr).expect("connect loopback");
            let (inn, _) = listener.accept().expect("accept");
            // Chat frames are sent as they come, as the gateway sends them.
            out.set_nodelay(true).unwrap();
            inn.set_nodelay(true).unwrap();
            (out, inn)
        })
        .collect()
}

/// CPU per frame for writing and for reading, in nanoseconds.
struct Floor {
    write_ns: f64,
    read_ns: f64,
}

/// Runs `rounds` rounds of `batch` frames of `frame` bytes per pair per
/// syscall, after `warmup` rounds that are not counted.
fn measure(
    pairs: &mut [(TcpStream, TcpStream)],
    frame: usize,
    batch: usize,
    rounds: usize,
) -> Floor {
    let out = vec![0x5a_u8; frame * batch];
    let mut inbuf = vec![0_u8; frame * batch];
    let mut write_ns = 0;
    let mut read_ns = 0;
    let warmup = (rounds / 10).max(1);
    for round in 0..warmup + rounds {
        let t0 = thread_cpu_ns();
        for (w, _) in pairs.iter_mut() {
            w.write_all(&out).expect("loopback write");
        }
        let t1 = thread_cpu_ns();
        for (_, r) in pairs.iter_mut() {
            // Everything written has arrived: loopback delivers inside the
            // writer's syscall. A short read only happens if the stack
            // split the segment; `read_exact` reads the rest.
            r.read_exact(&mut inbuf).expect("loopback read");
        }
        let t2 = thread_cpu_ns();
        if round >= warmup {
            write_ns += t1 - t0;
            read_ns += t2 - t1;
        }
    }
    let frames = (pairs.len() * rounds * batch) as f64;
    Floor {
        write_ns: write_ns as f64 / frames,
        read_ns: read_ns as f64 / frames,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = env_or("CONFAB_BENCH_PAIRS", if full { 1500 } else { 8 });
    let frame = env_or("CONFAB_BENCH_FRAME", 120_usize);
    let rounds = env_or("CONFAB_BENCH_ROUNDS", if full { 400 } else { 5 });
    let batches: Vec<usize> = std::env::var("CONFAB_BENCH_BATCHES")
        .unwrap_or_else(|_| "1,4,16".into())
        .split(',')
        .map(|b| b.trim().parse().expect("CONFAB_BENCH_BATCHES: numbers"))
        .collect();
    let mut pairs = pairs(n);
    println!("tcp_floor: {n} loopback pairs, {frame}-byte frames, {rounds} rounds");
    println!("frames per syscall | write µs/frame | read µs/frame | both µs/frame");
    for batch in batches {
        assert!(batch >= 1, "a batch holds at least one frame");
        let f = measure(&mut pairs, frame, batch, rounds);
        // Every frame was written and read back whole, so both halves ran
        // and took time; a zero here means the clock did not move.
        assert!(f.write_ns > 0.0 && f.read_ns > 0.0, "no CPU time measured");
        println!(
            "{batch} | {:.2} | {:.2} | {:.2}",
            f.write_ns / 1000.0,
            f.read_ns / 1000.0,
            (f.write_ns + f.read_ns) / 1000.0
        );
    }
}
