//! One counting gate for everything that is admitted by the unit: bytes of memory (replaces
//! upstream's `brick_mem` accounting), requests of a queue depth. Holders acquire units before
//! they use them; when the gate is full, acquirers wait until others release. Nothing is
//! dropped and nothing fails for lack of budget (unless the caller asked for a deadline).
//!
//! Budgets are hierarchical: a [`NodeBudget`] (say, the memory of one `marsd`) is shared by
//! [`MemBudget`]s (one per resource), each with a *floor* and a *cap*:
//! - a share can always get its floor: the node keeps the unused part of every floor free, so
//!   an idle or slow resource is never starved by a busy one;
//! - a share may hold up to its cap, using what the other shares leave beyond their floors;
//! - a waiter is woken whenever any share of the node releases (one condition variable per
//!   node), so an exhausted node cannot deadlock as long as holders release eventually.
//!
//! The accounting is `Σ max(used, floor) ≤ limit`: the units beyond the floors (the node's
//! *excess*) fit in `limit − Σ floors`. [`admits`] is that rule as a pure function.
//!
//! A single acquisition larger than its share could ever hold (`floor + limit − Σ floors`) is
//! admitted when the whole node holds nothing, so an oversized request can never deadlock (it
//! may then exceed the limit alone).

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The node-wide counts, changed under the pool's mutex only.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolCounts {
    /// The node's limit.
    pub limit: u64,
    /// Units held by all shares.
    pub used: u64,
    /// Sum of the shares' floors.
    pub floors: u64,
    /// Units held beyond the floors, summed over the shares.
    pub excess: u64,
}

/// A share's own numbers, for [`admits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareCounts {
    /// Units it holds.
    pub used: u64,
    /// Units it can always get.
    pub floor: u64,
    /// Units it may hold at most.
    pub cap: u64,
}

/// How much of the node's excess taking `n` more units costs a share.
fn excess_delta(s: ShareCounts, n: u64) -> u64 {
    let over = |u: u64| u.saturating_sub(s.floor);
    over(s.used.saturating_add(n)) - over(s.used)
}

/// Units beyond the floors that are still free on the node.
fn room(p: PoolCounts) -> u64 {
    p.limit.saturating_sub(p.floors).saturating_sub(p.excess)
}

/// May share `s` take `n` more units of node `p` now? (The rule of the module docs.)
pub fn admits(p: PoolCounts, s: ShareCounts, n: u64) -> bool {
    if p.used == 0 {
        return true; // alone on the node: even an oversized request goes, or it never would
    }
    let under_cap = s.used == 0 || s.used.saturating_add(n) <= s.cap;
    under_cap && excess_delta(s, n) <= room(p)
}

/// The shared part of a node: its counts and the one condition variable all waiters sleep on.
/// The `usize` beside the counts is the number of waiters.
#[derive(Debug)]
struct Pool {
    counts: Mutex<(PoolCounts, usize)>,
    freed: Condvar,
    /// Mirrors of the counts for lock-free reads.
    used: AtomicU64,
    room: AtomicU64,
    limit: AtomicU64,
    peak: AtomicU64,
    waits: AtomicU64,
}

impl Pool {
    fn new(limit: u64) -> Arc<Pool> {
        Arc::new(Pool {
            counts: Mutex::new((
                PoolCounts {
                    limit,
                    ..PoolCounts::default()
                },
                0,
            )),
            freed: Condvar::new(),
            used: AtomicU64::new(0),
            room: AtomicU64::new(limit),
            limit: AtomicU64::new(limit),
            peak: AtomicU64::new(0),
            waits: AtomicU64::new(0),
        })
    }

    fn mirror(&self, p: PoolCounts) {
        self.used.store(p.used, Relaxed);
        self.room.store(room(p), Relaxed);
        self.limit.store(p.limit, Relaxed);
        self.peak.fetch_max(p.used, Relaxed);
    }

    /// Wake every waiter (any release may let any share go on).
    fn wake(&self, waiting: usize) {
        if waiting > 0 {
            self.freed.notify_all();
        }
    }
}

