//! Password hashing with argon2id.
//!
//! Hashing is deliberately slow and memory-hard, so it runs on tokio's
//! blocking pool, and at most a few hashes run at once: a burst of logins
//! queues instead of allocating `memory × requests` and starving the node.
//! The queue is bounded too: beyond it a request is refused at once
//! ([`PasswordError::Busy`]) instead of waiting behind a flood it cannot
//! outlast.
//!
//! A login for an unknown username verifies the password against a dummy
//! hash made with the same parameters, so it costs the same argon2 work as
//! one with a wrong password: the response time does not tell whether the
//! account exists.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// argon2id cost parameters; stored inside each hash, so changing them
/// affects new hashes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory per hash in KiB (OWASP: 19456 = 19 MiB with 2 iterations).
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
}

impl Default for PasswordParams {
    fn default() -> Self {
        PasswordParams {
            memory_kib: 19 * 1024,
            iterations: 2,
        }
    }
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The parameters are outside argon2's limits.
    #[error("argon2: {0}")]
    Params(argon2::Error),
    /// Hashing failed.
    #[error("argon2: {0}")]
    Hash(argon2::password_hash::Error),
    /// The blocking task was cancelled (runtime shutting down).
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Every hashing slot is taken and the queue behind them is full.
    #[error("too many password checks in progress")]
    Busy,
}

/// Requests allowed to wait for a hashing slot, per slot.
const QUEUED_PER_SLOT: usize = 8;

/// Hashes and verifies passwords; shared by the API's handlers.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    argon2: Argon2<'static>,
    dummy_hash: String,
    /// Held by a hash from before it is queued until its blocking job ends
    /// (not until its caller stops waiting: a cancelled request's hash
    /// still runs, and still counts).
    permits: Arc<Semaphore>,
    /// Requests holding or waiting for a permit.
    admitted: AtomicUsize,
    /// Most requests holding or waiting for a permit.
    max_admitted: usize,
    verifications: AtomicU64,
}

/// A request's place among those holding or waiting for a hashing slot.
struct Admitted(Arc<Inner>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A place in the queue and then a slot, both released when the blocking
/// job that holds them ends.
struct Slot {
    _admitted: Admitted,
    _permit: OwnedSemaphorePermit,
}

impl Passwords {
    async fn slot(&self) -> Result<Slot, PasswordError> {
        let before = self.inner.admitted.fetch_add(1, Ordering::AcqRel);
        let admitted = Admitted(self.inner.clone());
        if before >= self.inner.max_admitted {
            return Err(PasswordError::Busy);
        }
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        Ok(Slot {
            _admitted: admitted,
            _permit: permit,
        })
    }
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("params", self.inner.argon2.params())
            .finish()
    }
}

fn salt() -> SaltString {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    SaltString::encode_b64(&bytes).expect("16 bytes is a valid salt length")
}

impl Passwords {
    /// A hasher with these parameters (and a dummy hash made with them).
    pub fn new(params: PasswordParams) -> Result<Self, PasswordError> {
        let p = Params::new(params.memory_kib, params.iterations, 1, None)
            .map_err(PasswordError::Params)?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, p);
        let mut unguessable = [0u8; 32];
        rand::rng().fill_bytes(&mut unguessable);
        let dummy_hash = argon2
            .hash_password(&unguessable, &salt())
            .map_err(PasswordError::Hash)?
            .to_string();
        let parallel = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2);
        Ok(Passwords {
            inner: Arc::new(Inner {
                argon2,
                dummy_hash,
                permits: Arc::new(Semaphore::new(parallel)),
                admitted: AtomicUsize::new(0),
                max_admitted: parallel * (1 + QUEUED_PER_SLOT),
                verifications: AtomicU64::new(0),
            }),
        })
    }

    /// The argon2id hash of `password` in PHC string format.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let slot = self.slot().await?;
        let argon2 = self.inner.argon2.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            argon2
                .hash_password(password.as_bytes(), &salt())
                .map(|h| h.to_string())
                .map_err(PasswordError::Hash)
        })
        .await?
    }

    /// Whether `password` matches `stored`. With `stored = None` (no such
    /// user) the password is checked against the dummy hash, which costs the
    /// same and always fails. `Busy` when the queue is full (known and
    /// unknown users alike, so it tells nothing about the account).
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        let slot = self.slot().await?;
        let argon2 = self.inner.argon2.clone();
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.inner.dummy_hash.clone());
        let dummy = self.inner.dummy_hash.clone();
        self.inner.verifications.fetch_add(1, Ordering::Relaxed);
        let matched = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let parsed = match PasswordHash::new(&hash) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("stored password hash is unreadable: {e}");
                    // Same cost as a readable one, then refuse.
                    let dummy = PasswordHash::new(&dummy).expect("dummy hash parses");
                    let _ = argon2.verify_password(password.as_bytes(), &dummy);
                    return false;
                }
            };
            argon2.verify_password(password.as_bytes(), &parsed).is_ok()
        })
        .await
        .unwrap_or(false);
        Ok(matched && known)
    }

    /// How many argon2 verifications ran (dummy ones included): lets tests
    /// check that a login for an unknown user still does the work.
    pub fn verifications(&self) -> u64 {
        self.inner.verifications.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        Passwords::new(PasswordParams {
            memory_kib: 64,
            iterations: 1,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn hashes_are_argon2id_salted_and_verify() {
        let p = cheap();
        let a = p.hash("correct horse".into()).await.unwrap();
        let b = p.hash("correct horse".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt per hash");
        assert!(p
            .verify("correct horse".into(), Some(a.clone()))
            .await
            .unwrap());
        assert!(!p.verify("wrong horse".into(), Some(a)).await.unwrap());
    }

    #[tokio::test]
    async fn unknown_users_and_corrupt_hashes_cost_a_verification_and_fail() {
        let p = cheap();
        let before = p.verifications();
        assert!(!p.verify("anything".into(), None).await.unwrap());
        assert!(!p
            .verify("anything".into(), Some("not a phc string".into()))
            .await
            .unwrap());
        assert_eq!(p.verifications(), before + 2);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_frees_as_work_finishes() {
        // Costly enough that the first requests are still running while
        // the rest arrive.
        let p = Passwords::new(PasswordParams {
            memory_kib: 8 * 1024,
            iterations: 4,
        })
        .unwrap();
        let limit = p.inner.max_admitted;
        let tasks: Vec<_> = (0..limit + 20)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move { p.hash("pw".into()).await })
            })
            .collect();
        let mut busy = 0;
        let mut hashed = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => hashed += 1,
                Err(PasswordError::Busy) => busy += 1,
                Err(e) => panic!("{e}"),
            }
        }
        // All arrive while the first hashes run: the queue's worth is
        // served, the rest refused.
        assert!(busy >= 20, "{busy} refused of {}", limit + 20);
        assert_eq!(busy + hashed, limit + 20);
        // Nothing is left admitted, and the next request runs.
        assert_eq!(p.inner.admitted.load(Ordering::Acquire), 0);
        assert!(p.verify("pw".into(), None).await.is_ok());
    }

    #[test]
    fn parameters_outside_argon2_limits_are_refused() {
        assert!(Passwords::new(PasswordParams {
            memory_kib: 1,
            iterations: 1
        })
        .is_err());
        assert!(Passwords::new(PasswordParams {
            memory_kib: 64,
            iterations: 0
        })
        .is_err());
    }
}
