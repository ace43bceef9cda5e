//! What the SDK exists for: a TCP proxy cuts, stalls or silences the connection again and again while users send, and every message still arrives exactly once, in order, and every send resolves exactly once.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confab_client::{
    ClientError, ClientEvent, ConnectionState, InboxSeq, Message, SendAck, Seq, Target,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::common::*;
use crate::harness::*;

/// A TCP proxy that can cut every connection through it at once, as a
/// flaky network would: both sockets are dropped wherever the bytes are,
/// often in the middle of a frame. It can also hold back what the server
/// sends (a stalled downlink: the client's frames still get through, the
/// answers do not), or everything (a silent network), or refuse new
/// connections (a network that is down).
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    pipes: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
    hold_down: Arc<AtomicBool>,
    hold_up: Arc<AtomicBool>,
    refuse: Arc<AtomicBool>,
}

impl Proxy {
    /// A proxy on a port of its own, to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        Proxy::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), upstream)
    }

    /// A proxy on `listener` (bound before `upstream` was known), to
    /// `upstream`; call it on the runtime that is to carry the bytes.
    pub fn serve(listener: TcpListener, upstream: SocketAddr) -> Proxy {
        let addr = listener.local_addr().unwrap();
        let pipes: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (hold_down, hold_up, refuse) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (registry, down, up, refusing) = (
            pipes.clone(),
            hold_down.clone(),
            hold_up.clone(),
            refuse.clone(),
        );
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if refusing.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (client_read, client_write) = inbound.into_split();
                let (server_read, server_write) = outbound.into_split();
                let (down, up) = (down.clone(), up.clone());
                let pipe = tokio::spawn(async move {
                    tokio::join!(
                        pump(client_read, server_write, up),
                        pump(server_read, client_write, down)
                    );
                });
                registry.lock().unwrap().push(pipe.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            addr,
            pipes,
            accept,
            hold_down,
            hold_up,
            refuse,
        }
    }

    /// Cuts every live connection; returns how many there were.
    pub fn cut(&self) -> usize {
        let pipes: Vec<AbortHandle> = self.pipes.lock().unwrap().drain(..).collect();
        let live = pipes.iter().filter(|p| !p.is_finished()).count();
        for p in pipes {
            p.abort();
        }
        live
    }

    /// Holds back (or releases) what the server sends.
    fn hold_downlink(&self, hold: bool) {
        self.hold_down.store(hold, Ordering::SeqCst);
    }

    /// Holds back (or releases) what the client sends.
    fn hold_uplink(&self, hold: bool) {
        self.hold_up.store(hold, Ordering::SeqCst);
    }

    /// Closes (or again serves) every new connection as it comes: with
    /// [`cut`](Self::cut), the network is down.
    pub fn refuse(&self, refuse: bool) {
        self.refuse.store(refuse, Ordering::SeqCst);
    }
}