/// A node's budget: the limit that all its shares ([`MemBudget`]s) draw from together.
#[derive(Debug, Clone)]
pub struct NodeBudget {
    pool: Arc<Pool>,
}

impl NodeBudget {
    /// A node budget of `limit` units.
    pub fn new(limit: u64) -> NodeBudget {
        NodeBudget {
            pool: Pool::new(limit),
        }
    }

    /// A new share with `floor` units always available to it, at most `cap` held. The floor
    /// granted is at most the cap and what still fits beside the other shares' floors and
    /// excess (see [`MemBudget::floor`]): the caller compares it with what it asked for and
    /// tells the operator.
    pub fn share(&self, floor: u64, cap: u64) -> Arc<MemBudget> {
        let mut g = self.pool.counts.lock();
        let p = &mut g.0;
        let floor = floor
            .min(cap)
            .min(p.limit.saturating_sub(p.floors).saturating_sub(p.excess));
        p.floors += floor;
        let p = *p;
        self.pool.mirror(p);
        drop(g);
        Arc::new(MemBudget::in_pool(self.pool.clone(), floor, cap))
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.pool.limit.load(Relaxed)
    }

    /// Units held by all shares now.
    pub fn used(&self) -> u64 {
        self.pool.used.load(Relaxed)
    }

    /// The most units ever held at once.
    pub fn peak(&self) -> u64 {
        self.pool.peak.load(Relaxed)
    }

    /// How many acquisitions of any share had to wait.
    pub fn waits(&self) -> u64 {
        self.pool.waits.load(Relaxed)
    }

    /// The counts now (consistent with each other).
    pub fn counts(&self) -> PoolCounts {
        self.pool.counts.lock().0
    }
}

/// A budget of units: a share of a [`NodeBudget`], or a budget of its own ([`MemBudget::new`]).
///
/// Taking and giving back happen under the node's mutex (a few instructions); waiters sleep
/// on the node's condition variable and re-check under the same mutex, so no wake-up is lost.
#[derive(Debug)]
pub struct MemBudget {
    pool: Arc<Pool>,
    floor: u64,
    cap: AtomicU64,
    /// Changed under the pool's mutex only; read without it.
    used: AtomicU64,
    peak: AtomicU64,
    waits: AtomicU64,
}

