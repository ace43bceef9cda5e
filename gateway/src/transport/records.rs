//! TLS 1.3 record protection for `wss://` sessions after the handshake.
//!
//! rustls runs the handshake (unbuffered, over the accepting core's
//! buffers: [`super::tls_accept`]) and then hands over the traffic secrets
//! and a [`KernelConnection`] that derives the next secrets on a key
//! update. From then on this module seals and opens the records itself,
//! as kernel TLS would, because what an idle connection costs is what it
//! holds: rustls' buffered connection keeps a deframer buffer of at least
//! 4 KiB once it has read anything, plus the connection object and both
//! directions' expanded AEAD keys (a few hundred bytes each). Here a
//! connection holds the raw key bytes, the IVs and the sequence numbers;
//! the AEAD key is expanded per batch of records (one AES key schedule
//! and GHASH table, well under a microsecond with AES-NI) and ciphertext
//! is opened in place in the core's read buffer. Bytes of a record that
//! has not fully arrived are the only thing kept per connection, and only
//! until it has.
//!
//! What the record layer must do itself (RFC 8446 section 5): one
//! sequence number per direction, the nonce as the IV xor the sequence
//! number, the record header as the additional data, the inner content
//! type and zero padding; `close_notify` and the other alerts; the peer's
//! `KeyUpdate` (new receive keys, and our own update when asked for one);
//! our own key update before a suite's confidentiality limit. Anything
//! else after the handshake (a protected handshake message other than
//! `KeyUpdate`, a record of another outer type, a record too large, more
//! than 32 records in a row without application data) ends the
//! connection with the matching alert, after which nothing more is
//! sealed or opened.

use std::io;

use bytes::BytesMut;
use ring::aead;
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{ConnectionTrafficSecrets, SupportedCipherSuite};

/// The record header: type, legacy version, length.
const HEADER: usize = 5;
/// Most plaintext one record carries.
pub const MAX_PLAINTEXT: usize = 16 * 1024;
/// Most ciphertext one record may carry (RFC 8446 section 5.2).
const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;
/// The AEAD tag of every suite we accept.
const TAG: usize = 16;
/// Records in a row that carry no application data (empty records, key
/// updates, warnings) before the peer is refused: each costs us work and
/// gives the session nothing, and a peer sending only those would keep
/// its core reading. The figure rustls and OpenSSL use.
const MAX_RECORDS_WITHOUT_DATA: u8 = 32;

const CONTENT_ALERT: u8 = 21;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPLICATION_DATA: u8 = 23;
const HANDSHAKE_KEY_UPDATE: u8 = 24;

const ALERT_WARNING: u8 = 1;
const ALERT_FATAL: u8 = 2;
const ALERT_CLOSE_NOTIFY: u8 = 0;
const ALERT_UNEXPECTED_MESSAGE: u8 = 10;
const ALERT_BAD_RECORD_MAC: u8 = 20;
const ALERT_RECORD_OVERFLOW: u8 = 22;
const ALERT_ILLEGAL_PARAMETER: u8 = 47;
const ALERT_DECODE_ERROR: u8 = 50;
const ALERT_INTERNAL_ERROR: u8 = 80;
const ALERT_USER_CANCELED: u8 = 90;

/// One direction's keys: raw bytes, expanded only while records are
/// sealed or opened.
struct Keys {
    algorithm: &'static aead::Algorithm,
    key: [u8; 32],
    iv: [u8; 12],
    seq: u64,
}

impl Keys {
    fn new(seq: u64, secrets: &ConnectionTrafficSecrets) -> io::Result<Keys> {
        let (algorithm, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv)
            }
            _ => return Err(io::Error::other("TLS cipher suite not supported")),
        };
        let (key, iv) = (key.as_ref(), iv.as_ref());
        if key.len() != algorithm.key_len() || key.len() > 32 || iv.len() != 12 {
            return Err(io::Error::other("TLS traffic secret of an unexpected size"));
        }
        let mut k = Keys {
            algorithm,
            key: [0; 32],
            iv: [0; 12],
            seq,
        };
        k.key[..key.len()].copy_from_slice(key);
        k.iv.copy_from_slice(iv);
        Ok(k)
    }

    fn expand(&self) -> aead::LessSafeKey {
        let bytes = &self.key[..self.algorithm.key_len()];
        // The length was checked when the keys were made.
        aead::LessSafeKey::new(aead::UnboundKey::new(self.algorithm, bytes).expect("key length"))
    }

    /// The next record's nonce (and the sequence number moves on).
    fn next_nonce(&mut self) -> io::Result<aead::Nonce> {
        let seq = self.seq;
        self.seq = seq
            .checked_add(1)
            .ok_or_else(|| io::Error::other("TLS sequence number exhausted"))?;
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        Ok(aead::Nonce::assume_unique_for_key(nonce))
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        // Not a guarantee (copies may have been made on the way here), but
        // the freed heap does not keep the live key.
        self.key = [0; 32];
        self.iv = [0; 12];
    }
}

