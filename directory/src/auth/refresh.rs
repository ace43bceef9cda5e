//! Refresh tokens: 256 random bits, handed to the client once and stored
//! only as a SHA-256 digest, so a copy of the database cannot be used to
//! log in. (A fast hash is enough: the input has full entropy, unlike a
//! password.)

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Longer strings are not refresh tokens of ours (ours are 43 characters).
pub const MAX_REFRESH_TOKEN_LEN: usize = 256;

/// A new refresh token (base64url, 43 characters).
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The digest stored for a refresh token (lowercase hex SHA-256).
pub fn hash_refresh_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let a = new_refresh_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, new_refresh_token());
        assert_eq!(hash_refresh_token(&a), hash_refresh_token(&a));
        assert_eq!(
            hash_refresh_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
