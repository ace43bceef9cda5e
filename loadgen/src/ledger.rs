//! The correctness ledger: every message the run sends, until every device
//! that should have it does.
//!
//! Throughput figures are worthless if messages went missing to get them,
//! so the run keeps books. Each message carries its ledger id in its text
//! (`lg<hex id> ` and then filler that is a function of the id and the
//! length, so a changed text is caught too). The ledger counts deliveries
//! against the devices that should get the message; each device keeps the
//! channel sequences it saw so that holes and repeats show up per device.
//! A run reports `lost`, `duplicated`, `gaps`, `corrupted` and `errors`
//! from these books and fails if any is non-zero.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Shards of the ledger, so that devices delivering on several threads do
/// not queue behind one lock.
const SHARDS: usize = 64;

/// One message's entry.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// When it was scheduled, in nanoseconds since the run's start.
    scheduled_ns: u64,
    /// Devices that should get it (every member device but the sender's).
    expected: u32,
    /// Deliveries seen so far.
    delivered: u32,
    /// Its length in characters.
    chars: u32,
    /// When the acknowledgement came (ns since the run's start).
    acked_ns: u64,
    /// The server acknowledged it.
    acked: bool,
    /// The send failed for good.
    failed: bool,
    /// Scheduled after the warm-up: its latencies count.
    measured: bool,
    /// The sending device (the run's index).
    device: u32,
}

/// What a delivery tells the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// When the message was scheduled (ns since the run's start).
    pub scheduled_ns: u64,
    /// Whether its latency counts.
    pub measured: bool,
    /// The delivery is one more than there are recipients.
    pub surplus: bool,
}

/// The ledger of one run.
pub struct Ledger {
    shards: Box<[Mutex<Vec<Entry>>]>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            shards: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }
}

impl Ledger {
    /// Enters message `id`. Ids are registered in increasing order, from 0,
    /// by the one scheduler.
    pub fn register(
        &self,
        id: u64,
        device: u32,
        scheduled_ns: u64,
        expected: u32,
        chars: u32,
        measured: bool,
    ) {
        let mut shard = self.shards[id as usize % SHARDS].lock().unwrap();
        let index = id as usize / SHARDS;
        debug_assert_eq!(shard.len(), index, "ids are registered in order");
        if shard.len() <= index {
            shard.resize(index + 1, Entry::default());
        }
        shard[index] = Entry {
            scheduled_ns,
            expected,
            chars,
            measured,
            device,
            ..Entry::default()
        };
    }

    fn with<R>(&self, id: u64, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        let mut shard = self.shards[id as usize % SHARDS].lock().unwrap();
        shard.get_mut(id as usize / SHARDS).map(f)
    }

    /// The server acknowledged message `id`, `at_ns` after the run's start.
    pub fn acked(&self, id: u64, at_ns: u64) {
        self.with(id, |e| {
            e.acked = true;
            e.acked_ns = at_ns;
        });
    }

    /// When message `id` was acknowledged (ns since the run's start).
    pub fn acked_at(&self, id: u64) -> Option<u64> {
        self.with(id, |e| e.acked.then_some(e.acked_ns)).flatten()
    }

    /// Message `id` failed for good.
    pub fn failed(&self, id: u64) {
        self.with(id, |e| e.failed = true);
    }

    /// A device received message `id` with `text`: `None` when the text
    /// is not one this run sent or was changed on the way.
    pub fn delivered(&self, id: u64, text: &str) -> Option<Delivered> {
        self.with(id, |e| {
            if !text_matches(id, e.chars, text) {
                return None;
            }
            e.delivered += 1;
            Some(Delivered {
                scheduled_ns: e.scheduled_ns,
                measured: e.measured,
                surplus: e.delivered > e.expected,
            })
        })
        .flatten()
    }

    /// Deliveries still owed for acknowledged messages, and sends neither
    /// acknowledged nor failed.
    pub fn outstanding(&self) -> (u64, u64) {
        let (mut owed, mut unacked) = (0, 0);
        for shard in self.shards.iter() {
            for e in shard.lock().unwrap().iter() {
                if e.acked {
                    owed += u64::from(e.expected.saturating_sub(e.delivered));
                } else if !e.failed {
                    unacked += 1;
                }
            }
        }
        (owed, unacked)
    }

    /// Sends with no answer yet: (id, sending device, characters), at most
    /// `limit` of them, for the diagnosis of a failed run.
    pub fn unanswered(&self, limit: usize) -> Vec<(u64, u32, u32)> {
        let mut out = Vec::new();
        for (k, shard) in self.shards.iter().enumerate() {
            for (i, e) in shard.lock().unwrap().iter().enumerate() {
                if !e.acked && !e.failed && out.len() < limit {
                    out.push(((i * SHARDS + k) as u64, e.device, e.chars));
                }
            }
        }
        out
    }

    /// The ids of every acknowledged message.
    pub fn acked_ids(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for (k, shard) in self.shards.iter().enumerate() {
            for (i, e) in shard.lock().unwrap().iter().enumerate() {
                if e.acked {
                    out.push((i * SHARDS + k) as u64);
                }
            }
        }
        out
    }

    /// Deliveries that should have happened by now: of acknowledged
    /// messages, one per recipient device.
    pub fn expected_deliveries(&self) -> u64 {
        self.shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .unwrap()
                    .iter()
                    .filter(|e| e.acked)
                    .map(|e| u64::from(e.expected))
                    .collect::<Vec<_>>()
            })
            .sum()
    }
}

