//! The JSON encoding (`confab.v1.json`): the same frames as WebSocket text
//! messages, so a person can talk to the server with any WebSocket tool.
//!
//! A frame is one JSON object: `{"type": "<snake_case name>", ...fields}`.
//! Unknown members are rejected (a typo should fail loudly, not be ignored).

use serde::Deserialize;

use crate::{DecodeError, Frame};

/// The JSON text of `frame`.
pub fn encode(frame: &Frame) -> String {
    // Serialising our own types to a String cannot fail: every key is a
    // string and every value is a number, bool, string or list.
    serde_json::to_string(frame).expect("frames always serialise")
}

/// Appends the JSON text of `frame` to `out`.
pub fn encode_into(frame: &Frame, out: &mut Vec<u8>) {
    serde_json::to_writer(out, frame).expect("frames always serialise")
}

/// Decodes one JSON frame (a whole WebSocket text message).
pub fn decode(text: &[u8], max_frame: usize) -> Result<Frame, DecodeError> {
    if text.len() > max_frame {
        return Err(DecodeError::TooLarge {
            len: text.len() as u64,
            max: max_frame,
        });
    }
    let text = std::str::from_utf8(text).map_err(|_| DecodeError::Json("not UTF-8".into()))?;
    serde_json::from_str::<Frame>(text).map_err(|e| classify(text, e))
}

/// Tells an unknown `type` (a newer client: answer, don't disconnect) from a
/// malformed frame. Only runs on the error path.
fn classify(text: &str, err: serde_json::Error) -> DecodeError {
    #[derive(Deserialize)]
    struct TypeOnly {
        #[serde(rename = "type")]
        ty: String,
    }
    if let Ok(TypeOnly { ty }) = serde_json::from_str::<TypeOnly>(text) {
        if !crate::FrameType::ALL.iter().any(|t| t.name() == ty) {
            return DecodeError::UnknownJsonType(ty);
        }
    }
    DecodeError::Json(err.to_string())
}
