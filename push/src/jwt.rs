//! Compact JWS (JWT) signing for the two providers that authenticate with a
//! self-signed token: FCM's OAuth2 JWT-bearer grant (RS256, the service
//! account's RSA key) and APNs provider tokens (ES256, the `.p8` P-256
//! key). Only what those two need, on `ring` (already in the tree through
//! rustls), rather than a general JWT crate; `verify` exists for the tests'
//! fake provider servers and for relays written in Rust.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde::Serialize;
use serde_json::Value;

use super::error::PushError;

/// The two JWS algorithms the providers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (FCM's service account).
    Rs256,
    /// ECDSA P-256 with SHA-256, signature as raw `r || s` (APNs).
    Es256,
}

impl Algorithm {
    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
        }
    }
}

enum Key {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A private key that signs JWTs.
pub struct SigningKey {
    key: Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("SigningKey")
            .field("alg", &self.algorithm().name())
            .finish_non_exhaustive()
    }
}

/// The DER of the first `-----BEGIN PRIVATE KEY-----` (PKCS#8) block.
pub fn pkcs8_from_pem(pem: &[u8]) -> Result<Vec<u8>, PushError> {
    PrivatePkcs8KeyDer::from_pem_slice(pem)
        .map(|der| der.secret_pkcs8_der().to_vec())
        .map_err(|e| {
            PushError::Key(format!(
                "expected a PKCS#8 \"-----BEGIN PRIVATE KEY-----\" PEM block ({e})"
            ))
        })
}

impl SigningKey {
    /// An RSA key (PKCS#8 PEM, 2048 to 4096 bits) for RS256.
    pub fn rs256_from_pem(pem: &[u8]) -> Result<Self, PushError> {
        let der = pkcs8_from_pem(pem)?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| PushError::Key(format!("not a usable RSA key: {e}")))?;
        Ok(Self {
            key: Key::Rsa(key),
            rng: SystemRandom::new(),
        })
    }

    /// A P-256 key (PKCS#8 PEM, as Apple's `.p8` files are) for ES256.
    pub fn es256_from_pem(pem: &[u8]) -> Result<Self, PushError> {
        let der = pkcs8_from_pem(pem)?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|e| PushError::Key(format!("not a usable P-256 key: {e}")))?;
        Ok(Self {
            key: Key::Ec(key),
            rng,
        })
    }

    /// Which algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match self.key {
            Key::Rsa(_) => Algorithm::Rs256,
            Key::Ec(_) => Algorithm::Es256,
        }
    }

    /// The public half, in the form [`verify`] takes: a DER `RSAPublicKey`
    /// for RS256, an uncompressed SEC1 point for ES256.
    pub fn public_key(&self) -> &[u8] {
        match &self.key {
            Key::Rsa(k) => k.public().as_ref(),
            Key::Ec(k) => k.public_key().as_ref(),
        }
    }

    /// A compact JWS of `claims` with header `{"alg", "kid", "typ"?}`.
    pub fn sign<C: Serialize>(
        &self,
        kid: &str,
        typ: Option<&str>,
        claims: &C,
    ) -> Result<String, PushError> {
        let mut header = serde_json::Map::new();
        header.insert("alg".into(), self.algorithm().name().into());
        if let Some(typ) = typ {
            header.insert("typ".into(), typ.into());
        }
        header.insert("kid".into(), kid.into());
        let header = serde_json::to_vec(&header).map_err(|e| PushError::Sign(e.to_string()))?;
        let claims = serde_json::to_vec(claims).map_err(|e| PushError::Sign(e.to_string()))?;
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let signature = match &self.key {
            Key::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &self.rng,
                    token.as_bytes(),
                    &mut sig,
                )
                .map_err(|_| PushError::Sign("RSA signing failed".into()))?;
                sig
            }
            Key::Ec(k) => k
                .sign(&self.rng, token.as_bytes())
                .map_err(|_| PushError::Sign("ECDSA signing failed".into()))?
                .as_ref()
                .to_vec(),
        };
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }
}

/// Why [`verify`] refused a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not three base64url parts with JSON objects in the first two.
    #[error("malformed token")]
    Malformed,
    /// The header's `alg` is not the expected one.
    #[error("unexpected alg")]
    Algorithm,
    /// The signature does not match.
    #[error("bad signature")]
    Signature,
}

