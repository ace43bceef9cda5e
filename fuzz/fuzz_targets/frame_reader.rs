//! The stream reader, fed arbitrary bytes in arbitrary chunks, must never
//! panic, never loop, and never hold more than a frame's worth of memory.
#![no_main]

use confab_protocol::FrameReader;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = usize::from(chunk.max(1));
    let mut reader = FrameReader::new(MAX);
    for piece in rest.chunks(chunk) {
        reader.feed(piece);
        loop {
            match reader.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) if e.is_fatal() => return,
                Err(_) => {}
            }
        }
        assert!(reader.buffered() <= MAX + 16 + chunk);
    }
});
