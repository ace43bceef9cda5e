//! Emptied vectors kept for reuse on one core, so that a buffer the hot
//! path fills and drains per write (frames taken by a writer, the parts
//! of a vectored write, TLS records sealed for one) is allocated once per
//! core rather than once per use. A pool lives in a thread-local: each
//! core runs on one thread, so it is per-core state with no sharing.

use std::cell::RefCell;

/// A per-core pool of emptied vectors: at most `keep` of them, none whose
/// capacity exceeds `max_capacity` (a burst's large vector is freed, not
/// kept for ever).
pub(crate) struct VecPool<T> {
    spare: RefCell<Vec<Vec<T>>>,
    keep: usize,
    max_capacity: usize,
}

impl<T> VecPool<T> {
    /// An empty pool (for a `thread_local!` initialiser).
    pub(crate) const fn new(keep: usize, max_capacity: usize) -> VecPool<T> {
        VecPool {
            spare: RefCell::new(Vec::new()),
            keep,
            max_capacity,
        }
    }

    /// An empty vector, from the pool when it has one.
    pub(crate) fn take(&self) -> Vec<T> {
        self.spare.borrow_mut().pop().unwrap_or_default()
    }

    /// Takes `v` back, emptied (dropping what it still holds), unless it
    /// never allocated, grew beyond the pool's bound, or the pool is full.
    pub(crate) fn give(&self, mut v: Vec<T>) {
        if v.capacity() == 0 || v.capacity() > self.max_capacity {
            return;
        }
        v.clear();
        let mut spare = self.spare.borrow_mut();
        if spare.len() < self.keep {
            spare.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn vectors_come_back_emptied_and_bounded() {
        let pool: VecPool<Rc<u8>> = VecPool::new(2, 100);
        let held = Rc::new(1);
        let mut v = pool.take();
        v.push(held.clone());
        let cap = v.capacity();
        pool.give(v);
        assert_eq!(Rc::strong_count(&held), 1, "a pooled vector kept its items");
        let again = pool.take();
        assert!(again.is_empty());
        assert_eq!(again.capacity(), cap);

        pool.give(Vec::with_capacity(101));
        assert_eq!(
            pool.take().capacity(),
            0,
            "a huge vector is freed, not kept"
        );
        pool.give(Vec::new());
        assert_eq!(
            pool.take().capacity(),
            0,
            "an unallocated vector is not kept"
        );

        for _ in 0..3 {
            pool.give(Vec::with_capacity(10));
        }
        let kept = (0..3).filter(|_| pool.take().capacity() > 0).count();
        assert_eq!(kept, 2, "the pool keeps at most `keep`");
    }
}
