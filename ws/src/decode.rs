//! The decoder of the client's masked frames: headers checked on their
//! own before a payload is buffered, payloads unmasked in place and split
//! off the read buffer, fragments gathered once. A message over the limit
//! is reported once and its bytes are discarded as they arrive, so the
//! connection goes on with the message after it.

use bytes::{Buf, BytesMut};

use super::close;
use super::error::WsError;
use super::frame::{CloseFrame, Event, OpCode, MAX_CONTROL_PAYLOAD};

/// The kind of the fragmented message in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fragmented {
    /// No fragmented message is in progress.
    None,
    /// A text message: its fragments are checked as UTF-8 as they come.
    Text,
    /// A binary message.
    Binary,
}

/// Where the decoder stands in the connection's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Frames are decoded.
    Open,
    /// A Close frame was decoded; later bytes are discarded (RFC 6455
    /// §5.5.1: nothing follows a Close).
    Closed,
    /// An error was returned; the connection must be failed.
    Failed,
}

/// A frame header, parsed and checked on its own (before the payload).
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: OpCode,
    mask: [u8; 4],
    /// Header length in bytes, mask included.
    len: usize,
    /// Payload length.
    payload: u64,
    /// The message this frame starts or continues is over the limit.
    too_big: bool,
}

/// Decodes the client's frames into [`Event`]s, one connection's worth of
/// state. See the module documentation for what it keeps.
#[derive(Debug)]
pub struct Decoder {
    /// At most `u32::MAX - 16`, so that a frame with its header fits a
    /// `u32` too: the decoder is kept per connection, and small.
    max_message_bytes: u32,
    /// Payload bytes of the unfinished fragmented message, unmasked.
    fragments: BytesMut,
    /// How many leading bytes of `fragments` are known to be valid UTF-8
    /// (text messages only); the rest is at most an unfinished character.
    utf8_valid: u32,
    /// Total bytes the frame at the front of the buffer needs, header
    /// included, once its header is known; 0 otherwise.
    pending: u32,
    /// Payload bytes of an oversize message's frame still to be discarded.
    skip: u64,
    /// The oversize message goes on in continuation frames, which are
    /// discarded as well.
    discarding: bool,
    fragmented: Fragmented,
    state: State,
}

impl Decoder {
    /// A decoder that accepts messages of at most `max_message_bytes`
    /// payload bytes, fragments added up.
    pub fn new(max_message_bytes: usize) -> Decoder {
        Decoder {
            max_message_bytes: u32::try_from(max_message_bytes)
                .unwrap_or(u32::MAX)
                .min(u32::MAX - 16),
            fragments: BytesMut::new(),
            utf8_valid: 0,
            pending: 0,
            skip: 0,
            discarding: false,
            fragmented: Fragmented::None,
            state: State::Open,
        }
    }

