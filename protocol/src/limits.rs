//! Rules both sides apply the same way: text length in characters, and
//! version negotiation.

use crate::frame::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use crate::ErrorCode;

/// Longest message text, in characters (Unicode scalar values, not bytes).
pub const MAX_TEXT_CHARS: usize = 100_000;

/// Checks message text: 1 to `max_chars` characters. Text is already valid
/// UTF-8 (decoding guarantees it); longer text gets `TEXT_TOO_LONG` and the
/// server stores nothing.
pub fn validate_text(text: &str, max_chars: usize) -> Result<(), ErrorCode> {
    if text.is_empty() {
        return Err(ErrorCode::EmptyText);
    }
    // A character takes at least one byte, so short texts need no counting.
    if text.len() <= max_chars {
        return Ok(());
    }
    // Count characters as the bytes that do not continue a sequence.
    let chars = text.bytes().filter(|&b| (b as i8) >= -0x40).count();
    if chars > max_chars {
        return Err(ErrorCode::TextTooLong);
    }
    Ok(())
}

/// Picks the newest version both the client's `[min, max]` range and this
/// crate's `[MIN_PROTOCOL_VERSION, PROTOCOL_VERSION]` contain.
pub fn negotiate_version(client_min: u16, client_max: u16) -> Result<u16, ErrorCode> {
    let best = client_max.min(PROTOCOL_VERSION);
    if client_min > client_max || best < client_min.max(MIN_PROTOCOL_VERSION) {
        return Err(ErrorCode::UnsupportedVersion);
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_limits_count_characters_not_bytes() {
        assert_eq!(validate_text("", 10), Err(ErrorCode::EmptyText));
        assert_eq!(validate_text("hello", 5), Ok(()));
        assert_eq!(validate_text("hello!", 5), Err(ErrorCode::TextTooLong));
        // Five 4-byte characters: 20 bytes, still 5 characters.
        assert_eq!(validate_text("😀😀😀😀😀", 5), Ok(()));
        assert_eq!(
            validate_text("😀😀😀😀😀😀", 5),
            Err(ErrorCode::TextTooLong)
        );
        let max = "é".repeat(MAX_TEXT_CHARS);
        assert_eq!(validate_text(&max, MAX_TEXT_CHARS), Ok(()));
        let over = "a".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(
            validate_text(&over, MAX_TEXT_CHARS),
            Err(ErrorCode::TextTooLong)
        );
    }

    #[test]
    fn version_negotiation() {
        assert_eq!(negotiate_version(1, 1), Ok(1));
        // A newer client that still speaks 1 gets 1.
        assert_eq!(negotiate_version(1, 7), Ok(1));
        // A client that only speaks newer versions is refused.
        assert_eq!(negotiate_version(2, 7), Err(ErrorCode::UnsupportedVersion));
        assert_eq!(negotiate_version(0, 0), Err(ErrorCode::UnsupportedVersion));
        // An inverted range is nonsense.
        assert_eq!(negotiate_version(3, 1), Err(ErrorCode::UnsupportedVersion));
    }
}
