//! `Send`: validate, rate-limit, resolve the channel (a DM is created on
//! first use), check membership, and hand the message to storage. The
//! `SendAck` comes with the storage completion, through the fan-out.
//!
//! The channel and its members almost always come from the core's cache,
//! and then the whole request is handled synchronously
//! ([`handle_now`]); only a cache miss waits for the directory.

use std::sync::Arc;
use std::time::Instant;

use confab_protocol::frame::{self, Frame, Target};
use confab_protocol::limits::validate_text;
use confab_protocol::ErrorCode;
use confab_types::{ChannelId, UserId};

use super::lookup::{finish_if_known, membership, membership_cached};
use super::Session;

/// Where a send goes, or why it cannot go there.
type Resolved = Result<(ChannelId, Arc<[UserId]>), (ErrorCode, &'static str)>;

const NOT_MEMBER: &str = "not a member of this channel";

/// Handles `send` if the cache knows its channel; else gives it back.
pub(super) fn handle_now(s: &Session, send: frame::Send) -> Result<(), frame::Send> {
    let known = resolve_cached(s, send.target);
    finish_if_known(known, send, |send, resolved| finish(s, send, resolved))
}

/// Handles `send`, asking the directory what the cache does not know.
pub(super) async fn handle(s: &Session, send: frame::Send) {
    let resolved = resolve(s, send.target).await;
    finish(s, send, resolved);
}

async fn resolve(s: &Session, target: Target) -> Resolved {
    let channel = match target {
        Target::Channel(c) => c,
        Target::User(other) if other == s.user => return Err(to_self()),
        Target::User(other) => match s.core.dm(s.user, other).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err((ErrorCode::NotFound, "no such user")),
            Err(code) => return Err((code, "directory unavailable")),
        },
    };
    let members = membership(s, channel).await.map_err(|c| (c, NOT_MEMBER))?;
    Ok((channel, members))
}

/// [`resolve`] from the cache alone; `None` on a miss.
fn resolve_cached(s: &Session, target: Target) -> Option<Resolved> {
    let channel = match target {
        Target::Channel(c) => c,
        Target::User(other) if other == s.user => return Some(Err(to_self())),
        Target::User(other) => s.core.state().cache().dm(s.user, other)?,
    };
    let members = membership_cached(s, channel)?;
    Some(members.map(|m| (channel, m)).map_err(|c| (c, NOT_MEMBER)))
}

fn to_self() -> (ErrorCode, &'static str) {
    (ErrorCode::InvalidArgument, "cannot message yourself")
}

/// The checks that need no directory, in the order clients see their
/// errors, then the submission.
fn finish(s: &Session, send: frame::Send, resolved: Resolved) {
    let settings = s.core.settings();
    // Errors name the send by its client id, so the client retries (or
    // fails) that send; with no id it would wait for an ack for ever.
    let answer = |code: ErrorCode, message: &str, send: &frame::Send| {
        s.error(code, message, &Frame::Send(send.clone()));
    };
    if let Err(code) = validate_text(&send.text, settings.max_text_chars) {
        return answer(code, "text is empty or too long", &send);
    }
    let allowed = s.core.state().take_send_token(s.user, Instant::now());
    if !allowed {
        return answer(ErrorCode::RateLimited, "too many sends", &send);
    }
    let (channel, members) = match resolved {
        Ok(r) => r,
        Err((code, message)) => return answer(code, message, &send),
    };
    let frame::Send {
        client_msg_id,
        text,
        ..
    } = send;
    let result = s.core.submit(
        s.conn,
        s.user,
        s.device,
        channel,
        &members,
        client_msg_id,
        text,
    );
    if let Err(code) = result {
        let refused = frame::Send {
            client_msg_id,
            target: Target::Channel(channel),
            text: Default::default(),
        };
        answer(code, "storage is busy, retry", &refused);
    }
}
