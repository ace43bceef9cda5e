//! Push jobs: raised only for members with no device connected, written with the message when the member was offline at submit.

use std::time::Duration;

use confab_protocol::frame::Target;
use confab_types::{ChannelId, InboxSeq, Seq, UserId};

use confab_gateway::ports::Found;
use confab_storage::MessageLog;

use crate::client::*;
use crate::common::*;

#[test]
fn push_jobs_are_raised_only_for_members_with_no_connected_device() {
    both_backends(|io| {
        let node = TestNode::start(io, |_| {});
        let (alice, bob, carol) = (node.user("alice"), node.user("bob"), node.user("carol"));
        let group = node.group(alice, &[alice, bob, carol]);
        let open_ws = || node.metric("confab_connections", &["transport=\"ws\""]) as u64;
        block_on(async {
            let mut a = Client::connect(&node, alice, 1, 0).await;
            a.replay().await;
            let mut b = Client::connect(&node, bob, 1, 0).await;
            b.replay().await;
            a.post(1, Target::Channel(group), "first").await;
            let ack = a.ack().await;
            b.message().await;
            for _ in 0..200 {
                if !node.push.for_user(carol).is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Carol has no device: one job, for her alone (not for the
            // sender, not for Bob, who is connected).
            let jobs = node.push.for_user(carol);
            assert_eq!(jobs.len(), 1);
            assert_eq!(
                (
                    jobs[0].channel,
                    jobs[0].seq,
                    jobs[0].sender,
                    jobs[0].inbox_seq
                ),
                (
                    ChannelId(group.into()),
                    Seq(ack.seq.into()),
                    UserId(alice.into()),
                    InboxSeq(1)
                )
            );
            assert!(node.push.for_user(bob).is_empty());
            assert!(node.push.for_user(alice).is_empty());
            // Carol was offline at submit time, so her job rode the
            // message's batch into the outbox; Bob's and Alice's did not.
            assert_eq!(node.push.found(carol), [Found::Offline { durable: true }]);
            assert!(node.push.found(bob).is_empty());
            let outbox = node.node.log().outbox_scan(None, 100).unwrap();
            assert_eq!(outbox.len(), 1);
            assert_eq!((outbox[0].key.user, outbox[0].key.seq), (carol, ack.seq));

            // Bob's only device leaves: the next message wakes him too.
            drop(b);
            for _ in 0..200 {
                if open_ws() == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(open_ws(), 1, "only Alice is connected");
            a.post(2, Target::Channel(group), "second").await;
            a.ack().await;
            // The ack comes from Alice's core; Bob's may handle the
            // delivery a moment later.
            for _ in 0..200 {
                if node.push.for_user(bob).len() + node.push.for_user(carol).len() >= 3 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(node.push.for_user(bob).len(), 1);
            assert_eq!(node.push.for_user(carol).len(), 2);
            assert!(node.push.for_user(alice).is_empty());
            // Bob's core told the push side the moment his last device left.
            assert_eq!(node.push.found(bob), [Found::Offline { durable: true }]);
            assert_eq!(node.node.log().outbox_scan(None, 100).unwrap().len(), 3);
        });

        // The scrape shows frames by type, the fan-out sizes and the jobs.
        let text = node.node.metrics_text();
        let value = |name: &str, label: &str| metric(&text, name, &[label]) as u64;
        assert_eq!(value("confab_frames_in_total", "type=\"send\""), 2);
        assert_eq!(value("confab_frames_in_total", "type=\"hello\""), 2);
        assert_eq!(value("confab_frames_out_total", "type=\"send_ack\""), 2);
        assert_eq!(value("confab_frames_out_total", "type=\"message\""), 1);
        assert_eq!(value("confab_fanout_recipients_bucket", "le=\"3\""), 2);
        assert_eq!(value("confab_fanout_recipients_bucket", "le=\"2\""), 0);
        let jobs: u64 = text
            .lines()
            .filter(|l| l.starts_with("confab_push_jobs_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(jobs, 3);
    });
}
