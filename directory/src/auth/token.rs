//! Access tokens: HS256 JWTs, issued by the API and verified by the API and
//! the gateway's cores.
//!
//! Only tokens we issued are ever accepted, so the header is not parsed: it
//! must be byte for byte the one we write (`{"alg":"HS256","typ":"JWT"}`).
//! That rules out algorithm confusion (`alg: none`, a public key used as an
//! HMAC key) by construction.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::AuthError;

type HmacSha256 = Hmac<Sha256>;

/// `base64url({"alg":"HS256","typ":"JWT"})`, the only header we write or
/// accept.
const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// Longer tokens are refused before any work (ours are about 200 bytes).
pub const MAX_TOKEN_LEN: usize = 1024;

/// What a valid access token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    /// The user (`sub`).
    pub user_id: u64,
    /// The login session (`jti`); revoking it invalidates the token.
    pub session_id: u64,
    /// Issue time, Unix seconds (`iat`).
    pub issued_at: u64,
    /// Expiry, Unix seconds (`exp`); the token is refused from this second.
    pub expires_at: u64,
}

/// The JSON payload. `sub` and `jti` are strings, as RFC 7519 has them.
#[derive(Serialize, Deserialize)]
struct Payload {
    sub: String,
    jti: String,
    iat: u64,
    exp: u64,
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    HmacSha256::new_from_slice(key).expect("HMAC takes any key length")
}

/// Issues access tokens; held by the API only.
#[derive(Clone)]
pub struct TokenSigner {
    mac: HmacSha256,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

impl TokenSigner {
    /// A signer with this HMAC key.
    pub fn new(key: &[u8]) -> Self {
        TokenSigner { mac: mac(key) }
    }

