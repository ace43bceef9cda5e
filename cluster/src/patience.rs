//! Waiting out a JetStream leader election at start.
//!
//! While its servers elect a leader (one of three just lost), JetStream
//! answers nothing, or refuses; a node starting then should wait for it
//! rather than fail. Joining the membership bucket and opening the log's
//! stream both do.

use std::future::Future;
use std::time::{Duration, Instant};

use tracing::warn;

/// How long a starting node waits for JetStream to answer.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `attempt` until it succeeds, fails in a way `retryable` does not
/// accept, or [`PATIENCE`] has passed; waits 200 ms, doubling up to 2 s,
/// between attempts.
pub(crate) async fn patiently<T, E, Fut>(
    what: &str,
    retryable: impl Fn(&E) -> bool,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, E>
where
    E: std::fmt::Display,
    Fut: Future<Output = Result<T, E>>,
{
    let began = Instant::now();
    let mut backoff = Duration::from_millis(200);
    loop {
        match attempt().await {
            Err(e) if retryable(&e) && began.elapsed() < PATIENCE => {
                warn!(error = %e, "{what}; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            done => return done,
        }
    }
}
