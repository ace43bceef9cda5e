//! The web client the node serves at `/`, in real headless Chromium
//! driven over WebDriver: two people sign up in two browsers, chat, see
//! each other typing, online and offline, read receipts and unread counts,
//! page back through history after a reload, make a group, and lose
//! nothing when their network drops. The page reaches the gateway through
//! a proxy the test can take down (`api.public_ws_url` points at it).
//! Each step leaves a screenshot in `target/web-client/`.

use std::collections::HashMap;
use std::time::Duration;

use confab_client::{Client, ClientEvent, Events, Target, Transport, UserId};
use confab_gateway::IoMode;
use confab_storage::writer::WriterConfig;
use confab_types::ChannelId;
use serde_json::Value;

use crate::common::*;
use crate::harness::*;
use crate::network::Proxy;
use crate::webdriver::{Browser, Driver};

fn ready(b: &Browser) {
    b.wait_for(
        "the session",
        "return document.getElementById('conn-state').dataset.state === 'ready'",
    );
}

/// A screenshot of each browser, named for the step.
fn shoot(browsers: &[&Browser], step: &str) {
    for b in browsers {
        b.screenshot(step);
    }
}

fn text(b: &Browser, id: &str) -> String {
    b.js(&format!(
        "return document.getElementById('{id}').textContent"
    ))
    .as_str()
    .unwrap()
    .to_owned()
}

/// The stored messages the open chat shows, as (seq, text), top to bottom.
fn shown(b: &Browser) -> Vec<(u64, String)> {
    let v = b.js(
        "return [...document.querySelectorAll('#message-list .message[data-seq]')]\
         .map(e => [Number(e.dataset.seq), e.querySelector('.text').textContent])",
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_str().unwrap().to_owned()))
        .collect()
}

/// Waits until the open chat shows `n` stored messages and none pending.
fn wait_shown(b: &Browser, n: usize) -> Vec<(u64, String)> {
    b.wait_for(
        &format!("{n} messages shown, none pending"),
        &format!(
            "return document.querySelectorAll('#message-list .message[data-seq]').length === {n} \
             && document.querySelectorAll('#message-list [data-pending]').length === 0"
        ),
    );
    shown(b)
}

/// Signs up through the login form; the new user's id.
fn sign_up(b: &Browser, page: &str, name: &str) -> UserId {
    b.go(page);
    b.wait_for(
        "the login form",
        "return !document.getElementById('login').hidden",
    );
    b.type_into("#login-username", name);
    b.type_into("#login-password", &format!("{name}'s long password"));
    b.click("#signup-button");
    ready(b);
    let id = b.js("return JSON.parse(localStorage.getItem('confab.auth')).user_id");
    UserId(id.as_u64().unwrap())
}

/// Messages from `from` in a stream of events, counted by text: until
/// every one of `expected` has come, and then for half a second more, so
/// that a repeat would be counted too.
fn collect(
    node: &SdkNode,
    events: &mut Events,
    from: UserId,
    expected: &[&str],
) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    node.block_on(async {
        loop {
            let all = expected.iter().all(|t| seen.contains_key(*t));
            let wait = if all {
                Duration::from_millis(500)
            } else {
                PATIENCE
            };
            match tokio::time::timeout(wait, events.recv()).await {
                Ok(Some(ClientEvent::Message(m))) if m.sender_id == from => {
                    *seen.entry(m.text.to_string()).or_default() += 1;
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("the client closed"),
                Err(_) if all => return,
                Err(_) => panic!("waited {PATIENCE:?} for {expected:?}; got {seen:?}"),
            }
        }
    });
    seen
}

fn assert_whole(shown: &[(u64, String)], last: u64) {
    let seqs: Vec<u64> = shown.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<_>>(),
        "every message once, in order"
    );
}

