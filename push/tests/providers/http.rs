//! The HTTP client under every provider: timeouts, refused ports,
//! untrusted certificates.

use std::sync::atomic::Ordering;
use std::time::Duration;

use confab_push::config::WebhookConfig;
use confab_push::http::HttpClient;
use confab_push::provider::Provider;
use confab_push::webhook::Webhook;
use tokio::net::TcpListener;

use crate::fake::*;
use crate::fcm::fcm_setup;
use crate::webhook::SECRET;

#[tokio::test]
async fn no_answer_is_a_timeout_and_a_closed_port_a_connect_error() {
    // Accepts, reads, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let cfg = WebhookConfig {
        secret: SECRET.into(),
        url: Some(format!("http://{addr}/relay")),
    };
    let hook = Webhook::new(
        &cfg,
        HttpClient::new(None, Duration::from_millis(300)).unwrap(),
    );
    assert_eq!(
        hook.send("t", &note(42, false)).await,
        retry(None, "timeout")
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = WebhookConfig {
        secret: SECRET.into(),
        url: Some(format!("http://{closed}/relay")),
    };
    let hook = Webhook::new(&cfg, client(None));
    assert_eq!(
        hook.send("t", &note(42, false)).await,
        retry(None, "connect")
    );
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_connect_error() {
    // The FCM fake's certificate, without its CA file.
    let s = fcm_setup().await;
    let cfg = WebhookConfig {
        secret: SECRET.into(),
        url: Some(format!("{}/token", s.fake.url("https"))),
    };
    let hook = Webhook::new(&cfg, client(None));
    assert_eq!(
        hook.send("t", &note(42, false)).await,
        retry(None, "connect")
    );
    assert_eq!(s.google.token_calls.load(Ordering::SeqCst), 0);
}
