//! Fake provider servers over real TLS (HTTP/1.1 and HTTP/2), and the
//! checks the provider tests share.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use confab_push::http::HttpClient;
use confab_push::provider::{Notification, Outcome, Preview};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;

// ---- fake servers -------------------------------------------------------

/// What a fake answers: status, extra headers, body.
pub type Reply = (u16, Vec<(&'static str, String)>, String);

/// Checks one request; `Err` is a protocol violation, recorded and
/// answered with 599 so the test fails loudly.
pub type Handler = Arc<dyn Fn(&Parts, &Bytes) -> Result<Reply, String> + Send + Sync>;

pub enum Transport {
    Plain,
    /// TLS with ALPN `h2` and `http/1.1`, either served.
    Tls,
    /// TLS with ALPN `h2` only, HTTP/2 only (APNs).
    TlsH2,
}

pub struct Fake {
    pub addr: SocketAddr,
    pub ca_file: PathBuf,
    pub problems: Arc<Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
}

impl Fake {
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    pub fn assert_clean(&self) {
        let p = self.problems.lock().unwrap();
        assert!(p.is_empty(), "the fake provider saw bad requests: {p:#?}");
    }
}

pub fn tls_config(h2_only: bool, dir: &std::path::Path) -> (Arc<rustls::ServerConfig>, PathBuf) {
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

pub async fn serve(transport: Transport, handler: Handler) -> Fake {
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

pub fn client(ca_file: Option<&std::path::Path>) -> HttpClient {
    HttpClient::new(ca_file, Duration::from_secs(5)).unwrap()
}

pub fn header<'a>(parts: &'a Parts, name: &str) -> Result<&'a str, String> {
    parts
        .headers
        .get(name)
        .ok_or_else(|| format!("no {name} header"))?
        .to_str()
        .map_err(|e| format!("{name}: {e}"))
}

pub fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Whether any object in `v` has a key named `key`.
pub fn has_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(m) => m.contains_key(key) || m.values().any(|x| has_key(x, key)),
        Value::Array(a) => a.iter().any(|x| has_key(x, key)),
        _ => false,
    }
}

pub fn note(channel: u64, preview: bool) -> Notification {
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

pub fn retry(after: Option<u64>, reason: &'static str) -> Outcome {
    Outcome::Retry {
        after: after.map(Duration::from_secs),
        reason,
    }
}

pub fn rejected(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Rejected { reason, .. } => reason,
        other => panic!("expected Rejected, got {other:?}"),
    }
}
