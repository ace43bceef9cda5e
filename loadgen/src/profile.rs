//! Traffic profiles: the model of a chat service's users that `plan`
//! turns into capacity arithmetic and `run` turns into traffic.
//!
//! A profile is a TOML file (the built-in ones live in `loadgen/profiles/`
//! and are compiled in, so `--profile dau50m` works from any directory);
//! users copy one and edit it. Every field is documented in
//! docs/loadgen.md with where its default comes from. Unknown keys are
//! errors, so a typo does not silently leave a default in place.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The profiles shipped with the load generator, by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("dau50m", include_str!("../profiles/dau50m.toml")),
    ("smoke", include_str!("../profiles/smoke.toml")),
    ("fanout", include_str!("../profiles/fanout.toml")),
    ("idle", include_str!("../profiles/idle.toml")),
    ("burst", include_str!("../profiles/burst.toml")),
];

/// A whole profile.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Short name, shown in reports.
    pub name: String,
    /// One line on what the profile is for.
    pub description: String,
    /// Who the users are and how they connect.
    pub population: Population,
    /// What they do.
    pub traffic: Traffic,
    /// What one `run` drives by default.
    pub run: RunDefaults,
    /// Per-node capacity assumed by `plan` (replace with figures you
    /// measured; `run` reports its own).
    pub capacity: Capacity,
}

/// The users of the service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    /// Daily active users of the full service.
    pub dau: u64,
    /// Users online at the daily peak, as a share of DAU.
    pub peak_concurrent_ratio: f64,
    /// Devices an online user has connected: `[count, weight]` pairs.
    pub devices: Vec<(u32, f64)>,
    /// Sessions (app foregrounded and connected) per user per day.
    pub sessions_per_day: f64,
    /// Mean length of a session, minutes.
    pub session_minutes: f64,
    /// 1:1 conversations each virtual user has (DM channels `run` creates
    /// per user, with that many distinct partners where there are enough
    /// users).
    pub dm_partners: u32,
    /// Groups each virtual user belongs to, on average.
    pub groups_per_user: f64,
}

/// A size range and its weight in a distribution.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    /// Smallest value, inclusive.
    pub min: u32,
    /// Largest value, inclusive.
    pub max: u32,
    /// Relative weight.
    pub weight: f64,
}

/// What users do.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Messages each DAU sends per day.
    pub messages_per_user_per_day: f64,
    /// Share of messages sent in 1:1 conversations (the rest go to groups).
    pub one_to_one_share: f64,
    /// Group sizes (members, owner included; at most 100).
    pub group_sizes: Vec<Bucket>,
    /// Relative traffic in each hour of the day (24 values, UTC of the
    /// service's main market). The peak factor is max / mean.
    pub diurnal: Vec<f64>,
    /// Heartbeat interval of the clients, seconds.
    pub heartbeat_interval_s: u32,
    /// Typing notices sent per message sent.
    pub typing_per_message: f64,
    /// Read receipts sent per message received.
    pub read_receipts_per_message: f64,
    /// Reconnects per connected device per hour (network changes, app
    /// switches), on top of session starts.
    pub reconnects_per_device_hour: f64,
    /// Message length in characters.
    pub message_chars: Vec<Bucket>,
}

/// Rate bursts on top of the base rate (profile `burst`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    /// A burst starts every this many seconds.
    pub every_s: f64,
    /// Each burst lasts this long.
    pub length_s: f64,
    /// The rate during a burst, as a multiple of the base rate.
    pub factor: f64,
}

/// Defaults of `run` (each has a flag).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunDefaults {
    /// Share of the peak-hour population and traffic one machine drives
    /// (`--scale`).
    pub scale: f64,
    /// Measured seconds (`--duration`).
    pub duration_s: f64,
    /// Seconds of traffic before measuring (`--warmup`).
    pub warmup_s: f64,
    /// Messages per second, replacing the scaled model's rate (`--rate`).
    /// The profile's shape (targets, lengths) is kept.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Rate bursts.
    #[serde(default)]
    pub burst: Option<Burst>,
}

/// Per-node capacity that `plan` divides by.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Messages per second one gateway node sustains within the latency
    /// target.
    pub node_messages_per_s: f64,
    /// Deliveries per second one node sustains.
    pub node_deliveries_per_s: f64,
    /// Connections one node holds.
    pub node_connections: f64,
    /// Share of capacity a node is planned to use at the daily peak
    /// (headroom for failover and spikes).
    pub target_utilisation: f64,
}

