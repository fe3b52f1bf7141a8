//! The bounded queue depth of a file brick: at most `depth` requests in flight. A submitter
//! beyond the depth waits a short, configurable time for a slot and is then refused with
//! [`brick_core::Error::Busy`] (the request is handed back, never lost).

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// A counting gate with blocking acquire and a deadline.
#[derive(Debug)]
pub(crate) struct Admission {
    inflight: AtomicUsize,
    depth: usize,
    waiters: AtomicUsize,
    lock: Mutex<()>,
    freed: Condvar,
}

impl Admission {
    pub(crate) fn new(depth: usize) -> Self {
        Admission {
            inflight: AtomicUsize::new(0),
            depth: depth.max(1),
            waiters: AtomicUsize::new(0),
            lock: Mutex::new(()),
            freed: Condvar::new(),
        }
    }

    /// Requests in flight.
    pub(crate) fn inflight(&self) -> usize {
        self.inflight.load(SeqCst)
    }

    /// The configured depth.
    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    fn try_acquire(&self) -> bool {
        let mut cur = self.inflight.load(SeqCst);
        while cur < self.depth {
            match self
                .inflight
                .compare_exchange_weak(cur, cur + 1, SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
        false
    }

    /// Take a slot, waiting at most `wait`. `Err(inflight)` when none became free.
    pub(crate) fn acquire(&self, wait: Duration) -> Result<(), usize> {
        if self.try_acquire() {
            return Ok(());
        }
        if wait.is_zero() {
            return Err(self.inflight());
        }
        let deadline = Instant::now() + wait;
        self.waiters.fetch_add(1, SeqCst);
        let mut g = self.lock.lock();
        // Trying under the lock pairs with `release` notifying under the lock: no lost wake-up.
        let got = loop {
            if self.try_acquire() {
                break true;
            }
            if self.freed.wait_until(&mut g, deadline).timed_out() {
                break self.try_acquire();
            }
        };
        drop(g);
        self.waiters.fetch_sub(1, SeqCst);
        if got {
            Ok(())
        } else {
            Err(self.inflight())
        }
    }

    /// Give a slot back.
    pub(crate) fn release(&self) {
        let before = self.inflight.fetch_sub(1, SeqCst);
        debug_assert!(before > 0, "admission released more often than acquired");
        if self.waiters.load(SeqCst) > 0 {
            let _g = self.lock.lock();
            self.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn never_more_than_depth() {
        let a = Admission::new(2);
        assert!(a.acquire(Duration::ZERO).is_ok());
        assert!(a.acquire(Duration::ZERO).is_ok());
        assert_eq!(a.acquire(Duration::ZERO), Err(2));
        assert_eq!(a.acquire(Duration::from_millis(5)), Err(2));
        a.release();
        assert!(a.acquire(Duration::ZERO).is_ok());
        assert_eq!(a.inflight(), 2);
    }

    #[test]
    fn a_waiter_gets_a_released_slot() {
        let a = Arc::new(Admission::new(1));
        a.acquire(Duration::ZERO).unwrap();
        let b = a.clone();
        let t = std::thread::spawn(move || b.acquire(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        a.release();
        assert!(t.join().unwrap().is_ok());
        assert_eq!(a.inflight(), 1);
    }
}
