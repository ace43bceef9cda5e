//! The binary decoder must never panic, and whatever it accepts must encode
//! back to the very same bytes (one encoding per frame).
#![no_main]

use confab_protocol::binary;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((frame, used)) = binary::decode(data, binary::DEFAULT_MAX_FRAME_BYTES) {
        let again = binary::encode_to_vec(&frame);
        assert_eq!(&again[..], &data[..used], "re-encoding differs for {frame:?}");
    }
});