/// Checks a compact JWS against `public_key` (as [`SigningKey::public_key`]
/// gives it) and returns its header and claims. Checks no claim: that is
/// the caller's business (expiry, audience).
pub fn verify(
    token: &str,
    alg: Algorithm,
    public_key: &[u8],
) -> Result<(Value, Value), VerifyError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed);
    };
    let json = |part: &str| -> Result<Value, VerifyError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| VerifyError::Malformed)?;
        match serde_json::from_slice(&bytes) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(VerifyError::Malformed),
        }
    };
    let header = json(h)?;
    let claims = json(c)?;
    if header["alg"] != alg.name() {
        return Err(VerifyError::Algorithm);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| VerifyError::Malformed)?;
    let algorithm: &'static dyn signature::VerificationAlgorithm = match alg {
        Algorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
    };
    let signed = &token[..h.len() + 1 + c.len()];
    signature::UnparsedPublicKey::new(algorithm, public_key)
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| VerifyError::Signature)?;
    Ok((header, claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p256_pem() -> String {
        rcgen::KeyPair::generate().unwrap().serialize_pem()
    }

    fn rsa_pem() -> String {
        // The FCM test fixture: a throwaway key generated for the tests.
        let sa = include_str!("../tests/fixtures/fcm-test-service-account.json");
        let sa: Value = serde_json::from_str(sa).unwrap();
        sa["private_key"].as_str().unwrap().to_owned()
    }

    #[test]
    fn es256_signs_raw_r_s_that_ring_verifies() {
        let key = SigningKey::es256_from_pem(p256_pem().as_bytes()).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Es256);
        let claims = json!({"iss": "TEAM123456", "iat": 1_700_000_000});
        let token = key.sign("KEY1234567", None, &claims).unwrap();
        let sig = URL_SAFE_NO_PAD
            .decode(token.rsplit('.').next().unwrap())
            .unwrap();
        assert_eq!(sig.len(), 64, "JWS wants r || s, not DER");
        let (header, got) = verify(&token, Algorithm::Es256, key.public_key()).unwrap();
        assert_eq!(header, json!({"alg": "ES256", "kid": "KEY1234567"}));
        assert_eq!(got, claims);
    }

    #[test]
    fn rs256_round_trips_header_and_claims() {
        let key = SigningKey::rs256_from_pem(rsa_pem().as_bytes()).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Rs256);
        let claims = json!({"iss": "a@b", "scope": "s", "aud": "u", "iat": 1, "exp": 3601});
        let token = key.sign("kid1", Some("JWT"), &claims).unwrap();
        let (header, got) = verify(&token, Algorithm::Rs256, key.public_key()).unwrap();
        assert_eq!(header, json!({"alg": "RS256", "typ": "JWT", "kid": "kid1"}));
        assert_eq!(got, claims);
    }

    #[test]
    fn tampering_and_the_wrong_key_or_alg_are_refused() {
        let key = SigningKey::es256_from_pem(p256_pem().as_bytes()).unwrap();
        let other = SigningKey::es256_from_pem(p256_pem().as_bytes()).unwrap();
        let token = key.sign("k", None, &json!({"iss": "t"})).unwrap();
        assert_eq!(
            verify(&token, Algorithm::Es256, other.public_key()),
            Err(VerifyError::Signature)
        );
        assert_eq!(
            verify(&token, Algorithm::Rs256, key.public_key()),
            Err(VerifyError::Algorithm)
        );
        let forged = format!(
            "{}.{}.{}",
            token.split('.').next().unwrap(),
            URL_SAFE_NO_PAD.encode(br#"{"iss":"evil"}"#),
            token.rsplit('.').next().unwrap()
        );
        assert_eq!(
            verify(&forged, Algorithm::Es256, key.public_key()),
            Err(VerifyError::Signature)
        );
        assert_eq!(
            verify("a.b", Algorithm::Es256, key.public_key()),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn keys_of_the_wrong_kind_or_format_are_clear_errors() {
        let rsa = rsa_pem();
        let ec = p256_pem();
        assert!(SigningKey::es256_from_pem(rsa.as_bytes()).is_err());
        assert!(SigningKey::rs256_from_pem(ec.as_bytes()).is_err());
        let err = SigningKey::es256_from_pem(b"not pem").unwrap_err();
        assert!(err.to_string().contains("BEGIN PRIVATE KEY"), "{err}");
    }
}
