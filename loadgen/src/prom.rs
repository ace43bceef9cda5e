//! Reading the server's `/metrics` (Prometheus text format): plain samples,
//! and a histogram's quantile over a window from two readings of its
//! buckets, the way Prometheus' `histogram_quantile` estimates it.

/// The value of an unlabelled sample.
pub fn value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse::<f64>().ok())?
    })
}

/// The sum of a series' samples whose labels contain `label` (for
/// example `queue="mailbox"`; empty: every sample of the series).
pub fn sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (n, labels) = series.split_once('{').unwrap_or((series, ""));
            (n == name && labels.contains(label)).then(|| v.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// The buckets of an unlabelled histogram: (upper bound, cumulative count),
/// in the order the text gives them (ascending bounds, `+Inf` last).
pub fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The `q` quantile of what was observed between two readings of the same
/// histogram, interpolated linearly inside the bucket it falls in. None
/// when nothing was observed in between or the readings do not match.
pub fn quantile_between(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    if after.is_empty() || (!before.is_empty() && before.len() != after.len()) {
        return None;
    }
    let delta: Vec<(f64, f64)> = after
        .iter()
        .enumerate()
        .map(|(i, &(le, n))| (le, n - before.get(i).map_or(0.0, |b| b.1)))
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, n) in &delta {
        if n >= rank {
            if le.is_infinite() {
                // Past the last finite bound: that bound is all we know.
                return Some(lower.0);
            }
            let inside = n - lower.1;
            let frac = if inside > 0.0 {
                (rank - lower.1) / inside
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * frac);
        }
        lower = (le, n);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_labelled_samples() {
        let text =
            "# HELP q x\nq{core=\"0\",queue=\"mailbox\"} 3\nq{core=\"1\",queue=\"mailbox\"} 4\n\
                    q{core=\"0\",queue=\"storage\"} 10\nqq 99\n";
        assert_eq!(sum(text, "q", "queue=\"mailbox\""), 7.0);
        assert_eq!(sum(text, "q", ""), 17.0);
        assert_eq!(sum(text, "absent", ""), 0.0);
    }

    #[test]
    fn samples_are_found_by_exact_name() {
        let text = "# HELP process_resident_memory_bytes x\n\
                    process_resident_memory_bytes_total 1\n\
                    process_resident_memory_bytes 123456\n\
                    process_cpu_seconds_total 12.34\n";
        assert_eq!(value(text, "process_resident_memory_bytes"), Some(123456.0));
        assert_eq!(value(text, "process_cpu_seconds_total"), Some(12.34));
        assert_eq!(value(text, "nope"), None);
    }

    #[test]
    fn a_quantile_is_taken_over_the_window_only() {
        let text = |a: u32, b: u32, c: u32| {
            format!(
                "h_bucket{{le=\"0.001\"}} {a}\nh_bucket{{le=\"0.005\"}} {b}\nh_bucket{{le=\"+Inf\"}} {c}\nh_sum 1\nh_count {c}\n"
            )
        };
        // Before the window: 100 slow observations, which must not count.
        let before = buckets(&text(0, 0, 100), "h");
        assert_eq!(before.len(), 3);
        assert_eq!(before[2], (f64::INFINITY, 100.0));
        // In the window: 90 under 1 ms, 10 between 1 and 5 ms.
        let after = buckets(&text(90, 100, 200), "h");
        let p50 = quantile_between(&before, &after, 0.5).unwrap();
        assert!((p50 - 0.000_555).abs() < 1e-5, "{p50}");
        let p99 = quantile_between(&before, &after, 0.99).unwrap();
        assert!((p99 - 0.0046).abs() < 1e-6, "{p99}");
        assert_eq!(quantile_between(&after, &after, 0.99), None);
        assert_eq!(quantile_between(&[], &[], 0.99), None);
    }
}
