//! The push provider clients against local fake providers: a Google OAuth
//! token endpoint and FCM HTTP v1 (TLS), APNs (TLS, HTTP/2 only) and a
//! webhook relay (plain HTTP). Each fake checks every request the way the
//! real provider documents it (paths, headers, signed tokens, JSON shape)
//! and answers with the provider's documented bodies; each test asserts the
//! exact `Outcome` for each scripted answer and how many requests were made.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use confab_directory::store::Platform;
use confab_push::apns::Apns;
use confab_push::config::{ApnsConfig, FcmConfig, WebhookConfig};
use confab_push::fcm::{Fcm, SCOPE};
use confab_push::http::HttpClient;
use confab_push::jwt::{self, Algorithm, SigningKey};
use confab_push::provider::{Notification, Outcome, Preview, Provider};
use confab_push::webhook::{verify_signature, Webhook};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::service::service_fn;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;

// ---- fake servers -------------------------------------------------------

/// What a fake answers: status, extra headers, body.
type Reply = (u16, Vec<(&'static str, String)>, String);

/// Checks one request; `Err` is a protocol violation, recorded and
/// answered with 599 so the test fails loudly.
type Handler = Arc<dyn Fn(&Parts, &Bytes) -> Result<Reply, String> + Send + Sync>;

enum Transport {
    Plain,
    /// TLS with ALPN `h2` and `http/1.1`, either served.
    Tls,
    /// TLS with ALPN `h2` only, HTTP/2 only (APNs).
    TlsH2,
}

struct Fake {
    addr: SocketAddr,
    ca_file: PathBuf,
    problems: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
}

impl Fake {
    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    fn assert_clean(&self) {
        let p = self.problems.lock().unwrap();
        assert!(p.is_empty(), "the fake provider saw bad requests: {p:#?}");
    }
}

fn tls_config(h2_only: bool, dir: &std::path::Path) -> (Arc<rustls::ServerConfig>, PathBuf) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let ca_file = dir.join("fake-ca.pem");
    std::fs::write(&ca_file, generated.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![generated.cert.der().clone()], key.into())
    .unwrap();
    config.alpn_protocols = if h2_only {
        vec![b"h2".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    (Arc::new(config), ca_file)
}

async fn serve(transport: Transport, handler: Handler) -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let problems = Arc::new(Mutex::new(Vec::new()));
    let (tls, ca_file) = match transport {
        Transport::Plain => (None, dir.path().join("unused.pem")),
        Transport::Tls => {
            let (c, f) = tls_config(false, dir.path());
            (Some((tokio_rustls::TlsAcceptor::from(c), false)), f)
        }
        Transport::TlsH2 => {
            let (c, f) = tls_config(true, dir.path());
            (Some((tokio_rustls::TlsAcceptor::from(c), true)), f)
        }
    };
    let seen = problems.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (handler, seen, tls) = (handler.clone(), seen.clone(), tls.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (handler, seen) = (handler.clone(), seen.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let (status, headers, text) = match handler(&parts, &body) {
                            Ok(reply) => reply,
                            Err(problem) => {
                                seen.lock().unwrap().push(problem.clone());
                                (599, vec![], problem)
                            }
                        };
                        let mut resp = Response::builder().status(status);
                        for (k, v) in headers {
                            resp = resp.header(k, v);
                        }
                        Ok::<_, Infallible>(resp.body(Full::new(Bytes::from(text))).unwrap())
                    }
                });
                let auto = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = match tls {
                    None => auto.serve_connection(TokioIo::new(tcp), service).await,
                    Some((acceptor, h2_only)) => {
                        let Ok(stream) = acceptor.accept(tcp).await else {
                            return;
                        };
                        if h2_only {
                            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                                .map_err(Into::into)
                        } else {
                            auto.serve_connection(TokioIo::new(stream), service).await
                        }
                    }
                };
            });
        }
    });
    Fake {
        addr,
        ca_file,
        problems,
        dir,
    }
}