    /// A token for `user_id`'s session `session_id`, issued at `now` and
    /// valid for `ttl_secs`.
    pub fn issue(&self, user_id: u64, session_id: u64, now: u64, ttl_secs: u64) -> String {
        let payload = Payload {
            sub: user_id.to_string(),
            jti: session_id.to_string(),
            iat: now,
            exp: now.saturating_add(ttl_secs),
        };
        let json = serde_json::to_vec(&payload).expect("claims serialise");
        let mut token = String::with_capacity(256);
        token.push_str(HEADER);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(json, &mut token);
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        let signature = mac.finalize().into_bytes();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        token
    }
}

/// Verifies access tokens locally: signature, expiry and an in-memory
/// revocation set, with no database round trip. Cheap to clone (one `Arc`);
/// every clone shares the same revocation set, so a revocation made through
/// one (by the API, on logout) is seen by all at once.
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    mac: HmacSha256,
    /// Revoked session → the Unix second after which the entry can be
    /// forgotten (no token of the session can be unexpired by then).
    revoked: RwLock<HashMap<u64, u64>>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("revoked", &self.revoked_count())
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for tokens signed with this HMAC key.
    pub fn new(key: &[u8]) -> Self {
        TokenVerifier {
            inner: Arc::new(VerifierInner {
                mac: mac(key),
                revoked: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Checks a token at `now_unix_secs`: our header, a valid signature, not
    /// expired, session not revoked.
    pub fn verify(&self, token: &str, now_unix_secs: u64) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        if header != HEADER {
            return Err(AuthError::Malformed);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| AuthError::Malformed)?;
        let mut mac = self.inner.mac.clone();
        mac.update(&token.as_bytes()[..header.len() + 1 + payload.len()]);
        // Constant-time comparison.
        mac.verify_slice(&signature)
            .map_err(|_| AuthError::BadSignature)?;
        // Signed by us, so well-formed unless the key leaked; checked anyway.
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| AuthError::Malformed)?;
        let p: Payload = serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)?;
        let claims = Claims {
            user_id: p.sub.parse().map_err(|_| AuthError::Malformed)?,
            session_id: p.jti.parse().map_err(|_| AuthError::Malformed)?,
            issued_at: p.iat,
            expires_at: p.exp,
        };
        if now_unix_secs >= claims.expires_at {
            return Err(AuthError::Expired);
        }
        if self.is_revoked(claims.session_id) {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }

    /// Refuses the session's tokens from now on. `forget_after` is a Unix
    /// second after which every token of the session has expired anyway
    /// (revocation time + access token lifetime), so the entry can go.
    pub fn revoke(&self, session_id: u64, forget_after: u64) {
        let mut set = self
            .inner
            .revoked
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let entry = set.entry(session_id).or_insert(forget_after);
        *entry = (*entry).max(forget_after);
    }

    /// Whether the session is in the revocation set.
    pub fn is_revoked(&self, session_id: u64) -> bool {
        let set = self.inner.revoked.read().unwrap_or_else(|e| e.into_inner());
        set.contains_key(&session_id)
    }

    /// Forgets revocations whose tokens have all expired by `now`.
    pub fn prune(&self, now: u64) {
        let mut set = self
            .inner
            .revoked
            .write()
            .unwrap_or_else(|e| e.into_inner());
        set.retain(|_, forget_after| *forget_after > now);
    }

    /// How many sessions are in the revocation set.
    pub fn revoked_count(&self) -> usize {
        self.inner
            .revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_fresh_token_verifies_to_its_claims() {
        let token = TokenSigner::new(KEY).issue(42, 7, 1_000, 900);
        let claims = TokenVerifier::new(KEY).verify(&token, 1_000).unwrap();
        assert_eq!(
            claims,
            Claims {
                user_id: 42,
                session_id: 7,
                issued_at: 1_000,
                expires_at: 1_900
            }
        );
        assert!(token.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."));
    }

    #[test]
    fn expiry_is_exclusive() {
        let token = TokenSigner::new(KEY).issue(1, 1, 1_000, 10);
        let v = TokenVerifier::new(KEY);
        assert!(v.verify(&token, 1_009).is_ok());
        assert_eq!(v.verify(&token, 1_010), Err(AuthError::Expired));
    }

    #[test]
    fn another_key_or_a_changed_payload_fails_the_signature() {
        let token = TokenSigner::new(KEY).issue(1, 1, 1_000, 10);
        let other = TokenVerifier::new(b"another key, also 32 bytes long!");
        assert_eq!(other.verify(&token, 1_000), Err(AuthError::BadSignature));
        // Re-encode the payload with another user id, keep the signature.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload =
            URL_SAFE_NO_PAD.encode(br#"{"sub":"2","jti":"1","iat":1000,"exp":1010}"#);
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            TokenVerifier::new(KEY).verify(&forged, 1_000),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn foreign_headers_and_shapes_are_malformed() {
        let v = TokenVerifier::new(KEY);
        let token = TokenSigner::new(KEY).issue(1, 1, 1_000, 10);
        let parts: Vec<&str> = token.split('.').collect();
        let none_alg = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        for bad in [
            String::new(),
            "abc".into(),
            format!("{}.{}", parts[0], parts[1]),
            format!("{}.{}.", none_alg, parts[1]),
            format!("{}.{}.{}", none_alg, parts[1], parts[2]),
            format!("{token}.extra"),
            format!("{}.{}.!!!", parts[0], parts[1]),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(v.verify(&bad, 1_000), Err(AuthError::Malformed), "{bad}");
        }
    }

    #[test]
    fn revocation_is_shared_by_clones_and_pruned_after_expiry() {
        let signer = TokenSigner::new(KEY);
        let v = TokenVerifier::new(KEY);
        let gateway_copy = v.clone();
        let token = signer.issue(1, 5, 1_000, 60);
        let other_session = signer.issue(1, 6, 1_000, 60);
        v.revoke(5, 1_060);
        assert_eq!(gateway_copy.verify(&token, 1_001), Err(AuthError::Revoked));
        assert!(gateway_copy.verify(&other_session, 1_001).is_ok());
        v.prune(1_059);
        assert_eq!(v.revoked_count(), 1);
        v.prune(1_060);
        assert_eq!(v.revoked_count(), 0);
        // By then the token is expired anyway.
        assert_eq!(v.verify(&token, 1_060), Err(AuthError::Expired));
    }
}
