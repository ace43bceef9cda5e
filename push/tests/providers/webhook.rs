//! The signed webhook: JSON to the token URL or a relay, signatures.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use confab_directory::store::Platform;
use confab_push::config::WebhookConfig;
use confab_push::provider::{Outcome, Preview, Provider};
use confab_push::webhook::{verify_signature, Webhook};
use hyper::http::request::Parts;
use serde_json::{json, Value};

use crate::fake::*;

// ---- webhook ------------------------------------------------------------

pub const SECRET: &str = "test-webhook-secret-of-32-bytes!";

#[derive(Default)]
pub struct Relay {
    calls: AtomicUsize,
    /// Paths requested, in order.
    paths: Mutex<Vec<String>>,
    /// The `token` each body carried.
    tokens: Mutex<Vec<String>>,
    /// Status (and Retry-After) to answer, in order; then 204.
    script: Mutex<VecDeque<(u16, Option<&'static str>)>>,
    expect_preview: Mutex<Option<Preview>>,
    /// The secret the relay verifies with.
    secret: Mutex<String>,
}

impl Relay {
    fn handle(&self, parts: &Parts, body: &Bytes) -> Result<Reply, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.paths.lock().unwrap().push(parts.uri.path().to_owned());
        check(parts.method == "POST", || {
            format!("method {}", parts.method)
        })?;
        check(header(parts, "content-type")? == "application/json", || {
            "content-type".into()
        })?;
        let signature = header(parts, "x-confab-signature")?;
        let secret = self.secret.lock().unwrap().clone();
        if let Err(e) = verify_signature(secret.as_bytes(), signature, body, now(), 300) {
            // What a relay does with a bad signature.
            return Ok((401, vec![], e.to_string()));
        }
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
        let token = v["token"].as_str().ok_or("no token")?.to_owned();
        self.tokens.lock().unwrap().push(token.clone());
        let mut want = json!({
            "type": "message", "user": 7, "channel": 42, "seq": 1001, "count": 3, "sender": 9,
            "ts": 1_700_000_000_123u64, "collapse_id": "ch-42", "token": token,
        });
        if let Some(p) = self.expect_preview.lock().unwrap().clone() {
            want["preview"] = json!({"title": p.title, "body": p.body});
        }
        check(v == want, || format!("body {v}, want {want}"))?;
        let (status, after) = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((204, None));
        let headers = after
            .map(|a| vec![("retry-after", a.to_string())])
            .unwrap_or_default();
        Ok((status, headers, String::new()))
    }
}

pub async fn relay() -> (Arc<Relay>, Fake) {
    let relay = Arc::new(Relay::default());
    *relay.secret.lock().unwrap() = SECRET.into();
    let r = relay.clone();
    let fake = serve(
        Transport::Plain,
        Arc::new(move |parts: &Parts, body: &Bytes| r.handle(parts, body)),
    )
    .await;
    (relay, fake)
}

pub fn webhook(url: Option<String>) -> Webhook {
    let cfg = WebhookConfig {
        secret: SECRET.into(),
        url,
    };
    Webhook::new(&cfg, client(None))
}

#[tokio::test]
async fn webhook_posts_signed_json_to_the_token_url_or_the_relay() {
    let (relay, fake) = relay().await;
    // No relay configured: the token is the device's URL.
    let hook = webhook(None);
    assert_eq!(hook.platform(), Platform::Webhook);
    assert_eq!(hook.name(), "webhook");
    let device_url = format!("{}/push/device-1", fake.url("http"));
    assert_eq!(
        hook.send(&device_url, &note(42, false)).await,
        Outcome::Sent
    );
    // A relay: everything goes there, the token in the body.
    let hook = webhook(Some(format!("{}/relay", fake.url("http"))));
    *relay.expect_preview.lock().unwrap() = note(42, true).preview;
    assert_eq!(
        hook.send("opaque-device-token", &note(42, true)).await,
        Outcome::Sent
    );
    fake.assert_clean();
    assert_eq!(relay.calls.load(Ordering::SeqCst), 2);
    assert_eq!(*relay.paths.lock().unwrap(), ["/push/device-1", "/relay"]);
    assert_eq!(
        *relay.tokens.lock().unwrap(),
        [device_url.as_str(), "opaque-device-token"]
    );
}

#[tokio::test]
async fn webhook_maps_answers_and_a_relay_with_another_secret_refuses() {
    let (relay, fake) = relay().await;
    let hook = webhook(Some(format!("{}/relay", fake.url("http"))));
    relay.script.lock().unwrap().extend([
        (200, None),
        (404, None),
        (410, None),
        (429, Some("7")),
        (503, Some("2")),
        (500, None),
        (400, None),
    ]);
    let n = note(42, false);
    assert_eq!(hook.send("t", &n).await, Outcome::Sent);
    assert_eq!(hook.send("t", &n).await, Outcome::Unregistered);
    assert_eq!(hook.send("t", &n).await, Outcome::Unregistered);
    assert_eq!(hook.send("t", &n).await, retry(Some(7), "rate_limited"));
    assert_eq!(hook.send("t", &n).await, retry(Some(2), "status_503"));
    assert_eq!(hook.send("t", &n).await, retry(None, "status_500"));
    assert_eq!(rejected(&hook.send("t", &n).await), "status_400");
    *relay.secret.lock().unwrap() = "another-secret-the-node-doesnt-have".into();
    assert_eq!(rejected(&hook.send("t", &n).await), "status_401");
    fake.assert_clean();
    assert_eq!(relay.calls.load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn webhook_refuses_a_token_that_is_not_an_http_url() {
    let hook = webhook(None);
    let n = note(42, false);
    for bad in ["", "not a url", "ftp://example.com/x", "/relative/path"] {
        assert_eq!(rejected(&hook.send(bad, &n).await), "bad_token", "{bad:?}");
    }
}
