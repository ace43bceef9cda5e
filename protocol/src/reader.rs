//! A sans-IO frame reader for byte streams (QUIC streams, and anything else
//! that delivers frames in arbitrary chunks).
//!
//! It owns the receive buffer, as mini-redis's `Connection` does, but takes
//! bytes from the caller instead of a socket, so the gateway's io_uring and
//! epoll runtimes and the client SDK share it. The buffer starts small,
//! grows only for a large frame, and shrinks back once that frame is gone,
//! so an idle connection costs little memory. A frame's body is split off
//! the buffer, so the texts it carries are shared, not copied.

use bytes::{Buf, BytesMut};

use crate::binary::{decode_body, frame_extent};
use crate::{DecodeError, Frame};

/// Capacity kept for an idle reader; larger buffers are released when empty.
const IDLE_CAPACITY: usize = 4096;

/// Splits a byte stream into frames.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    max_frame: usize,
    /// Bytes of an oversize frame still to discard as they arrive.
    skip: u64,
    /// Set after a fatal error: the stream can no longer be framed.
    broken: bool,
}

impl FrameReader {
    /// A reader that rejects frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> FrameReader {
        FrameReader {
            buf: BytesMut::new(),
            max_frame,
            skip: 0,
            broken: false,
        }
    }

    /// Appends bytes received from the peer. Bytes of a rejected oversize
    /// frame are discarded here, never buffered.
    pub fn feed(&mut self, mut data: &[u8]) {
        if self.skip > 0 {
            let n = self.skip.min(data.len() as u64) as usize;
            self.skip -= n as u64;
            data = &data[n..];
        }
        if !data.is_empty() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The buffer's capacity (what this reader holds in memory).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The next complete frame: `Ok(None)` when more bytes are needed.
    ///
    /// An error concerns one frame, whose bytes are consumed, and the next
    /// call goes on with the following frame, unless
    /// [`DecodeError::is_fatal`] says the stream is lost (every later call
    /// then repeats the error).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        if self.broken {
            return Err(DecodeError::BadVarint);
        }
        let unread = &self.buf[..];
        let extent = match frame_extent(unread, self.max_frame) {
            Ok(Some(extent)) => extent,
            Ok(None) => {
                self.compact();
                return Ok(None);
            }
            Err(DecodeError::TooLarge { len, max }) => {
                // Drop what we have of it and the rest as it arrives.
                let (_, header_len) = crate::varint::get_varint(unread)?.expect("extent was read");
                let have = (unread.len() - header_len) as u64;
                let now = have.min(len);
                self.buf.advance(header_len + now as usize);
                self.skip = len - now;
                self.compact();
                return Err(DecodeError::TooLarge { len, max });
            }
            Err(e) => {
                self.broken = true;
                return Err(e);
            }
        };
        if unread.len() < extent.total() {
            // Make room once for the whole frame instead of growing by chunks.
            self.buf.reserve(extent.total() - unread.len());
            return Ok(None);
        }
        self.buf.advance(extent.header_len);
        let body = self.buf.split_to(extent.body_len).freeze();
        self.compact();
        decode_body(&body).map(Some)
    }

    /// Gives back memory a large frame needed once nothing is buffered.
    fn compact(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > IDLE_CAPACITY {
            self.buf = BytesMut::new();
        }
    }
}