    /// The largest message this decoder accepts, in bytes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes as usize
    }

    /// How many bytes the read buffer must hold for the frame at its front
    /// to be complete, when `decode` last returned `Ok(None)` after seeing
    /// that frame's header; 0 when unknown. The gateway can reserve this
    /// much so that a large message is read in few system calls, and only
    /// large messages grow the buffer.
    pub fn pending_frame_len(&self) -> usize {
        self.pending as usize
    }

    /// Whether a fragmented message is in progress.
    pub fn in_message(&self) -> bool {
        self.fragmented != Fragmented::None
    }

    /// Whether a Close frame has been decoded.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Consumes complete frames from the front of `buf` and returns the
    /// next event; `Ok(None)` when more bytes are needed (keep them in
    /// `buf`, read more and call again).
    ///
    /// Fragments of a message are consumed and kept until the last one,
    /// so one call may consume several frames. A frame's header is checked
    /// as soon as it has arrived: a message that would exceed the maximum
    /// is answered with one [`Event::TooBig`] before its payload is read,
    /// and the rest of it (payload and later fragments) is discarded as it
    /// arrives, never buffered; decoding goes on after it.
    ///
    /// After an error the connection must be failed: send a Close frame
    /// with [`WsError::close_code`] and close. Further calls return
    /// [`WsError::Failed`]. After an [`Event::Close`], further bytes are
    /// discarded and the result is `Ok(None)`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, WsError> {
        match self.state {
            State::Open => {}
            State::Closed => {
                buf.clear();
                return Ok(None);
            }
            State::Failed => return Err(WsError::Failed),
        }
        let result = self.decode_open(buf);
        if result.is_err() {
            self.state = State::Failed;
            self.pending = 0;
            self.skip = 0;
            self.fragments = BytesMut::new();
        }
        result
    }

    fn decode_open(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, WsError> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(buf.len() as u64);
                buf.advance(n as usize);
                self.skip -= n;
                if self.skip > 0 {
                    return Ok(None);
                }
            }
            let Some(header) = self.parse_header(buf)? else {
                self.pending = 0;
                return Ok(None);
            };
            if header.too_big || (self.discarding && header.opcode == OpCode::Continuation) {
                let announce = !self.discarding;
                let len = self.fragments.len() as u64 + header.payload;
                buf.advance(header.len);
                self.pending = 0;
                self.skip = header.payload;
                self.fragments = BytesMut::new();
                self.utf8_valid = 0;
                if header.fin {
                    self.fragmented = Fragmented::None;
                    self.discarding = false;
                } else {
                    self.discarding = true;
                    match header.opcode {
                        OpCode::Text => self.fragmented = Fragmented::Text,
                        OpCode::Binary => self.fragmented = Fragmented::Binary,
                        _ => {}
                    }
                }
                if announce {
                    return Ok(Some(Event::TooBig {
                        len,
                        max: self.max_message_bytes as usize,
                    }));
                }
                continue;
            }
            // The header checks bound the payload by the message limit (a
            // u32) or by 125, so the cast is lossless.
            let payload_len = header.payload as usize;
            let total = header.len.saturating_add(payload_len);
            if buf.len() < total {
                // Within the limit plus a header, so within u32.
                self.pending = total as u32;
                return Ok(None);
            }
            self.pending = 0;
            buf.advance(header.len);
            let mut payload = buf.split_to(payload_len);
            unmask(&mut payload, header.mask);
            match header.opcode {
                OpCode::Ping => return Ok(Some(Event::Ping(payload.freeze()))),
                OpCode::Pong => return Ok(Some(Event::Pong(payload.freeze()))),
                OpCode::Close => {
                    let frame = parse_close(&payload)?;
                    self.state = State::Closed;
                    self.fragments = BytesMut::new();
                    buf.clear();
                    return Ok(Some(Event::Close(frame)));
                }
                OpCode::Text | OpCode::Binary if header.fin => {
                    // A whole message in one frame: hand out the split
                    // payload itself, no copy.
                    if header.opcode == OpCode::Text && std::str::from_utf8(&payload).is_err() {
                        return Err(WsError::InvalidUtf8);
                    }
                    let payload = payload.freeze();
                    return Ok(Some(if header.opcode == OpCode::Text {
                        Event::Text(payload)
                    } else {
                        Event::Binary(payload)
                    }));
                }
                OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                    if header.opcode == OpCode::Text {
                        self.fragmented = Fragmented::Text;
                    } else if header.opcode == OpCode::Binary {
                        self.fragmented = Fragmented::Binary;
                    }
                    // The one copy of a fragmented message's bytes.
                    self.fragments.extend_from_slice(&payload);
                    drop(payload);
                    if self.fragmented == Fragmented::Text {
                        self.check_utf8(header.fin)?;
                    }
                    if header.fin {
                        let message = std::mem::take(&mut self.fragments).freeze();
                        let kind = std::mem::replace(&mut self.fragmented, Fragmented::None);
                        self.utf8_valid = 0;
                        return Ok(Some(if kind == Fragmented::Text {
                            Event::Text(message)
                        } else {
                            Event::Binary(message)
                        }));
                    }
                    // A middle fragment: go on with the next frame.
                }
            }
        }
    }

    /// Parses and checks the header at the front of `buf`; `None` when it
    /// has not fully arrived. Each check runs as soon as the bytes it needs
    /// are there, so a broken stream fails on its first bad byte.
    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, WsError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits(b0 & 0x70));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(WsError::ReservedOpcode(b0 & 0x0F))?;
        if opcode.is_control() && !fin {
            return Err(WsError::FragmentedControl);
        }
        match (opcode, self.fragmented) {
            (OpCode::Continuation, Fragmented::None) => {
                return Err(WsError::UnexpectedContinuation)
            }
            (OpCode::Text | OpCode::Binary, Fragmented::Text | Fragmented::Binary) => {
                return Err(WsError::ExpectedContinuation)
            }
            _ => {}
        }
        let Some(&b1) = buf.get(1) else {
            return Ok(None);
        };
        if b1 & 0x80 == 0 {
            return Err(WsError::Unmasked);
        }
        let (payload, len_bytes) = match b1 & 0x7F {
            126 => {
                let Some(ext) = buf.get(2..4) else {
                    return Ok(None);
                };
                let n = u16::from_be_bytes([ext[0], ext[1]]);
                if n < 126 {
                    return Err(WsError::NonMinimalLength);
                }
                (u64::from(n), 2)
            }
            127 => {
                let Some(ext) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut be = [0u8; 8];
                be.copy_from_slice(ext);
                let n = u64::from_be_bytes(be);
                if n >> 63 != 0 {
                    return Err(WsError::LengthOverflow);
                }
                if n <= 0xFFFF {
                    return Err(WsError::NonMinimalLength);
                }
                (n, 8)
            }
            n => (u64::from(n), 0),
        };
        if opcode.is_control() && payload > MAX_CONTROL_PAYLOAD as u64 {
            return Err(WsError::ControlTooLong(payload));
        }
        let too_big = !opcode.is_control()
            && !self.discarding
            && self.fragments.len() as u64 + payload > u64::from(self.max_message_bytes);
        let mask_at = 2 + len_bytes;
        let Some(mask) = buf.get(mask_at..mask_at + 4) else {
            return Ok(None);
        };
        Ok(Some(Header {
            fin,
            opcode,
            mask: [mask[0], mask[1], mask[2], mask[3]],
            len: mask_at + 4,
            payload,
            too_big,
        }))
    }

    /// Checks the UTF-8 of the text fragments received since the last
    /// check. An unfinished character at the end is allowed until the last
    /// fragment; anything else invalid fails at once.
    fn check_utf8(&mut self, fin: bool) -> Result<(), WsError> {
        match std::str::from_utf8(&self.fragments[self.utf8_valid as usize..]) {
            Ok(_) => {
                self.utf8_valid = self.fragments.len() as u32;
                Ok(())
            }
            Err(e) if e.error_len().is_none() && !fin => {
                self.utf8_valid += e.valid_up_to() as u32;
                Ok(())
            }
            Err(_) => Err(WsError::InvalidUtf8),
        }
    }
}

/// Parses a Close frame's payload: empty, or a valid code and a UTF-8
/// reason.
fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close::is_valid(code) {
                return Err(WsError::InvalidCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidCloseReason)?;
            Ok(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            }))
        }
    }
}

/// XORs `payload` with the 4-byte mask key, in place (RFC 6455 §5.3). Eight
/// bytes at a time: the key repeats every four bytes, so a doubled key
/// lines up with every 8-byte chunk from the payload's start.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}
