//! Retry delays: exponential with full jitter (AWS's "full jitter"), so a
//! provider outage does not end in every node retrying at the same
//! instant; a provider's own Retry-After is a floor.

use std::time::Duration;

use rand::Rng;

/// The delay before attempt `attempt + 1` (`attempt` ≥ 1 failures so far):
/// uniform in `[0, min(max, base · 2^(attempt-1))]`, but never below
/// `retry_after`.
pub fn delay(
    base: Duration,
    max: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let shift = attempt.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1 << shift).min(max);
    let jittered = rand::rng().random_range(Duration::ZERO..=ceiling);
    match retry_after {
        Some(after) => jittered.max(after),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap_with_jitter() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(5));
        for attempt in 1..=20 {
            let ceiling = (base * 2u32.pow((attempt - 1).min(20))).min(max);
            let samples: Vec<Duration> =
                (0..200).map(|_| delay(base, max, attempt, None)).collect();
            assert!(samples.iter().all(|d| *d <= ceiling), "attempt {attempt}");
            // Jitter: not every sample is the same.
            assert!(
                samples.iter().any(|d| *d != samples[0]),
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn retry_after_is_a_floor() {
        let after = Duration::from_secs(30);
        for _ in 0..100 {
            let d = delay(
                Duration::from_millis(1),
                Duration::from_secs(1),
                3,
                Some(after),
            );
            assert!(d >= after);
        }
    }
}