#[test]
fn two_people_chat_in_real_browsers_and_lose_nothing() {
    let driver = Driver::start();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let via = listener.local_addr().unwrap();
    let node = SdkNode {
        node: TestNode::start_configured(
            IoMode::Epoll,
            move |c| c.api.public_ws_url = Some(format!("ws://{via}/v1/ws")),
            |s| {
                s.send_burst = 1000;
                s.send_rate_per_s = 1000;
            },
            WriterConfig::default(),
        ),
        transport: Transport::Ws,
    };
    listener.set_nonblocking(true).unwrap();
    let proxy = node.block_on(async {
        Proxy::serve(
            tokio::net::TcpListener::from_std(listener).unwrap(),
            node.ws_addr(),
        )
    });
    let page = format!("http://{}/", node.node.node.api_addr);

    let alice = Browser::open(&driver, "alice");
    let bob_browser = Browser::open(&driver, "bob");
    let a = &alice;
    let b = &bob_browser;
    let alice_id = sign_up(a, &page, "alice");
    let bob = sign_up(b, &page, "bob");
    shoot(&[a, b], "01-signed-up");

    // Alice starts a DM with Bob by his username and says hello.
    a.type_into("#new-dm-username", "bob");
    a.click("#new-dm-button");
    a.wait_for(
        "the DM open",
        "return document.getElementById('conv-title').textContent === 'bob'",
    );
    let dm = ChannelId(
        a.js("return Number(location.hash.slice(1))")
            .as_u64()
            .unwrap(),
    );
    a.type_into("#composer", "Hello Bob!\n");
    wait_shown(a, 1);

    // Bob sees one unread message in the DM, opens it, and has read it.
    let unread = b.wait_for(
        "an unread count",
        &format!(
            "const u = document.querySelector('#channel-list li[data-channel=\"{}\"] .unread'); \
             return u && u.textContent",
            dm.0
        ),
    );
    assert_eq!(unread, Value::from("1"));
    shoot(&[a, b], "02-unread");
    b.click(&format!("#channel-list li[data-channel=\"{}\"]", dm.0));
    assert_eq!(wait_shown(b, 1), vec![(1, "Hello Bob!".to_owned())]);
    assert_eq!(
        b.js("return document.querySelectorAll('#channel-list .unread').length"),
        Value::from(0)
    );
    a.wait_for(
        "Bob's read receipt",
        "const s = document.querySelector('.seen-by'); return s && s.textContent === 'Seen by bob'",
    );

    // Typing shows on the other side; the message clears it.
    b.type_into("#composer", "Hi Alice");
    a.wait_for(
        "Bob typing",
        "return document.getElementById('typing').textContent === 'bob is typing…'",
    );
    shoot(&[a, b], "03-typing");
    b.type_into("#composer", "\n");
    assert_eq!(wait_shown(a, 2)[1], (2, "Hi Alice".to_owned()));
    assert_eq!(text(a, "typing"), "");

    // Presence: Bob is online, in the list and in the chat's header.
    a.wait_for(
        "Bob online",
        &format!(
            "return !!document.querySelector('#channel-list li[data-channel=\"{}\"] .dot.online')",
            dm.0
        ),
    );
    assert_eq!(text(a, "conv-presence"), "online");

    // Bob's phone (the SDK, straight to the gateway) sends 120 more: they
    // arrive live in both pages.
    let (phone, mut phone_events): (Client, Events) = node.block_on(start(node.config(bob, 77)));
    node.block_on(async {
        let sends: Vec<_> = (1..=120)
            .map(|i| phone.send(Target::Channel(dm), format!("m{i}")))
            .collect();
        for s in sends {
            s.await.unwrap();
        }
    });
    let all = wait_shown(a, 122);
    assert_whole(&all, 122);
    assert_eq!(all[121].1, "m120");
    wait_shown(b, 122);

    // A reload comes back logged in, on the same chat, with the latest
    // page; scrolling up pages back to the first message.
    a.reload();
    ready(a);
    let latest = wait_shown(a, 50);
    assert_eq!(latest.first().unwrap().0, 73);
    assert_eq!(latest.last().unwrap().0, 122);
    shoot(&[a, b], "04-reloaded");
    for pages in [100, 122] {
        a.js(
            "const m = document.getElementById('messages'); m.scrollTop = 0; \
              m.dispatchEvent(new Event('scroll'))",
        );
        wait_shown(a, pages);
    }
    assert_whole(&shown(a), 122);
    assert_eq!(text(a, "history-state"), "The beginning of this chat");

    // The network goes down: both pages see it. Bob's phone sends while
    // Alice is away; Alice writes two messages that wait, shown as
    // sending.
    proxy.refuse(true);
    proxy.cut();
    for x in [a, b] {
        x.wait_for(
            "the connection lost",
            "return document.getElementById('conn-state').dataset.state !== 'ready'",
        );
    }
    node.block_on(async {
        for i in 1..=5 {
            phone
                .send(Target::Channel(dm), format!("while you were away {i}"))
                .await
                .unwrap();
        }
    });
    a.type_into("#composer", "sent offline 1\n");
    a.type_into("#composer", "sent offline 2\n");
    assert_eq!(
        a.js("return document.querySelectorAll('#message-list [data-pending]').length"),
        Value::from(2)
    );
    shoot(&[a, b], "05-offline");

    // Back up (and the browsers say so): each page resumes from its
    // cursor; every message once.
    proxy.refuse(false);
    for x in [a, b] {
        x.js("window.dispatchEvent(new Event('online'))");
    }
    ready(a);
    ready(b);
    let after = wait_shown(a, 129);
    assert_whole(&after, 129);
    let texts: Vec<&str> = after[122..].iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts.len(), 7);
    for i in 1..=5 {
        assert!(texts.contains(&format!("while you were away {i}").as_str()));
    }
    assert!(texts.contains(&"sent offline 1") && texts.contains(&"sent offline 2"));
    assert_whole(&wait_shown(b, 129), 129);
    shoot(&[a, b], "06-back-online");
    let offline = ["Hello Bob!", "sent offline 1", "sent offline 2"];
    let from_alice = collect(&node, &mut phone_events, alice_id, &offline);
    for t in offline {
        assert_eq!(
            from_alice.get(t),
            Some(&1),
            "{t:?} reached Bob's phone once"
        );
    }

    // A group: made by name, with Bob; Carol added from the chat.
    node.user("carol");
    a.click("#new-group summary");
    a.type_into("#new-group-name", "Lunch");
    a.type_into("#new-group-members", "bob");
    a.click("#new-group-button");
    a.wait_for(
        "the group open",
        "return document.getElementById('conv-title').textContent === 'Lunch'",
    );
    assert_eq!(text(a, "conv-presence"), "2 members");
    a.type_into("#composer", "Group hello\n");
    wait_shown(a, 1);
    let group = ChannelId(
        a.js("return Number(location.hash.slice(1))")
            .as_u64()
            .unwrap(),
    );
    b.wait_for(
        "the group's unread count",
        &format!(
            "const u = document.querySelector('#channel-list li[data-channel=\"{}\"] .unread'); \
             return u && u.textContent === '1'",
            group.0
        ),
    );
    b.click(&format!("#channel-list li[data-channel=\"{}\"]", group.0));
    assert_eq!(wait_shown(b, 1), vec![(1, "Group hello".to_owned())]);
    a.type_into("#add-member-username", "carol");
    a.click("#add-member-button");
    a.wait_for(
        "three members",
        "return document.getElementById('conv-presence').textContent === '3 members'",
    );
    // Bob learns of Carol when he next opens the group.
    b.click(&format!("#channel-list li[data-channel=\"{}\"]", dm.0));
    b.click(&format!("#channel-list li[data-channel=\"{}\"]", group.0));
    b.wait_for(
        "three members on Bob's side",
        "return document.getElementById('conv-presence').textContent === '3 members'",
    );
    shoot(&[a, b], "07-group");

    // The longest message there is goes through; one character more is
    // refused before it leaves the page.
    let send_long = |n: usize| {
        a.js(&format!(
            "const c = document.getElementById('composer'); c.value = 'é'.repeat({n}); \
             c.dispatchEvent(new Event('input')); \
             document.getElementById('send-button').click()"
        ));
    };
    send_long(100_001);
    a.wait_for(
        "the refusal",
        "return document.getElementById('conv-error').textContent.includes('at most 100000')",
    );
    assert_eq!(
        a.js("return document.getElementById('composer').value.length"),
        Value::from(100_001),
        "the refused text stays to be shortened"
    );
    send_long(100_000);
    let long = wait_shown(a, 2);
    assert_eq!(long[1].1.chars().count(), 100_000);
    let from_phone = node.block_on(async {
        loop {
            match next_event(&mut phone_events).await {
                ClientEvent::Message(m) if &*m.text != "Group hello" => break m,
                _ => {}
            }
        }
    });
    assert_eq!(from_phone.channel_id, group);
    assert_eq!(from_phone.text.chars().count(), 100_000);

    // A second tab is a device of its own: both tabs send at once and
    // every message is stored once (one device in two tabs would give two
    // messages one client_msg_id, and the server would keep only one).
    let first_tab = a.tab();
    let second_tab = a.new_tab();
    a.go(&format!("{page}#{}", dm.0));
    ready(a);
    a.wait_for(
        "the DM open in the second tab",
        "return document.getElementById('conv-title').textContent === 'bob'",
    );
    assert_eq!(
        a.js("return Object.keys(localStorage).filter(k => k.startsWith('confab.device.')).length"),
        Value::from(2)
    );
    a.type_into("#composer", "from the second tab\n");
    a.switch_to(&first_tab);
    a.click(&format!("#channel-list li[data-channel=\"{}\"]", dm.0));
    a.type_into("#composer", "from the first tab\n");
    let tabs = ["from the first tab", "from the second tab"];
    for tab in [&first_tab, &second_tab] {
        a.switch_to(tab);
        let all = wait_shown(a, 131);
        assert_whole(&all, 131);
        for t in tabs {
            assert_eq!(all.iter().filter(|(_, x)| x == t).count(), 1, "{t}");
        }
    }
    shoot(&[a], "08-two-tabs");
    let from_tabs = collect(&node, &mut phone_events, alice_id, &tabs);
    for t in tabs {
        assert_eq!(from_tabs.get(t), Some(&1), "{t:?} reached Bob's phone once");
    }
    a.switch_to(&first_tab);

    // Bob leaves (phone and browser): Alice sees him go offline, with the
    // time he was last seen.
    node.block_on(phone.close());
    drop(bob_browser);
    a.click(&format!("#channel-list li[data-channel=\"{}\"]", dm.0));
    a.wait_for(
        "Bob offline",
        &format!(
            "return !document.querySelector('#channel-list li[data-channel=\"{}\"] .dot.online') \
             && document.getElementById('conv-presence').textContent.startsWith('last seen ')",
            dm.0
        ),
    );
    a.screenshot("09-last-seen");
}

