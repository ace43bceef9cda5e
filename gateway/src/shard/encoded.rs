//! Frames encoded for one connection (acks, answers, errors), cut from
//! this core's frame arena.
//!
//! Such a frame is a few dozen bytes and lives until the connection's
//! next write. Encoding each into a vector of its own cost an allocation
//! or three per frame (the vector growing, then the reference count that
//! turns it into shared bytes); here a frame is encoded into a staging
//! vector kept by the core and copied into a chunk shared by many frames,
//! which is reused in place once every frame cut from it is written. A
//! frame still queued pins its chunk, so chunks are small; a large frame
//! (a page of history) gets an allocation of its exact size.
//!
//! Each core runs on one thread, so the thread-locals are per-core state.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use confab_protocol::{Encoding, Frame};

/// One allocation of the arena.
const CHUNK: usize = 4 * 1024;
/// Frames longer than this get an allocation of their own.
const LARGE: usize = 1024;
/// The staging vector is given up after a frame longer than this, so a
/// page of history once does not keep its size for ever.
const STAGING_MAX: usize = 64 * 1024;

thread_local! {
    static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::with_capacity(CHUNK));
}

/// `frame` in `encoding`, as bytes to queue.
pub fn encoded(encoding: Encoding, frame: &Frame) -> Bytes {
    STAGING.with(|staging| {
        let mut staging = staging.borrow_mut();
        staging.clear();
        encoding.encode_into(frame, &mut staging);
        if staging.len() > LARGE {
            let bytes = Bytes::copy_from_slice(&staging);
            if staging.capacity() > STAGING_MAX {
                *staging = Vec::new();
            }
            return bytes;
        }
        ARENA.with(|arena| {
            let mut arena = arena.borrow_mut();
            // Reclaims the chunk in place when no frame cut from it is
            // alive, or else starts a chunk of the arena's size.
            arena.reserve(staging.len());
            arena.extend_from_slice(&staging);
            arena.split().freeze()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_protocol::frame::{self, HeartbeatAck};
    use confab_protocol::ErrorCode;
    use confab_types::{ChannelId, InboxSeq, Seq};

    fn ack(n: u64) -> Frame {
        Frame::SendAck(frame::SendAck {
            client_msg_id: n,
            channel_id: ChannelId(n),
            seq: Seq(n),
            inbox_seq: InboxSeq(n),
            timestamp_ms: 1_700_000_000_000 + n,
            duplicate: false,
        })
    }

    #[test]
    fn frames_are_their_encoding_in_either_encoding() {
        for encoding in [Encoding::Binary, Encoding::Json] {
            let frames: Vec<Frame> = (0..500).map(ack).collect();
            // All alive at once: later frames must not overwrite earlier.
            let bytes: Vec<Bytes> = frames.iter().map(|f| encoded(encoding, f)).collect();
            for (f, b) in frames.iter().zip(&bytes) {
                assert_eq!(&b[..], &encoding.encode(f)[..]);
            }
            let hb = Frame::HeartbeatAck(HeartbeatAck {
                nonce: 4,
                server_time_ms: 5,
            });
            assert_eq!(&encoded(encoding, &hb)[..], &encoding.encode(&hb)[..]);
        }
    }

    #[test]
    fn frames_written_before_the_next_come_from_one_chunk() {
        let first = encoded(Encoding::Binary, &ack(1));
        let base = first.as_ptr() as usize;
        drop(first);
        for n in 0..3 * CHUNK as u64 {
            let b = encoded(Encoding::Binary, &ack(n));
            let at = b.as_ptr() as usize;
            assert!(
                (base..base + CHUNK).contains(&at),
                "a frame allocated although the arena was free"
            );
        }
    }

    #[test]
    fn a_large_frame_has_bytes_of_its_own() {
        let big = Frame::Error(frame::Error {
            code: ErrorCode::BadFrame,
            message: "x".repeat(5_000),
            frame_type: 0,
            request_id: 0,
        });
        let small = encoded(Encoding::Binary, &ack(1));
        let b = encoded(Encoding::Binary, &big);
        assert_eq!(&b[..], &Encoding::Binary.encode(&big)[..]);
        let next_in_arena = small.as_ptr() as usize + small.len();
        assert_ne!(
            b.as_ptr() as usize,
            next_in_arena,
            "a large frame went into the arena"
        );
        assert_eq!(
            &encoded(Encoding::Binary, &ack(2))[..],
            &Encoding::Binary.encode(&ack(2))[..]
        );
    }
}
