//! One user's devices on every transport at once see one stream.

use confab_client::{DeviceId, InboxSeq, Seq, Target, Transport};

use crate::common::*;
use crate::harness::*;

#[test]
fn one_users_devices_on_every_transport_see_one_stream() {
    let node = SdkNode::start(|_| {});
    let (alice, bob, carol) = (node.user("alice"), node.user("bob"), node.user("carol"));
    let group = node.group(alice, &[bob, carol]);
    block_on(async {
        // Alice on all three transports at once, bob on QUIC, carol on wss.
        let mut alices = Vec::new();
        for (device, t) in (1..).zip(TRANSPORTS) {
            alices.push(start(node.config_over(t, alice, device)).await);
        }
        let (b, mut b_events) = start(node.config_over(Transport::Quic, bob, 1)).await;
        let (_c, mut c_events) = start(node.config_over(Transport::Wss, carol, 1)).await;

        // Each of alice's devices sends in turn; everyone else sees every
        // message once, in channel order, whatever carried it.
        for (i, (client, _)) in alices.iter().enumerate() {
            let ack = client
                .send(Target::Channel(group), format!("from device {}", i + 1))
                .await
                .unwrap();
            assert_eq!(ack.seq, Seq(i as u64 + 1));
        }
        let reply = b.send(Target::Channel(group), "bob here").await.unwrap();
        assert_eq!(reply.seq, Seq(4));
        let texts = |sender_device: u64| format!("from device {sender_device}");
        for events in [&mut b_events, &mut c_events] {
            for seq in 1..=3 {
                let m = message(events).await;
                assert_eq!((m.seq, m.text.to_string()), (Seq(seq), texts(seq)));
            }
        }
        assert_eq!(message(&mut c_events).await.text, "bob here");
        for (i, (_, events)) in alices.iter_mut().enumerate() {
            let device = i as u64 + 1;
            let mut seen = Vec::new();
            while seen.len() < 3 {
                let m = message(events).await;
                // A device never gets its own send back as an event.
                assert_ne!((m.sender_id, m.sender_device), (alice, DeviceId(device)));
                seen.push(m.seq.0);
            }
            let expected: Vec<u64> = (1..=4).filter(|&s| s != device).collect();
            assert_eq!(seen, expected, "device {device} over {:?}", TRANSPORTS[i]);
            assert_eq!(events.cursor(), InboxSeq(4));
        }
    });
}