/// Why a profile is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Neither a built-in name nor a readable file.
    #[error("no profile {0:?}: not a built-in profile ({built_in}) and not a readable file: {1}", built_in = built_in_names())]
    NotFound(String, std::io::Error),
    /// The TOML does not parse or has unknown keys.
    #[error("profile {0}: {1}")]
    Parse(String, toml::de::Error),
    /// A value is out of range.
    #[error("profile {name}: {field}: {why}")]
    Invalid {
        /// The profile.
        name: String,
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
}

fn built_in_names() -> String {
    BUILT_IN
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Profile {
    /// A built-in profile by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> Result<Profile, ProfileError> {
        let (label, text) = match BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            Some((n, text)) => ((*n).to_owned(), (*text).to_owned()),
            None => {
                let text = std::fs::read_to_string(Path::new(name_or_path))
                    .map_err(|e| ProfileError::NotFound(name_or_path.to_owned(), e))?;
                (name_or_path.to_owned(), text)
            }
        };
        Profile::parse(&label, &text)
    }

    /// Parses and validates profile text.
    pub fn parse(label: &str, text: &str) -> Result<Profile, ProfileError> {
        let profile: Profile =
            toml::from_str(text).map_err(|e| ProfileError::Parse(label.to_owned(), e))?;
        profile.validate()?;
        Ok(profile)
    }

    /// Checks every value's range and every distribution's shape.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let bad = |field: &'static str, why: String| {
            Err(ProfileError::Invalid {
                name: self.name.clone(),
                field,
                why,
            })
        };
        let p = &self.population;
        let t = &self.traffic;
        if p.dau == 0 {
            return bad("population.dau", "must be at least 1".into());
        }
        if !(p.peak_concurrent_ratio > 0.0 && p.peak_concurrent_ratio <= 1.0) {
            return bad(
                "population.peak_concurrent_ratio",
                format!("{} is outside (0, 1]", p.peak_concurrent_ratio),
            );
        }
        if p.devices.is_empty()
            || p.devices
                .iter()
                .any(|&(n, w)| !(1..=16).contains(&n) || w < 0.0)
            || p.devices.iter().map(|d| d.1).sum::<f64>() <= 0.0
        {
            return bad(
                "population.devices",
                "needs [count, weight] pairs with counts 1..=16 and a positive total weight".into(),
            );
        }
        for (field, v) in [
            ("population.sessions_per_day", p.sessions_per_day),
            ("population.session_minutes", p.session_minutes),
            ("population.groups_per_user", p.groups_per_user),
            (
                "traffic.messages_per_user_per_day",
                t.messages_per_user_per_day,
            ),
            ("traffic.typing_per_message", t.typing_per_message),
            (
                "traffic.read_receipts_per_message",
                t.read_receipts_per_message,
            ),
            (
                "traffic.reconnects_per_device_hour",
                t.reconnects_per_device_hour,
            ),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, format!("{v} must be a finite number ≥ 0"));
            }
        }
        if !(0.0..=1.0).contains(&t.one_to_one_share) {
            return bad(
                "traffic.one_to_one_share",
                format!("{} is outside [0, 1]", t.one_to_one_share),
            );
        }
        check_buckets(&t.group_sizes, 3, 100).or_else(|why| bad("traffic.group_sizes", why))?;
        check_buckets(&t.message_chars, 1, 100_000)
            .or_else(|why| bad("traffic.message_chars", why))?;
        if t.diurnal.len() != 24 || t.diurnal.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
            return bad("traffic.diurnal", "needs 24 finite values ≥ 0".into());
        }
        if t.diurnal.iter().sum::<f64>() <= 0.0 {
            return bad(
                "traffic.diurnal",
                "needs at least one hour with traffic".into(),
            );
        }
        if t.heartbeat_interval_s == 0 {
            return bad("traffic.heartbeat_interval_s", "must be at least 1".into());
        }
        let r = &self.run;
        if !(r.scale > 0.0 && r.scale <= 1.0) {
            return bad("run.scale", format!("{} is outside (0, 1]", r.scale));
        }
        if !(r.duration_s.is_finite() && r.duration_s > 0.0) {
            return bad("run.duration_s", "must be > 0".into());
        }
        if !(r.warmup_s.is_finite() && r.warmup_s >= 0.0) {
            return bad("run.warmup_s", "must be ≥ 0".into());
        }
        if let Some(rate) = r.rate {
            if !(rate.is_finite() && rate >= 0.0) {
                return bad("run.rate", "must be ≥ 0".into());
            }
        }
        if let Some(b) = r.burst {
            if !(b.every_s > 0.0 && b.length_s > 0.0 && b.length_s < b.every_s && b.factor >= 1.0) {
                return bad(
                    "run.burst",
                    "needs every_s > length_s > 0 and factor ≥ 1".into(),
                );
            }
        }
        let c = &self.capacity;
        for (field, v) in [
            ("capacity.node_messages_per_s", c.node_messages_per_s),
            ("capacity.node_deliveries_per_s", c.node_deliveries_per_s),
            ("capacity.node_connections", c.node_connections),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(field, format!("{v} must be > 0"));
            }
        }
        if !(c.target_utilisation > 0.0 && c.target_utilisation <= 1.0) {
            return bad(
                "capacity.target_utilisation",
                format!("{} is outside (0, 1]", c.target_utilisation),
            );
        }
        Ok(())
    }

    /// Peak hour traffic over mean traffic, from the diurnal curve.
    pub fn peak_factor(&self) -> f64 {
        let d = &self.traffic.diurnal;
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        d.iter().cloned().fold(0.0, f64::max) / mean
    }

    /// Mean devices connected per online user.
    pub fn mean_devices(&self) -> f64 {
        weighted_mean(self.population.devices.iter().map(|&(n, w)| (n as f64, w)))
    }

    /// Mean members of a group.
    pub fn mean_group_size(&self) -> f64 {
        bucket_mean(&self.traffic.group_sizes)
    }

    /// Mean characters of a message.
    pub fn mean_message_chars(&self) -> f64 {
        bucket_mean(&self.traffic.message_chars)
    }
}