/// The text of message `id` with `chars` characters: its ledger tag and
/// then filler derived from the id, at least the tag's length.
pub fn message_text(id: u64, chars: u32) -> String {
    let mut text = format!("lg{id:x} ");
    let tag = text.len();
    let want = (chars as usize).max(tag);
    text.reserve(want - tag);
    // A letter that depends on the id and the position: cheap, and a
    // shifted or truncated text no longer matches.
    text.extend((tag..want).map(|i| (b'a' + ((id as usize + i) % 26) as u8) as char));
    text
}

/// The ledger id in a text this run sent.
pub fn parse_id(text: &str) -> Option<u64> {
    let rest = text.strip_prefix("lg")?;
    let end = rest.find(' ')?;
    u64::from_str_radix(&rest[..end], 16).ok()
}

fn text_matches(id: u64, chars: u32, text: &str) -> bool {
    // The tag matched already (the id was parsed from it); compare the
    // length and the filler without building the expected string.
    let tag = format!("lg{id:x} ").len();
    let want = (chars as usize).max(tag);
    text.len() == want
        && text.as_bytes()[tag..]
            .iter()
            .enumerate()
            .all(|(k, &b)| b == b'a' + ((id as usize + tag + k) % 26) as u8)
}

/// What one device saw: channel sequences delivered to it, and those of
/// its own sends (which are never delivered back to the sending device).
#[derive(Debug, Default)]
pub struct DeviceBook {
    /// Channel id → sequences delivered, in arrival order.
    pub seen: HashMap<u64, Vec<u64>>,
    /// Channel id → sequences of this device's own acknowledged sends.
    pub own: HashMap<u64, Vec<u64>>,
}

/// Holes and repeats across a device's books.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BookCheck {
    /// A sequence delivered more than once to one device.
    pub duplicated: u64,
    /// Sequences missing below the highest one the device saw in a
    /// channel (neither delivered nor its own send).
    pub gaps: u64,
    /// A sequence delivered after a higher one in the same channel.
    pub out_of_order: u64,
}

impl DeviceBook {
    /// Checks one device. Channels are new when the run starts, so every
    /// channel's sequences start at 1 and a device that was connected all
    /// along must have all of them up to the highest it saw.
    pub fn check(&self) -> BookCheck {
        let mut c = BookCheck::default();
        for (channel, seen) in &self.seen {
            c.out_of_order += seen.windows(2).filter(|w| w[1] < w[0]).count() as u64;
            let mut all: Vec<u64> = seen.clone();
            let own = self.own.get(channel).map(Vec::as_slice).unwrap_or(&[]);
            let mut sorted_seen = seen.clone();
            sorted_seen.sort_unstable();
            c.duplicated += sorted_seen.windows(2).filter(|w| w[0] == w[1]).count() as u64;
            all.extend_from_slice(own);
            all.sort_unstable();
            all.dedup();
            let max = *all.last().unwrap_or(&0);
            c.gaps += max - all.len() as u64;
        }
        c
    }
}

/// Errors by wire code name (or client-side reason).
pub type ErrorCounts = BTreeMap<String, u64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip_and_changes_are_caught() {
        let ledger = Ledger::default();
        for id in 0..200u64 {
            ledger.register(id, 0, id * 10, 2, 50, id >= 100);
        }
        let text = message_text(150, 50);
        assert_eq!(text.chars().count(), 50);
        assert_eq!(parse_id(&text), Some(150));
        let d = ledger.delivered(150, &text).unwrap();
        assert_eq!(d.scheduled_ns, 1500);
        assert!(d.measured && !d.surplus);
        // A text cut short, or one letter changed, is not a delivery.
        assert_eq!(ledger.delivered(150, &text[..49]), None);
        let mut changed = text.clone().into_bytes();
        changed[30] = b'!';
        assert_eq!(
            ledger.delivered(150, std::str::from_utf8(&changed).unwrap()),
            None
        );
        // Short lengths still carry the tag.
        assert_eq!(parse_id(&message_text(0xabcdef, 1)), Some(0xabcdef));
        assert_eq!(parse_id("hello"), None);
    }

    #[test]
    fn outstanding_counts_missing_deliveries_and_unacked_sends() {
        let ledger = Ledger::default();
        for id in 0..3u64 {
            ledger.register(id, 0, 0, 3, 10, true);
        }
        ledger.acked(0, 5);
        ledger.acked(1, 6);
        ledger.failed(2);
        for _ in 0..3 {
            assert!(ledger.delivered(0, &message_text(0, 10)).is_some());
        }
        assert!(ledger.delivered(1, &message_text(1, 10)).is_some());
        assert_eq!((ledger.acked_at(1), ledger.acked_at(2)), (Some(6), None));
        // Message 1 still owes two deliveries; 2 failed and owes nothing.
        assert_eq!(ledger.outstanding(), (2, 0));
        assert_eq!(ledger.expected_deliveries(), 6);
        // A fourth delivery of message 0 is a surplus.
        assert!(ledger.delivered(0, &message_text(0, 10)).unwrap().surplus);
    }

    #[test]
    fn device_books_find_holes_repeats_and_reordering() {
        let mut book = DeviceBook::default();
        // Channel 1: 1, 2, (3 was our own send), 4, 6 → 5 is a hole.
        book.seen.insert(1, vec![1, 2, 4, 6]);
        book.own.insert(1, vec![3]);
        // Channel 2: 1, 2, 2, then 3 before... a repeat and a reorder.
        book.seen.insert(2, vec![1, 3, 2, 2]);
        let c = book.check();
        assert_eq!(
            c,
            BookCheck {
                duplicated: 1,
                gaps: 1,
                out_of_order: 1
            }
        );
        let clean = DeviceBook {
            seen: [(7, vec![1, 2, 3])].into(),
            own: [(7, vec![4])].into(),
        };
        assert_eq!(clean.check(), BookCheck::default());
    }
}
