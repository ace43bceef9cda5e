//! Random interleavings of everything a shard is fed.

use std::collections::BTreeMap;
use std::time::Duration;

use confab_types::{ChannelId, DeviceId, InboxSeq, UserId};
use proptest::prelude::*;

use super::*;

/// One step of a random run.
#[derive(Debug, Clone)]
enum Step {
    Connect(u8, u8),
    Disconnect(u8),
    Send(u8, u8),
    Complete(u8),
    Mail(u8),
    Read,
    Replay(u8),
    Tick(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0u8..4, 0u8..2).prop_map(|(u, d)| Step::Connect(u, d)),
        1 => any::<u8>().prop_map(Step::Disconnect),
        4 => (0u8..4, 0u8..4).prop_map(|(u, c)| Step::Send(u, c)),
        4 => any::<u8>().prop_map(Step::Complete),
        4 => any::<u8>().prop_map(Step::Mail),
        2 => Just(Step::Read),
        2 => any::<u8>().prop_map(Step::Replay),
        1 => (0u16..2500).prop_map(Step::Tick),
    ]
}

/// Channels of the random runs: two DMs and two groups over four users.
fn members(channel: u8) -> (ChannelId, Vec<UserId>) {
    let all = [UserId(1), UserId(2), UserId(3), UserId(4)];
    match channel {
        0 => (ChannelId(100), vec![all[0], all[1]]),
        1 => (ChannelId(101), vec![all[2], all[3]]),
        2 => (ChannelId(102), all[..3].to_vec()),
        _ => (ChannelId(103), all.to_vec()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the interleaving, every connection receives its user's
    /// inbox consecutively from its cursor, and once everything in flight
    /// has landed, every connection has all of it.
    #[test]
    fn every_device_gets_its_inbox_in_order_with_no_gap_or_duplicate(
        cores in 1usize..=3,
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        let mut w = World::new(cores);
        // Devices remember the last entry they received: their cursor.
        let mut cursors: BTreeMap<(UserId, DeviceId), InboxSeq> = BTreeMap::new();
        let mut open: Vec<(usize, ConnId, UserId, DeviceId)> = Vec::new();
        for s in steps {
            match s {
                Step::Connect(u, d) => {
                    let (user, device) = (UserId(u as u64 + 1), DeviceId(d as u64 + 1));
                    if open.iter().any(|(.., ou, od)| (*ou, *od) == (user, device)) {
                        continue;
                    }
                    let cursor = cursors.get(&(user, device)).copied().unwrap_or_default();
                    let (core, conn) = w.connect(user, device, cursor);
                    open.push((core, conn, user, device));
                }
                Step::Disconnect(i) if !open.is_empty() => {
                    let (core, conn, user, device) = open.remove(i as usize % open.len());
                    let r = w.received(core, conn);
                    assert_gapless(r);
                    let last = r.inbox.last().copied().unwrap_or(r.cursor);
                    cursors.insert((user, device), last);
                    w.disconnect(core, conn);
                }
                Step::Send(u, c) => {
                    let (channel, ms) = members(c);
                    let sender = ms[u as usize % ms.len()];
                    let Some(&(_, conn, _, device)) = open.iter().find(|(.., ou, _)| *ou == sender) else {
                        continue;
                    };
                    w.send(sender, device, conn, channel, &ms);
                }
                Step::Complete(i) => {
                    let busy: Vec<usize> = (0..cores).filter(|c| !w.completions[*c].is_empty()).collect();
                    if let Some(&core) = busy.get(i as usize % busy.len().max(1)) {
                        let n = w.completions[core].len();
                        w.complete(core, i as usize % n);
                    }
                }
                Step::Mail(i) => w.deliver_mail(i as usize % cores),
                Step::Read if !w.reads.is_empty() => w.answer_read(0),
                Step::Replay(i) if !w.replays.is_empty() => {
                    let n = w.replays.len();
                    w.replay(i as usize % n);
                }
                Step::Tick(ms) => w.tick(Duration::from_millis(ms as u64)),
                _ => {}
            }
            for (core, conn, ..) in &open {
                assert_gapless(w.received(*core, *conn));
            }
        }
        w.settle();
        for (core, conn, user, _) in &open {
            let r = w.received(*core, *conn);
            assert_gapless(r);
            let last = r.inbox.last().copied().unwrap_or(r.cursor);
            prop_assert_eq!(last, w.log.last(*user), "connection {:?} of {:?} is behind", conn, user);
            prop_assert!(r.closed.is_none());
        }
    }
}
