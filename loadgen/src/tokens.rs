//! Keeps every virtual user's access token fresh, as an app does.
//!
//! Access tokens live `api.access_token_ttl_secs` (15 minutes by default).
//! A connected device is not cut off when its token expires, but its next
//! `Hello` is refused, so a run longer than the lifetime with any churn
//! (or a fresh device at the end) would fail on our own stale tokens. Each
//! user's token is refreshed through `POST /v1/token/refresh` at about
//! half of its lifetime and handed to the user's devices for their next
//! connection. Half, not later: a token is handed out until the next
//! refresh, and a device may take a while to reach the server with it
//! (a backoff, a busy server), so what is left of it must cover that.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confab_client::Client;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::api::{Account, Api};

/// One user's current tokens and the devices that use them.
struct UserTokens {
    access: String,
    refresh: String,
    clients: Vec<Client>,
}

/// Every user's tokens.
pub struct Tokens {
    users: Vec<Mutex<UserTokens>>,
    /// Refreshes that succeeded.
    pub refreshes: AtomicU64,
    /// Refreshes the API refused or failed (each one is a run error).
    pub failures: AtomicU64,
}

impl Tokens {
    /// The tokens the accounts were signed up with.
    pub fn new(accounts: &[Account]) -> Arc<Tokens> {
        Arc::new(Tokens {
            users: accounts
                .iter()
                .map(|a| {
                    Mutex::new(UserTokens {
                        access: a.token.clone(),
                        refresh: a.refresh_token.clone(),
                        clients: Vec::new(),
                    })
                })
                .collect(),
            refreshes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// User `u`'s current access token.
    pub fn access(&self, u: usize) -> String {
        self.users[u].lock().unwrap().access.clone()
    }

    /// Registers a device of user `u`: it gets every later token.
    pub fn add_client(&self, u: usize, client: Client) {
        self.users[u].lock().unwrap().clients.push(client);
    }

    /// Drops the registered devices (so the clients can close).
    pub fn clear_clients(&self) {
        for u in &self.users {
            u.lock().unwrap().clients.clear();
        }
    }

    /// Refreshes each user's token at 40–60 % of its lifetime (spread so
    /// that users signed up together do not all refresh at once), for
    /// ever; abort the task to stop it. `lifetimes[u]` is user `u`'s first
    /// token's lifetime, counted from `issued`.
    pub async fn keep_fresh(
        self: Arc<Self>,
        api: Api,
        lifetimes: Vec<Duration>,
        issued: Instant,
        seed: u64,
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut due: BinaryHeap<Reverse<(Instant, usize)>> = lifetimes
            .iter()
            .enumerate()
            .map(|(u, life)| Reverse((issued + early(&mut rng, *life), u)))
            .collect();
        while let Some(Reverse((at, u))) = due.pop() {
            tokio::time::sleep_until(at).await;
            let refresh = self.users[u].lock().unwrap().refresh.clone();
            match api.refresh(&refresh).await {
                Ok(new) => {
                    let next = Instant::now() + early(&mut rng, new.expires_in);
                    let mut user = self.users[u].lock().unwrap();
                    for c in &user.clients {
                        // Only fails for a closed client, which needs none.
                        let _ = c.set_token(new.token.clone());
                    }
                    user.access = new.token;
                    user.refresh = new.refresh_token;
                    drop(user);
                    self.refreshes.fetch_add(1, Ordering::Relaxed);
                    due.push(Reverse((next, u)));
                }
                Err(e) => {
                    tracing::warn!(user = u, error = %e, "token refresh failed");
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    // A refresh token is single-use: if the answer was lost
                    // the session is gone, and trying again cannot help.
                    // The user's next reconnect is then refused, and the
                    // run reports it.
                }
            }
        }
    }
}

/// When to refresh a token of lifetime `life`: at 40 to 60 % of it.
fn early(rng: &mut StdRng, life: Duration) -> Duration {
    life.mul_f64(rng.random_range(0.4..0.6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_fall_between_40_and_60_percent_of_the_lifetime() {
        let mut rng = StdRng::seed_from_u64(7);
        let life = Duration::from_secs(900);
        let mut seen = Vec::new();
        for _ in 0..1000 {
            let d = early(&mut rng, life);
            assert!(
                d >= Duration::from_secs(360) && d < Duration::from_secs(540),
                "{d:?}"
            );
            seen.push(d);
        }
        seen.sort();
        assert!(seen[999] - seen[0] > Duration::from_secs(150), "spread out");
    }
}
