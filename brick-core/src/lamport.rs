//! A physical Lamport clock (upstream's `lamport.c`): stamps are nanoseconds since the Unix
//! epoch, never behind local real time, strictly increasing for local events, and advanced past
//! every remote stamp observed, except that a remote stamp further than `max_future` ahead of
//! local real time is clamped (a peer with a broken clock cannot drag us into the far future).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A Lamport stamp: nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Stamp(pub u64);

impl Stamp {
    /// Seconds and nanoseconds, as upstream prints them (`sec.nsec`).
    pub fn to_sec_nsec(self) -> (u64, u32) {
        (self.0 / 1_000_000_000, (self.0 % 1_000_000_000) as u32)
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, ns) = self.to_sec_nsec();
        write!(f, "{s}.{ns:09}")
    }
}

/// Where real time comes from (tests inject a fake one).
pub trait TimeSource: Send + Sync {
    /// Nanoseconds since the Unix epoch.
    fn now_ns(&self) -> u64;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemTimeSource;

impl TimeSource for SystemTimeSource {
    fn now_ns(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    }
}

/// What [`LamportClock::observe`] did with a remote stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// The remote stamp was within bounds and has been taken into account.
    Accepted,
    /// The remote stamp was too far in the future; the clock advanced only to the bound.
    Clamped {
        /// How far ahead of local real time the remote stamp was.
        ahead: Duration,
    },
}

/// The clock.
pub struct LamportClock<T: TimeSource = SystemTimeSource> {
    last: AtomicU64,
    max_future: Duration,
    time: T,
}

impl LamportClock<SystemTimeSource> {
    /// A clock on real time, accepting remote stamps up to `max_future` ahead.
    pub fn new(max_future: Duration) -> Self {
        LamportClock::with_time(SystemTimeSource, max_future)
    }
}

impl<T: TimeSource> LamportClock<T> {
    /// A clock on a custom time source.
    pub fn with_time(time: T, max_future: Duration) -> Self {
        LamportClock {
            last: AtomicU64::new(0),
            max_future,
            time,
        }
    }

    /// Read the clock without creating an event: `max(real time, last stamp)`.
    pub fn peek(&self) -> Stamp {
        Stamp(self.time.now_ns().max(self.last.load(Ordering::SeqCst)))
    }

    /// A stamp for a new local event: strictly greater than every stamp handed out or observed
    /// before, and not behind real time.
    pub fn now(&self) -> Stamp {
        let real = self.time.now_ns();
        let mut cur = self.last.load(Ordering::SeqCst);
        loop {
            let next = real.max(cur.saturating_add(1));
            match self
                .last
                .compare_exchange_weak(cur, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return Stamp(next),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Take a remote stamp into account: later local stamps are greater than it (or than the
    /// future bound, if it was beyond).
    pub fn observe(&self, remote: Stamp) -> Observed {
        let real = self.time.now_ns();
        let bound = real.saturating_add(self.max_future.as_nanos() as u64);
        let (target, result) = if remote.0 > bound {
            (
                bound,
                Observed::Clamped {
                    ahead: Duration::from_nanos(remote.0 - real),
                },
            )
        } else {
            (remote.0, Observed::Accepted)
        };
        self.last.fetch_max(target, Ordering::SeqCst);
        if let Observed::Clamped { ahead } = result {
            tracing::warn!(
                remote = %remote,
                ahead_ms = ahead.as_millis() as u64,
                "remote Lamport stamp is too far in the future; clamped (check the peer's clock / NTP)"
            );
        }
        result
    }
}
