//! Errors: the wire's stable error codes (what a peer is told) and the
//! decoder's typed failures (what went wrong with the bytes).
//!
//! Numbers are part of the protocol: they never change meaning once
//! released. A peer that receives a number it does not know keeps it as
//! [`ErrorCode::Unknown`], so an older client can still show a newer error.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::frame::FrameType;

macro_rules! error_codes {
    ($($(#[doc = $doc:expr])* $name:ident = $num:expr, $text:expr;)*) => {
        /// A stable numeric error code carried by `Error` frames (and by
        /// `Close` frames that end a session because of an error).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $name,)*
            /// A code this version does not know (sent by a newer peer).
            Unknown(u16),
        }

        impl ErrorCode {
            /// Every code this version knows, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The code's stable number.
            pub fn code(self) -> u16 {
                match self {
                    $(ErrorCode::$name => $num,)*
                    ErrorCode::Unknown(n) => n,
                }
            }

            /// The code for a number; unknown numbers are kept as
            /// [`ErrorCode::Unknown`].
            pub fn from_code(n: u16) -> ErrorCode {
                match n {
                    $($num => ErrorCode::$name,)*
                    other => ErrorCode::Unknown(other),
                }
            }

            /// The code's stable name, e.g. `TEXT_TOO_LONG`.
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => $text,)*
                    ErrorCode::Unknown(_) => "UNKNOWN",
                }
            }
        }
    };
}

error_codes! {
    /// The frame could not be parsed (truncated body, bad field, bad UTF-8, trailing bytes).
    BadFrame = 100, "BAD_FRAME";
    /// No protocol version in common between the `Hello` range and the server.
    UnsupportedVersion = 101, "UNSUPPORTED_VERSION";
    /// The frame type byte (or JSON `type`) is not known to this server.
    UnknownFrameType = 102, "UNKNOWN_FRAME_TYPE";
    /// The frame is longer than the advertised maximum.
    FrameTooLarge = 103, "FRAME_TOO_LARGE";
    /// A valid frame in the wrong place: a request before `Hello`, a second `Hello`, a server-only frame from a client.
    UnexpectedFrame = 104, "UNEXPECTED_FRAME";
    /// The bearer token is missing, malformed or its signature is wrong.
    Unauthenticated = 200, "UNAUTHENTICATED";
    /// The bearer token has expired; refresh it and reconnect.
    TokenExpired = 201, "TOKEN_EXPIRED";
    /// The bearer token was revoked (logout).
    TokenRevoked = 202, "TOKEN_REVOKED";
    /// The user is not a member of the channel (or may not message the user).
    ForbiddenChannel = 203, "FORBIDDEN_CHANNEL";
    /// The channel or user does not exist.
    NotFound = 300, "NOT_FOUND";
    /// Message text is longer than 100,000 characters; nothing was stored.
    TextTooLong = 301, "TEXT_TOO_LONG";
    /// Message text is empty; nothing was stored.
    EmptyText = 302, "EMPTY_TEXT";
    /// A field is out of its allowed range (a zero limit, too many users in a query).
    InvalidArgument = 303, "INVALID_ARGUMENT";
    /// The group already has the maximum number of members.
    GroupFull = 304, "GROUP_FULL";
    /// Too many requests; retry later.
    RateLimited = 400, "RATE_LIMITED";
    /// The connection could not keep up with its outbound traffic and is closed; resume from the inbox cursor.
    SlowConsumer = 401, "SLOW_CONSUMER";
    /// No heartbeat was received for three intervals.
    HeartbeatTimeout = 402, "HEARTBEAT_TIMEOUT";
    /// An unexpected server failure; the request may be retried.
    Internal = 500, "INTERNAL";
    /// The server is overloaded or a dependency is down; retry with backoff.
    Unavailable = 501, "UNAVAILABLE";
    /// The server is shutting down; reconnect (to another gateway).
    GoingAway = 502, "GOING_AWAY";
}

impl ErrorCode {
    /// Whether a request that failed with this code may succeed if sent
    /// again unchanged later (the client session retries these).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::Unavailable
                | ErrorCode::Internal
                | ErrorCode::GoingAway
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.code())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u16::deserialize(d).map(ErrorCode::from_code)
    }
}

/// Why decoding bytes into a frame failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// More bytes are needed before the frame can be decoded; not an error
    /// of the peer. Keep the buffer and read more.
    #[error("incomplete frame: more bytes needed")]
    Incomplete,
    /// The length prefix announces a frame larger than allowed. Reported
    /// before the body is buffered.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The announced length.
        len: u64,
        /// The configured maximum.
        max: usize,
    },
    /// A varint is longer than ten bytes, overflows 64 bits, or is not in
    /// its shortest form.
    #[error("malformed varint")]
    BadVarint,
    /// The frame's type is not one this version knows.
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    /// A frame of a known type whose body does not parse.
    #[error("malformed {} frame: {reason}", frame.name())]
    Malformed {
        /// The frame's type.
        frame: FrameType,
        /// What was wrong.
        reason: &'static str,
    },
    /// A string field is not valid UTF-8.
    #[error("invalid UTF-8 in {} frame", frame.name())]
    BadUtf8 {
        /// The frame's type.
        frame: FrameType,
    },
    /// A JSON text message that is not a valid frame.
    #[error("invalid JSON frame: {0}")]
    Json(String),
    /// A JSON frame whose `type` is not one this version knows.
    #[error("unknown frame type {0:?}")]
    UnknownJsonType(String),
}

impl DecodeError {
    /// The frame type the failure concerns, when it is known.
    pub fn frame_type(&self) -> Option<FrameType> {
        match self {
            DecodeError::Malformed { frame, .. } | DecodeError::BadUtf8 { frame } => Some(*frame),
            _ => None,
        }
    }

    /// Whether the byte stream can no longer be split into frames after
    /// this failure (the connection must close). Every other failure
    /// concerns one frame, which is skipped; the session goes on.
    pub fn is_fatal(&self) -> bool {
        matches!(self, DecodeError::BadVarint)
    }

    /// The wire error code a server answers this failure with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            DecodeError::UnknownType(_) | DecodeError::UnknownJsonType(_) => {
                ErrorCode::UnknownFrameType
            }
            _ => ErrorCode::BadFrame,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &c in ErrorCode::ALL {
            assert!(seen.insert(c.code()), "duplicate number {}", c.code());
            assert_eq!(ErrorCode::from_code(c.code()), c);
        }
        assert_eq!(ErrorCode::from_code(9999), ErrorCode::Unknown(9999));
        assert_eq!(ErrorCode::Unknown(9999).code(), 9999);
    }

    #[test]
    fn stable_numbers() {
        // These numbers are published in docs/protocol.md; changing one breaks clients.
        assert_eq!(ErrorCode::BadFrame.code(), 100);
        assert_eq!(ErrorCode::UnsupportedVersion.code(), 101);
        assert_eq!(ErrorCode::Unauthenticated.code(), 200);
        assert_eq!(ErrorCode::ForbiddenChannel.code(), 203);
        assert_eq!(ErrorCode::TextTooLong.code(), 301);
        assert_eq!(ErrorCode::RateLimited.code(), 400);
        assert_eq!(ErrorCode::SlowConsumer.code(), 401);
        assert_eq!(ErrorCode::Internal.code(), 500);
        assert_eq!(ErrorCode::TextTooLong.name(), "TEXT_TOO_LONG");
    }
}
