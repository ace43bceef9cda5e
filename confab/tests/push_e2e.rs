//! Push notifications end to end: the real `confab` binary (gateway,
//! RocksDB outbox, SQLite store, push worker, webhook provider) against a
//! local relay that verifies every request's signature and answers as
//! scripted. Users speak to the node only as apps do: HTTP API for
//! accounts, devices, DMs and mute; the client SDK over WebSocket to chat.
//!
//! Covered: no push while a device is online, a push once all are offline,
//! a burst collapsing into one counted notification, retries until
//! delivery, a dead token marked and skipped, mute, and jobs pending at a
//! `kill -9` delivered after the restart.

#[path = "push/relay.rs"]
mod relay;
#[path = "push/server.rs"]
mod server;

use confab_types::ChannelId;
use std::time::Duration;

use confab_client::Target;
use relay::{Relay, Reply};
use server::{App, Server, User};

/// Longest wait for any one thing a test expects.
const PATIENCE: Duration = Duration::from_secs(30);

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ada and Bob share a DM; Bob's phone is a webhook device.
async fn ada_and_bob(server: &Server) -> (User, User, u64) {
    let ada = server.signup("ada").await;
    let bob = server.signup("bob").await;
    server
        .register(&ada, "webhook", "https://relay.test/ada")
        .await;
    server
        .register(&bob, "webhook", "https://relay.test/bob")
        .await;
    let dm = server.open_dm(&ada, bob.id).await;
    (ada, bob, dm)
}

#[tokio::test]
async fn no_push_while_online_one_push_once_offline() {
    let relay = Relay::start().await;
    let server = Server::start(&relay.url(), "").await;
    let (ada, bob, dm) = ada_and_bob(&server).await;
    let ada_app = server.connect(&ada).await;

    // Bob has no device online: one notification, for him alone.
    ada_app
        .send(Target::Channel(ChannelId(dm)), "first")
        .await
        .unwrap();
    eventually("Bob's first push", || {
        relay.delivered("https://relay.test/bob").len() == 1
    })
    .await;
    let n = &relay.delivered("https://relay.test/bob")[0];
    assert_eq!(n["channel"], dm);
    assert_eq!(n["count"], 1);
    assert_eq!(n["user"], bob.id);
    assert_eq!(n["sender"], ada.id);
    assert_eq!(n["collapse_id"], format!("confab-{dm}"));
    // No text leaves the node unless previews are configured.
    assert!(n.get("preview").is_none(), "{n}");
    assert!(!n.to_string().contains("first"), "{n}");
    assert!(
        relay.delivered("https://relay.test/ada").is_empty(),
        "pushed the sender"
    );

    // Bob's phone connects: messages reach it, and no push is made.
    let mut bob_app: App = server.connect(&bob).await;
    ada_app
        .send(Target::Channel(ChannelId(dm)), "while online")
        .await
        .unwrap();
    server::next_message(&mut bob_app.events).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        relay.delivered("https://relay.test/bob").len(),
        1,
        "pushed an online user"
    );

    // Bob leaves: the next message wakes him, counted from zero again.
    bob_app.close().await;
    drop(bob_app);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ada_app
        .send(Target::Channel(ChannelId(dm)), "after")
        .await
        .unwrap();
    eventually("Bob's second push", || {
        relay.delivered("https://relay.test/bob").len() == 2
    })
    .await;
    assert_eq!(relay.delivered("https://relay.test/bob")[1]["count"], 1);

    let metrics = server.metrics().await;
    assert_eq!(
        server::metric(
            &metrics,
            "confab_push_notifications_sent_total{provider=\"webhook\"}"
        ),
        2
    );
    assert_eq!(relay.bad_signatures(), 0);
}

