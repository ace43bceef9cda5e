//! Who may open a connection to a node, decided at accept time, before a
//! connection costs anything but its descriptor.
//!
//! Three rules, shared by every TCP listener of the node (the HTTP API,
//! the gateway's WebSocket port):
//!
//! - **A node-wide budget** below the open-file limit: connections stop
//!   being admitted while a reserve of descriptors is still free, so the
//!   listeners can always accept (and at once close) a connection over the
//!   budget instead of leaving it in the backlog, and the storage and the
//!   directory can still open their files. Without it, one client holding
//!   thousands of idle connections takes every descriptor and no new
//!   request is served at all.
//! - **A cap per source address and listener**, so that one peer cannot
//!   take the whole budget. Loopback peers may be exempt (a load generator
//!   on the node's own machine).
//! - **Back-off on accept failures**: when accept fails for lack of
//!   descriptors the listener sleeps, doubling up to half a second, instead
//!   of spinning on an error that the next call repeats.
//!
//! Each refusal is counted in `confab_connections_refused_total{listener,
//! reason}`. A [`Permit`] is held for as long as its connection lives.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

/// Descriptors kept free at least, whatever the limit.
pub const MIN_RESERVE: usize = 256;

/// Locks the per-address counts are spread over.
const SHARDS: usize = 16;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node-wide budget is spent: only the reserve is left.
    Budget,
    /// The source address has its listener's maximum open.
    PerAddress,
}

impl Refusal {
    /// The metric's `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Budget => "budget",
            Refusal::PerAddress => "per_address",
        }
    }
}

/// The node-wide state: the budget, the per-address counts and the metric.
#[derive(Debug, Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Most connections admitted at once.
    budget: usize,
    open: AtomicUsize,
    shards: [Mutex<HashMap<(&'static str, IpAddr), u32>>; SHARDS],
    hasher: RandomState,
    refused: IntCounterVec,
    open_gauge: IntGauge,
}

impl Admission {
    /// A budget of `budget` connections at once.
    pub fn new(budget: usize) -> Admission {
        Admission {
            inner: Arc::new(Inner {
                budget,
                open: AtomicUsize::new(0),
                shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
                hasher: RandomState::new(),
                refused: IntCounterVec::new(
                    Opts::new(
                        "confab_connections_refused_total",
                        "TCP connections refused at accept, by listener and reason \
                         (budget, per_address, descriptors).",
                    ),
                    &["listener", "reason"],
                )
                .expect("valid metric"),
                open_gauge: IntGauge::new(
                    "confab_connections_admitted",
                    "TCP connections admitted and still open, every listener together.",
                )
                .expect("valid metric"),
            }),
        }
    }

    /// The budget this process's open-file limit allows: the limit less a
    /// reserve of a fiftieth of it (at least [`MIN_RESERVE`]) for the
    /// message log's and the directory's files, the listeners and the
    /// accept-and-close of connections over the budget.
    pub fn from_open_file_limit() -> Admission {
        let limit = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        Admission::new(budget_for(usize::try_from(limit).unwrap_or(usize::MAX)))
    }

    /// Most connections admitted at once.
    pub fn budget(&self) -> usize {
        self.inner.budget
    }

    /// Connections admitted and not yet closed.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Adds the metrics to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.inner.refused.clone()))?;
        registry.register(Box::new(self.inner.open_gauge.clone()))
    }

    /// Refusals so far for `listener` and `reason` (a metric's value).
    pub fn refused(&self, listener: &str, reason: &str) -> u64 {
        self.inner
            .refused
            .with_label_values(&[listener, reason])
            .get()
    }

    /// The gate of one listener: `name` labels its refusals and keeps its
    /// per-address counts apart from other listeners'; a source address
    /// may hold `per_address` of its connections at once, loopback
    /// addresses any number when `exempt_loopback`.
    pub fn gate(&self, name: &'static str, per_address: u32, exempt_loopback: bool) -> Gate {
        Gate(Arc::new(GateInner {
            inner: self.inner.clone(),
            name,
            per_address,
            exempt_loopback,
        }))
    }
}

