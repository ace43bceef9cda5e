//! WebSocket framing (RFC 6455 §5) for the server side: a decoder for the
//! client's masked frames and encoders for our unmasked ones, all on
//! buffers the gateway owns.
//!
//! # Why our own frame parser
//!
//! The gateway reads into a [`BytesMut`] (io_uring hands back owned
//! buffers) and must not copy a payload more than once: the decoder
//! unmasks the payload in place and splits it off the read buffer, so a
//! single-frame message costs no allocation beyond that split. The header
//! is 2–14 bytes with a handful of rules; tungstenite's `FrameHeader::parse`
//! reads through an `io::Cursor`, reports a reserved opcode only once the
//! whole header has arrived, and accepts over-long length encodings and
//! lengths with the high bit set, which RFC 6455 forbids. Parsing the
//! header here keeps the checks strict and lets every failure come back
//! as a [`WsError`] with its close code. It also keeps the codec
//! independent of the tungstenite client the tests drive it with, so the
//! two cannot share a bug.
//!
//! # What a decoder holds
//!
//! The gateway keeps one [`Decoder`] per connection, so its state is small:
//! the limit, a cursor of validated UTF-8, and the fragments of an
//! unfinished message (an empty [`BytesMut`] holds no allocation). A
//! fragmented message is copied once, into that buffer, and handed over
//! whole when its last fragment arrives, so the buffer does not outlive the
//! message. Control frames in between are returned as they come.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::close;
pub use super::error::WsError;

/// Longest payload of a control frame (close, ping, pong).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest frame header a server writes (no mask): 2 + 8 bytes.
pub const MAX_HEADER_LEN: usize = 10;

/// A frame's opcode (RFC 6455 §5.2), without the reserved values, which
/// the decoder rejects and the encoders cannot produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: a further fragment of a text or binary message.
    Continuation,
    /// 0x1: a text message (or its first fragment).
    Text,
    /// 0x2: a binary message (or its first fragment).
    Binary,
    /// 0x8: the closing handshake.
    Close,
    /// 0x9: a ping; answered with a pong carrying the same payload.
    Ping,
    /// 0xA: a pong.
    Pong,
}

impl OpCode {
    /// The opcode's 4-bit value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// The opcode for a 4-bit value; `None` for reserved values.
    pub fn from_u8(value: u8) -> Option<OpCode> {
        match value {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// The payload of a Close frame that carried a status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The close code, one that may be sent ([`close::is_valid`]).
    pub code: u16,
    /// The reason, valid UTF-8, at most 123 bytes.
    pub reason: String,
}

/// A complete message or control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A binary message (a confab frame when the encoding is binary).
    Binary(Bytes),
    /// A text message; the bytes are valid UTF-8.
    Text(Bytes),
    /// A ping; answer with a pong carrying the same payload
    /// ([`encode_pong`]).
    Ping(Bytes),
    /// A pong (an answer to our ping, or an unsolicited heartbeat).
    Pong(Bytes),
    /// The client starts or answers the closing handshake; `None` when the
    /// frame carried no status code. Answer with a Close frame and close
    /// the connection. The decoder ignores whatever follows.
    Close(Option<CloseFrame>),
}

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
}

/// Decodes the client's frames into [`Event`]s, one connection's worth of
/// state. See the module documentation for what it keeps.
#[derive(Debug)]
pub struct Decoder {
    max_message_bytes: usize,
    /// Payload bytes of the unfinished fragmented message, unmasked.
    fragments: BytesMut,
    /// How many leading bytes of `fragments` are known to be valid UTF-8
    /// (text messages only); the rest is at most an unfinished character.
    utf8_valid: usize,
    /// Total bytes the frame at the front of the buffer needs, header
    /// included, once its header is known; 0 otherwise.
    pending: usize,
    fragmented: Fragmented,
    state: State,
}

