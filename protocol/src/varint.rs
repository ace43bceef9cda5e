//! LEB128 varints: most ids, sequences and lengths on the wire are small, so
//! a 1–3 byte varint beats a fixed 8-byte field on every frame we send.

use crate::DecodeError;

/// The most bytes a `u64` varint can take (10 × 7 bits ≥ 64 bits).
pub const MAX_VARINT_LEN: usize = 10;

/// Appends `v` as an unsigned LEB128 varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes `v` into `buf` and returns how many bytes it took; `buf` must hold
/// [`MAX_VARINT_LEN`] bytes. Used for headers built on the stack.
#[inline]
pub fn write_varint(buf: &mut [u8], mut v: u64) -> usize {
    let mut i = 0;
    while v >= 0x80 {
        buf[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    buf[i] = v as u8;
    i + 1
}

/// How many bytes `v` takes as a varint.
#[inline]
pub fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits, at least one.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Reads a varint from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` ends inside the varint (more bytes needed),
/// and [`DecodeError::BadVarint`] for encodings longer than ten bytes, for a
/// tenth byte that overflows 64 bits, and for non-minimal (overlong)
/// encodings, so that every value has exactly one encoding on the wire.
#[inline]
pub fn get_varint(buf: &[u8]) -> Result<Option<(u64, usize)>, DecodeError> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().enumerate() {
        if i == MAX_VARINT_LEN - 1 && byte > 0x01 {
            return Err(DecodeError::BadVarint);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(DecodeError::BadVarint);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= MAX_VARINT_LEN {
        return Err(DecodeError::BadVarint);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (16_384, &[0x80, 0x80, 0x01]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for (v, bytes) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, *v);
            assert_eq!(&out[..], *bytes, "encoding of {v}");
            assert_eq!(varint_len(*v), bytes.len(), "length of {v}");
            assert_eq!(get_varint(bytes).unwrap(), Some((*v, bytes.len())));
            let mut stack = [0u8; MAX_VARINT_LEN];
            let n = write_varint(&mut stack, *v);
            assert_eq!(&stack[..n], *bytes);
        }
    }

    #[test]
    fn truncated_varint_needs_more() {
        assert_eq!(get_varint(&[0x80]).unwrap(), None);
        assert_eq!(get_varint(&[]).unwrap(), None);
        assert_eq!(get_varint(&[0xff; 9]).unwrap(), None);
    }

    #[test]
    fn overlong_and_overflowing_varints_are_rejected() {
        // 11 continuation bytes: longer than any u64.
        assert_eq!(get_varint(&[0x80; 11]), Err(DecodeError::BadVarint));
        // Tenth byte carries more than the 64th bit.
        let mut over = [0xffu8; 10];
        over[9] = 0x02;
        assert_eq!(get_varint(&over), Err(DecodeError::BadVarint));
        // 1 encoded in two bytes is not minimal.
        assert_eq!(get_varint(&[0x81, 0x00]), Err(DecodeError::BadVarint));
    }
}
