//! Hierarchical rate limiter (upstream's `lib_limiter`): limits operations per second and bytes
//! per second; a limiter may have a parent (e.g. per-resource under a global sync limit), and an
//! amount must pass every level.
//!
//! Each level is a token bucket per dimension whose capacity is [`BURST`] worth of its rate.
//! An amount is **admitted at the moment it is charged**, under the levels' locks, only when
//! every level has tokens; a bucket may go into debt by at most one amount. Hence over any
//! window `W`, a level admits at most `rate * (W + BURST) + one amount`: an upper bound that
//! holds however loaded the machine is, because a late caller is charged late, never in the past.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Burst allowance of every bucket, as a duration of its rate.
pub const BURST: Duration = Duration::from_millis(20);

/// Rates of one level; 0 means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    /// Operations per second.
    pub ops_per_sec: u64,
    /// Bytes per second.
    pub bytes_per_sec: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant, rate: u64) {
        let cap = capacity(rate);
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + dt * rate as f64).min(cap);
        self.refilled = self.refilled.max(now);
    }

    /// Time until the bucket can admit `amount` (zero if now).
    fn wait_for(&self, amount: u64, rate: u64) -> Duration {
        let need = (amount as f64).min(capacity(rate));
        if self.tokens >= need {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((need - self.tokens) / rate as f64)
        }
    }
}

fn capacity(rate: u64) -> f64 {
    (rate as f64 * BURST.as_secs_f64()).max(1.0)
}

#[derive(Debug)]
struct Level {
    rates: Rates,
    ops: Bucket,
    bytes: Bucket,
}

impl Level {
    fn refill(&mut self, now: Instant) {
        if self.rates.ops_per_sec > 0 {
            self.ops.refill(now, self.rates.ops_per_sec);
        }
        if self.rates.bytes_per_sec > 0 {
            self.bytes.refill(now, self.rates.bytes_per_sec);
        }
    }

    fn wait_for(&self, ops: u64, bytes: u64) -> Duration {
        let mut d = Duration::ZERO;
        if self.rates.ops_per_sec > 0 {
            d = d.max(self.ops.wait_for(ops, self.rates.ops_per_sec));
        }
        if self.rates.bytes_per_sec > 0 {
            d = d.max(self.bytes.wait_for(bytes, self.rates.bytes_per_sec));
        }
        d
    }

    fn charge(&mut self, ops: u64, bytes: u64) {
        if self.rates.ops_per_sec > 0 {
            self.ops.tokens -= ops as f64;
        }
        if self.rates.bytes_per_sec > 0 {
            self.bytes.tokens -= bytes as f64;
        }
    }
}

/// One node of a limiter hierarchy.
#[derive(Debug)]
pub struct Limiter {
    level: Mutex<Level>,
    parent: Option<Arc<Limiter>>,
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
        let now = Instant::now();
        let full = |rate: u64| Bucket {
            tokens: capacity(rate),
            refilled: now,
        };
        Limiter {
            level: Mutex::new(Level {
                rates,
                ops: full(rates.ops_per_sec),
                bytes: full(rates.bytes_per_sec),
            }),
            parent,
        }
    }

    /// Change this level's rates (takes effect for the next admission).
    pub fn set_rates(&self, rates: Rates) {
        let mut l = self.level.lock();
        l.refill(Instant::now());
        l.rates = rates;
    }

    /// This level's rates.
    pub fn rates(&self) -> Rates {
        self.level.lock().rates
    }

    /// Admit `ops` operations and `bytes` bytes at every level now, or say how long to wait
    /// before trying again (nothing is charged then).
    pub fn try_admit(&self, ops: u64, bytes: u64) -> Result<(), Duration> {
        self.try_admit_at(Instant::now(), ops, bytes)
    }

    /// [`Limiter::try_admit`] at the instant `now` instead of the wall clock: the token
    /// arithmetic as a function of time, so that a caller (a test, a simulation) can drive the
    /// limiter with its own clock. `now` should not go backwards between calls; an earlier
    /// `now` refills nothing.
    pub fn try_admit_at(&self, now: Instant, ops: u64, bytes: u64) -> Result<(), Duration> {
        let mut chain: Vec<&Limiter> = Vec::with_capacity(4);
        let mut node = Some(self);
        while let Some(l) = node {
            chain.push(l);
            node = l.parent.as_deref();
        }
        // Lock child to root: a consistent order, so concurrent callers cannot deadlock.
        let mut guards: Vec<_> = chain.iter().map(|l| l.level.lock()).collect();
        let mut wait = Duration::ZERO;
        for g in guards.iter_mut() {
            g.refill(now);
            wait = wait.max(g.wait_for(ops, bytes));
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for g in guards.iter_mut() {
            g.charge(ops, bytes);
        }
        Ok(())
    }

    /// Block until admitted, and return how long that took.
    pub fn wait(&self, ops: u64, bytes: u64) -> Duration {
        let started = Instant::now();
        while let Err(d) = self.try_admit(ops, bytes) {
            std::thread::sleep(d.max(Duration::from_micros(50)));
        }
        started.elapsed()
    }
}