fn client(ca_file: Option<&std::path::Path>) -> HttpClient {
    HttpClient::new(ca_file, Duration::from_secs(5)).unwrap()
}

fn header<'a>(parts: &'a Parts, name: &str) -> Result<&'a str, String> {
    parts
        .headers
        .get(name)
        .ok_or_else(|| format!("no {name} header"))?
        .to_str()
        .map_err(|e| format!("{name}: {e}"))
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Whether any object in `v` has a key named `key`.
fn has_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(m) => m.contains_key(key) || m.values().any(|x| has_key(x, key)),
        Value::Array(a) => a.iter().any(|x| has_key(x, key)),
        _ => false,
    }
}

fn note(channel: u64, preview: bool) -> Notification {
    Notification {
        user: 7,
        channel,
        seq: 1001,
        count: 3,
        sender: 9,
        timestamp_ms: 1_700_000_000_123,
        collapse_id: format!("ch-{channel}"),
        preview: preview.then(|| Preview {
            title: "Ann".into(),
            body: "see you at noon".into(),
        }),
    }
}

fn retry(after: Option<u64>, reason: &'static str) -> Outcome {
    Outcome::Retry {
        after: after.map(Duration::from_secs),
        reason,
    }
}

fn rejected(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Rejected { reason, .. } => reason,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

// ---- FCM ----------------------------------------------------------------

const SERVICE_ACCOUNT: &str = include_str!("fixtures/fcm-test-service-account.json");
const PROJECT: &str = "confab-test";
const FCM_TOKEN: &str = "fcm-device-token-0123456789:APA91bHun4MxP5egoKMwt2KZFBaFUH";

#[derive(Clone, Copy, Debug)]
enum FcmReply {
    Ok,
    Unregistered,
    RateLimited,
    Unavailable,
    Unauthenticated,
    InvalidArgument,
    SenderIdMismatch,
}

#[derive(Clone, Copy, Debug)]
enum TokenReply {
    Ok,
    Unavailable,
    InvalidGrant,
}

#[derive(Default)]
struct Google {
    token_calls: AtomicUsize,
    send_calls: AtomicUsize,
    /// The access tokens issued, oldest first.
    issued: Mutex<Vec<String>>,
    /// The bearer token each send carried.
    bearers: Mutex<Vec<String>>,
    token_script: Mutex<VecDeque<TokenReply>>,
    send_script: Mutex<VecDeque<FcmReply>>,
    /// What the next message must carry as its preview.
    expect_preview: Mutex<Option<Preview>>,
    /// The fake's own token endpoint URL (the assertion's audience).
    token_uri: Mutex<String>,
}

fn form_decode(text: &str) -> Result<Vec<(String, String)>, String> {
    let decode = |s: &str| -> Result<String, String> {
        let s = s.replace('+', " ");
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hex = s.get(i + 1..i + 3).ok_or("bad % escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    };
    text.split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or("form pair without =")?;
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

fn google_error(code: u16, status: &str, message: &str, fcm_code: Option<&str>) -> String {
    let mut error = json!({"code": code, "message": message, "status": status});
    if let Some(c) = fcm_code {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": c,
        }]);
    }
    json!({ "error": error }).to_string()
}

impl Google {
    fn handle(
        &self,
        parts: &Parts,
        body: &Bytes,
        sa: &Value,
        public_key: &[u8],
    ) -> Result<Reply, String> {
        check(parts.method == "POST", || {
            format!("method {}", parts.method)
        })?;
        match parts.uri.path() {
            "/token" => self.token(parts, body, sa, public_key),
            p if p == format!("/v1/projects/{PROJECT}/messages:send") => self.send(parts, body),
            p => Err(format!("unexpected path {p}")),
        }
    }

    /// Google's OAuth2 token endpoint, JWT-bearer grant (RFC 7523).
    fn token(
        &self,
        parts: &Parts,
        body: &Bytes,
        sa: &Value,
        public_key: &[u8],
    ) -> Result<Reply, String> {
        self.token_calls.fetch_add(1, Ordering::SeqCst);
        let ct = header(parts, "content-type")?;
        check(ct == "application/x-www-form-urlencoded", || {
            format!("content-type {ct}")
        })?;
        let form = form_decode(std::str::from_utf8(body).map_err(|e| e.to_string())?)?;
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| format!("no {name} in the form"))
        };
        let grant = field("grant_type")?;
        check(
            grant == "urn:ietf:params:oauth:grant-type:jwt-bearer",
            || format!("grant_type {grant}"),
        )?;
        let assertion = field("assertion")?;
        let (h, c) = jwt::verify(&assertion, Algorithm::Rs256, public_key)
            .map_err(|e| format!("assertion: {e}"))?;
        check(
            h["typ"] == "JWT" && h["kid"] == sa["private_key_id"],
            || format!("header {h}"),
        )?;
        check(c["iss"] == sa["client_email"], || {
            format!("iss {}", c["iss"])
        })?;
        check(c["scope"] == SCOPE, || format!("scope {}", c["scope"]))?;
        let aud = self.token_uri.lock().unwrap().clone();
        check(c["aud"] == aud.as_str(), || {
            format!("aud {} (want {aud})", c["aud"])
        })?;
        let (iat, exp) = (
            c["iat"].as_u64().unwrap_or(0),
            c["exp"].as_u64().unwrap_or(0),
        );
        check(now().abs_diff(iat) < 60 && exp == iat + 3600, || {
            format!("iat {iat} exp {exp}")
        })?;
        let reply = self
            .token_script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(TokenReply::Ok);
        Ok(match reply {
            TokenReply::Ok => {
                let mut issued = self.issued.lock().unwrap();
                let token = format!("ya29.fake-access-token-{}", issued.len() + 1);
                issued.push(token.clone());
                let body =
                    json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"});
                (
                    200,
                    vec![("content-type", "application/json".into())],
                    body.to_string(),
                )
            }
            TokenReply::Unavailable => (503, vec![], "Service Unavailable".into()),
            TokenReply::InvalidGrant => (
                400,
                vec![("content-type", "application/json".into())],
                json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
                    .to_string(),
            ),
        })
    }

    /// FCM HTTP v1 `messages:send`.
    fn send(&self, parts: &Parts, body: &Bytes) -> Result<Reply, String> {
        self.send_calls.fetch_add(1, Ordering::SeqCst);
        let auth = header(parts, "authorization")?;
        let bearer = auth
            .strip_prefix("Bearer ")
            .ok_or_else(|| format!("authorization {auth}"))?;
        self.bearers.lock().unwrap().push(bearer.to_owned());
        let latest = self.issued.lock().unwrap().last().cloned();
        check(latest.as_deref() == Some(bearer), || {
            format!("bearer {bearer}, issued {latest:?}")
        })?;
        let ct = header(parts, "content-type")?;
        check(ct.starts_with("application/json"), || {
            format!("content-type {ct}")
        })?;
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
        let m = &v["message"];
        check(m["token"] == FCM_TOKEN, || format!("token {}", m["token"]))?;
        let data = m["data"].as_object().ok_or("no data")?;
        check(data.values().all(Value::is_string), || {
            format!("data values must be strings: {data:?}")
        })?;
        let want = json!({"type": "message", "channel": "42", "seq": "1001", "count": "3", "sender": "9", "ts": "1700000000123"});
        check(m["data"] == want, || format!("data {}", m["data"]))?;
        check(
            m["android"]["priority"] == "high" && m["android"]["collapse_key"] == "ch-42",
            || format!("android {}", m["android"]),
        )?;
        match self.expect_preview.lock().unwrap().clone() {
            None => {
                check(m.get("notification").is_none(), || {
                    "a notification without preview".into()
                })?;
                check(!has_key(m, "title") && !has_key(m, "body"), || {
                    format!("text without preview: {m}")
                })?;
            }
            Some(p) => {
                check(
                    m["notification"] == json!({"title": p.title, "body": p.body}),
                    || format!("notification {}", m["notification"]),
                )?;
                check(m["android"]["notification"]["tag"] == "ch-42", || {
                    format!("android {}", m["android"])
                })?;
            }
        }
        let json_ct = vec![(
            "content-type",
            "application/json; charset=UTF-8".to_string(),
        )];
        let reply = self
            .send_script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(FcmReply::Ok);
        Ok(match reply {
            FcmReply::Ok => (
                200,
                json_ct,
                json!({"name": format!("projects/{PROJECT}/messages/0:1700000000000000")})
                    .to_string(),
            ),
            FcmReply::Unregistered => (
                404,
                json_ct,
                google_error(
                    404,
                    "NOT_FOUND",
                    "Requested entity was not found.",
                    Some("UNREGISTERED"),
                ),
            ),
            FcmReply::RateLimited => {
                let mut h = json_ct;
                h.push(("retry-after", "30".into()));
                let msg = "Quota exceeded for quota metric 'Send requests'";
                (
                    429,
                    h,
                    google_error(429, "RESOURCE_EXHAUSTED", msg, Some("QUOTA_EXCEEDED")),
                )
            }
            FcmReply::Unavailable => (
                503,
                json_ct,
                google_error(
                    503,
                    "UNAVAILABLE",
                    "The service is currently unavailable.",
                    Some("UNAVAILABLE"),
                ),
            ),
            FcmReply::Unauthenticated => (
                401,
                json_ct,
                google_error(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials.",
                    None,
                ),
            ),
            FcmReply::InvalidArgument => (
                400,
                json_ct,
                google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "Invalid JSON payload received.",
                    Some("INVALID_ARGUMENT"),
                ),
            ),
            FcmReply::SenderIdMismatch => (
                403,
                json_ct,
                google_error(
                    403,
                    "PERMISSION_DENIED",
                    "SenderId mismatch",
                    Some("SENDER_ID_MISMATCH"),
                ),
            ),
        })
    }
}

