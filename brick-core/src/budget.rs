//! A memory budget with back-pressure (replaces upstream's `brick_mem` accounting): holders of
//! buffers acquire bytes before allocating; when the budget is exhausted, acquirers wait until
//! others release. Nothing is dropped and nothing fails for lack of budget.
//!
//! A single acquisition larger than the whole budget is admitted when nothing else is held, so
//! an oversized request can never deadlock.

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A shared budget of bytes.
///
/// Acquiring and releasing is an atomic operation on `used` while nobody waits; the mutex and
/// condition variable are only for waiters (a release takes the mutex only when `waiting` is
/// non-zero). No lost wake-up: a waiter registers in `waiting` and re-checks `used` under the
/// mutex before it sleeps; a releaser that sees a waiter notifies under the same mutex.
#[derive(Debug)]
pub struct MemBudget {
    limit: AtomicU64,
    used: AtomicU64,
    waiting: AtomicUsize,
    lock: Mutex<()>,
    freed: Condvar,
    peak: AtomicU64,
    waits: AtomicU64,
}

impl MemBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(MemBudget {
            limit: AtomicU64::new(limit),
            used: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            lock: Mutex::new(()),
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
        self.limit.store(limit, SeqCst);
        let _g = self.lock.lock();
        self.freed.notify_all();
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(SeqCst)
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

    /// Take `n` bytes if they fit now.
    fn try_take(&self, n: u64) -> bool {
        let mut used = self.used.load(SeqCst);
        loop {
            if !self.fits(used, n) {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(used, used + n, SeqCst, SeqCst)
            {
                Ok(_) => {
                    self.peak.fetch_max(used + n, Relaxed);
                    return true;
                }
                Err(now) => used = now,
            }
        }
    }

    fn reservation(self: &Arc<Self>, n: u64) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: n,
        }
    }

    /// Acquire `n` bytes, waiting as long as needed.
    pub fn acquire(self: &Arc<Self>, n: u64) -> Reservation {
        if !self.try_take(n) {
            self.wait_take(n, None);
        }
        self.reservation(n)
    }

    /// Wait until `n` bytes are taken (true) or `deadline` passed (false).
    fn wait_take(&self, n: u64, deadline: Option<Instant>) -> bool {
        self.waits.fetch_add(1, Relaxed);
        let mut g = self.lock.lock();
        self.waiting.fetch_add(1, SeqCst);
        let taken = loop {
            if self.try_take(n) {
                break true;
            }
            match deadline {
                None => self.freed.wait(&mut g),
                Some(d) => {
                    if self.freed.wait_until(&mut g, d).timed_out() {
                        break self.try_take(n);
                    }
                }
            }
        };
        self.waiting.fetch_sub(1, SeqCst);
        taken
    }

    /// Acquire `n` bytes if that is possible within `timeout`.
    pub fn acquire_timeout(self: &Arc<Self>, n: u64, timeout: Duration) -> Option<Reservation> {
        if self.try_take(n) || self.wait_take(n, Some(Instant::now() + timeout)) {
            Some(self.reservation(n))
        } else {
            None
        }
    }

    /// Acquire `n` bytes only if available now.
    pub fn try_acquire(self: &Arc<Self>, n: u64) -> Option<Reservation> {
        self.try_take(n).then(|| self.reservation(n))
    }

    fn release(&self, n: u64) {
        self.used.fetch_sub(n, SeqCst);
        if self.waiting.load(SeqCst) > 0 {
            let _g = self.lock.lock();
            self.freed.notify_all();
        }
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
