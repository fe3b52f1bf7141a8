//! [`BufPool`]: recycles write buffers, so that a steady stream of writes allocates nothing.
//!
//! A write's buffer moves into the index (no copy); the request completes with a recycled,
//! empty buffer in its place, which the client refills. When a version leaves the index
//! (written back, or overwritten) and nobody else holds its buffer, the buffer returns here.
//! Measured before: per 4 KiB write, two `malloc`s and two cross-thread `free`s were ~10 % of
//! the logger's CPU under random writes.
//!
//! **How much is kept.** While writes flow, up to the logger's memory budget: every buffer
//! in the pool was in use under the budget a moment ago, so the pool never holds more than
//! the budget's worth, and a steady stream finds its buffers here instead of in fresh pages
//! (the kernel zeroing fresh huge pages was 35 % of the process's samples under 1 MiB
//! sequential writes with a pool of a quarter of the budget). Every second that it rests,
//! the writeback thread [`trim`](BufPool::trim)s it to the peak budget use of that second
//! (at least [`IDLE_KEPT_BYTES`], `wb_policy::pool_keep`): an idle resource, or one down to
//! a trickle, does not keep a burst's memory while other resources of the node need theirs.

use crossbeam_queue::SegQueue;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Buffers up to this capacity are *small* (4 KiB writes); larger ones, up to
/// [`MAX_KEPT_CAPACITY`], are *large* (1 MiB sequential writes) and are handed out only for
/// writes larger than this, so that a 4 KiB write never holds a 1 MiB buffer.
const SMALL_CAPACITY: usize = 64 << 10;
/// Buffers larger than this are not kept (a few of them would hold much memory).
const MAX_KEPT_CAPACITY: usize = 4 << 20;
/// At least this many small buffers are kept.
const MIN_KEPT: usize = 256;
/// What an idle logger's pool keeps ([`BufPool::trim`]): a few hundred 4 KiB buffers.
pub(crate) const IDLE_KEPT_BYTES: usize = MIN_KEPT * 4096;

/// A bounded, lock-free pool of empty byte buffers, in two size classes. The queues grow
/// and shrink with what they hold (an idle pool costs nothing), the bound is in bytes.
pub(crate) struct BufPool {
    small: SegQueue<Vec<u8>>,
    large: SegQueue<Vec<u8>>,
    /// Capacity of the buffers kept, and its bound (`kept` may overshoot `max_bytes` by one
    /// buffer per racing `put`).
    kept: AtomicUsize,
    max_bytes: usize,
}

impl BufPool {
    /// A pool that keeps up to `bytes` worth of buffers (at least [`MIN_KEPT`] 4 KiB ones).
    /// Buffers come back in bursts, a whole writeback round's versions at once: a pool
    /// smaller than a round frees most of them and the client side allocates them again
    /// (measured: 256 kept buffers against 32 MiB rounds left malloc and free at ~12 % of the
    /// logger's CPU under 4 KiB random writes). Large buffers are kept too: a fresh 1 MiB
    /// buffer per sequential write cost page faults and zeroing (`clear_page_erms`, 4.6 % of
    /// the process's samples under 1 MiB writes QD8).
    pub fn new(bytes: usize) -> BufPool {
        BufPool {
            small: SegQueue::new(),
            large: SegQueue::new(),
            kept: AtomicUsize::new(0),
            max_bytes: bytes.max(IDLE_KEPT_BYTES),
        }
    }

    /// The capacity of the buffers kept now.
    pub fn kept_bytes(&self) -> usize {
        self.kept.load(Relaxed)
    }

    /// Let go of kept buffers, large ones first, until at most `keep` bytes are kept.
    pub fn trim(&self, keep: usize) {
        for class in [&self.large, &self.small] {
            while self.kept.load(Relaxed) > keep {
                let Some(buf) = class.pop() else { break };
                self.kept.fetch_sub(buf.capacity(), Relaxed);
            }
        }
    }

