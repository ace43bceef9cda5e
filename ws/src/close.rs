//! WebSocket close codes: the standard ones the gateway sends (RFC 6455
//! §7.4.1), the rule for which codes may appear on the wire, and confab's
//! own application codes.
//!
//! They live apart from the codec because the session layer picks close
//! codes too (slow consumer, heartbeat timeout, shutdown), not only the
//! frame decoder.
//!
//! # Application codes
//!
//! RFC 6455 leaves 4000–4999 to applications. confab uses `4000 + n`, where
//! `n` is the wire protocol's stable error number
//! (`confab_protocol::ErrorCode::code`, three digits): a connection closed
//! as a slow consumer gets 4401 (`SLOW_CONSUMER` = 401), a heartbeat timeout
//! 4402, a revoked token 4202. A client can therefore map a close code back
//! to the same error it knows from `Error` frames with [`wire_code`].

/// 1000: the purpose of the connection is fulfilled (an ordinary close).
pub const NORMAL: u16 = 1000;
/// 1001: the server is going down (shutdown) or the client navigates away.
pub const GOING_AWAY: u16 = 1001;
/// 1002: the peer broke the WebSocket protocol (framing, masking, opcodes).
pub const PROTOCOL_ERROR: u16 = 1002;
/// 1003: the peer sent a kind of data the endpoint cannot accept.
pub const UNSUPPORTED: u16 = 1003;
/// 1007: a message's payload is inconsistent with its type (bad UTF-8 text).
pub const INVALID_PAYLOAD: u16 = 1007;
/// 1008: a message violates the endpoint's policy (no more specific code fits).
pub const POLICY: u16 = 1008;
/// 1009: a message is larger than the endpoint accepts.
pub const TOO_BIG: u16 = 1009;
/// 1011: the server hit an unexpected condition.
pub const INTERNAL: u16 = 1011;

/// First code of the range RFC 6455 reserves for applications.
pub const APP_BASE: u16 = 4000;
/// Close code for a connection dropped because its outbound queue was full
/// (wire error `SLOW_CONSUMER`, 401). The device resumes from its cursor.
pub const SLOW_CONSUMER: u16 = app_close_code(401);
/// Close code for a device silent for three heartbeat intervals (wire error
/// `HEARTBEAT_TIMEOUT`, 402).
pub const HEARTBEAT_TIMEOUT: u16 = app_close_code(402);

/// The application close code for a wire protocol error number: `4000 + n`.
///
/// Wire error numbers have three digits; a number above 999 (which would
/// leave the application range) maps to the bare [`APP_BASE`], "application
/// error, unspecified", rather than to a code a client would misread.
pub const fn app_close_code(wire_code: u16) -> u16 {
    if wire_code <= 999 {
        APP_BASE + wire_code
    } else {
        APP_BASE
    }
}

/// The wire error number carried by an application close code (the inverse
/// of [`app_close_code`]); `None` for codes outside 4001–4999.
pub const fn wire_code(close_code: u16) -> Option<u16> {
    if close_code > APP_BASE && close_code <= APP_BASE + 999 {
        Some(close_code - APP_BASE)
    } else {
        None
    }
}

/// Whether `code` may be sent in a Close frame (RFC 6455 §7.4).
///
/// 1004 is reserved, and 1005, 1006 and 1015 are only ever reported
/// locally ("no code", "abnormal closure", "TLS failure"), so a peer that
/// sends them breaks the protocol. 1012–1014 are registered with IANA after
/// the RFC (restart, try again later, bad gateway) and are accepted, as
/// browsers do. 3000–3999 belong to libraries and frameworks, 4000–4999 to
/// applications; everything else is reserved.
pub const fn is_valid(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_protocol::ErrorCode;

    #[test]
    fn wire_validity_follows_the_rfc_and_iana_registry() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1014,
        ] {
            assert!(is_valid(code), "{code} should be valid");
        }
        for code in [3000, 3999, 4000, 4401, 4999] {
            assert!(is_valid(code), "{code} should be valid");
        }
        for code in [
            0,
            999,
            1004,
            1005,
            1006,
            1015,
            1016,
            2000,
            2999,
            5000,
            u16::MAX,
        ] {
            assert!(!is_valid(code), "{code} should be invalid");
        }
    }

    #[test]
    fn standard_constants_are_sendable() {
        for code in [
            NORMAL,
            GOING_AWAY,
            PROTOCOL_ERROR,
            UNSUPPORTED,
            INVALID_PAYLOAD,
            POLICY,
            TOO_BIG,
            INTERNAL,
        ] {
            assert!(is_valid(code));
        }
    }

    #[test]
    fn every_wire_error_maps_into_the_application_range_and_back() {
        for &error in ErrorCode::ALL {
            let close = app_close_code(error.code());
            assert!((4000..=4999).contains(&close), "{error}: {close}");
            assert!(is_valid(close));
            assert_eq!(wire_code(close), Some(error.code()));
        }
        assert_eq!(SLOW_CONSUMER, 4000 + ErrorCode::SlowConsumer.code());
        assert_eq!(HEARTBEAT_TIMEOUT, 4000 + ErrorCode::HeartbeatTimeout.code());
        assert_eq!(app_close_code(1000), APP_BASE);
        assert_eq!(wire_code(APP_BASE), None);
        assert_eq!(wire_code(NORMAL), None);
        assert_eq!(wire_code(5000), None);
    }
}