#[tokio::test]
async fn a_burst_collapses_into_one_counted_notification() {
    let relay = Relay::start().await;
    // A generous window, so the whole burst lands in it even on a slow CI.
    let server = Server::start(&relay.url(), "collapse_ms = 3000").await;
    let (ada, _bob, dm) = ada_and_bob(&server).await;
    let ada_app = server.connect(&ada).await;

    let sends: Vec<_> = (0..50)
        .map(|i| ada_app.send(Target::Channel(ChannelId(dm)), format!("burst {i}")))
        .collect();
    for s in sends {
        s.await.unwrap();
    }
    eventually("the burst's push", || {
        !relay.delivered("https://relay.test/bob").is_empty()
    })
    .await;
    // Nothing else follows: one notification counting all 50.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let got = relay.delivered("https://relay.test/bob");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["count"], 50);

    // A later message updates the same notification (same collapse id,
    // the count carries on) rather than starting a new one.
    ada_app
        .send(Target::Channel(ChannelId(dm)), "one more")
        .await
        .unwrap();
    eventually("the update", || {
        relay.delivered("https://relay.test/bob").len() == 2
    })
    .await;
    let got = relay.delivered("https://relay.test/bob");
    assert_eq!(got[1]["count"], 51);
    assert_eq!(got[1]["collapse_id"], got[0]["collapse_id"]);
}