struct FcmSetup {
    google: Arc<Google>,
    fake: Fake,
    fcm: Fcm,
}

async fn fcm_setup() -> FcmSetup {
    let sa: Value = serde_json::from_str(SERVICE_ACCOUNT).unwrap();
    let key = SigningKey::rs256_from_pem(sa["private_key"].as_str().unwrap().as_bytes()).unwrap();
    let public_key = key.public_key().to_vec();
    let google = Arc::new(Google::default());
    let g = google.clone();
    let sa_for_fake = sa.clone();
    let fake = serve(
        Transport::Tls,
        Arc::new(move |parts: &Parts, body: &Bytes| {
            g.handle(parts, body, &sa_for_fake, &public_key)
        }),
    )
    .await;
    let token_uri = format!("{}/token", fake.url("https"));
    *google.token_uri.lock().unwrap() = token_uri.clone();
    let mut sa = sa;
    sa["token_uri"] = token_uri.into();
    let sa_file = fake.dir.path().join("service-account.json");
    std::fs::write(&sa_file, sa.to_string()).unwrap();
    let cfg = FcmConfig {
        service_account_file: sa_file,
        endpoint: fake.url("https"),
    };
    let fcm = Fcm::new(&cfg, client(Some(&fake.ca_file))).unwrap();
    FcmSetup { google, fake, fcm }
}

