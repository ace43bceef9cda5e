//! Gives memory the process freed back to the kernel.
//!
//! glibc's malloc keeps what is freed in the middle of its arenas for
//! reuse and only returns the top of each heap. After a burst of
//! short-lived allocations (a reconnect storm: thousands of handshakes at
//! once, each with its TLS and upgrade state) the live connections sit
//! among freed chunks, and the node's resident memory stays at the burst's
//! peak instead of returning to what its connections hold. `malloc_trim`
//! releases the free pages of every arena (`madvise`); the node calls it
//! when its resident memory has grown since the last trim, so that it
//! returns to its idle level after a storm.

use std::time::Duration;

use crate::process_metrics::resident_bytes;

/// How often the node looks at its resident memory to decide whether to
/// trim (see `should_trim`): often enough that a storm's leftovers are gone
/// within seconds.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Starts a thread that looks every `interval` for the life of the
/// process and trims after growth, once per process however many nodes it
/// starts. Where the
/// allocator is not glibc's it does nothing.
pub fn start(interval: Duration) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    STARTED.call_once(|| spawn(interval));
}

fn spawn(interval: Duration) {
    let spawned = std::thread::Builder::new()
        .name("confab-heap-trim".into())
        .spawn(move || {
            let mut floor = resident_bytes().unwrap_or(0);
            loop {
                std::thread::sleep(interval);
                let Some(now) = resident_bytes() else {
                    continue;
                };
                if should_trim(floor, now) {
                    trim();
                    floor = resident_bytes().unwrap_or(now);
                } else if now < floor {
                    floor = now;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("could not start the heap trimmer: {e}");
    }
}

/// Whether memory grew enough since the last trim to trim again. A trim
/// walks every arena's free chunks and holds each arena's lock while it
/// does, stalling the core thread that allocates from it; on a node with
/// gigabytes of heap that is milliseconds. So the node trims only after
/// growth (a storm, a burst of large messages), not on a clock: a steady
/// node never trims.
fn should_trim(floor: u64, now: u64) -> bool {
    const GROWTH: u64 = 32 << 20;
    now > floor + GROWTH.max(floor / 8)
}

/// Releases the free pages of every malloc arena; returns whether any
/// memory was released.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() -> bool {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: glibc's `malloc_trim` takes no pointers and locks each arena
    // itself; it may be called from any thread at any time.
    unsafe { malloc_trim(0) == 1 }
}

/// Not glibc: nothing to trim.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss_kib() -> u64 {
        resident_bytes().unwrap() / 1024
    }

    #[test]
    fn only_growth_is_trimmed() {
        let mib = 1 << 20;
        assert!(!should_trim(100 * mib, 120 * mib), "20 MiB is noise");
        assert!(should_trim(100 * mib, 140 * mib));
        // A large node trims on an eighth's growth, not on 32 MiB.
        assert!(!should_trim(4096 * mib, 4200 * mib));
        assert!(should_trim(4096 * mib, 4700 * mib));
    }

    #[test]
    fn freed_memory_in_the_middle_of_the_heap_goes_back() {
        // A storm's pattern: many blocks, three in four freed, so the
        // freed memory lies between blocks still in use and the heap's top
        // cannot shrink by itself. On a thread of its own, whose arena
        // holds nothing else.
        let (before, after) = std::thread::spawn(|| {
            let mut blocks: Vec<Vec<u8>> = (0..40_000).map(|_| vec![1u8; 3000]).collect();
            let mut kept = Vec::new();
            for (i, b) in blocks.drain(..).enumerate() {
                if i % 4 == 0 {
                    kept.push(b);
                }
            }
            let before = rss_kib();
            assert!(trim(), "malloc_trim released nothing");
            let after = rss_kib();
            drop(kept);
            (before, after)
        })
        .join()
        .unwrap();
        // About 90 MB was freed between live blocks; most of it must leave.
        assert!(
            after + 30_000 < before,
            "RSS {before} KiB before the trim, {after} KiB after"
        );
    }
}
