//! The terminal client (`confab chat`) against a real node: users made
//! through the real HTTP API, the chat app driven by the key events a
//! terminal would send, through the same calls its terminal loop makes,
//! and every check read off the screen rendered into ratatui's
//! `TestBackend`. Bob is an SDK client on the other end.

use confab_chat::{Api, App, Chat, Options, StateFile, TransportChoice};
use confab_client::{
    Client, ClientConfig, ClientEvent, DeviceId, Events, Message, Target, TlsOptions, Transport,
    UserId,
};
use confab_gateway::IoMode;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

use crate::common::{block_on, TestNode, PATIENCE};
use crate::harness::{next_event, start};

const PASSWORD: &str = "correct horse battery";
const WIDTH: u16 = 100;
const HEIGHT: u16 = 30;

/// The chat app on a test terminal.
struct Ui {
    chat: Chat,
    term: Terminal<TestBackend>,
}

impl Ui {
    fn new(options: Options) -> Ui {
        let mut chat = Chat::new(options).unwrap();
        chat.terminal_event(&Event::Resize(WIDTH, HEIGHT));
        let term = Terminal::new(TestBackend::new(WIDTH, HEIGHT)).unwrap();
        Ui { chat, term }
    }

    /// Draws the app and returns the screen as text, one line per row.
    fn screen(&mut self) -> String {
        let app = self.chat.app();
        self.term.draw(|f| confab_chat::draw(f, app)).unwrap();
        let buf = self.term.backend().buffer();
        let mut text = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                text.push_str(buf[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    fn key(&mut self, code: KeyCode) {
        self.chat
            .terminal_event(&Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
    }

    fn ctrl(&mut self, c: char) {
        self.chat.terminal_event(&Event::Key(KeyEvent::new(
            KeyCode::Char(c),
            KeyModifiers::CONTROL,
        )));
    }

    fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            self.key(KeyCode::Char(c));
        }
    }

    /// Applies updates from the network, ticking and redrawing after
    /// each as the terminal loop does, until `done` holds for the app and
    /// its screen.
    async fn until(&mut self, what: &str, done: impl Fn(&App, &str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            self.chat.tick();
            let screen = self.screen();
            if done(self.chat.app(), &screen) {
                return screen;
            }
            if tokio::time::timeout_at(deadline, self.chat.step())
                .await
                .is_err()
            {
                panic!(
                    "waiting for {what}; the screen:\n{screen}\nchannels: {:?}\nnotice: {:?}",
                    self.chat.app().channels,
                    self.chat.app().notice
                );
            }
        }
    }

    /// The same, on the screen alone.
    async fn shows(&mut self, what: &str, text: &str) -> String {
        self.until(what, |_, s| s.contains(text)).await
    }
}

/// A node on ports of its own choosing: the chat app finds the gateway
/// through discovery, as it would any node.
fn node() -> TestNode {
    TestNode::start(IoMode::Epoll, |_| {})
}

/// The node's generated certificate, which the chat app finds by itself
/// in the data directory.
fn node_cert(node: &TestNode) -> std::path::PathBuf {
    node.data_dir.join("tls").join("self-signed.crt")
}

/// Bob's SDK client over `transport`, trusting the node's certificate.
async fn sdk_client(
    node: &TestNode,
    transport: Transport,
    token: &str,
    device: u64,
) -> (Client, Events) {
    let n = &node.node;
    let url = match transport {
        Transport::Quic => format!("quic://localhost:{}", n.quic_addr.unwrap().port()),
        _ => format!("ws://{}/v1/ws", n.ws_addr),
    };
    let mut config = ClientConfig::new(url, token, DeviceId(device));
    config.tls = TlsOptions::new()
        .without_system_roots()
        .add_root_pem_file(node_cert(node));
    start(config).await
}

fn options(node: &TestNode, state_dir: &std::path::Path, transport: TransportChoice) -> Options {
    Options {
        user: Some("alice".into()),
        api: format!("http://{}", node.node.api_addr),
        transport,
        data_dir: node.data_dir.clone(),
        state_dir: state_dir.to_owned(),
        page_size: 50,
        ..Options::new()
    }
}

/// Bob's events until alice's read mark reaches `seq`.
async fn receipt_up_to(events: &mut Events, seq: u64) {
    loop {
        if let ClientEvent::Receipt(r) = next_event(events).await {
            if r.seq.0 >= seq {
                return;
            }
        }
    }
}

/// Bob's events until a message, past receipts and the like.
async fn message(events: &mut Events) -> Message {
    loop {
        if let ClientEvent::Message(m) = next_event(events).await {
            return m;
        }
    }
}

#[test]
fn over_quic_from_login_to_restart() {
    let node = node();
    let state = tempfile::tempdir().unwrap();
    block_on(async {
        let api = Api::new(&format!("http://{}", node.node.api_addr)).unwrap();
        let alice = UserId(api.signup("alice", PASSWORD).await.unwrap().user_id);
        let bob_tokens = api.signup("bob", PASSWORD).await.unwrap();
        let (bob, mut bob_events) =
            sdk_client(&node, Transport::Quic, &bob_tokens.access_token, 7).await;

        // The login screen, with the password masked as it is typed.
        let mut ui = Ui::new(options(&node, state.path(), TransportChoice::Quic));
        let screen = ui.screen();
        for want in ["confab · log in", "Username: alice", "Password:", "Ctrl-S"] {
            assert!(screen.contains(want), "{want:?} missing from\n{screen}");
        }
        ui.type_text(PASSWORD);
        let screen = ui.screen();
        assert!(screen.contains(&format!("Password: {}", "*".repeat(PASSWORD.len()))));
        assert!(!screen.contains(PASSWORD));
        ui.key(KeyCode::Enter);
        let screen = ui
            .shows("the main screen, connected", "connected over quic")
            .await;
        assert!(screen.contains("Channels") && screen.contains("No channels yet"));

        // Bob writes first: his DM appears with its unread count.
        for i in 1..=3 {
            bob.send(Target::User(alice), format!("message {i:03}"))
                .await
                .unwrap();
        }
        ui.shows("bob's DM with 3 unread", "bob (3)").await;
        // One at a time: over QUIC, sends in flight together may be
        // stored in another order, and the test reads them by number.
        for i in 4..=300 {
            bob.send(Target::User(alice), format!("message {i:03}"))
                .await
                .unwrap();
        }
        ui.shows("300 unread", "bob (300)").await;

        // Opening it shows the newest page and marks it read.
        ui.key(KeyCode::Enter);
        let screen = ui.shows("the newest page", "message 300").await;
        assert!(!screen.contains("message 001"), "{screen}");
        assert!(!screen.contains("(300)"), "{screen}");
        receipt_up_to(&mut bob_events, 300).await;
        let loaded = ui.chat.app().open.as_ref().unwrap().messages.len();
        assert_eq!(loaded, 50, "one page of history at first");

        // Scrolling up past the top loads the older pages, down to the
        // first message.
        let mut presses = 0;
        loop {
            ui.key(KeyCode::PageUp);
            presses += 1;
            let screen = ui
                .until("an older page", |app, _| {
                    !app.open.as_ref().unwrap().loading_older
                })
                .await;
            if screen.contains("message 001") {
                assert!(screen.contains("start of the conversation"), "{screen}");
                break;
            }
            assert!(presses < 60, "never reached the first message:\n{screen}");
        }
        let conv = ui.chat.app().open.as_ref().unwrap();
        assert_eq!(conv.messages.len(), 300);
        assert!(conv
            .messages
            .windows(2)
            .all(|w| w[0].seq.0 + 1 == w[1].seq.0));
        assert!(!conv.has_older);

        // A message sent from the terminal reaches bob (and scrolls the
        // view back down to it).
        ui.type_text("hello bob");
        ui.key(KeyCode::Enter);
        // Until its acknowledgement is applied it shows as sending.
        let screen = ui.screen();
        assert!(screen.contains("sending… alice: hello bob"), "{screen}");
        let m = message(&mut bob_events).await;
        assert_eq!((m.sender_id, &*m.text), (alice, "hello bob"));
        ui.until("alice's own message, acknowledged", |_, s| {
            s.contains("alice: hello bob") && !s.contains("sending…")
        })
        .await;

        // Bob typing, then his presence: online, then last seen.
        bob.typing(m.channel_id).unwrap();
        ui.shows("bob's typing notice", "bob is typing…").await;
        ui.shows("bob online", "bob ● online").await;
        bob.close().await;
        let screen = ui.shows("bob's last seen", "bob ○ last seen").await;
        assert!(
            screen.contains("○ bob"),
            "the list's dot turns hollow:\n{screen}"
        );

        // Quitting saves the device and the inbox cursor; the next run
        // resumes from them: no replay of what was shown, nothing lost.
        let before = ui.chat.session().device_state().unwrap();
        ui.key(KeyCode::Esc);
        ui.key(KeyCode::Char('q'));
        assert!(ui.chat.should_quit());
        ui.chat.close().await.unwrap();
        let saved = StateFile::for_user(state.path(), "alice")
            .unwrap()
            .load_or_create()
            .unwrap();
        assert_eq!(saved.device_id, before.device_id);
        assert!(saved.inbox_cursor >= 300, "{saved:?}");
        assert_eq!(saved.next_client_msg_id, 2, "one message sent");

        // Another device of bob's: device 7 would reuse client message
        // id 1, and the server would take the send for a retry of his first.
        let (bob, _bob_events) =
            sdk_client(&node, Transport::Quic, &bob_tokens.access_token, 8).await;
        bob.send(Target::User(alice), "while you were away")
            .await
            .unwrap();
        let mut again = options(&node, state.path(), TransportChoice::Quic);
        again.password = Some(PASSWORD.into());
        let mut ui = Ui::new(again);
        ui.shows("one unread after the restart", "bob (1)").await;
        ui.shows("connected after the restart", "connected over quic")
            .await;
        // At most the ack of alice's own send (whose cursor step may not
        // have been taken before quitting) and bob's new message: not the
        // 301 entries before them.
        let received = ui.chat.app().inbox_messages;
        assert!(
            (1..=2).contains(&received),
            "{received} inbox messages after resuming at {}",
            saved.inbox_cursor
        );
        ui.key(KeyCode::Enter);
        ui.shows("the message sent while away", "while you were away")
            .await;
        ui.chat.close().await.unwrap();
        bob.close().await;
    });
}

#[test]
fn over_websocket_a_dm_by_username() {
    let node = node();
    let state = tempfile::tempdir().unwrap();
    block_on(async {
        let api = Api::new(&format!("http://{}", node.node.api_addr)).unwrap();
        let alice = UserId(api.signup("alice", PASSWORD).await.unwrap().user_id);
        let bob_tokens = api.signup("bob", PASSWORD).await.unwrap();
        let (bob, mut bob_events) =
            sdk_client(&node, Transport::Ws, &bob_tokens.access_token, 9).await;
        // Carol is alice's friend, with no DM yet: she is listed with her
        // (offline) dot.
        let carol = api.signup("carol", PASSWORD).await.unwrap();
        api.set_token(&carol.access_token);
        api.befriend(alice.0).await.unwrap();
        let as_alice = Api::new(&format!("http://{}", node.node.api_addr)).unwrap();
        as_alice.set_token(&api.login("alice", PASSWORD).await.unwrap().access_token);
        as_alice.befriend(carol.user_id).await.unwrap();

        // With the password from the environment it logs in at once.
        let mut o = options(&node, state.path(), TransportChoice::Ws);
        o.password = Some(PASSWORD.into());
        let mut ui = Ui::new(o);
        ui.shows("the main screen, connected", "connected over ws")
            .await;
        ui.until("carol's presence", |app, _| {
            app.presence.contains_key(&UserId(carol.user_id))
        })
        .await;
        ui.shows("carol among the friends", "○ carol · friend")
            .await;

        // Ctrl-N: a DM with bob by his username, made through the API.
        ui.ctrl('n');
        ui.type_text("bobby");
        ui.key(KeyCode::Enter);
        ui.shows("no such user", "no user named \"bobby\"").await;
        for _ in 0.."by".len() {
            ui.key(KeyCode::Backspace);
        }
        ui.key(KeyCode::Enter);
        let screen = ui.shows("the new DM", "start of the conversation").await;
        assert!(screen.contains("bob"), "{screen}");

        ui.type_text("hi over ws");
        ui.key(KeyCode::Enter);
        let m = message(&mut bob_events).await;
        assert_eq!((m.sender_id, &*m.text), (alice, "hi over ws"));
        bob.send(Target::Channel(m.channel_id), "reply over ws")
            .await
            .unwrap();
        ui.shows("bob's reply", "bob: reply over ws").await;
        // The open conversation is read as it arrives (its mark goes out
        // at the next tick).
        ui.chat.tick();
        receipt_up_to(&mut bob_events, 2).await;
        ui.chat.close().await.unwrap();
        bob.close().await;
    });
}