#[tokio::test]
async fn fcm_sends_data_only_without_preview_and_caches_the_access_token() {
    let s = fcm_setup().await;
    assert_eq!(s.fcm.platform(), Platform::Fcm);
    assert_eq!(s.fcm.name(), "fcm");
    for _ in 0..3 {
        assert_eq!(s.fcm.send(FCM_TOKEN, &note(42, false)).await, Outcome::Sent);
    }
    *s.google.expect_preview.lock().unwrap() = note(42, true).preview;
    assert_eq!(s.fcm.send(FCM_TOKEN, &note(42, true)).await, Outcome::Sent);
    s.fake.assert_clean();
    assert_eq!(s.google.send_calls.load(Ordering::SeqCst), 4);
    assert_eq!(
        s.google.token_calls.load(Ordering::SeqCst),
        1,
        "the access token is cached"
    );
}

#[tokio::test]
async fn fcm_concurrent_sends_share_one_token_request() {
    let s = fcm_setup().await;
    let n = note(42, false);
    let sends = (0..8).map(|_| s.fcm.send(FCM_TOKEN, &n));
    let outcomes = futures_util::future::join_all(sends).await;
    assert!(outcomes.iter().all(|o| *o == Outcome::Sent), "{outcomes:?}");
    s.fake.assert_clean();
    assert_eq!(s.google.send_calls.load(Ordering::SeqCst), 8);
    assert_eq!(
        s.google.token_calls.load(Ordering::SeqCst),
        1,
        "no stampede on the token endpoint"
    );
}