/// What opening a run of ciphertext gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Opened {
    /// Bytes of plaintext appended to the destination.
    pub plaintext: usize,
    /// The peer sent `close_notify`: it sends nothing more.
    pub closed: bool,
}

/// A TLS 1.3 session's record layer once the handshake is done.
pub struct Records {
    tx: Keys,
    rx: Keys,
    /// Derives the next traffic secrets on a key update.
    kernel: KernelConnection<ServerConnectionData>,
    /// Records sealed with one send key before we move to the next
    /// (the suite's confidentiality limit, with margin).
    tx_limit: u64,
    /// The start of a record that has not fully arrived; empty (no
    /// allocation) between records.
    partial: Vec<u8>,
    /// The peer asked for a key update: ours goes before our next record.
    owe_key_update: bool,
    peer_closed: bool,
    /// An alert to send before we stop (we refused the peer's records).
    alert: Option<u8>,
    /// Our key updates so far.
    tx_updates: u32,
    /// Records since the last one with application data.
    without_data: u8,
    /// A fatal alert was sent or received: nothing more is opened, and
    /// nothing but our alert is sealed.
    failed: bool,
}

impl Records {
    /// The record layer for a finished handshake's secrets; `rest` is
    /// ciphertext the handshake read past its end (the start of the
    /// client's first records).
    pub fn new(
        tx: (u64, ConnectionTrafficSecrets),
        rx: (u64, ConnectionTrafficSecrets),
        kernel: KernelConnection<ServerConnectionData>,
        rest: &[u8],
    ) -> io::Result<Records> {
        let tx_limit = match kernel.negotiated_cipher_suite() {
            SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
            #[allow(unreachable_patterns)]
            _ => return Err(io::Error::other("wss is served over TLS 1.3 only")),
        };
        Ok(Records {
            tx: Keys::new(tx.0, &tx.1)?,
            rx: Keys::new(rx.0, &rx.1)?,
            kernel,
            // Move to new keys well before the limit (a key update is one
            // small record).
            tx_limit: tx_limit.saturating_sub(tx_limit / 16).max(1),
            partial: rest.to_vec(),
            owe_key_update: false,
            peer_closed: false,
            alert: None,
            tx_updates: 0,
            without_data: 0,
            failed: false,
        })
    }

    #[cfg(test)]
    pub(crate) fn tx_limit_for_tests(&mut self, limit: u64) {
        self.tx_limit = limit;
    }

    /// How many times we have moved to new send keys.
    pub fn tx_updates(&self) -> u32 {
        self.tx_updates
    }

    /// Whether the peer sent `close_notify`.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Whether we have a record to send even with no data (our key
    /// update, or an alert).
    pub fn wants_write(&self) -> bool {
        self.owe_key_update || self.alert.is_some()
    }

