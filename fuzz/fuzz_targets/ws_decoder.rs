//! The WebSocket decoder, fed arbitrary client bytes in arbitrary chunks
//! (as reads deliver them), must never panic, never buffer more than a
//! message's worth, hand out only messages within the limit, and decode
//! the same events whatever the chunking.
#![no_main]

use bytes::BytesMut;
use confab_ws::{Decoder, Event, WsError};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

/// Every event and the error that ended decoding, feeding `chunk` bytes
/// at a time.
fn run(data: &[u8], chunk: usize) -> (Vec<Event>, Option<WsError>) {
    let mut dec = Decoder::new(MAX);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(e)) => {
                    if let Event::Binary(p) | Event::Text(p) = &e {
                        assert!(p.len() <= MAX, "a message over the limit was handed out");
                    }
                    if let Event::Text(p) = &e {
                        assert!(std::str::from_utf8(p).is_ok(), "text that is not UTF-8");
                    }
                    events.push(e);
                }
                Ok(None) => break,
                Err(e) => {
                    // A failed decoder stays failed.
                    assert_eq!(dec.decode(&mut buf), Err(WsError::Failed));
                    return (events, Some(e));
                }
            }
        }
        // What is kept between reads is at most one frame in progress:
        // the header (14 bytes) and a payload within the limit, plus what
        // this read brought.
        assert!(buf.len() <= MAX + 14 + chunk, "{} bytes kept", buf.len());
    }
    (events, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&c, rest)) = data.split_first() else {
        return;
    };
    let whole = run(rest, rest.len().max(1));
    let chunked = run(rest, usize::from(c.max(1)));
    assert_eq!(whole, chunked, "the chunking changed what was decoded");
});
