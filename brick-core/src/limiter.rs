//! Hierarchical rate limiter (upstream's `lib_limiter`): limits operations per second and bytes
//! per second; a limiter may have a parent (e.g. per-resource under a global sync limit), and an
//! amount must pass every level.
//!
//! The algorithm is virtual scheduling (GCRA): each level keeps a "theoretical arrival time";
//! an amount is admitted at `max(now, tat)` and pushes `tat` by `amount / rate`. So over any
//! window `W`, what passes is at most `rate * W + burst + one request`, an upper bound that holds
//! however loaded the machine is (late callers only make it smaller).

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rates of one level; 0 means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    /// Operations per second.
    pub ops_per_sec: u64,
    /// Bytes per second.
    pub bytes_per_sec: u64,
}

#[derive(Debug)]
struct Level {
    rates: Rates,
    tat_ops: Option<Instant>,
    tat_bytes: Option<Instant>,
}

/// One node of a limiter hierarchy.
#[derive(Debug)]
pub struct Limiter {
    level: Mutex<Level>,
    parent: Option<Arc<Limiter>>,
    burst: Duration,
}

impl Limiter {
    /// A root limiter.
    pub fn new(rates: Rates) -> Arc<Self> {
        Arc::new(Limiter::build(rates, None))
    }

    /// A limiter below `parent`.
    pub fn child(parent: &Arc<Limiter>, rates: Rates) -> Arc<Self> {
        Arc::new(Limiter::build(rates, Some(parent.clone())))
    }

    fn build(rates: Rates, parent: Option<Arc<Limiter>>) -> Self {
        Limiter {
            level: Mutex::new(Level {
                rates,
                tat_ops: None,
                tat_bytes: None,
            }),
            parent,
            burst: Duration::from_millis(20),
        }
    }

    /// Change this level's rates (takes effect for the next admission).
    pub fn set_rates(&self, rates: Rates) {
        self.level.lock().rates = rates;
    }

    /// This level's rates.
    pub fn rates(&self) -> Rates {
        self.level.lock().rates
    }

    /// Reserve `ops` operations and `bytes` bytes at every level and return how long the caller
    /// must wait before doing the work (zero if it may go now).
    pub fn reserve(&self, ops: u64, bytes: u64) -> Duration {
        let now = Instant::now();
        let mut chain: Vec<&Limiter> = Vec::with_capacity(4);
        let mut node = Some(self);
        while let Some(l) = node {
            chain.push(l);
            node = l.parent.as_deref();
        }
        // Lock child to root (a consistent order), find the latest admission time over all
        // levels, then charge every level from that time.
        let mut guards: Vec<_> = chain.iter().map(|l| l.level.lock()).collect();
        let start = guards
            .iter()
            .map(|g| g.earliest(now, self.burst))
            .max()
            .unwrap_or(now);
        for g in guards.iter_mut() {
            g.charge(start, ops, bytes);
        }
        start.saturating_duration_since(now)
    }

    /// Reserve and sleep until admitted.
    pub fn wait(&self, ops: u64, bytes: u64) {
        let d = self.reserve(ops, bytes);
        if !d.is_zero() {
            std::thread::sleep(d);
        }
    }
}

impl Level {
    fn earliest(&self, now: Instant, burst: Duration) -> Instant {
        let slack = |tat: Option<Instant>| tat.map_or(now, |t| t.checked_sub(burst).unwrap_or(t));
        let mut at = now;
        if self.rates.ops_per_sec > 0 {
            at = at.max(slack(self.tat_ops));
        }
        if self.rates.bytes_per_sec > 0 {
            at = at.max(slack(self.tat_bytes));
        }
        at
    }

    fn charge(&mut self, start: Instant, ops: u64, bytes: u64) {
        let push = |tat: &mut Option<Instant>, amount: u64, rate: u64| {
            let base = tat.map_or(start, |t| t.max(start));
            *tat = Some(base + Duration::from_nanos(amount.saturating_mul(1_000_000_000) / rate));
        };
        if self.rates.ops_per_sec > 0 {
            push(&mut self.tat_ops, ops, self.rates.ops_per_sec);
        }
        if self.rates.bytes_per_sec > 0 {
            push(&mut self.tat_bytes, bytes, self.rates.bytes_per_sec);
        }
    }
}