#[test]
fn the_node_serves_the_page_unless_told_not_to() {
    let on = TestNode::start(IoMode::Epoll, |_| {});
    let (status, body) = http_get(on.node.api_addr, "/");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("/assets/js/app.js"), "{body}");
    drop(on);

    let off = TestNode::start_configured(
        IoMode::Epoll,
        |c| c.api.web_client = false,
        |_| {},
        WriterConfig::default(),
    );
    let (status, body) = http_get(off.node.api_addr, "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert!(body.contains("NOT_FOUND"), "{body}");
    assert_eq!(
        http_get(off.node.api_addr, "/assets/js/app.js").0,
        "HTTP/1.1 404 Not Found"
    );
    // The API itself is unaffected.
    assert_eq!(
        http_get(off.node.api_addr, "/v1/gateway").0,
        "HTTP/1.1 200 OK"
    );
}

/// The page (and every other client) connects where discovery says: the
/// ports the gateway really got, also when it was told to take any.
#[test]
fn discovery_names_the_ports_the_gateway_got() {
    let node = TestNode::start(IoMode::Epoll, |_| {});
    let (status, body) = http_get(node.node.api_addr, "/v1/gateway");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["websocket_url"],
        Value::from(format!("ws://{}/v1/ws", node.node.ws_addr))
    );
    assert_eq!(
        v["quic_addr"],
        Value::from(node.node.quic_addr.unwrap().to_string())
    );
}