#[tokio::test]
async fn fcm_maps_its_documented_errors() {
    let s = fcm_setup().await;
    s.google.send_script.lock().unwrap().extend([
        FcmReply::Unregistered,
        FcmReply::RateLimited,
        FcmReply::Unavailable,
        FcmReply::InvalidArgument,
        FcmReply::SenderIdMismatch,
    ]);
    let n = note(42, false);
    assert_eq!(s.fcm.send(FCM_TOKEN, &n).await, Outcome::Unregistered);
    assert_eq!(
        s.fcm.send(FCM_TOKEN, &n).await,
        retry(Some(30), "rate_limited")
    );
    assert_eq!(s.fcm.send(FCM_TOKEN, &n).await, retry(None, "status_503"));
    assert_eq!(
        s.fcm.send(FCM_TOKEN, &n).await,
        Outcome::Rejected {
            reason: "bad_request",
            detail: "Invalid JSON payload received.".into()
        }
    );
    assert_eq!(
        s.fcm.send(FCM_TOKEN, &n).await,
        Outcome::Rejected {
            reason: "sender_id_mismatch",
            detail: "SenderId mismatch".into()
        }
    );
    s.fake.assert_clean();
    assert_eq!(s.google.send_calls.load(Ordering::SeqCst), 5);
    assert_eq!(s.google.token_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn fcm_refreshes_the_access_token_once_on_401() {
    let s = fcm_setup().await;
    let n = note(42, false);
    s.google
        .send_script
        .lock()
        .unwrap()
        .extend([FcmReply::Unauthenticated, FcmReply::Ok]);
    assert_eq!(s.fcm.send(FCM_TOKEN, &n).await, Outcome::Sent);
    assert_eq!(s.google.token_calls.load(Ordering::SeqCst), 2);
    assert_eq!(s.google.send_calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        *s.google.bearers.lock().unwrap(),
        ["ya29.fake-access-token-1", "ya29.fake-access-token-2"],
        "the retry carried the new token"
    );

    // Refused again with the new token: a permanent auth failure.
    s.google
        .send_script
        .lock()
        .unwrap()
        .extend([FcmReply::Unauthenticated, FcmReply::Unauthenticated]);
    assert_eq!(rejected(&s.fcm.send(FCM_TOKEN, &n).await), "auth");
    assert_eq!(s.google.token_calls.load(Ordering::SeqCst), 3);
    assert_eq!(s.google.send_calls.load(Ordering::SeqCst), 4);
    s.fake.assert_clean();
}

#[tokio::test]
async fn fcm_token_endpoint_failures_are_retried_or_rejected() {
    let s = fcm_setup().await;
    let n = note(42, false);
    s.google
        .token_script
        .lock()
        .unwrap()
        .extend([TokenReply::Unavailable, TokenReply::InvalidGrant]);
    assert_eq!(
        s.fcm.send(FCM_TOKEN, &n).await,
        retry(None, "token_unavailable")
    );
    assert_eq!(rejected(&s.fcm.send(FCM_TOKEN, &n).await), "auth");
    assert_eq!(
        s.google.send_calls.load(Ordering::SeqCst),
        0,
        "nothing sent without a token"
    );
    assert_eq!(s.fcm.send(FCM_TOKEN, &n).await, Outcome::Sent);
    assert_eq!(s.google.token_calls.load(Ordering::SeqCst), 3);
    s.fake.assert_clean();
}

#[tokio::test]
async fn fcm_setup_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sa.json");
    let cfg = FcmConfig {
        service_account_file: path.clone(),
        endpoint: "https://fcm.googleapis.com".into(),
    };
    let err = Fcm::new(&cfg, client(None)).unwrap_err();
    assert!(err.to_string().contains("sa.json"), "{err}");
    let mut sa: Value = serde_json::from_str(SERVICE_ACCOUNT).unwrap();
    sa["private_key"] =
        "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n".into();
    std::fs::write(&path, sa.to_string()).unwrap();
    let err = Fcm::new(&cfg, client(None)).unwrap_err();
    assert!(err.to_string().contains("PRIVATE KEY"), "{err}");
}

// ---- APNs ---------------------------------------------------------------

const TEAM: &str = "TEAM123456";
const KEY_ID: &str = "KEY1234567";
const TOPIC: &str = "chat.confab.app";

#[derive(Clone, Copy, Debug)]
enum ApnsReply {
    Ok,
    Unregistered,
    BadDeviceToken,
    ExpiredProviderToken,
    InvalidProviderToken,
    TooManyRequests,
    ServiceUnavailable,
    BadTopic,
}

#[derive(Default)]
struct Apple {
    calls: AtomicUsize,
    /// The provider tokens seen, in order.
    jwts: Mutex<Vec<String>>,
    script: Mutex<VecDeque<ApnsReply>>,
    expect_preview: Mutex<Option<Preview>>,
}

impl Apple {
    fn handle(&self, parts: &Parts, body: &Bytes, public_key: &[u8]) -> Result<Reply, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        check(parts.version == Version::HTTP_2, || {
            format!("APNs is HTTP/2 only, got {:?}", parts.version)
        })?;
        check(parts.method == "POST", || {
            format!("method {}", parts.method)
        })?;
        let path = parts.uri.path();
        let token = path
            .strip_prefix("/3/device/")
            .ok_or_else(|| format!("path {path}"))?;
        check(
            token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
            || format!("token {token}"),
        )?;
        let auth = header(parts, "authorization")?;
        let jwt = auth
            .strip_prefix("bearer ")
            .ok_or_else(|| format!("authorization {auth}"))?;
        let (h, c) = jwt::verify(jwt, Algorithm::Es256, public_key)
            .map_err(|e| format!("provider token: {e}"))?;
        check(h == json!({"alg": "ES256", "kid": KEY_ID}), || {
            format!("header {h}")
        })?;
        check(c["iss"] == TEAM, || format!("iss {}", c["iss"]))?;
        check(now().abs_diff(c["iat"].as_u64().unwrap_or(0)) < 60, || {
            format!("iat {}", c["iat"])
        })?;
        self.jwts.lock().unwrap().push(jwt.to_owned());
        check(header(parts, "apns-topic")? == TOPIC, || {
            "apns-topic".into()
        })?;
        check(header(parts, "apns-push-type")? == "alert", || {
            "apns-push-type".into()
        })?;
        check(header(parts, "apns-priority")? == "10", || {
            "apns-priority".into()
        })?;
        check(header(parts, "apns-collapse-id")? == "ch-42", || {
            "apns-collapse-id".into()
        })?;
        let expiration: u64 = header(parts, "apns-expiration")?
            .parse()
            .map_err(|_| "apns-expiration")?;
        check(expiration > now(), || {
            format!("apns-expiration {expiration}")
        })?;
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
        let aps = &v["aps"];
        check(
            aps["badge"] == 3 && aps["thread-id"] == "42" && aps["mutable-content"] == 1,
            || format!("aps {aps}"),
        )?;
        check(
            v["confab"] == json!({"channel": 42, "seq": 1001, "count": 3, "sender": 9}),
            || format!("confab {}", v["confab"]),
        )?;
        match self.expect_preview.lock().unwrap().clone() {
            None => {
                check(aps["alert"]["loc-key"].is_string(), || {
                    format!("alert {}", aps["alert"])
                })?;
                check(!has_key(&v, "title") && !has_key(&v, "body"), || {
                    format!("text without preview: {v}")
                })?;
            }
            Some(p) => check(
                aps["alert"] == json!({"title": p.title, "body": p.body}),
                || format!("alert {}", aps["alert"]),
            )?,
        }
        let reason = |status: u16, reason: &str| {
            (
                status,
                vec![(
                    "apns-id",
                    "EC1BF194-B3B2-424A-89A9-5A918A6E6B5F".to_string(),
                )],
                json!({"reason": reason}).to_string(),
            )
        };
        let reply = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(ApnsReply::Ok);
        Ok(match reply {
            ApnsReply::Ok => (
                200,
                vec![("apns-id", "EC1BF194-B3B2-424A-89A9-5A918A6E6B5F".into())],
                String::new(),
            ),
            ApnsReply::Unregistered => (
                410,
                vec![],
                json!({"reason": "Unregistered", "timestamp": 1_700_000_000_000u64}).to_string(),
            ),
            ApnsReply::BadDeviceToken => reason(400, "BadDeviceToken"),
            ApnsReply::ExpiredProviderToken => reason(403, "ExpiredProviderToken"),
            ApnsReply::InvalidProviderToken => reason(403, "InvalidProviderToken"),
            ApnsReply::TooManyRequests => reason(429, "TooManyRequests"),
            ApnsReply::ServiceUnavailable => reason(503, "ServiceUnavailable"),
            ApnsReply::BadTopic => reason(400, "BadTopic"),
        })
    }
}

