//! Input rules, each failing with its own error code so that a client can
//! point at the offending field.

use super::ApiError;

/// Shortest username.
pub const USERNAME_MIN: usize = 3;
/// Longest username.
pub const USERNAME_MAX: usize = 32;
/// Shortest password, in bytes.
pub const PASSWORD_MIN: usize = 8;
/// Longest password, in bytes (argon2 takes any length; this bounds work).
pub const PASSWORD_MAX: usize = 256;
/// Longest display name, in characters.
pub const DISPLAY_NAME_MAX: usize = 64;
/// Longest group name, in characters.
pub const GROUP_NAME_MAX: usize = 100;
/// Longest push token, in bytes.
pub const PUSH_TOKEN_MAX: usize = 4096;

/// Whether `c` may appear in a username.
pub fn username_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-')
}

/// A username: 3 to 32 characters of `[a-z0-9_.-]` (lowercase only, so that
/// two accounts never differ by case alone).
pub fn username(name: &str) -> Result<(), ApiError> {
    if !(USERNAME_MIN..=USERNAME_MAX).contains(&name.len()) || !name.chars().all(username_char) {
        return Err(ApiError::validation(
            "INVALID_USERNAME",
            format!(
                "username must be {USERNAME_MIN} to {USERNAME_MAX} characters of a-z, 0-9, '_', '.', '-'"
            ),
        ));
    }
    Ok(())
}

/// A password: 8 to 256 bytes of UTF-8, anything else allowed.
pub fn password(pw: &str) -> Result<(), ApiError> {
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&pw.len()) {
        return Err(ApiError::validation(
            "INVALID_PASSWORD",
            format!("password must be {PASSWORD_MIN} to {PASSWORD_MAX} bytes"),
        ));
    }
    Ok(())
}

fn free_text(text: &str, max: usize, code: &'static str, what: &str) -> Result<String, ApiError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.chars().count() > max || trimmed.chars().any(char::is_control)
    {
        return Err(ApiError::validation(
            code,
            format!("{what} must be 1 to {max} characters, without control characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// A display name: 1 to 64 characters once trimmed, no control characters.
/// Returns it trimmed.
pub fn display_name(name: &str) -> Result<String, ApiError> {
    free_text(
        name,
        DISPLAY_NAME_MAX,
        "INVALID_DISPLAY_NAME",
        "display_name",
    )
}

/// A group name: 1 to 100 characters once trimmed, no control characters.
/// Returns it trimmed.
pub fn group_name(name: &str) -> Result<String, ApiError> {
    free_text(name, GROUP_NAME_MAX, "INVALID_GROUP_NAME", "name")
}

/// A push token: 1 to 4096 visible ASCII bytes; for webhooks an `http(s)://`
/// URL.
pub fn push_token(token: &str, webhook: bool) -> Result<(), ApiError> {
    let visible = token.bytes().all(|b| b.is_ascii_graphic());
    if token.is_empty() || token.len() > PUSH_TOKEN_MAX || !visible {
        return Err(ApiError::validation(
            "INVALID_PUSH_TOKEN",
            format!("push_token must be 1 to {PUSH_TOKEN_MAX} visible ASCII characters"),
        ));
    }
    if webhook && !(token.starts_with("https://") || token.starts_with("http://")) {
        return Err(ApiError::validation(
            "INVALID_PUSH_TOKEN",
            "a webhook's push_token is its http:// or https:// URL",
        ));
    }
    Ok(())
}

/// A username prefix for search: 1 to 32 characters of the username
/// alphabet.
pub fn prefix(prefix: &str) -> Result<(), ApiError> {
    if prefix.is_empty() || prefix.len() > USERNAME_MAX || !prefix.chars().all(username_char) {
        return Err(ApiError::InvalidParameter(format!(
            "prefix must be 1 to {USERNAME_MAX} characters of a-z, 0-9, '_', '.', '-'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["abc", "a.b-c_d", "x".repeat(32).as_str(), "007"] {
            assert!(username(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Alice",
            "al ice",
            "x".repeat(33).as_str(),
            "émile",
            "a/b",
            "",
        ] {
            assert_eq!(
                username(bad).unwrap_err().code(),
                "INVALID_USERNAME",
                "{bad}"
            );
        }
    }

    #[test]
    fn passwords_count_bytes() {
        assert!(password("12345678").is_ok());
        assert!(password("1234567").is_err());
        assert!(password(&"é".repeat(128)).is_ok()); // 256 bytes
        assert!(password(&"é".repeat(129)).is_err());
    }

    #[test]
    fn free_text_is_trimmed_and_bounded() {
        assert_eq!(display_name("  Ada L.  ").unwrap(), "Ada L.");
        assert!(display_name("   ").is_err());
        assert!(display_name("a\u{0}b").is_err());
        assert!(display_name(&"é".repeat(64)).is_ok());
        assert!(group_name(&"x".repeat(101)).is_err());
    }

    #[test]
    fn push_tokens() {
        assert!(push_token("abc:DEF_123", false).is_ok());
        assert!(push_token("has space", false).is_err());
        assert!(push_token("", false).is_err());
        assert!(push_token("abc", true).is_err());
        assert!(push_token("https://relay.example/push/1", true).is_ok());
    }
}