/// Copies one direction, keeping what it read while `hold` is set.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    hold: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while hold.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[test]
fn cutting_connections_mid_stream_loses_and_repeats_nothing() {
    const N: u64 = 300; // alice -> bob, alice connected directly
    const M: u64 = 100; // bob -> alice, bob behind the cutting proxy
    const CUTS: usize = 12;
    let node = SdkNode::start(|s| {
        s.send_burst = 1000;
        s.send_rate_per_s = 1000;
    });
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    block_on(async {
        let proxy = Proxy::start(node.ws_addr()).await;
        let (a, mut a_events) = start(node.config(alice, 1)).await;
        let proxied = format!("ws://{}/v1/ws", proxy.addr);
        let (b, mut b_events) = start(node.config_at(&proxied, bob, 1)).await;

        // Both send while the proxy cuts bob's connection over and over.
        // Every send is a future of its own; each must resolve exactly once.
        let a_sender = a.clone();
        let alice_sends = tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 1..=N {
                pending.push(a_sender.send(Target::User(bob), body("a", i, 2_000)));
                if i % 5 == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            let mut acks = Vec::new();
            for f in pending {
                acks.push(f.await);
            }
            acks
        });
        let b_sender = b.clone();
        let bob_sends = tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 1..=M {
                pending.push(b_sender.send(Target::User(alice), body("b", i, 8_000)));
                // Bursts, so that sends are in flight when a cut comes.
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
            let mut acks = Vec::new();
            for f in pending {
                acks.push(f.await);
            }
            acks
        });
        let b_watch = b.clone();
        let cutter = tokio::spawn(async move {
            let mut cuts = 0;
            let mut live_cut = 0;
            while cuts < CUTS {
                // Wait for the session to be back, then let traffic flow a
                // little (a varying time) before cutting it again.
                while b_watch.state() != ConnectionState::Connected {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let jitter = rand_ms(20, 200);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
                live_cut += proxy.cut();
                cuts += 1;
                // The client notices before the next round starts.
                while b_watch.state() == ConnectionState::Connected {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            (cuts, live_cut, proxy)
        });

        // Bob's view: alice's N messages, each once, in order.
        let mut at_bob: Vec<Message> = Vec::new();
        let mut disconnects_mid_stream = 0;
        while (at_bob.len() as u64) < N {
            match next_event(&mut b_events).await {
                ClientEvent::Message(m) => at_bob.push(m),
                ClientEvent::Disconnected { .. } => disconnects_mid_stream += 1,
                ClientEvent::Connected(_)
                | ClientEvent::Reconnecting { .. }
                | ClientEvent::Rtt(_)
                | ClientEvent::Presence(_) => {}
                other => panic!("unexpected at bob: {other:?}"),
            }
        }
        // Alice's view: bob's M messages, each once, in order.
        let mut at_alice: Vec<Message> = Vec::new();
        while (at_alice.len() as u64) < M {
            at_alice.push(message(&mut a_events).await);
        }

        let (cuts, live_cut, _proxy) = cutter.await.unwrap();
        let alice_acks = alice_sends.await.unwrap();
        let bob_acks = bob_sends.await.unwrap();

        let texts = |ms: &[Message]| {
            ms.iter()
                .map(|m| m.text.split(':').next().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        let expected_at_bob: Vec<String> = (1..=N).map(|i| format!("a{i}")).collect();
        assert_eq!(
            texts(&at_bob),
            expected_at_bob,
            "bob: every message once, in order"
        );
        assert!(at_bob.iter().all(|m| m.sender_id == alice));
        assert!(
            at_bob.windows(2).all(|w| w[0].inbox_seq < w[1].inbox_seq),
            "inbox order"
        );
        let expected_at_alice: Vec<String> = (1..=M).map(|i| format!("b{i}")).collect();
        assert_eq!(
            texts(&at_alice),
            expected_at_alice,
            "alice: every message once, in order"
        );

        // Every send resolved, successfully, once; stored once each (the
        // channel sequences of all acks are exactly 1..=N+M).
        let ok = |acks: Vec<Result<SendAck, ClientError>>| -> Vec<SendAck> {
            acks.into_iter()
                .map(|r| r.expect("every send succeeds"))
                .collect()
        };
        let (alice_acks, bob_acks) = (ok(alice_acks), ok(bob_acks));
        assert_eq!(alice_acks.len() as u64, N);
        assert_eq!(bob_acks.len() as u64, M);
        let seqs: BTreeSet<u64> = alice_acks
            .iter()
            .chain(&bob_acks)
            .map(|a| a.seq.0)
            .collect();
        assert_eq!(seqs, (1..=N + M).collect::<BTreeSet<u64>>());
        let bob_ids: BTreeSet<u64> = bob_acks.iter().map(|a| a.client_msg_id).collect();
        assert_eq!(bob_ids.len() as u64, M, "one ack per send");
        // The cuts cut live sessions, most while messages were flowing.
        assert_eq!((cuts, live_cut), (CUTS, CUTS));
        assert!(
            disconnects_mid_stream >= CUTS / 2,
            "only {disconnects_mid_stream} cuts came while bob was receiving"
        );

        // Bob's cursor ends past everything in his inbox: alice's messages
        // and his own (whose acks move it without an event). Nothing else
        // arrives but the rest of the cuts' disconnects.
        let mut disconnects = disconnects_mid_stream;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout(Duration::from_millis(100), b_events.recv()).await {
                Ok(Some(ClientEvent::Message(m))) => panic!("an extra message at bob: {m:?}"),
                Ok(Some(ClientEvent::Disconnected { .. })) => disconnects += 1,
                Ok(Some(_)) => {}
                Ok(None) => panic!("bob's client closed"),
                Err(_) if b_events.cursor() >= InboxSeq(N + M) => break,
                Err(_) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "bob's cursor stuck at {}",
                    b_events.cursor()
                ),
            }
        }
        assert_eq!(disconnects, CUTS, "one disconnect per cut, no other");
        eprintln!(
            "STATS dup_acks={} mid={}",
            bob_acks.iter().filter(|a| a.duplicate).count(),
            disconnects_mid_stream
        );
        assert_eq!(b_events.cursor(), InboxSeq(N + M));
        assert_eq!(b.cursor(), InboxSeq(N + M));
    });
}

/// A message text: a name (`a17`) padded to `len` bytes, so that frames
/// are long enough to be cut in the middle.
fn body(who: &str, i: u64, len: usize) -> String {
    let mut text = format!("{who}{i}:");
    text.extend(std::iter::repeat_n('.', len.saturating_sub(text.len())));
    text
}

/// A pseudo-random number of milliseconds in `lo..hi`, from the clock (the
/// cut times only need to vary, not to be unpredictable).
fn rand_ms(lo: u64, hi: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    lo + nanos % (hi - lo)
}

#[test]
fn sends_whose_acks_were_lost_resolve_once_and_are_stored_once() {
    const K: u64 = 20;
    let node = SdkNode::start(|_| {});
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    block_on(async {
        let proxy = Proxy::start(node.ws_addr()).await;
        let (_a, mut a_events) = start(node.config(alice, 1)).await;
        let proxied = format!("ws://{}/v1/ws", proxy.addr);
        let (b, mut b_events) = start(node.config_at(&proxied, bob, 1)).await;
        // Bob's sends reach the server, but nothing comes back.
        proxy.hold_downlink(true);
        let pending: Vec<_> = (1..=K)
            .map(|i| b.send(Target::User(alice), format!("b{i}")))
            .collect();
        // Stored: alice has them all.
        for i in 1..=K {
            assert_eq!(message(&mut a_events).await.text, format!("b{i}"));
        }
        // The connection dies with every ack in it.
        proxy.cut();
        proxy.hold_downlink(false);
        // After the reconnect the replay holds bob's own messages and the
        // retransmitted sends are answered as duplicates: each future
        // resolves once, with the original sequence, and bob's events show
        // none of his own messages.
        for (i, f) in (1..=K).zip(pending) {
            let ack = f.await.unwrap();
            assert_eq!((ack.seq, ack.duplicate), (Seq(i), true));
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while b_events.cursor() < InboxSeq(K) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "cursor {}",
                b_events.cursor()
            );
            if let Ok(Some(ClientEvent::Message(m))) =
                tokio::time::timeout(Duration::from_millis(50), b_events.recv()).await
            {
                panic!("bob's own message came back as an event: {m:?}");
            }
        }
        // Nothing was stored twice.
        let extra = tokio::time::timeout(Duration::from_millis(300), message(&mut a_events)).await;
        assert!(extra.is_err(), "alice got a message twice: {extra:?}");
    });
}