struct ApnsSetup {
    apple: Arc<Apple>,
    fake: Fake,
    apns: Apns,
}

const DEVICE: &str = "8f3a1c0e5b7d9f2a4c6e8b0d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a";

async fn apns_setup() -> ApnsSetup {
    let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let public_key = SigningKey::es256_from_pem(pem.as_bytes())
        .unwrap()
        .public_key()
        .to_vec();
    let apple = Arc::new(Apple::default());
    let a = apple.clone();
    let fake = serve(
        Transport::TlsH2,
        Arc::new(move |parts: &Parts, body: &Bytes| a.handle(parts, body, &public_key)),
    )
    .await;
    let key_file = fake.dir.path().join("AuthKey_KEY1234567.p8");
    std::fs::write(&key_file, pem).unwrap();
    let cfg = ApnsConfig {
        key_file,
        key_id: KEY_ID.into(),
        team_id: TEAM.into(),
        topic: TOPIC.into(),
        endpoint: fake.url("https"),
    };
    let apns = Apns::new(&cfg, client(Some(&fake.ca_file))).unwrap();
    ApnsSetup { apple, fake, apns }
}

#[tokio::test]
async fn apns_sends_over_http2_with_one_cached_provider_token() {
    let s = apns_setup().await;
    assert_eq!(s.apns.platform(), Platform::Apns);
    assert_eq!(s.apns.name(), "apns");
    assert_eq!(s.apns.send(DEVICE, &note(42, false)).await, Outcome::Sent);
    assert_eq!(s.apns.send(DEVICE, &note(42, false)).await, Outcome::Sent);
    *s.apple.expect_preview.lock().unwrap() = note(42, true).preview;
    assert_eq!(s.apns.send(DEVICE, &note(42, true)).await, Outcome::Sent);
    s.fake.assert_clean();
    assert_eq!(s.apple.calls.load(Ordering::SeqCst), 3);
    let jwts = s.apple.jwts.lock().unwrap();
    assert!(
        jwts.iter().all(|j| *j == jwts[0]),
        "the provider token is reused"
    );
}