    /// An empty buffer for a write like one of `len` bytes, with capacity when one of its
    /// size class was recycled.
    pub fn get_for(&self, len: usize) -> Vec<u8> {
        let class = if len > SMALL_CAPACITY {
            &self.large
        } else {
            &self.small
        };
        match class.pop() {
            Some(buf) => {
                self.kept.fetch_sub(buf.capacity(), Relaxed);
                buf
            }
            None => Vec::new(),
        }
    }

    /// Keep `buf` for reuse if it is small enough and there is room; drop it otherwise.
    pub fn put(&self, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap == 0 || cap > MAX_KEPT_CAPACITY || self.kept.load(Relaxed) + cap > self.max_bytes {
            return;
        }
        buf.clear();
        let class = if cap > SMALL_CAPACITY {
            &self.large
        } else {
            &self.small
        };
        self.kept.fetch_add(cap, Relaxed);
        class.push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(pool: &BufPool, len: usize) -> Vec<usize> {
        std::iter::from_fn(|| Some(pool.get_for(len)))
            .take_while(|b| b.capacity() > 0)
            .map(|b| b.capacity())
            .collect()
    }

    #[test]
    fn keeps_a_rounds_worth_of_4k_buffers() {
        let pool = BufPool::new(8 << 20);
        for _ in 0..4096 {
            pool.put(vec![0u8; 4096]);
        }
        assert_eq!(drain(&pool, 4096).len(), 2048);
        // Bounded in bytes too: big buffers fill it sooner.
        for _ in 0..4096 {
            pool.put(vec![0u8; 64 << 10]);
        }
        assert_eq!(drain(&pool, 4096).len(), 128);
    }

    #[test]
    fn large_buffers_are_kept_for_large_writes_only() {
        let pool = BufPool::new(8 << 20);
        pool.put(vec![0u8; 4096]);
        for _ in 0..10 {
            pool.put(vec![0u8; 1 << 20]);
        }
        assert_eq!(
            drain(&pool, 4096),
            vec![4096],
            "a small write gets a small buffer"
        );
        let large = drain(&pool, 1 << 20);
        assert_eq!(large.len(), 7, "bounded by the pool's bytes");
        assert!(large.iter().all(|&c| c >= 1 << 20));
        pool.put(vec![0u8; MAX_KEPT_CAPACITY + 1]);
        assert!(
            drain(&pool, MAX_KEPT_CAPACITY + 1).is_empty(),
            "too large to keep"
        );
    }

    #[test]
    fn keeps_small_buffers_up_to_its_bound_and_hands_them_out_empty() {
        let pool = BufPool::new(0);
        pool.put(vec![1u8; 4096]);
        pool.put(Vec::new());
        let b = pool.get_for(0);
        assert!(b.is_empty() && b.capacity() >= 4096);
        assert_eq!(pool.get_for(0).capacity(), 0, "nothing else was kept");
        for _ in 0..MIN_KEPT + 10 {
            pool.put(vec![0u8; 4096]);
        }
        assert_eq!(drain(&pool, 512).len(), MIN_KEPT);
    }

    #[test]
    fn keeps_up_to_its_bound_while_busy_and_trims_large_buffers_first() {
        let pool = BufPool::new(256 << 20);
        for _ in 0..300 {
            pool.put(vec![0u8; 1 << 20]);
        }
        for _ in 0..2000 {
            pool.put(vec![0u8; 4096]);
        }
        assert_eq!(pool.kept_bytes(), 256 << 20, "bounded in bytes");
        let pool = BufPool::new(256 << 20);
        for _ in 0..200 {
            pool.put(vec![0u8; 1 << 20]);
        }
        for _ in 0..2000 {
            pool.put(vec![0u8; 4096]);
        }
        assert_eq!(pool.kept_bytes(), (200 << 20) + (2000 * 4096));
        pool.trim(IDLE_KEPT_BYTES);
        assert!(pool.kept_bytes() <= IDLE_KEPT_BYTES);
        assert!(
            drain(&pool, 1 << 20).is_empty(),
            "the large ones went first"
        );
        assert_eq!(drain(&pool, 4096).len(), MIN_KEPT);
        assert_eq!(pool.kept_bytes(), 0);
    }
}