    /// Opens every whole record in what was kept from before followed by
    /// `input` (which is decrypted in place: it is scratch), appending the
    /// application data to `dst`. An unfinished record at the end is kept
    /// for the next call. Records after a `close_notify` are ignored.
    pub fn open(&mut self, input: &mut [u8], dst: &mut BytesMut) -> io::Result<Opened> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS connection failed",
            ));
        }
        if self.peer_closed {
            return Ok(Opened {
                plaintext: 0,
                closed: true,
            });
        }
        if self.partial.is_empty() {
            let (opened, used) = self.open_records(input, dst)?;
            if used < input.len() && !opened.closed {
                self.partial.extend_from_slice(&input[used..]);
            }
            return Ok(opened);
        }
        let mut joined = std::mem::take(&mut self.partial);
        joined.extend_from_slice(input);
        let (opened, used) = self.open_records(&mut joined, dst)?;
        if used < joined.len() && !opened.closed {
            joined.drain(..used);
            // At most one record's room while it is unfinished (a large
            // read may have joined it); none once it is whole (the Vec is
            // dropped). A peer trickling a record in bytes costs amortised
            // appends, not a copy of the record per byte.
            if joined.capacity() > HEADER + MAX_CIPHERTEXT {
                joined.shrink_to(HEADER + MAX_CIPHERTEXT);
            }
            self.partial = joined;
        }
        Ok(opened)
    }

    fn open_records(&mut self, buf: &mut [u8], dst: &mut BytesMut) -> io::Result<(Opened, usize)> {
        let mut opened = Opened::default();
        let mut used = 0;
        let mut key: Option<aead::LessSafeKey> = None;
        while buf.len() - used >= HEADER {
            let header: [u8; HEADER] = buf[used..used + HEADER].try_into().expect("5 bytes");
            let len = u16::from_be_bytes([header[3], header[4]]) as usize;
            if header[0] != CONTENT_APPLICATION_DATA {
                return Err(
                    self.refuse(ALERT_UNEXPECTED_MESSAGE, "TLS record of an unexpected type")
                );
            }
            if len > MAX_CIPHERTEXT {
                return Err(self.refuse(ALERT_RECORD_OVERFLOW, "TLS record too large"));
            }
            if len <= TAG {
                return Err(self.refuse(ALERT_DECODE_ERROR, "TLS record too short"));
            }
            if buf.len() - used - HEADER < len {
                break;
            }
            let nonce = self.rx.next_nonce()?;
            let body = &mut buf[used + HEADER..used + HEADER + len];
            used += HEADER + len;
            let k = key.get_or_insert_with(|| self.rx.expand());
            let Ok(plain) = k.open_in_place(nonce, aead::Aad::from(header), body) else {
                return Err(self.refuse(ALERT_BAD_RECORD_MAC, "TLS record failed authentication"));
            };
            if plain.len() > MAX_PLAINTEXT + 1 {
                return Err(self.refuse(ALERT_RECORD_OVERFLOW, "TLS record too large"));
            }
            let Some(end) = plain.iter().rposition(|&b| b != 0) else {
                return Err(self.refuse(ALERT_UNEXPECTED_MESSAGE, "TLS record without a type"));
            };
            let (content, kind) = (&plain[..end], plain[end]);
            match kind {
                CONTENT_APPLICATION_DATA if !content.is_empty() => {
                    dst.extend_from_slice(content);
                    opened.plaintext += content.len();
                    self.without_data = 0;
                    continue;
                }
                CONTENT_APPLICATION_DATA => {}
                CONTENT_ALERT => match content {
                    [_, ALERT_CLOSE_NOTIFY] => {
                        self.peer_closed = true;
                        opened.closed = true;
                        return Ok((opened, used));
                    }
                    [ALERT_WARNING, ALERT_USER_CANCELED] => {}
                    [_, d] => {
                        // Nothing is sent after a fatal alert, ours or the peer's.
                        self.failed = true;
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            format!("the peer sent TLS alert {d}"),
                        ));
                    }
                    _ => return Err(self.refuse(ALERT_DECODE_ERROR, "TLS alert malformed")),
                },
                CONTENT_HANDSHAKE => {
                    let requested = match content {
                        [HANDSHAKE_KEY_UPDATE, 0, 0, 1, r @ (0 | 1)] => *r == 1,
                        [HANDSHAKE_KEY_UPDATE, 0, 0, 1, _] => {
                            return Err(self.refuse(
                                ALERT_ILLEGAL_PARAMETER,
                                "TLS key update request neither 0 nor 1",
                            ))
                        }
                        // A key update must end its record: the keys change
                        // at the record boundary.
                        [HANDSHAKE_KEY_UPDATE, 0, 0, 1, _, ..] => {
                            return Err(self.refuse(
                                ALERT_UNEXPECTED_MESSAGE,
                                "TLS key update shares its record",
                            ))
                        }
                        [HANDSHAKE_KEY_UPDATE, ..] => {
                            return Err(self.refuse(ALERT_DECODE_ERROR, "TLS key update malformed"))
                        }
                        _ => {
                            return Err(self.refuse(
                                ALERT_UNEXPECTED_MESSAGE,
                                "TLS handshake message after the handshake",
                            ))
                        }
                    };
                    let (seq, secrets) = self
                        .kernel
                        .update_rx_secret()
                        .map_err(|e| self.refuse(ALERT_INTERNAL_ERROR, &e.to_string()))?;
                    self.rx = Keys::new(seq, &secrets)?;
                    key = None;
                    self.owe_key_update |= requested;
                }
                _ => return Err(self.refuse(ALERT_UNEXPECTED_MESSAGE, "TLS content type unknown")),
            }
            self.without_data += 1;
            if self.without_data > MAX_RECORDS_WITHOUT_DATA {
                return Err(self.refuse(
                    ALERT_UNEXPECTED_MESSAGE,
                    "too many TLS records without application data",
                ));
            }
        }
        Ok((opened, used))
    }

    /// Remembers the alert to send and makes the error for the reader.
    fn refuse(&mut self, alert: u8, why: &str) -> io::Error {
        if !self.failed {
            self.alert = Some(alert);
        }
        self.failed = true;
        io::Error::new(io::ErrorKind::InvalidData, why.to_string())
    }

    /// Seals `data` into application-data records appended to `out`
    /// (with our key update first where one is due). Empty `data` writes
    /// only that. Once the connection failed, this appends our alert (the
    /// first time) and returns an error.
    pub fn seal(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.seal_parts(&[data], out)
    }

    /// Seals the concatenation of `parts` into full records (not one per
    /// part), copying each byte once: from the part into the record.
    pub fn seal_parts<P: AsRef<[u8]>>(&mut self, parts: &[P], out: &mut Vec<u8>) -> io::Result<()> {
        if let Some(alert) = self.alert.take() {
            let key = self.tx.expand();
            seal_record(
                &key,
                &mut self.tx,
                CONTENT_ALERT,
                &[ALERT_FATAL, alert],
                out,
            )?;
        }
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS connection failed",
            ));
        }
        if self.owe_key_update {
            self.update_tx(out)?;
        }
        let mut left: usize = parts.iter().map(|p| p.as_ref().len()).sum();
        if left == 0 {
            return Ok(());
        }
        let mut key = self.tx.expand();
        let mut rest = Rest {
            parts: parts.iter().map(AsRef::as_ref),
            current: &[],
        };
        while left > 0 {
            if self.tx.seq >= self.tx_limit {
                self.update_tx(out)?;
                key = self.tx.expand();
            }
            let n = left.min(MAX_PLAINTEXT);
            seal_record_with(
                &key,
                &mut self.tx,
                CONTENT_APPLICATION_DATA,
                n,
                out,
                |out| rest.copy_into(n, out),
            )?;
            left -= n;
        }
        Ok(())
    }

    /// Appends `close_notify`: we send nothing after it.
    pub fn seal_close_notify(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "TLS connection failed",
            ));
        }
        let key = self.tx.expand();
        let alert = [ALERT_WARNING, ALERT_CLOSE_NOTIFY];
        seal_record(&key, &mut self.tx, CONTENT_ALERT, &alert, out)
    }

    /// Sends `KeyUpdate` (not asking for the peer's) under the current key,
    /// then moves to the next send key.
    fn update_tx(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let key = self.tx.expand();
        let msg = [HANDSHAKE_KEY_UPDATE, 0, 0, 1, 0];
        seal_record(&key, &mut self.tx, CONTENT_HANDSHAKE, &msg, out)?;
        let (seq, secrets) = self.kernel.update_tx_secret().map_err(io::Error::other)?;
        self.tx = Keys::new(seq, &secrets)?;
        self.owe_key_update = false;
        self.tx_updates = self.tx_updates.saturating_add(1);
        Ok(())
    }
}

