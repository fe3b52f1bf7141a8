//! Exponential backoff with jitter for reconnects.

use rand::Rng;
use std::time::Duration;

/// Exponential backoff: each delay doubles up to `max`; the returned delay is drawn uniformly
/// from `[d/2, d]` ("equal jitter") so that many clients cut at once do not reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Start at `initial`, cap at `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            current: initial,
        }
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = d / 2;
        let jitter = rand::thread_rng().gen_range(0..=half.as_micros() as u64);
        half + Duration::from_micros(jitter)
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(50), Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_bounded_and_jittered() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(160));
        let mut prev_cap = Duration::ZERO;
        for i in 0..10 {
            let cap =
                (Duration::from_millis(10) * 2u32.pow(i.min(4))).min(Duration::from_millis(160));
            let d = b.next_delay();
            assert!(
                d >= cap / 2 && d <= cap,
                "delay {d:?} outside [{:?}, {cap:?}]",
                cap / 2
            );
            assert!(cap >= prev_cap);
            prev_cap = cap;
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(10));
    }
}