impl Decoder {
    /// A decoder that accepts messages of at most `max_message_bytes`
    /// payload bytes, fragments added up.
    pub fn new(max_message_bytes: usize) -> Decoder {
        Decoder {
            max_message_bytes,
            fragments: BytesMut::new(),
            utf8_valid: 0,
            pending: 0,
            fragmented: Fragmented::None,
            state: State::Open,
        }
    }

    /// The largest message this decoder accepts, in bytes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// How many bytes the read buffer must hold for the frame at its front
    /// to be complete, when `decode` last returned `Ok(None)` after seeing
    /// that frame's header; 0 when unknown. The gateway can reserve this
    /// much so that a large message is read in few system calls, and only
    /// large messages grow the buffer.
    pub fn pending_frame_len(&self) -> usize {
        self.pending
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
    /// fails with [`WsError::MessageTooBig`] before its payload is read.
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
            self.fragments = BytesMut::new();
        }
        result
    }

    fn decode_open(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, WsError> {
        loop {
            let Some(header) = self.parse_header(buf)? else {
                self.pending = 0;
                return Ok(None);
            };
            // The header checks bound the payload by the message limit (a
            // usize) or by 125, so the cast is lossless.
            let payload_len = header.payload as usize;
            let total = header.len.saturating_add(payload_len);
            if buf.len() < total {
                self.pending = total;
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
        if opcode.is_control() {
            if payload > MAX_CONTROL_PAYLOAD as u64 {
                return Err(WsError::ControlTooLong(payload));
            }
        } else {
            let len = self.fragments.len() as u64 + payload;
            if len > self.max_message_bytes as u64 {
                return Err(WsError::MessageTooBig {
                    len,
                    max: self.max_message_bytes,
                });
            }
        }
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
        }))
    }

    /// Checks the UTF-8 of the text fragments received since the last
    /// check. An unfinished character at the end is allowed until the last
    /// fragment; anything else invalid fails at once.
    fn check_utf8(&mut self, fin: bool) -> Result<(), WsError> {
        match std::str::from_utf8(&self.fragments[self.utf8_valid..]) {
            Ok(_) => {
                self.utf8_valid = self.fragments.len();
                Ok(())
            }
            Err(e) if e.error_len().is_none() && !fin => {
                self.utf8_valid += e.valid_up_to();
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

/// The length of the header [`write_header`] writes for a payload of `len`
/// bytes: 2, 4 or 10.
pub fn header_len(len: usize) -> usize {
    if len < 126 {
        2
    } else if len <= 0xFFFF {
        4
    } else {
        10
    }
}

/// Writes the header of a final (FIN) server frame for a payload of `len`
/// bytes; the caller writes the payload after it. Server frames are never
/// masked. Writing only the header lets a fan-out payload, encoded once,
/// be sent to every recipient without copying it into each message.
pub fn write_header(out: &mut impl BufMut, opcode: OpCode, len: usize) {
    write_frame_header(out, true, opcode, len);
}

/// Writes a server frame header with an explicit FIN bit, for sending a
/// message in fragments: the first frame has the message's opcode, the
/// others [`OpCode::Continuation`], and only the last one has `fin`.
pub fn write_frame_header(out: &mut impl BufMut, fin: bool, opcode: OpCode, len: usize) {
    let b0 = opcode.as_u8() | if fin { 0x80 } else { 0 };
    if len < 126 {
        out.put_slice(&[b0, len as u8]);
    } else if len <= 0xFFFF {
        out.put_slice(&[b0, 126]);
        out.put_u16(len as u16);
    } else {
        out.put_slice(&[b0, 127]);
        out.put_u64(len as u64);
    }
}

/// Appends a complete binary message frame.
pub fn encode_binary(payload: &[u8], out: &mut impl BufMut) {
    write_header(out, OpCode::Binary, payload.len());
    out.put_slice(payload);
}

/// Appends a complete text message frame.
pub fn encode_text(text: &str, out: &mut impl BufMut) {
    write_header(out, OpCode::Text, text.len());
    out.put_slice(text.as_bytes());
}

/// Appends a Close frame with `code` and `reason`. A reason longer than the
/// 123 bytes a control frame leaves for it is cut at a character boundary.
/// `code` should satisfy [`close::is_valid`]: the close codes in
/// [`close`] and [`WsError::close_code`] do.
pub fn encode_close(code: u16, reason: &str, out: &mut impl BufMut) {
    debug_assert!(close::is_valid(code), "close code {code} may not be sent");
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    write_header(out, OpCode::Close, 2 + reason.len());
    out.put_u16(code);
    out.put_slice(reason);
}

/// Appends a Close frame without a status code: the answer to a client's
/// Close frame that carried none.
pub fn encode_close_empty(out: &mut impl BufMut) {
    write_header(out, OpCode::Close, 0);
}

/// Appends a Ping frame. A payload over 125 bytes is cut to 125 (a caller
/// bug: our pings carry a few bytes).
pub fn encode_ping(payload: &[u8], out: &mut impl BufMut) {
    encode_control(OpCode::Ping, payload, out);
}

/// Appends a Pong frame, the answer to a ping with the same payload (which
/// the decoder guarantees is at most 125 bytes).
pub fn encode_pong(payload: &[u8], out: &mut impl BufMut) {
    encode_control(OpCode::Pong, payload, out);
}

fn encode_control(opcode: OpCode, payload: &[u8], out: &mut impl BufMut) {
    debug_assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    write_header(out, opcode, payload.len());
    out.put_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A masked client frame, encoded here independently of the server
    /// encoder (with a chosen length encoding for the edge cases).
    fn client_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![b0];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const FIN: u8 = 0x80;

    fn frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        client_frame(if fin { FIN | op } else { op }, payload, KEY)
    }

    /// Decodes everything in `bytes`, returning the events and the error
    /// that stopped decoding, if any.
    fn decode_all(dec: &mut Decoder, bytes: &[u8]) -> (Vec<Event>, Option<WsError>) {
        let mut buf = BytesMut::from(bytes);
        let mut events = Vec::new();
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(e)) => events.push(e),
                Ok(None) => return (events, None),
                Err(e) => return (events, Some(e)),
            }
        }
    }

    /// Feeds `bytes` one at a time, as a slow socket would.
    fn decode_bytewise(dec: &mut Decoder, bytes: &[u8]) -> (Vec<Event>, Option<WsError>) {
        let mut buf = BytesMut::new();
        let mut events = Vec::new();
        for &b in bytes {
            buf.put_u8(b);
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(e)) => events.push(e),
                    Ok(None) => break,
                    Err(e) => return (events, Some(e)),
                }
            }
        }
        (events, None)
    }

    fn error_of(bytes: &[u8], max: usize) -> WsError {
        let (_, err) = decode_all(&mut Decoder::new(max), bytes);
        let err = err.expect("an error");
        // Byte-at-a-time feeding fails the same way.
        let (_, err2) = decode_bytewise(&mut Decoder::new(max), bytes);
        assert_eq!(err2, Some(err));
        err
    }

    #[test]
    fn rfc_examples_decode() {
        // RFC 6455 §5.7: a masked "Hello" from a client.
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (events, err) = decode_all(&mut Decoder::new(1024), &bytes);
        assert_eq!(err, None);
        assert_eq!(events, vec![Event::Text(Bytes::from_static(b"Hello"))]);
        // A masked ping with "Hello".
        let ping = client_frame(0x89, b"Hello", KEY);
        let (events, _) = decode_all(&mut Decoder::new(1024), &ping);
        assert_eq!(events, vec![Event::Ping(Bytes::from_static(b"Hello"))]);
    }

    #[test]
    fn single_frame_message_is_split_from_the_read_buffer() {
        let msg = vec![7u8; 300];
        let mut bytes = frame(true, 2, &msg);
        bytes.extend_from_slice(&frame(true, 1, b"tail"));
        let mut buf = BytesMut::from(&bytes[..]);
        let mut dec = Decoder::new(1024);
        let Some(Event::Binary(payload)) = dec.decode(&mut buf).unwrap() else {
            panic!("binary expected");
        };
        assert_eq!(&payload[..], &msg[..]);
        // The rest of the buffer is the next frame, untouched.
        assert_eq!(&buf[..], &frame(true, 1, b"tail")[..]);
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Some(Event::Text(Bytes::from_static(b"tail")))
        );
        assert!(buf.is_empty());
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn all_length_encodings_decode() {
        for len in [0, 1, 125, 126, 127, 0xFFFF, 0x10000, 200_000] {
            let msg: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let (events, err) = decode_all(&mut Decoder::new(1 << 20), &frame(true, 2, &msg));
            assert_eq!(err, None, "len {len}");
            assert_eq!(events, vec![Event::Binary(Bytes::from(msg))], "len {len}");
        }
    }

    #[test]
    fn fragments_with_interleaved_control_frames() {
        let mut bytes = frame(false, 1, "héllo ".as_bytes());
        bytes.extend(frame(true, 9, b"p1"));
        bytes.extend(frame(false, 0, b"w"));
        bytes.extend(frame(true, 0xA, b""));
        bytes.extend(frame(true, 0, "örld".as_bytes()));
        bytes.extend(frame(false, 2, &[1, 2]));
        bytes.extend(frame(true, 0, &[3]));
        let want = vec![
            Event::Ping(Bytes::from_static(b"p1")),
            Event::Pong(Bytes::new()),
            Event::Text(Bytes::from("héllo wörld")),
            Event::Binary(Bytes::from_static(&[1, 2, 3])),
        ];
        let mut dec = Decoder::new(1024);
        assert_eq!(decode_all(&mut dec, &bytes), (want.clone(), None));
        assert!(!dec.in_message());
        assert_eq!(
            decode_bytewise(&mut Decoder::new(1024), &bytes),
            (want, None)
        );
    }

    #[test]
    fn text_split_inside_a_character_across_fragments() {
        let text = "€uro 😀";
        let raw = text.as_bytes();
        // Split inside the 3-byte € and inside the 4-byte emoji.
        let mut bytes = frame(false, 1, &raw[..1]);
        bytes.extend(frame(false, 0, &raw[1..2]));
        bytes.extend(frame(false, 0, &raw[2..raw.len() - 2]));
        bytes.extend(frame(true, 0, &raw[raw.len() - 2..]));
        let (events, err) = decode_all(&mut Decoder::new(1024), &bytes);
        assert_eq!(err, None);
        assert_eq!(events, vec![Event::Text(Bytes::from(text))]);
    }

    #[test]
    fn close_frames() {
        let mut dec = Decoder::new(1024);
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice("bye ✓".as_bytes());
        let mut bytes = frame(true, 8, &payload);
        // Anything after a Close is ignored.
        bytes.extend(frame(true, 2, b"late"));
        let (events, err) = decode_all(&mut dec, &bytes);
        assert_eq!(err, None);
        assert_eq!(
            events,
            vec![Event::Close(Some(CloseFrame {
                code: 1000,
                reason: "bye ✓".into()
            }))]
        );
        assert!(dec.is_closed());
        let mut more = BytesMut::from(&frame(true, 2, b"x")[..]);
        assert_eq!(dec.decode(&mut more), Ok(None));
        assert!(more.is_empty());

        let (events, _) = decode_all(&mut Decoder::new(10), &frame(true, 8, b""));
        assert_eq!(events, vec![Event::Close(None)]);
        let (events, _) = decode_all(&mut Decoder::new(10), &frame(true, 8, &[0x0F, 0xA1]));
        assert_eq!(
            events,
            vec![Event::Close(Some(CloseFrame {
                code: 4001,
                reason: String::new()
            }))]
        );
    }

    #[test]
    fn malformed_frames_fail_with_their_close_code() {
        let max = 1000;
        let code = |bytes: &[u8]| {
            let e = error_of(bytes, max);
            (e, e.close_code())
        };
        // Unmasked client frame.
        assert_eq!(code(&[0x81, 0x02, b'h', b'i']), (WsError::Unmasked, 1002));
        // RSV bits.
        for rsv in [0x40, 0x20, 0x10] {
            assert_eq!(
                code(&frame(true, 1 | rsv, b"x")),
                (WsError::ReservedBits(rsv), 1002)
            );
        }
        // Reserved opcodes, data and control.
        for op in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                code(&frame(true, op, b"")),
                (WsError::ReservedOpcode(op), 1002)
            );
        }
        // Fragmented control frames.
        for op in [8, 9, 0xA] {
            assert_eq!(
                code(&frame(false, op, b"")),
                (WsError::FragmentedControl, 1002)
            );
        }
        // Control frame over 125 bytes (and one of exactly 125 is fine).
        assert_eq!(
            code(&frame(true, 9, &[0; 126])),
            (WsError::ControlTooLong(126), 1002)
        );
        let (events, err) = decode_all(&mut Decoder::new(max), &frame(true, 9, &[0; 125]));
        assert_eq!((events.len(), err), (1, None));
        // Continuation with no message started.
        assert_eq!(
            code(&frame(true, 0, b"x")),
            (WsError::UnexpectedContinuation, 1002)
        );
        // New data frame while a fragmented message is unfinished.
        for op in [1, 2] {
            let mut bytes = frame(false, 2, b"a");
            bytes.extend(frame(true, op, b"b"));
            assert_eq!(code(&bytes), (WsError::ExpectedContinuation, 1002));
        }
        // Invalid UTF-8 in a single-frame text message.
        assert_eq!(
            code(&frame(true, 1, &[b'a', 0xFF])),
            (WsError::InvalidUtf8, 1007)
        );
        // Invalid UTF-8 split across fragments: the first fragment ends in
        // the lead byte of a 3-byte sequence, the next one breaks it.
        let mut bytes = frame(false, 1, &[b'a', 0xE2]);
        bytes.extend(frame(true, 0, b"b"));
        assert_eq!(code(&bytes), (WsError::InvalidUtf8, 1007));
        // Invalid UTF-8 fails at the fragment that has it, before the
        // message is finished.
        assert_eq!(
            code(&frame(false, 1, &[b'a', 0xFF])),
            (WsError::InvalidUtf8, 1007)
        );
        // A message that ends in an unfinished character.
        let mut bytes = frame(false, 1, b"ok");
        bytes.extend(frame(true, 0, &[0xF0, 0x9F]));
        assert_eq!(code(&bytes), (WsError::InvalidUtf8, 1007));
        // Invalid close codes.
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert_eq!(
                code(&frame(true, 8, &bad.to_be_bytes())),
                (WsError::InvalidCloseCode(bad), 1002),
                "close code {bad}"
            );
        }
        // Close reason not UTF-8.
        assert_eq!(
            code(&frame(true, 8, &[0x03, 0xE8, 0xC3, 0x28])),
            (WsError::InvalidCloseReason, 1007)
        );
        // One-byte close payload.
        assert_eq!(code(&frame(true, 8, &[3])), (WsError::CloseTooShort, 1002));
        // 64-bit length with the high bit set.
        let mut bytes = vec![0x82, 0xFF];
        bytes.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
        bytes.extend_from_slice(&KEY);
        assert_eq!(code(&bytes), (WsError::LengthOverflow, 1002));
        // Lengths not in their shortest form.
        let mut bytes = vec![0x82, 0xFE, 0x00, 0x05];
        bytes.extend_from_slice(&KEY);
        assert_eq!(code(&bytes), (WsError::NonMinimalLength, 1002));
        let mut bytes = vec![0x82, 0xFF];
        bytes.extend_from_slice(&0xFFFFu64.to_be_bytes());
        assert_eq!(code(&bytes), (WsError::NonMinimalLength, 1002));
    }

    #[test]
    fn oversize_message_is_refused_from_the_header() {
        let max = 1000;
        // Only the header is there: the error comes before any payload.
        let mut bytes = vec![0x82, 0xFE];
        bytes.extend_from_slice(&1001u16.to_be_bytes());
        let e = error_of(&bytes, max);
        assert_eq!(e, WsError::MessageTooBig { len: 1001, max });
        assert_eq!(e.close_code(), 1009);
        // A huge announced length, without the mask key even.
        let mut bytes = vec![0x82, 0xFF];
        bytes.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(
            error_of(&bytes, max),
            WsError::MessageTooBig { len: 1 << 40, max }
        );
        // Exactly the maximum is fine.
        let (events, err) = decode_all(&mut Decoder::new(max), &frame(true, 2, &[1; 1000]));
        assert_eq!((events.len(), err), (1, None));
    }

    #[test]
    fn oversize_message_is_refused_across_fragments() {
        let max = 1000;
        let mut bytes = frame(false, 2, &[0; 600]);
        bytes.extend(frame(true, 9, b"ping in between"));
        // Header of the second fragment only: 600 + 401 > 1000.
        bytes.extend_from_slice(&[0x00, 0xFE, 0x01, 0x91]);
        let mut dec = Decoder::new(max);
        let (events, err) = decode_all(&mut dec, &bytes);
        assert_eq!(
            events,
            vec![Event::Ping(Bytes::from_static(b"ping in between"))]
        );
        assert_eq!(err, Some(WsError::MessageTooBig { len: 1001, max }));
        assert_eq!(err.unwrap().close_code(), 1009);
        // The decoder stays failed.
        assert_eq!(
            dec.decode(&mut BytesMut::from(&frame(true, 2, b"x")[..])),
            Err(WsError::Failed)
        );
        // Fragments adding up to exactly the maximum are fine.
        let mut bytes = frame(false, 2, &[0; 600]);
        bytes.extend(frame(true, 0, &[0; 400]));
        let (events, err) = decode_all(&mut Decoder::new(max), &bytes);
        assert_eq!((events.len(), err), (1, None));
    }

    #[test]
    fn pending_frame_len_announces_a_large_frame() {
        let bytes = frame(true, 2, &[5; 70_000]);
        let mut dec = Decoder::new(1 << 20);
        let mut buf = BytesMut::from(&bytes[..100]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(dec.pending_frame_len(), bytes.len());
        buf.extend_from_slice(&bytes[100..]);
        assert!(matches!(dec.decode(&mut buf), Ok(Some(Event::Binary(_)))));
        assert_eq!(dec.pending_frame_len(), 0);
    }

    #[test]
    fn unmask_matches_the_bytewise_definition() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut fast = data.clone();
            unmask(&mut fast, KEY);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ KEY[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn server_frames_have_exact_headers() {
        let mut out = Vec::new();
        write_header(&mut out, OpCode::Binary, 5);
        assert_eq!(out, [0x82, 5]);
        out.clear();
        write_header(&mut out, OpCode::Text, 126);
        assert_eq!(out, [0x81, 126, 0, 126]);
        out.clear();
        write_header(&mut out, OpCode::Binary, 0x10000);
        assert_eq!(out, [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        out.clear();
        write_frame_header(&mut out, false, OpCode::Text, 1);
        assert_eq!(out, [0x01, 1]);
        for len in [0, 125, 126, 0xFFFF, 0x10000] {
            let mut out = BytesMut::new();
            write_header(&mut out, OpCode::Binary, len);
            assert_eq!(out.len(), header_len(len));
            assert!(out.len() <= MAX_HEADER_LEN);
        }

        let mut out = Vec::new();
        encode_close(1000, "bye", &mut out);
        assert_eq!(out, [0x88, 5, 0x03, 0xE8, b'b', b'y', b'e']);
        out.clear();
        encode_close_empty(&mut out);
        assert_eq!(out, [0x88, 0]);
        out.clear();
        encode_pong(b"hi", &mut out);
        assert_eq!(out, [0x8A, 2, b'h', b'i']);
        out.clear();
        encode_ping(b"", &mut out);
        assert_eq!(out, [0x89, 0]);
        out.clear();
        encode_text("é", &mut out);
        assert_eq!(out, [0x81, 2, 0xC3, 0xA9]);
        out.clear();
        encode_binary(&[9], &mut out);
        assert_eq!(out, [0x82, 1, 9]);
    }

    #[test]
    fn close_reason_is_cut_at_a_character_boundary() {
        let mut out = Vec::new();
        let reason = "é".repeat(100); // 200 bytes
        encode_close(1008, &reason, &mut out);
        assert_eq!(out[1] as usize, out.len() - 2);
        assert!(out.len() - 2 <= MAX_CONTROL_PAYLOAD);
        // 122 bytes of reason: 61 characters, the 123rd byte would split one.
        assert_eq!(out.len() - 4, 122);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }

    #[test]
    fn decoder_state_is_small() {
        // One per connection: keep it to a few dozen bytes.
        assert!(
            std::mem::size_of::<Decoder>() <= 64,
            "{}",
            std::mem::size_of::<Decoder>()
        );
    }

    /// A client-side message to encode in the round-trip property.
    #[derive(Debug, Clone)]
    enum Msg {
        Binary(Vec<u8>),
        Text(String),
        Ping(Vec<u8>),
    }

    fn msg() -> impl Strategy<Value = Msg> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Msg::Binary),
            ".{0,200}".prop_map(Msg::Text),
            proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Msg::Ping),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Encode messages as masked client frames (random keys, data
        /// messages cut into random fragments with pings in between), feed
        /// the stream in random chunks and get the same messages back.
        #[test]
        fn round_trip(
            msgs in proptest::collection::vec(msg(), 1..8),
            cuts in proptest::collection::vec(any::<u16>(), 0..6),
            chunk in 1usize..700,
            keys in proptest::collection::vec(any::<[u8; 4]>(), 1..16),
        ) {
            let mut stream = Vec::new();
            let mut want = Vec::new();
            let mut k = 0;
            let mut key = || { k += 1; keys[k % keys.len()] };
            for m in &msgs {
                match m {
                    Msg::Ping(p) => {
                        stream.extend(client_frame(0x89, p, key()));
                        want.push(Event::Ping(Bytes::from(p.clone())));
                    }
                    Msg::Binary(_) | Msg::Text(_) => {
                        let (op, data, event) = match m {
                            Msg::Binary(b) => (2, b.clone(), Event::Binary(Bytes::from(b.clone()))),
                            Msg::Text(t) => (1, t.as_bytes().to_vec(), Event::Text(Bytes::from(t.clone()))),
                            Msg::Ping(_) => unreachable!(),
                        };
                        // Fragment boundaries anywhere, even mid-character.
                        let mut at: Vec<usize> = cuts.iter().map(|&c| c as usize % (data.len() + 1)).collect();
                        at.retain(|&a| a < data.len());
                        at.sort_unstable();
                        at.dedup();
                        let mut start = 0;
                        let mut first = true;
                        for &end in at.iter().chain(std::iter::once(&data.len())) {
                            let fin = end == data.len();
                            let b0 = (if first { op } else { 0 }) | if fin { 0x80 } else { 0 };
                            stream.extend(client_frame(b0, &data[start..end], key()));
                            if !fin && end % 3 == 0 {
                                // A control frame between fragments.
                                stream.extend(client_frame(0x8A, b"hb", key()));
                                want.push(Event::Pong(Bytes::from_static(b"hb")));
                            }
                            start = end;
                            first = false;
                        }
                        want.push(event);
                    }
                }
            }
            let mut dec = Decoder::new(1 << 16);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(e) = dec.decode(&mut buf).unwrap() {
                    got.push(e);
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert!(!dec.in_message());
            prop_assert_eq!(got, want);
        }

        /// Arbitrary bytes never panic the decoder, in one piece or fed
        /// byte by byte, and both ways agree.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let whole = decode_all(&mut Decoder::new(256), &bytes);
            let bytewise = decode_bytewise(&mut Decoder::new(256), &bytes);
            prop_assert_eq!(whole, bytewise);
        }
    }
}