fn check_buckets(buckets: &[Bucket], lo: u32, hi: u32) -> Result<(), String> {
    if buckets.is_empty() {
        return Err("needs at least one bucket".into());
    }
    for b in buckets {
        if b.min < lo || b.max > hi || b.min > b.max || !(b.weight.is_finite() && b.weight >= 0.0) {
            return Err(format!(
                "bucket {}..={} (weight {}) must lie within {lo}..={hi} with min ≤ max and weight ≥ 0",
                b.min, b.max, b.weight
            ));
        }
    }
    if buckets.iter().map(|b| b.weight).sum::<f64>() <= 0.0 {
        return Err("the weights sum to 0".into());
    }
    Ok(())
}

fn weighted_mean(items: impl Iterator<Item = (f64, f64)>) -> f64 {
    let (mut sum, mut weights) = (0.0, 0.0);
    for (v, w) in items {
        sum += v * w;
        weights += w;
    }
    sum / weights
}

/// Values are uniform within a bucket.
fn bucket_mean(buckets: &[Bucket]) -> f64 {
    weighted_mean(
        buckets
            .iter()
            .map(|b| ((b.min as f64 + b.max as f64) / 2.0, b.weight)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_profile_parses_and_validates() {
        for (name, _) in BUILT_IN {
            let p = Profile::load(name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&p.name, name);
        }
    }

    #[test]
    fn unknown_keys_and_bad_ranges_are_named() {
        let text = BUILT_IN[1].1;
        let typo = text.replacen("dau =", "dua =", 1);
        let e = Profile::parse("typo", &typo).unwrap_err().to_string();
        assert!(e.contains("dua"), "{e}");

        let big_group = text.replacen("max = 10,", "max = 101,", 1);
        assert_ne!(
            big_group, text,
            "the smoke profile has a 3..=10 group bucket"
        );
        let e = Profile::parse("big", &big_group).unwrap_err().to_string();
        assert!(e.contains("traffic.group_sizes"), "{e}");

        let e = Profile::load("no-such-profile").unwrap_err().to_string();
        assert!(e.contains("dau50m, smoke"), "{e}");
    }

    #[test]
    fn derived_means() {
        let p = Profile::load("dau50m").unwrap();
        // 1×0.6 + 2×0.3 + 3×0.1
        assert!((p.mean_devices() - 1.5).abs() < 1e-9);
        assert!(p.peak_factor() > 1.0);
    }
}
