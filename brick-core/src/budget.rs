//! A memory budget with back-pressure (replaces upstream's `brick_mem` accounting): holders of
//! buffers acquire bytes before allocating; when the budget is exhausted, acquirers wait until
//! others release. Nothing is dropped and nothing fails for lack of budget.
//!
//! A single acquisition larger than the whole budget is admitted when nothing else is held, so
//! an oversized request can never deadlock.

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct State {
    used: u64,
}

/// A shared budget of bytes.
#[derive(Debug)]
pub struct MemBudget {
    limit: AtomicU64,
    state: Mutex<State>,
    freed: Condvar,
    peak: AtomicU64,
    waits: AtomicU64,
}

impl MemBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(MemBudget {
            limit: AtomicU64::new(limit),
            state: Mutex::new(State { used: 0 }),
            freed: Condvar::new(),
            peak: AtomicU64::new(0),
            waits: AtomicU64::new(0),
        })
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit.load(Relaxed)
    }

    /// Change the limit; waiters re-check.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Relaxed);
        self.freed.notify_all();
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.state.lock().used
    }

    /// The most bytes ever held at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(Relaxed)
    }

    /// How many acquisitions had to wait.
    pub fn waits(&self) -> u64 {
        self.waits.load(Relaxed)
    }

    fn fits(&self, used: u64, n: u64) -> bool {
        used == 0 || used.saturating_add(n) <= self.limit()
    }

    fn take(&self, st: &mut State, n: u64) {
        st.used += n;
        self.peak.fetch_max(st.used, Relaxed);
    }

    /// Acquire `n` bytes, waiting as long as needed.
    pub fn acquire(self: &Arc<Self>, n: u64) -> Reservation {
        let mut st = self.state.lock();
        if !self.fits(st.used, n) {
            self.waits.fetch_add(1, Relaxed);
            while !self.fits(st.used, n) {
                self.freed.wait(&mut st);
            }
        }
        self.take(&mut st, n);
        Reservation {
            budget: self.clone(),
            bytes: n,
        }
    }

    /// Acquire `n` bytes if that is possible within `timeout`.
    pub fn acquire_timeout(self: &Arc<Self>, n: u64, timeout: Duration) -> Option<Reservation> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        if !self.fits(st.used, n) {
            self.waits.fetch_add(1, Relaxed);
            while !self.fits(st.used, n) {
                if self.freed.wait_until(&mut st, deadline).timed_out() && !self.fits(st.used, n) {
                    return None;
                }
            }
        }
        self.take(&mut st, n);
        Some(Reservation {
            budget: self.clone(),
            bytes: n,
        })
    }

    /// Acquire `n` bytes only if available now.
    pub fn try_acquire(self: &Arc<Self>, n: u64) -> Option<Reservation> {
        self.acquire_timeout(n, Duration::ZERO)
    }

    fn release(&self, n: u64) {
        let mut st = self.state.lock();
        st.used -= n;
        drop(st);
        self.freed.notify_all();
    }
}

/// Bytes held from a [`MemBudget`]; released on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemBudget>,
    bytes: u64,
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}