#[tokio::test]
async fn transient_failures_are_retried_until_delivered() {
    let relay = Relay::start().await;
    relay.script(
        "https://relay.test/bob",
        vec![
            Reply::status(503),
            Reply::status(500),
            Reply::retry_after(429, 1),
            Reply::status(200),
        ],
    );
    let server = Server::start(&relay.url(), "collapse_ms = 100").await;
    let (ada, _bob, dm) = ada_and_bob(&server).await;
    let ada_app = server.connect(&ada).await;
    ada_app
        .send(Target::Channel(ChannelId(dm)), "try hard")
        .await
        .unwrap();

    eventually("delivery after three failures", || {
        relay.delivered("https://relay.test/bob").len() == 1
    })
    .await;
    let attempts = relay.attempts("https://relay.test/bob");
    assert_eq!(attempts.len(), 4);
    // Retry-After was honoured: the attempt after the 429 waited ≥ 1 s.
    assert!(
        attempts[3] - attempts[2] >= Duration::from_millis(950),
        "{attempts:?}"
    );
    let metrics = server.metrics().await;
    let retried = |reason: &str| {
        server::metric(
            &metrics,
            &format!("confab_push_notifications_retried_total{{provider=\"webhook\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(
        retried("status_503") + retried("status_500") + retried("rate_limited"),
        3
    );
    // Settled: the outbox is empty again (the gauge refreshes each second).
    eventually_depth_zero(&server).await;
}

#[tokio::test]
async fn a_dead_token_is_marked_and_never_used_again() {
    let relay = Relay::start().await;
    relay.script("https://relay.test/bob-old", vec![Reply::status(410)]);
    let server = Server::start(&relay.url(), "collapse_ms = 100").await;
    let (ada, bob, dm) = ada_and_bob(&server).await;
    server
        .register(&bob, "webhook", "https://relay.test/bob-old")
        .await;
    let ada_app = server.connect(&ada).await;

    ada_app
        .send(Target::Channel(ChannelId(dm)), "one")
        .await
        .unwrap();
    eventually("both devices tried", || {
        relay.delivered("https://relay.test/bob").len() == 1
            && relay.attempts("https://relay.test/bob-old").len() == 1
    })
    .await;
    // The store marks the device: the API shows it inactive.
    let mut active = None;
    for _ in 0..100 {
        let devices = server.devices(&bob).await;
        let old = devices
            .iter()
            .find(|d| d["push_token"] == "https://relay.test/bob-old")
            .unwrap()
            .clone();
        if old["push_active"] == false {
            active = Some(false);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(active, Some(false), "the dead token was not marked");

    ada_app
        .send(Target::Channel(ChannelId(dm)), "two")
        .await
        .unwrap();
    eventually("the live device's second push", || {
        relay.delivered("https://relay.test/bob").len() == 2
    })
    .await;
    assert_eq!(
        relay.attempts("https://relay.test/bob-old").len(),
        1,
        "sent to a dead token"
    );
    let metrics = server.metrics().await;
    assert_eq!(
        server::metric(
            &metrics,
            "confab_push_notifications_failed_total{provider=\"webhook\",reason=\"unregistered\"}"
        ),
        1
    );
}

#[tokio::test]
async fn a_muted_channel_never_wakes_the_phone() {
    let relay = Relay::start().await;
    let server = Server::start(&relay.url(), "collapse_ms = 100").await;
    let (ada, bob, dm) = ada_and_bob(&server).await;
    server.mute(&bob, dm, true).await;
    let ada_app = server.connect(&ada).await;
    ada_app
        .send(Target::Channel(ChannelId(dm)), "shh")
        .await
        .unwrap();
    let metrics_has_drop = || async {
        let m = server.metrics().await;
        server::metric(
            &m,
            "confab_push_jobs_dropped_total{provider=\"none\",reason=\"muted\"}",
        )
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while metrics_has_drop().await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the muted job was never settled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        relay.attempts("https://relay.test/bob").is_empty(),
        "pushed a muted channel"
    );

    // Unmuted, the same channel pushes again: mute was the reason.
    server.mute(&bob, dm, false).await;
    ada_app
        .send(Target::Channel(ChannelId(dm)), "loud")
        .await
        .unwrap();
    eventually("the push after unmuting", || {
        relay.delivered("https://relay.test/bob").len() == 1
    })
    .await;
}

#[tokio::test]
async fn pending_pushes_survive_kill_9_and_restart() {
    let relay = Relay::start().await;
    relay.set_down(true);
    let mut server = Server::start(&relay.url(), "collapse_ms = 100").await;
    let (ada, bob, dm) = ada_and_bob(&server).await;
    {
        let ada_app = server.connect(&ada).await;
        for i in 0..3 {
            ada_app
                .send(Target::Channel(ChannelId(dm)), format!("m{i}"))
                .await
                .unwrap();
        }
        // The relay is down: the job is pending, being retried.
        eventually("a failed attempt", || {
            !relay.attempts("https://relay.test/bob").is_empty()
        })
        .await;
        ada_app.close().await;
    }
    server.kill9();
    relay.set_down(false);
    let server = server.restart().await;
    eventually("the push after the restart", || {
        relay.delivered("https://relay.test/bob").len() == 1
    })
    .await;
    let got = &relay.delivered("https://relay.test/bob")[0];
    assert_eq!(got["count"], 3);
    assert_eq!(got["user"], bob.id);
    let metrics = server.metrics().await;
    assert_eq!(
        server::metric(
            &metrics,
            "confab_push_jobs_created_total{source=\"recovered\"}"
        ),
        3
    );
    eventually_depth_zero(&server).await;
}

async fn eventually_depth_zero(server: &Server) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let m = server.metrics().await;
        if server::metric(&m, "confab_push_outbox_depth") == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox never drained:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn jobs_older_than_max_age_are_given_up() {
    let relay = Relay::start().await;
    relay.set_down(true);
    let server = Server::start(&relay.url(), "collapse_ms = 100\nmax_age_secs = 1").await;
    let (ada, _bob, dm) = ada_and_bob(&server).await;
    let ada_app = server.connect(&ada).await;
    ada_app
        .send(Target::Channel(ChannelId(dm)), "soon stale")
        .await
        .unwrap();
    eventually("a failed attempt", || {
        !relay.attempts("https://relay.test/bob").is_empty()
    })
    .await;

    // Past the age limit the job is dropped, not retried for ever.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let m = server.metrics().await;
        let expired = server::metric(
            &m,
            "confab_push_jobs_dropped_total{provider=\"none\",reason=\"expired\"}",
        );
        if expired == 1 && server::metric(&m, "confab_push_outbox_depth") == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never expired:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    relay.set_down(false);
    let tried = relay.attempts("https://relay.test/bob").len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        relay.attempts("https://relay.test/bob").len(),
        tried,
        "retried after giving up"
    );
    assert!(relay.delivered("https://relay.test/bob").is_empty());
}

#[tokio::test]
async fn previews_carry_the_sender_name_and_the_start_of_the_text_only_when_configured() {
    let relay = Relay::start().await;
    let server = Server::start(&relay.url(), "collapse_ms = 100\ninclude_preview = true").await;
    let (ada, _bob, dm) = ada_and_bob(&server).await;
    let ada_app = server.connect(&ada).await;
    let long = format!("hello {}", "é".repeat(200));
    ada_app
        .send(Target::Channel(ChannelId(dm)), long.clone())
        .await
        .unwrap();
    eventually("the push", || {
        relay.delivered("https://relay.test/bob").len() == 1
    })
    .await;
    let n = &relay.delivered("https://relay.test/bob")[0];
    assert_eq!(n["preview"]["title"], "ada");
    let body = n["preview"]["body"].as_str().unwrap();
    assert_eq!(body.chars().count(), 120);
    assert!(long.starts_with(body));
}