/// The parts not yet sealed.
struct Rest<'a, I: Iterator<Item = &'a [u8]>> {
    parts: I,
    current: &'a [u8],
}

impl<'a, I: Iterator<Item = &'a [u8]>> Rest<'a, I> {
    /// Appends the next `n` bytes to `out` (there are at least `n`).
    fn copy_into(&mut self, mut n: usize, out: &mut Vec<u8>) {
        while n > 0 {
            if self.current.is_empty() {
                match self.parts.next() {
                    Some(p) => self.current = p,
                    None => return,
                }
                continue;
            }
            let (head, tail) = self.current.split_at(n.min(self.current.len()));
            out.extend_from_slice(head);
            self.current = tail;
            n -= head.len();
        }
    }
}

/// Appends one protected record of `data`.
fn seal_record(
    key: &aead::LessSafeKey,
    keys: &mut Keys,
    kind: u8,
    data: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    seal_record_with(key, keys, kind, data.len(), out, |out| {
        out.extend_from_slice(data)
    })
}

/// Appends one protected record: header, ciphertext of the `plain` bytes
/// that `fill` appends and of the content type, tag.
fn seal_record_with(
    key: &aead::LessSafeKey,
    keys: &mut Keys,
    kind: u8,
    plain: usize,
    out: &mut Vec<u8>,
    fill: impl FnOnce(&mut Vec<u8>),
) -> io::Result<()> {
    let len = plain + 1 + TAG;
    let header = [CONTENT_APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
    let nonce = keys.next_nonce()?;
    out.reserve(HEADER + len);
    out.extend_from_slice(&header);
    let start = out.len();
    fill(out);
    if out.len() - start != plain {
        return Err(io::Error::other("TLS record shorter than announced"));
    }
    out.push(kind);
    let tag = key
        .seal_in_place_separate_tag(nonce, aead::Aad::from(header), &mut out[start..])
        .map_err(|_| io::Error::other("TLS record sealing failed"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(())
}