/// The budget for an open-file limit of `limit`.
pub fn budget_for(limit: usize) -> usize {
    let reserve = (limit / 50).max(MIN_RESERVE);
    limit.saturating_sub(reserve)
}

/// One listener's admission rules; cheap to clone (every permit holds
/// one).
#[derive(Debug, Clone)]
pub struct Gate(Arc<GateInner>);

#[derive(Debug)]
struct GateInner {
    inner: Arc<Inner>,
    name: &'static str,
    per_address: u32,
    exempt_loopback: bool,
}

impl Gate {
    /// Admits a connection from `peer`, or says why not (and counts it).
    pub fn admit(&self, peer: IpAddr) -> Result<Permit, Refusal> {
        let inner = &self.0.inner;
        if inner.open.fetch_add(1, Ordering::AcqRel) >= inner.budget {
            inner.open.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refuse(Refusal::Budget));
        }
        let peer = address_key(peer);
        let counted = !(self.0.exempt_loopback && peer.is_loopback());
        if counted {
            let mut map = self.shard(peer).lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry((self.0.name, peer)).or_insert(0);
            if *n >= self.0.per_address {
                drop(map);
                inner.open.fetch_sub(1, Ordering::AcqRel);
                return Err(self.refuse(Refusal::PerAddress));
            }
            *n += 1;
        }
        inner.open_gauge.inc();
        Ok(Permit {
            gate: self.clone(),
            peer,
            counted,
        })
    }

    /// Counts an accept that failed with `err` and says how long to wait
    /// before the next, given the previous wait: none for a failure that
    /// concerns one connection (it reset before we took it), a doubling one
    /// up to half a second when the process or system is out of
    /// descriptors or memory.
    pub fn accept_failed(&self, err: &io::Error, previous: Duration) -> Duration {
        if !is_resource_exhaustion(err) {
            return Duration::ZERO;
        }
        self.0
            .inner
            .refused
            .with_label_values(&[self.0.name, "descriptors"])
            .inc();
        (previous * 2).clamp(Duration::from_millis(5), Duration::from_millis(500))
    }

    /// Counts a refusal this gate's listener decided on its own (`reason`
    /// labels it), such as too many handshakes from one address.
    pub fn count_refusal(&self, reason: &str) {
        self.0
            .inner
            .refused
            .with_label_values(&[self.0.name, reason])
            .inc();
    }

    fn refuse(&self, why: Refusal) -> Refusal {
        self.0
            .inner
            .refused
            .with_label_values(&[self.0.name, why.label()])
            .inc();
        why
    }

    fn shard(&self, peer: IpAddr) -> &Mutex<HashMap<(&'static str, IpAddr), u32>> {
        let h = self.0.inner.hasher.hash_one(peer) as usize;
        &self.0.inner.shards[h % SHARDS]
    }
}

/// The address a peer is counted under: an IPv4 peer seen through an
/// IPv6 socket counts as itself, and an IPv6 peer as its /64 (one host
/// holds a whole /64 and could otherwise take a fresh address per
/// connection). Rate limits key on it too.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None if v6.is_loopback() => ip,
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// Whether an accept failed because the process or the system ran out of
/// descriptors or buffer memory (EMFILE, ENFILE, ENOBUFS, ENOMEM).
pub fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(23 | 24 | 105 | 12))
}

