//! Rate limiting of the requests that cost a password hash: login (a token
//! bucket per username and one per client IP; an attempt spends one token
//! from both) and signup (a bucket per client IP). When a bucket is empty
//! the request is refused with 429 and `Retry-After`, before any password
//! work.
//!
//! The buckets live in this node's memory: with several API nodes behind a
//! load balancer each node enforces the limit on what it sees (so a client
//! spreading attempts over N nodes gets up to N times the rate). That keeps
//! the API free of shared state; a shared limiter can replace this type
//! without touching the handlers.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Attempts allowed at once (the bucket's size).
    pub burst: u32,
    /// Attempts regained per minute.
    pub per_minute: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Keys kept before full buckets are swept (a full bucket is the same as no
/// bucket, so forgetting it changes nothing).
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug)]
struct Buckets<K> {
    limit: RateLimit,
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(limit: RateLimit) -> Self {
        Buckets {
            limit,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn rate_per_sec(&self) -> f64 {
        f64::from(self.limit.per_minute.max(1)) / 60.0
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate_per_sec()).min(f64::from(self.limit.burst));
        b.at = now;
    }

    /// Seconds until the key's bucket holds a token (0: it holds one now).
    fn wait(&self, map: &mut HashMap<K, Bucket>, key: &K, now: Instant) -> f64 {
        match map.get_mut(key) {
            None => 0.0,
            Some(b) => {
                self.refill(b, now);
                if b.tokens >= 1.0 {
                    0.0
                } else {
                    (1.0 - b.tokens) / self.rate_per_sec()
                }
            }
        }
    }

    fn spend(&self, map: &mut HashMap<K, Bucket>, key: K, now: Instant) {
        if map.len() >= SWEEP_ABOVE && !map.contains_key(&key) {
            let full = f64::from(self.limit.burst);
            let rate = self.rate_per_sec();
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < full
            });
        }
        let burst = f64::from(self.limit.burst);
        let b = map.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        self.refill(b, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }
}

/// The signup limiter: one bucket per client IP.
#[derive(Debug)]
pub struct IpLimiter {
    ips: Buckets<IpAddr>,
}

impl IpLimiter {
    /// A limiter of this shape per IP.
    pub fn new(limit: RateLimit) -> Self {
        IpLimiter {
            ips: Buckets::new(limit),
        }
    }

    /// Spends one request for `ip` (an IPv6 host counts as its /64), or
    /// says how long to wait.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let ip = confab_admission::address_key(ip);
        let mut ips = self.ips.map.lock().unwrap_or_else(|e| e.into_inner());
        let wait = self.ips.wait(&mut ips, &ip, now);
        if wait > 0.0 {
            return Err(Duration::from_secs_f64(wait));
        }
        self.ips.spend(&mut ips, ip, now);
        Ok(())
    }
}

/// The login limiter: one bucket per username, one per client IP.
#[derive(Debug)]
pub struct LoginLimiter {
    users: Buckets<String>,
    ips: Buckets<IpAddr>,
}

impl LoginLimiter {
    /// A limiter with the same shape for usernames and IPs.
    pub fn new(limit: RateLimit) -> Self {
        LoginLimiter {
            users: Buckets::new(limit),
            ips: Buckets::new(limit),
        }
    }

    /// Spends one attempt for `username` from `ip` at `now`, or says how
    /// long to wait when either bucket is empty (nothing is spent then, so
    /// a refused attempt does not extend the wait).
    pub fn check(&self, username: &str, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let ip = confab_admission::address_key(ip);
        // One lock order everywhere: users, then IPs.
        let mut users = self.users.map.lock().unwrap_or_else(|e| e.into_inner());
        let mut ips = self.ips.map.lock().unwrap_or_else(|e| e.into_inner());
        let user_key = username.to_owned();
        let wait = self
            .users
            .wait(&mut users, &user_key, now)
            .max(self.ips.wait(&mut ips, &ip, now));
        if wait > 0.0 {
            return Err(Duration::from_secs_f64(wait));
        }
        self.users.spend(&mut users, user_key, now);
        self.ips.spend(&mut ips, ip, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_burst_then_one_attempt_per_refill_interval() {
        let l = LoginLimiter::new(RateLimit {
            burst: 3,
            per_minute: 6,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            l.check("ada", IP, t0).unwrap();
        }
        let wait = l.check("ada", IP, t0).unwrap_err();
        assert!((9.9..=10.1).contains(&wait.as_secs_f64()), "{wait:?}");
        // Refused attempts spend nothing: still ten seconds from t0.
        assert!(l.check("ada", IP, t0 + Duration::from_secs(9)).is_err());
        l.check("ada", IP, t0 + Duration::from_secs(10)).unwrap();
        assert!(l.check("ada", IP, t0 + Duration::from_secs(10)).is_err());
    }

    #[test]
    fn usernames_and_ips_are_limited_independently() {
        let l = LoginLimiter::new(RateLimit {
            burst: 2,
            per_minute: 1,
        });
        let t = Instant::now();
        let other_ip: IpAddr = "10.0.0.2".parse().unwrap();
        l.check("ada", IP, t).unwrap();
        l.check("ada", other_ip, t).unwrap();
        // The username is spent, whatever the IP.
        assert!(l.check("ada", "10.0.0.3".parse().unwrap(), t).is_err());
        // IP's bucket has one left: another username from it passes once.
        l.check("bob", IP, t).unwrap();
        assert!(l.check("eve", IP, t).is_err(), "IP spent");
        l.check("eve", "10.0.0.4".parse().unwrap(), t).unwrap();
    }

    #[test]
    fn full_buckets_are_swept_when_the_map_grows() {
        let l = LoginLimiter::new(RateLimit {
            burst: 1,
            per_minute: 60,
        });
        let t = Instant::now();
        for i in 0..SWEEP_ABOVE {
            l.check(&format!("user{i}"), IP, t + Duration::from_secs(i as u64))
                .unwrap();
        }
        let later = t + Duration::from_secs(SWEEP_ABOVE as u64 + 10);
        l.check("newcomer", "10.9.9.9".parse().unwrap(), later)
            .unwrap();
        assert!(l.users.map.lock().unwrap().len() < 100);
    }
}
