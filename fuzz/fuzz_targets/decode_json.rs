//! The JSON decoder must never panic, and whatever it accepts must survive
//! an encode/decode round trip unchanged.
#![no_main]

use confab_protocol::{binary, json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = json::decode(data, binary::DEFAULT_MAX_FRAME_BYTES) {
        let text = json::encode(&frame);
        let again = json::decode(text.as_bytes(), usize::MAX).expect("own output decodes");
        assert_eq!(again, frame);
    }
});