#[test]
fn a_silent_server_is_left_and_the_session_resumes() {
    let node = SdkNode::start(|s| s.heartbeat_interval = Duration::from_millis(200));
    let (alice, bob) = (node.user("alice"), node.user("bob"));
    block_on(async {
        let proxy = Proxy::start(node.ws_addr()).await;
        let (a, _a_events) = start(node.config(alice, 1)).await;
        let proxied = format!("ws://{}/v1/ws", proxy.addr);
        let (_b, mut b_events) = start(node.config_at(&proxied, bob, 1)).await;
        // The network goes quiet both ways, without closing anything.
        proxy.hold_downlink(true);
        proxy.hold_uplink(true);
        a.send(Target::User(bob), "while you were away")
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let reason = expect(&mut b_events, "the silence to be noticed", |e| match e {
            ClientEvent::Disconnected { reason } => Some(reason.clone()),
            _ => None,
        })
        .await;
        assert!(reason.contains("silent"), "{reason}");
        // Three heartbeat intervals of silence (from the last frame).
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
        proxy.cut();
        proxy.hold_downlink(false);
        proxy.hold_uplink(false);
        let m = message(&mut b_events).await;
        assert_eq!(
            (&*m.text, m.inbox_seq),
            ("while you were away", InboxSeq(1))
        );
    });
}
