//! Per-core IO buffers, so that an idle connection owns none.
//!
//! Almost every connection is idle almost all the time; a read buffer of
//! its own (or, with io_uring, one lent to the kernel for as long as the
//! read waits) would cost each of them kilobytes for nothing. Instead a
//! connection waits for readability holding no buffer, and only then
//! reads into its core's receive chunk. Frames decoded from a read are
//! split off that chunk (zero-copy, reference-counted), so the chunk's
//! memory goes back once the last frame cut from it is dropped; a
//! connection keeps bytes of its own only while a frame is unfinished.
//!
//! Each core runs on one thread, so thread-locals are per-core state with
//! no sharing; no borrow of them is held across an `.await`.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

use crate::vec_pool::VecPool;

/// Size of a fresh receive chunk: many small frames per allocation.
const CHUNK: usize = 64 * 1024;
/// A read is never offered less room than this.
const MIN_SPARE: usize = 4 * 1024;
/// Scratch for syscall reads that need an initialised slice (TLS
/// ciphertext, the io_uring backend's readiness reads): one TLS record
/// and then some.
const RAW: usize = 64 * 1024;
/// Write buffers kept for reuse per core.
const POOLED_VECS: usize = 64;
/// Write buffers larger than this are freed rather than pooled.
const POOLED_VEC_MAX: usize = 256 * 1024;
/// One allocation of the write scratch: the headers and small frames of
/// many writes are cut from it, and it is reused in place once every
/// write cut from it is done.
const SCRATCH_CHUNK: usize = 16 * 1024;
/// Lists of a vectored write's buffers kept for reuse per core.
const POOLED_PARTS: usize = 64;
/// Lists longer than this are freed rather than pooled.
const POOLED_PARTS_MAX: usize = 1024;

thread_local! {
    static RECV: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    static RAW_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static VECS: VecPool<u8> = const { VecPool::new(POOLED_VECS, POOLED_VEC_MAX) };
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::with_capacity(SCRATCH_CHUNK));
    static PARTS: VecPool<Bytes> = const { VecPool::new(POOLED_PARTS, POOLED_PARTS_MAX) };
}

/// Runs `read` on this core's receive chunk (with at least 4 KiB of room)
/// and returns what it read, split off the chunk: the caller owns those
/// bytes, the chunk keeps only its unused room.
pub fn read_into_chunk<E>(
    read: impl FnOnce(&mut BytesMut) -> Result<usize, E>,
) -> Result<BytesMut, E> {
    RECV.with(|cell| {
        let mut chunk = cell.borrow_mut();
        if chunk.capacity() - chunk.len() < MIN_SPARE {
            *chunk = BytesMut::with_capacity(CHUNK);
        }
        let result = read(&mut chunk);
        // Whatever was read (even before an error) leaves with the caller,
        // so the next connection starts on an empty chunk.
        let got = chunk.split();
        result.map(|_| got)
    })
}

/// Runs `f` on this core's raw scratch slice (64 KiB, initialised once).
pub fn with_raw<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    RAW_BUF.with(|cell| {
        let mut raw = cell.borrow_mut();
        if raw.len() < RAW {
            raw.resize(RAW, 0);
        }
        f(&mut raw)
    })
}

/// Runs `f` on this core's write scratch: the headers and small frames
/// of the write being built. The caller splits off what it filled, so the
/// buffer is shared by the core's connections rather than owned by each,
/// and a write costs no allocation of its own: the scratch's chunk is
/// replaced (or reclaimed in place, when no write still holds a piece of
/// it) only once it is full.
pub fn with_scratch<R>(f: impl FnOnce(&mut BytesMut) -> R) -> R {
    SCRATCH.with(|cell| f(&mut cell.borrow_mut()))
}

/// An empty buffer for a write, from this core's pool when it has one.
pub fn take_vec() -> Vec<u8> {
    VECS.with(VecPool::take)
}

/// Gives a write buffer back to this core's pool.
pub fn give_vec(v: Vec<u8>) {
    VECS.with(|pool| pool.give(v));
}

/// An empty list for a vectored write's buffers, from this core's pool
/// when it has one.
pub fn take_parts() -> Vec<Bytes> {
    PARTS.with(VecPool::take)
}

/// Gives a list of buffers back to this core's pool, releasing the
/// buffers it still holds.
pub fn give_parts(parts: Vec<Bytes>) {
    PARTS.with(|pool| pool.give(parts));
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn reads_leave_with_the_caller_and_the_chunk_keeps_only_room() {
        let a = read_into_chunk::<()>(|b| {
            b.extend_from_slice(b"hello");
            Ok(5)
        })
        .unwrap();
        let b = read_into_chunk::<()>(|b| {
            // The next read starts empty, with room to read into.
            assert!(b.is_empty());
            assert!(b.capacity() >= MIN_SPARE);
            b.extend_from_slice(b"world");
            Ok(5)
        })
        .unwrap();
        assert_eq!(&a[..], b"hello");
        assert_eq!(&b[..], b"world");
    }

    #[test]
    fn a_failed_read_gives_its_bytes_up_with_the_error() {
        let r = read_into_chunk(|b| {
            b.extend_from_slice(b"partial");
            Err("boom")
        });
        assert_eq!(r.unwrap_err(), "boom");
        let next = read_into_chunk::<()>(|b| {
            assert!(
                b.is_empty(),
                "a failed read's bytes must not leak into the next"
            );
            Ok(0)
        })
        .unwrap();
        assert!(next.is_empty());
    }

    #[test]
    fn the_pool_reuses_write_buffers_but_not_huge_ones() {
        let mut v = take_vec();
        v.extend_from_slice(&[1; 1000]);
        let cap = v.capacity();
        give_vec(v);
        let again = take_vec();
        assert!(again.is_empty());
        assert_eq!(again.capacity(), cap);
        give_vec(Vec::with_capacity(POOLED_VEC_MAX + 1));
        assert_eq!(
            take_vec().capacity(),
            0,
            "a huge buffer is freed, not pooled"
        );
    }

    fn cut(byte: u8, n: usize) -> Bytes {
        with_scratch(|s| {
            s.put_bytes(byte, n);
            s.split().freeze()
        })
    }

    #[test]
    fn writes_are_cut_from_one_scratch_chunk_reused_once_released() {
        let first = cut(0, 100);
        let base = first.as_ptr() as usize;
        drop(first);
        // Three chunks' worth of writes, each done before the next: all of
        // them come from the first allocation.
        for _ in 0..3 * SCRATCH_CHUNK / 100 {
            let piece = cut(1, 100);
            let at = piece.as_ptr() as usize;
            assert!(
                (base..base + SCRATCH_CHUNK).contains(&at),
                "a write allocated although the scratch was free"
            );
        }
    }

    #[test]
    fn a_write_in_flight_keeps_its_bytes_while_the_scratch_moves_on() {
        let held = cut(7, 100);
        for i in 0..3 * SCRATCH_CHUNK / 100 {
            drop(cut(i as u8, 100));
        }
        assert_eq!(&held[..], &[7; 100][..]);
    }

    #[test]
    fn the_pool_reuses_lists_of_parts_and_releases_their_buffers() {
        let mut parts = take_parts();
        let body = Bytes::from(vec![1u8; 10]);
        parts.push(body.clone());
        let cap = parts.capacity();
        give_parts(parts);
        assert!(body.is_unique(), "a pooled list still held a buffer");
        let again = take_parts();
        assert!(again.is_empty());
        assert_eq!(again.capacity(), cap);
    }
}
