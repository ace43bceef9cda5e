//! A self-hosted push relay as confab's webhook provider talks to it: it
//! verifies every request's `X-Confab-Signature` with the shared secret,
//! records the JSON body by device token, and answers as the test scripts
//! (per token, in order; 200 once the script runs out, 503 while "down").

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

/// The signing key both sides share.
pub const SECRET: &str = "a webhook signing secret of at least 32 bytes";

/// One scripted answer.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    status: u16,
    retry_after: Option<u64>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            retry_after: None,
        }
    }

    pub fn retry_after(status: u16, secs: u64) -> Reply {
        Reply {
            status,
            retry_after: Some(secs),
        }
    }
}

struct Hit {
    token: String,
    at: Instant,
    status: u16,
    body: Value,
}

#[derive(Default)]
struct Inner {
    hits: Mutex<Vec<Hit>>,
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    down: AtomicBool,
    bad_signatures: AtomicUsize,
}

pub struct Relay {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    pub async fn start() -> Relay {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/push", post(receive))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Relay { addr, inner, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/push", self.addr)
    }

    /// Answers for `token`'s next requests, in order.
    pub fn script(&self, token: &str, replies: Vec<Reply>) {
        self.inner
            .scripts
            .lock()
            .unwrap()
            .insert(token.to_owned(), replies.into());
    }

    /// While down, every request gets 503.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    /// Bodies of the notifications accepted (2xx) for `token`.
    pub fn delivered(&self, token: &str) -> Vec<Value> {
        self.inner
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.token == token && (200..300).contains(&h.status))
            .map(|h| h.body.clone())
            .collect()
    }

    /// When each request for `token` arrived, whatever the answer.
    pub fn attempts(&self, token: &str) -> Vec<Instant> {
        self.inner
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.token == token)
            .map(|h| h.at)
            .collect()
    }

    /// Requests whose signature did not verify.
    pub fn bad_signatures(&self) -> usize {
        self.inner.bad_signatures.load(Ordering::SeqCst)
    }
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signature = headers
        .get("x-confab-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if confab_push::webhook::verify_signature(SECRET.as_bytes(), signature, &body, now, 300)
        .is_err()
    {
        inner.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED.into_response();
    }
    assert_eq!(
        headers.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/json")
    );
    let body: Value = serde_json::from_slice(&body).expect("a JSON body");
    let token = body["token"].as_str().expect("the device token").to_owned();
    let reply = if inner.down.load(Ordering::SeqCst) {
        Reply::status(503)
    } else {
        inner
            .scripts
            .lock()
            .unwrap()
            .get_mut(&token)
            .and_then(|s| s.pop_front())
            .unwrap_or(Reply::status(200))
    };
    inner.hits.lock().unwrap().push(Hit {
        token,
        at: Instant::now(),
        status: reply.status,
        body,
    });
    let mut response = StatusCode::from_u16(reply.status).unwrap().into_response();
    if let Some(secs) = reply.retry_after {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    response
}
