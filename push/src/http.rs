//! The one HTTPS client every push provider sends through: rustls on ring
//! (no second crypto stack), the public web roots plus `push.ca_file`,
//! pooled keep-alive connections, and a per-request deadline so a stalled
//! provider costs a retry rather than a stuck worker slot. Answers come
//! back whole (status, headers, body), which is all the providers need to
//! map a send to an `Outcome`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, RETRY_AFTER};
use hyper::{Request, StatusCode};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::error::PushError;
use super::provider::Outcome;

/// Provider answers are a few hundred bytes; a webhook pointed at something
/// that streams more is cut off rather than buffered.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Idle pooled connections are closed after this long (providers close
/// them themselves after a few minutes anyway).
const POOL_IDLE: Duration = Duration::from_secs(90);

type Connector = HttpsConnector<HttpConnector>;

/// A pooled HTTP/1.1 + HTTP/2 client. Cloning shares the pools.
#[derive(Clone)]
pub struct HttpClient {
    /// HTTP/1.1 or HTTP/2, as ALPN decides; plain `http://` too.
    any: Client<Connector, Full<Bytes>>,
    /// HTTP/2 only (ALPN `h2`; prior knowledge over plain `http://`).
    h2: Client<Connector, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A provider's whole answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body (at most 64 KiB).
    pub body: Bytes,
}

impl Answer {
    /// The `Retry-After` delay, if the provider gave one in seconds.
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }

    /// The body as text for a log line (lossy, at most 512 bytes).
    pub fn body_text(&self) -> String {
        let end = self.body.len().min(512);
        String::from_utf8_lossy(&self.body[..end]).into_owned()
    }
}

/// A request that got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No answer within the per-request timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// No connection (DNS, refused, TLS handshake, certificate).
    #[error("connect: {0}")]
    Connect(String),
    /// The connection broke or the answer was not valid HTTP.
    #[error("{0}")]
    Http(String),
}

impl SendError {
    /// Metric label: `timeout`, `connect` or `http`.
    pub fn reason(&self) -> &'static str {
        match self {
            SendError::Timeout(_) => "timeout",
            SendError::Connect(_) => "connect",
            SendError::Http(_) => "http",
        }
    }

    /// All three are worth another try later.
    pub fn retry(&self) -> Outcome {
        Outcome::Retry {
            after: None,
            reason: self.reason(),
        }
    }
}

/// `error` and its sources, joined: hyper's own message is only the kind
/// ("client error (Connect)"); the cause is further down.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, PushError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| PushError::file(path, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PushError::file(path, e))?;
        if certs.is_empty() {
            return Err(PushError::file(path, "no CERTIFICATE block"));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| PushError::file(path, format!("unusable certificate: {e}")))?;
        }
    }
    Ok(roots)
}

impl HttpClient {
    /// A client trusting the public web roots and those in `ca_file`
    /// (PEM), giving up on a request after `timeout`.
    pub fn new(ca_file: Option<&Path>, timeout: Duration) -> Result<Self, PushError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PushError::Tls(e.to_string()))?
            .with_root_certificates(roots(ca_file)?)
            .with_no_client_auth();

        let mut tcp = HttpConnector::new();
        // The https connector checks the scheme itself; plain http stays
        // allowed for webhooks and relays on a private network.
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(timeout));
        tcp.set_keepalive(Some(POOL_IDLE));

        let any_connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp.clone());
        let any = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(any_connector);

        // APNs speaks HTTP/2 only: offer nothing else in ALPN, and never
        // fall back to HTTP/1.1 on a pooled connection.
        let h2_connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http2()
            .wrap_connector(tcp);
        let h2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            // A ping while requests are open finds a dead connection
            // sooner than the request timeout would.
            .http2_keep_alive_interval(Duration::from_secs(60))
            .http2_keep_alive_timeout(Duration::from_secs(20))
            .build(h2_connector);

        Ok(Self { any, h2, timeout })
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `req` over HTTP/1.1 or HTTP/2 (by ALPN) and reads the whole
    /// answer, all within the timeout.
    pub async fn send(&self, req: Request<Bytes>) -> Result<Answer, SendError> {
        self.exchange(&self.any, req).await
    }

    /// Sends `req` over HTTP/2 only (APNs).
    pub async fn send_h2(&self, req: Request<Bytes>) -> Result<Answer, SendError> {
        self.exchange(&self.h2, req).await
    }

    async fn exchange(
        &self,
        client: &Client<Connector, Full<Bytes>>,
        req: Request<Bytes>,
    ) -> Result<Answer, SendError> {
        let req = req.map(Full::new);
        let work = async {
            let response = client.request(req).await.map_err(|e| {
                if e.is_connect() {
                    SendError::Connect(chain(&e))
                } else {
                    SendError::Http(chain(&e))
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| SendError::Http(format!("reading the answer: {}", chain(&*e))))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(SendError::Timeout(self.timeout)))
    }
}

/// `Retry-After` as delta-seconds. The HTTP-date form is treated as absent
/// (the caller's own backoff applies); no push provider documents it.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// Metric label for an unexpected status: `status_503`, …; codes without
/// their own label fall into `status_4xx`/`status_5xx`/`status_other`.
pub fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "status_400",
        401 => "status_401",
        403 => "status_403",
        404 => "status_404",
        405 => "status_405",
        408 => "status_408",
        409 => "status_409",
        410 => "status_410",
        413 => "status_413",
        429 => "status_429",
        500 => "status_500",
        502 => "status_502",
        503 => "status_503",
        504 => "status_504",
        other => match other / 100 {
            4 => "status_4xx",
            5 => "status_5xx",
            _ => "status_other",
        },
    }
}

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn retry_after_takes_seconds_and_ignores_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static(" 120 "));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("-5"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn status_labels() {
        assert_eq!(status_label(StatusCode::SERVICE_UNAVAILABLE), "status_503");
        assert_eq!(status_label(StatusCode::IM_A_TEAPOT), "status_4xx");
        assert_eq!(
            status_label(StatusCode::from_u16(599).unwrap()),
            "status_5xx"
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "nothing here").unwrap();
        let err = HttpClient::new(Some(&path), Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
        let missing = dir.path().join("missing.pem");
        assert!(HttpClient::new(Some(&missing), Duration::from_secs(1)).is_err());
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        // Bind then drop: the port is (almost certainly) closed now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = HttpClient::new(None, Duration::from_secs(5)).unwrap();
        let req = Request::post(format!("http://127.0.0.1:{port}/"))
            .body(Bytes::new())
            .unwrap();
        let err = client.send(req).await.unwrap_err();
        assert_eq!(err.reason(), "connect", "{err}");
    }
}
