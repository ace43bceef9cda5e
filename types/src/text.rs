//! Message text: UTF-8 checked once, where it enters (a decoded frame or a
//! stored value), then passed around as reference-counted bytes that are
//! never copied again, not even into a `String`.

/// UTF-8 text over shared bytes: clones share the buffer, `Deref<str>`
/// reads it, and it converts from `String` and checked `Bytes` without a
/// copy.
pub type Text = bytestring::ByteString;
