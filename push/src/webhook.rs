//! The webhook provider: a signed JSON POST to a self-hosted relay, for
//! deployments that deliver through their own channel (UnifiedPush, an
//! in-house gateway) instead of Google's or Apple's. The signature lets the
//! relay reject anything that did not come from this node, and its
//! timestamp bounds how long a captured request can be replayed.
//!
//! Header: `X-Confab-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`,
//! where the HMAC key is `push.webhook.secret` and the message is
//! `"<t>.<body bytes>"`. Relays verify with [`verify_signature`] (or its
//! equivalent in their language).

use bytes::Bytes;
use hmac::{Hmac, Mac};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, StatusCode, Uri};
use serde_json::json;
use sha2::Sha256;

use super::config::WebhookConfig;
use super::http::{status_label, unix_now, HttpClient};
use super::provider::{Notification, Outcome, Provider, SendFuture};
use confab_directory::store::Platform;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-confab-signature";

type HmacSha256 = Hmac<Sha256>;

/// Sends notifications to a relay.
#[derive(Debug, Clone)]
pub struct Webhook {
    secret: Vec<u8>,
    url: Option<String>,
    http: HttpClient,
}

impl Webhook {
    /// A webhook provider for `cfg` (already validated: the secret's
    /// length, the URL's scheme).
    pub fn new(cfg: &WebhookConfig, http: HttpClient) -> Webhook {
        Webhook {
            secret: cfg.secret.as_bytes().to_vec(),
            url: cfg.url.clone(),
            http,
        }
    }

    /// The JSON body for `n` sent to the device with `token`.
    pub fn body(token: &str, n: &Notification) -> Vec<u8> {
        let mut body = json!({
            "type": "message",
            "user": n.user,
            "channel": n.channel,
            "seq": n.seq,
            "count": n.count,
            "sender": n.sender,
            "ts": n.timestamp_ms,
            "collapse_id": n.collapse_id,
            "token": token,
        });
        if let Some(p) = &n.preview {
            body["preview"] = json!({"title": p.title, "body": p.body});
        }
        body.to_string().into_bytes()
    }

    async fn deliver(&self, token: &str, n: &Notification) -> Outcome {
        // The configured relay, or else the token is the device's own URL.
        let target = self.url.as_deref().unwrap_or(token);
        let uri = match target.parse::<Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() =>
            {
                uri
            }
            _ => {
                return Outcome::Rejected {
                    reason: "bad_token",
                    detail: "the webhook target is not an http(s) URL".into(),
                }
            }
        };
        let body = Self::body(token, n);
        let signature = sign(&self.secret, unix_now(), &body);
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(Bytes::from(body));
        let req = match req {
            Ok(req) => req,
            Err(e) => {
                return Outcome::Rejected {
                    reason: "bad_request",
                    detail: e.to_string(),
                }
            }
        };
        let answer = match self.http.send(req).await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "webhook send failed");
                return e.retry();
            }
        };
        let status = answer.status;
        match status {
            s if s.is_success() => Outcome::Sent,
            StatusCode::NOT_FOUND | StatusCode::GONE => Outcome::Unregistered,
            StatusCode::TOO_MANY_REQUESTS => Outcome::Retry {
                after: answer.retry_after(),
                reason: "rate_limited",
            },
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => Outcome::Retry {
                after: answer.retry_after(),
                reason: status_label(s),
            },
            s => Outcome::Rejected {
                reason: status_label(s),
                detail: answer.body_text(),
            },
        }
    }
}

impl Provider for Webhook {
    fn platform(&self) -> Platform {
        Platform::Webhook
    }

    fn name(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(&'a self, token: &'a str, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(self.deliver(token, n))
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let pairs = text.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    // from_str_radix alone would also take a sign ("+f").
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    pairs
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

fn mac(secret: &[u8], t: u64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Confab-Signature` value for `body` sent at unix second `t`.
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let tag = mac(secret, t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex(&tag))
}

/// Why a relay should refuse a webhook request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<digits>,v1=<64 hex digits>`.
    #[error("malformed signature header")]
    Malformed,
    /// `t` is further from now than the tolerance (a replay, or a clock
    /// far off).
    #[error("signature timestamp outside the tolerance")]
    Stale,
    /// No `v1` matches the body under this secret.
    #[error("signature mismatch")]
    Mismatch,
}

/// Checks an `X-Confab-Signature` header against `body`: well-formed, `t`
/// within `tolerance_secs` of `now_unix`, and an HMAC that matches
/// (compared in constant time). Several `v1=` entries are allowed, any
/// one matching (a relay rotating secrets accepts both).
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_unix: u64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" if t.is_none()
                && !value.is_empty()
                && value.bytes().all(|b| b.is_ascii_digit()) =>
            {
                t = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| SignatureError::Malformed)?,
                );
            }
            "v1" => tags.push(unhex(value).ok_or(SignatureError::Malformed)?),
            // Unknown schemes are skipped, so a later `v2` can be added
            // beside `v1` without breaking relays.
            "t" => return Err(SignatureError::Malformed),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if tags.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now_unix.abs_diff(t) > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, t, body);
    if tags
        .iter()
        .any(|tag| expected.clone().verify_slice(tag).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signature_verifies_and_matches_a_known_vector() {
        let body = br#"{"type":"message"}"#;
        let header = sign(SECRET, 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
        assert_eq!(
            verify_signature(SECRET, &header, body, 1_700_000_010, 300),
            Ok(())
        );
        // RFC 4231 test case 2, to pin the construction to plain
        // HMAC-SHA256 that any language's library reproduces.
        let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tampering_a_wrong_secret_and_stale_times_are_refused() {
        let body = br#"{"type":"message","count":1}"#;
        let header = sign(SECRET, 1_000, body);
        let tampered = br#"{"type":"message","count":2}"#;
        assert_eq!(
            verify_signature(SECRET, &header, tampered, 1_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(
                b"another secret of 32 bytes......",
                &header,
                body,
                1_000,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(SECRET, &header, body, 1_301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature(SECRET, &header, body, 699, 300),
            Err(SignatureError::Stale)
        );
        // Moving the timestamp (to dodge staleness) breaks the HMAC.
        let moved = header.replace("t=1000", "t=1300");
        assert_eq!(
            verify_signature(SECRET, &moved, body, 1_300, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let body = b"{}";
        let good = sign(SECRET, 5, body);
        let v1 = good.split_once(",v1=").unwrap().1;
        for bad in [
            "",
            "t=5",
            &format!("v1={v1}"),
            &format!("t=x,v1={v1}"),
            &format!("t=5,v1={}", &v1[1..]),
            &format!("t=5,v1=zz{}", &v1[2..]),
            &format!("t=5,v1=+f{}", &v1[2..]),
            &format!("t=5,t=6,v1={v1}"),
            "garbage",
        ] {
            assert_eq!(
                verify_signature(SECRET, bad, body, 5, 300),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
        // Another scheme beside v1, and a second (rotated) v1, are fine.
        let two = format!("t=5,v2=abc,v1={},v1={v1}", "00".repeat(32));
        assert_eq!(verify_signature(SECRET, &two, body, 5, 300), Ok(()));
    }
}