/// An admitted connection's place in the budget and in its address's
/// count; released when dropped.
#[derive(Debug)]
pub struct Permit {
    gate: Gate,
    peer: IpAddr,
    counted: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.counted {
            let mut map = self
                .gate
                .shard(self.peer)
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let key = (self.gate.0.name, self.peer);
            if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
        self.gate.0.inner.open.fetch_sub(1, Ordering::AcqRel);
        self.gate.0.inner.open_gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_budget_leaves_a_reserve() {
        assert_eq!(budget_for(20_000), 19_600);
        assert_eq!(budget_for(2_000_000), 1_960_000);
        assert_eq!(budget_for(1024), 768);
        assert_eq!(budget_for(100), 0);
    }

    #[test]
    fn each_address_gets_its_cap_and_permits_give_it_back() {
        let a = Admission::new(100);
        let gate = a.gate("api", 2, false);
        let one = gate.admit(ip("10.0.0.1")).unwrap();
        let _two = gate.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(gate.admit(ip("10.0.0.1")).unwrap_err(), Refusal::PerAddress);
        // The same address as IPv4 inside IPv6 is the same peer.
        assert_eq!(
            gate.admit(ip("::ffff:10.0.0.1")).unwrap_err(),
            Refusal::PerAddress
        );
        // Others are unaffected, and so is another listener.
        let _other = gate.admit(ip("10.0.0.2")).unwrap();
        let _ws = a.gate("ws", 2, false).admit(ip("10.0.0.1")).unwrap();
        assert_eq!(a.refused("api", "per_address"), 2);
        drop(one);
        let _again = gate.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(a.open(), 4);
    }

    #[test]
    fn the_budget_is_shared_by_every_listener() {
        let a = Admission::new(3);
        let api = a.gate("api", 100, false);
        let ws = a.gate("ws", 100, true);
        let held: Vec<Permit> = vec![
            api.admit(ip("10.0.0.1")).unwrap(),
            ws.admit(ip("127.0.0.1")).unwrap(),
            ws.admit(ip("10.0.0.2")).unwrap(),
        ];
        assert_eq!(ws.admit(ip("10.0.0.3")).unwrap_err(), Refusal::Budget);
        assert_eq!(api.admit(ip("10.0.0.4")).unwrap_err(), Refusal::Budget);
        assert_eq!(a.refused("ws", "budget"), 1);
        assert_eq!(a.open(), 3);
        drop(held);
        assert_eq!(a.open(), 0);
        api.admit(ip("10.0.0.3")).unwrap();
    }

    #[test]
    fn loopback_can_be_exempt_from_the_address_cap_but_not_the_budget() {
        let a = Admission::new(5);
        let exempt = a.gate("ws", 1, true);
        let strict = a.gate("api", 1, false);
        let _held: Vec<Permit> = (0..3)
            .map(|_| exempt.admit(ip("127.0.0.1")).unwrap())
            .collect();
        let _s = strict.admit(ip("127.0.0.1")).unwrap();
        assert_eq!(
            strict.admit(ip("127.0.0.1")).unwrap_err(),
            Refusal::PerAddress
        );
        let _last = exempt.admit(ip("::1")).unwrap();
        assert_eq!(exempt.admit(ip("127.0.0.1")).unwrap_err(), Refusal::Budget);
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64() {
        let a = Admission::new(100);
        let gate = a.gate("api", 2, false);
        let _one = gate.admit(ip("2001:db8:1:2::1")).unwrap();
        let _two = gate.admit(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert_eq!(
            gate.admit(ip("2001:db8:1:2:aaaa::3")).unwrap_err(),
            Refusal::PerAddress
        );
        let _other = gate.admit(ip("2001:db8:1:3::1")).unwrap();
        assert_eq!(address_key(ip("::1")), ip("::1"));
        assert_eq!(address_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
    }

    #[test]
    fn accept_backs_off_only_when_out_of_descriptors() {
        let a = Admission::new(1);
        let g = a.gate("api", 1, false);
        let emfile = io::Error::from_raw_os_error(24);
        let mut wait = Duration::ZERO;
        let mut waits = Vec::new();
        for _ in 0..9 {
            wait = g.accept_failed(&emfile, wait);
            waits.push(wait.as_millis());
        }
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 500, 500]);
        assert_eq!(a.refused("api", "descriptors"), 9);
        let reset = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(g.accept_failed(&reset, wait), Duration::ZERO);
    }
}