impl MemBudget {
    /// A budget of `limit` units of its own (a node of one share, with no node limit beyond it).
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(MemBudget::in_pool(Pool::new(u64::MAX), 0, limit))
    }

    fn in_pool(pool: Arc<Pool>, floor: u64, cap: u64) -> MemBudget {
        MemBudget {
            pool,
            floor,
            cap: AtomicU64::new(cap),
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            waits: AtomicU64::new(0),
        }
    }

    /// The most this share may hold (its cap).
    pub fn limit(&self) -> u64 {
        self.cap.load(Relaxed)
    }

    /// The units this share can always get.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Change the cap; waiters re-check.
    pub fn set_limit(&self, limit: u64) {
        self.cap.store(limit, Relaxed);
        let g = self.pool.counts.lock();
        self.pool.wake(g.1);
    }

    /// Units held now.
    pub fn used(&self) -> u64 {
        self.used.load(Relaxed)
    }

    /// The most units ever held at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(Relaxed)
    }

    /// How many acquisitions had to wait.
    pub fn waits(&self) -> u64 {
        self.waits.load(Relaxed)
    }

    /// The most this share could hold now: its cap, or less when the node is crowded.
    pub fn available(&self) -> u64 {
        let used = self.used();
        let reach = used
            .max(self.floor)
            .saturating_add(self.pool.room.load(Relaxed));
        self.limit().min(reach)
    }

    /// At least half of what this share could hold now is held: whoever holds it should
    /// release (write back) now rather than later. A crowded node puts its shares under
    /// pressure early.
    pub fn pressure(&self) -> bool {
        self.used().saturating_mul(2) >= self.available()
    }

    fn counts(&self) -> ShareCounts {
        ShareCounts {
            used: self.used.load(Relaxed),
            floor: self.floor,
            cap: self.limit(),
        }
    }

    /// Take `n` units under the pool's lock if [`admits`] says so.
    fn take_locked(&self, g: &mut (PoolCounts, usize), n: u64) -> bool {
        let s = self.counts();
        if !admits(g.0, s, n) {
            return false;
        }
        g.0.used += n;
        g.0.excess += excess_delta(s, n);
        self.used.store(s.used + n, Relaxed);
        self.peak.fetch_max(s.used + n, Relaxed);
        self.pool.mirror(g.0);
        true
    }

    /// Take `n` units, waiting until `deadline` (forever when `None`); false if it passed.
    fn take_until(&self, n: u64, deadline: Option<Instant>) -> bool {
        let mut g = self.pool.counts.lock();
        if self.take_locked(&mut g, n) {
            return true;
        }
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return false;
        }
        self.waits.fetch_add(1, Relaxed);
        self.pool.waits.fetch_add(1, Relaxed);
        g.1 += 1;
        let taken = loop {
            match deadline {
                None => self.pool.freed.wait(&mut g),
                Some(d) => {
                    if self.pool.freed.wait_until(&mut g, d).timed_out() {
                        break self.take_locked(&mut g, n);
                    }
                }
            }
            if self.take_locked(&mut g, n) {
                break true;
            }
        };
        g.1 -= 1;
        taken
    }

    /// Take `n` units without a [`Reservation`], waiting at most `wait` (zero: only if they
    /// are free now). The caller gives exactly these back with [`MemBudget::give`]: for gates
    /// whose units are released on another path than the one that took them (a queue depth
    /// released by a completion).
    pub fn take(&self, n: u64, wait: Duration) -> bool {
        // The common case (the units are free) reads no clock: this is on every IO's path.
        {
            let mut g = self.pool.counts.lock();
            if self.take_locked(&mut g, n) {
                return true;
            }
            if wait.is_zero() {
                return false;
            }
        }
        self.take_until(n, Some(Instant::now() + wait))
    }

    /// Give back `n` units taken with [`MemBudget::take`].
    pub fn give(&self, n: u64) {
        let mut g = self.pool.counts.lock();
        let used = self.used.load(Relaxed);
        debug_assert!(used >= n, "budget released more than acquired");
        let n = n.min(used);
        let s = ShareCounts {
            used: used - n,
            floor: self.floor,
            cap: self.limit(),
        };
        g.0.used -= n;
        g.0.excess -= excess_delta(s, n);
        self.used.store(used - n, Relaxed);
        self.pool.mirror(g.0);
        self.pool.wake(g.1);
    }

    fn reservation(self: &Arc<Self>, n: u64) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: n,
        }
    }

    /// Acquire `n` units, waiting as long as needed.
    pub fn acquire(self: &Arc<Self>, n: u64) -> Reservation {
        self.take_until(n, None);
        self.reservation(n)
    }

    /// Acquire `n` units if that is possible within `timeout`.
    pub fn acquire_timeout(self: &Arc<Self>, n: u64, timeout: Duration) -> Option<Reservation> {
        self.take(n, timeout).then(|| self.reservation(n))
    }

    /// Acquire `n` units only if available now.
    pub fn try_acquire(self: &Arc<Self>, n: u64) -> Option<Reservation> {
        self.take(n, Duration::ZERO).then(|| self.reservation(n))
    }
}

impl Drop for MemBudget {
    /// The share's floor goes back to the node (everything it held was released: reservations
    /// hold the share).
    fn drop(&mut self) {
        let mut g = self.pool.counts.lock();
        g.0.floors -= self.floor;
        let p = g.0;
        self.pool.mirror(p);
        self.pool.wake(g.1);
    }
}

/// Units held from a [`MemBudget`]; released on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemBudget>,
    bytes: u64,
}

impl Reservation {
    /// Units held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
    }
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
