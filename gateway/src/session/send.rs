//! `Send`: validate, rate-limit, resolve the channel (a DM is created on
//! first use), check membership, and hand the message to storage. The
//! `SendAck` comes with the storage completion, through the fan-out.

use std::time::Instant;

use confab_protocol::frame::{self, Frame, Target};
use confab_protocol::limits::validate_text;
use confab_protocol::ErrorCode;

use super::lookup::membership;
use super::Session;

pub(super) async fn handle(s: &Session, send: frame::Send) {
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
    let channel = match send.target {
        Target::Channel(c) => c,
        Target::User(other) if other == s.user => {
            return answer(ErrorCode::InvalidArgument, "cannot message yourself", &send)
        }
        Target::User(other) => match s.core.dm(s.user, other).await {
            Ok(Some(c)) => c,
            Ok(None) => return answer(ErrorCode::NotFound, "no such user", &send),
            Err(code) => return answer(code, "directory unavailable", &send),
        },
    };
    let members = match membership(s, channel).await {
        Ok(m) => m,
        Err(code) => return answer(code, "not a member of this channel", &send),
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
