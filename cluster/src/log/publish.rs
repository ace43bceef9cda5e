//! Appending one record to the stream, again and again until it is taken.
//!
//! A publish whose NATS server dies before it answers is never answered:
//! the client reconnects to another server at once, but the reply waits out
//! the client's whole acknowledgement timeout. And while JetStream elects a
//! new stream leader, publishes are refused at once. Both end as soon as
//! the record is sent again after the reconnect or the election, so it is,
//! every `ATTEMPT` or after a `PAUSE`. Every copy carries the same
//! `Nats-Msg-Id`: the stream keeps the first and answers the others with
//! its sequence, so a record is stored once however many times it is sent.

use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use tokio::time::Instant;

use super::replicated::LOG_SUBJECT;

/// How long one copy waits for its acknowledgement. Far above the stream's
/// answer in health (milliseconds), far below the client's own timeout.
const ATTEMPT: Duration = Duration::from_secs(1);

/// The wait before sending again after a refusal (no stream leader yet, or
/// no connection).
const PAUSE: Duration = Duration::from_millis(100);

/// Sends `payload` as record `id` until the stream acknowledges it or
/// `deadline` passes: its stream sequence, or the last failure.
pub(crate) async fn append(
    js: &jetstream::Context,
    id: &str,
    payload: &Bytes,
    deadline: Instant,
) -> Result<u64, String> {
    let mut last = String::from("no acknowledgement from the stream in time");
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(last);
        }
        let attempt = (now + ATTEMPT).min(deadline);
        let sent = tokio::time::timeout_at(attempt, async {
            js.send_publish(
                LOG_SUBJECT,
                PublishMessage::build()
                    .message_id(id)
                    .payload(payload.clone()),
            )
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
        })
        .await;
        match sent {
            Ok(Ok(ack)) => return Ok(ack.sequence),
            Ok(Err(e)) => {
                last = e;
                tokio::time::sleep_until((Instant::now() + PAUSE).min(deadline)).await;
            }
            Err(_) => last = "no acknowledgement from the stream in time".to_owned(),
        }
    }
}
