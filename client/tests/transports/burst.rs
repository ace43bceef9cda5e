//! Load on a single connection: a burst of frames longer than anything
//! the driver reads in one pass, where a frame lost between passes would
//! only show as a send that is never answered or a hole in the inbox.

use std::time::Duration;

use confab_client::{
    ChannelId, Client, ClientConfig, ClientEvent, DeviceId, InboxSeq, Seq, Target,
};
use confab_protocol::binary::{self, DEFAULT_MAX_FRAME_BYTES};
use confab_protocol::frame::{Frame, SendAck};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::support::servers::ws_server;
use crate::support::{enc, event, message, msg, welcome, PATIENCE};

/// A burst of frames far larger than one pass of the client's driver
/// (256 frames) and than its read-ahead queue (1024): every one of them
/// must be handled. A frame lost at the boundary of a full pass would go
/// unnoticed for a `Message` (a hole-filling `Sync` refetches it) but
/// would leave a send waiting for its `SendAck` for ever, as 100-member
/// fan-out provokes. Whether a pass ends with frames still queued depends
/// on the reader outrunning the driver, so the burst is long: tens of
/// thousands of frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_acks_and_messages_loses_no_frame() {
    const SENDS: u64 = 5_000;
    /// Messages from someone else after each ack.
    const OTHERS: u64 = 3;
    const STEP: u64 = OTHERS + 1;
    let (port, server) = ws_server(|mut ws| async move {
        ws.send(Ws::Binary(enc(&[welcome()]).into())).await.unwrap();
        let mut ids = Vec::new();
        while ids.len() < SENDS as usize {
            match ws.next().await.unwrap().unwrap() {
                Ws::Binary(b) => match binary::decode_exact(&b, DEFAULT_MAX_FRAME_BYTES).unwrap() {
                    Frame::Send(s) => ids.push(s.client_msg_id),
                    Frame::Heartbeat(_) => {}
                    other => panic!("expected Send, got {other:?}"),
                },
                other => panic!("{other:?}"),
            }
        }
        // Every ack, each followed by messages from someone else, written
        // at once: the inbox runs 1, 2, … without a hole.
        for (i, id) in ids.iter().enumerate() {
            let base = i as u64 * STEP;
            let ack = Frame::SendAck(SendAck {
                client_msg_id: *id,
                channel_id: ChannelId(5),
                seq: Seq(base + 1),
                inbox_seq: InboxSeq(base + 1),
                timestamp_ms: 1,
                duplicate: false,
            });
            ws.feed(Ws::Binary(enc(&[ack]).into())).await.unwrap();
            for k in 2..=STEP {
                let m = msg(base + k, 5, "from someone else");
                ws.feed(Ws::Binary(enc(&[Frame::Message(m)]).into()))
                    .await
                    .unwrap();
            }
        }
        ws.flush().await.unwrap();
        // A client that missed a frame asks for it again (after 250 ms);
        // this one must not have to.
        loop {
            match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
                Ok(Some(Ok(Ws::Binary(b)))) => {
                    match binary::decode_exact(&b, DEFAULT_MAX_FRAME_BYTES).unwrap() {
                        Frame::Heartbeat(_) | Frame::Close(_) => {}
                        other => panic!("the client asked for {other:?}: a frame was lost"),
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) | Err(_) => return,
            }
        }
    })
    .await;

    let mut config = ClientConfig::new(format!("ws://127.0.0.1:{port}/v1/ws"), "tok", DeviceId(1));
    config.max_pending_sends = SENDS as usize;
    let (client, mut events) = Client::connect(config).unwrap();
    assert!(matches!(
        event(&mut events).await,
        ClientEvent::Connected(_)
    ));
    let sends: Vec<_> = (0..SENDS)
        .map(|i| client.send(Target::Channel(ChannelId(5)), format!("mine {i}")))
        .collect();
    let acks = tokio::time::timeout(PATIENCE, futures_util::future::join_all(sends))
        .await
        .expect("every send is answered");
    for (i, ack) in acks.into_iter().enumerate() {
        assert_eq!(ack.unwrap().seq, Seq(i as u64 * STEP + 1));
    }
    let mut expected = 1;
    for _ in 0..SENDS * OTHERS {
        expected += 1;
        if expected % STEP == 1 {
            expected += 1;
        }
        let m = message(&mut events).await;
        assert_eq!(m.inbox_seq, InboxSeq(expected), "in order, none missing");
    }
    assert_eq!(client.cursor(), InboxSeq(SENDS * STEP));
    client.close().await;
    server.await.unwrap();
}