#[tokio::test]
async fn apns_maps_its_documented_answers() {
    let s = apns_setup().await;
    s.apple.script.lock().unwrap().extend([
        ApnsReply::Unregistered,
        ApnsReply::BadDeviceToken,
        ApnsReply::TooManyRequests,
        ApnsReply::ServiceUnavailable,
        ApnsReply::BadTopic,
        ApnsReply::InvalidProviderToken,
    ]);
    let n = note(42, false);
    assert_eq!(s.apns.send(DEVICE, &n).await, Outcome::Unregistered);
    assert_eq!(s.apns.send(DEVICE, &n).await, Outcome::Unregistered);
    assert_eq!(s.apns.send(DEVICE, &n).await, retry(None, "rate_limited"));
    assert_eq!(s.apns.send(DEVICE, &n).await, retry(None, "status_503"));
    assert_eq!(
        s.apns.send(DEVICE, &n).await,
        Outcome::Rejected {
            reason: "bad_request",
            detail: "BadTopic".into()
        }
    );
    assert_eq!(
        s.apns.send(DEVICE, &n).await,
        Outcome::Rejected {
            reason: "auth",
            detail: "InvalidProviderToken".into()
        }
    );
    s.fake.assert_clean();
    assert_eq!(s.apple.calls.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn apns_renews_an_expired_provider_token_once() {
    let s = apns_setup().await;
    let n = note(42, false);
    s.apple
        .script
        .lock()
        .unwrap()
        .extend([ApnsReply::ExpiredProviderToken, ApnsReply::Ok]);
    assert_eq!(s.apns.send(DEVICE, &n).await, Outcome::Sent);
    assert_eq!(s.apple.calls.load(Ordering::SeqCst), 2);
    {
        let jwts = s.apple.jwts.lock().unwrap();
        assert_ne!(jwts[0], jwts[1], "the retry carried a new provider token");
    }
    // Expired again right after a renewal: Apple would refuse another
    // renewal this soon (and the clock is the likelier culprit).
    s.apple
        .script
        .lock()
        .unwrap()
        .push_back(ApnsReply::ExpiredProviderToken);
    assert_eq!(
        s.apns.send(DEVICE, &n).await,
        Outcome::Rejected {
            reason: "auth",
            detail: "ExpiredProviderToken".into()
        }
    );
    assert_eq!(s.apple.calls.load(Ordering::SeqCst), 3);
    s.fake.assert_clean();
}

#[tokio::test]
async fn apns_rejects_a_malformed_device_token_without_sending() {
    let s = apns_setup().await;
    let n = note(42, false);
    for bad in ["", "not-hex", &"zz".repeat(32), &format!("{DEVICE}/../x")] {
        assert_eq!(
            rejected(&s.apns.send(bad, &n).await),
            "bad_token",
            "{bad:?}"
        );
    }
    assert_eq!(s.apple.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn apns_setup_refuses_a_key_that_is_not_p256() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("AuthKey.p8");
    let sa: Value = serde_json::from_str(SERVICE_ACCOUNT).unwrap();
    std::fs::write(&key_file, sa["private_key"].as_str().unwrap()).unwrap();
    let cfg = ApnsConfig {
        key_file,
        key_id: KEY_ID.into(),
        team_id: TEAM.into(),
        topic: TOPIC.into(),
        endpoint: "https://api.sandbox.push.apple.com".into(),
    };
    let err = Apns::new(&cfg, client(None)).unwrap_err();
    assert!(err.to_string().contains("AuthKey.p8"), "{err}");
}

// ---- webhook ------------------------------------------------------------

const SECRET: &str = "test-webhook-secret-of-32-bytes!";

#[derive(Default)]
struct Relay {
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

async fn relay() -> (Arc<Relay>, Fake) {
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

fn webhook(url: Option<String>) -> Webhook {
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
