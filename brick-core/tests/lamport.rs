//! Lamport clock properties under arbitrary interleavings of local events, remote observations
//! and a real-time clock that may jump backwards (NTP corrections).

use brick_core::{LamportClock, Observed, Stamp, TimeSource};
use proptest::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Default)]
struct FakeTime(Arc<AtomicU64>);
impl TimeSource for FakeTime {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// Real time moves by this many ns (may be negative: a clock correction).
    Time(i64),
    Now,
    /// Observe a remote stamp at this offset from real time.
    Observe(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (-5_000_000_000i64..5_000_000_000).prop_map(Step::Time),
        Just(Step::Now),
        (-10_000_000_000i64..20_000_000_000).prop_map(Step::Observe),
    ]
}

const MAX_FUTURE: Duration = Duration::from_secs(10);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn lamport_properties(steps in proptest::collection::vec(step(), 1..200)) {
        let time = FakeTime::default();
        time.0.store(1_700_000_000_000_000_000, Ordering::SeqCst);
        let clock = LamportClock::with_time(time.clone(), MAX_FUTURE);
        let mut last_now = Stamp(0);
        let mut floor = 0u64; // every later `now` must exceed this
        for s in steps {
            let real = time.0.load(Ordering::SeqCst);
            match s {
                Step::Time(d) => {
                    time.0.store(real.saturating_add_signed(d), Ordering::SeqCst);
                }
                Step::Now => {
                    let n = clock.now();
                    prop_assert!(n > last_now, "strictly increasing: {n} after {last_now}");
                    prop_assert!(n.0 > floor || floor == 0, "after an observed stamp");
                    prop_assert!(n.0 >= real, "never behind real time");
                    prop_assert!(clock.peek() >= n, "peek does not go backwards");
                    last_now = n;
                    floor = floor.max(n.0);
                }
                Step::Observe(off) => {
                    let remote = Stamp(real.saturating_add_signed(off));
                    let bound = real + MAX_FUTURE.as_nanos() as u64;
                    let obs = clock.observe(remote);
                    if remote.0 > bound {
                        let clamped = matches!(obs, Observed::Clamped { .. });
                        prop_assert!(clamped, "a stamp beyond the bound is clamped");
                        prop_assert!(clock.peek().0 <= bound.max(floor), "clamped to the bound");
                        floor = floor.max(bound);
                    } else {
                        prop_assert_eq!(obs, Observed::Accepted);
                        floor = floor.max(remote.0);
                    }
                    let n = clock.now();
                    prop_assert!(n.0 > floor, "a stamp after observing exceeds it");
                    prop_assert!(n > last_now);
                    last_now = n;
                    floor = n.0;
                }
            }
        }
    }
}

#[test]
fn concurrent_now_hands_out_unique_stamps() {
    let clock = Arc::new(LamportClock::new(MAX_FUTURE));
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let c = clock.clone();
            std::thread::spawn(move || (0..20_000).map(|_| c.now()).collect::<Vec<_>>())
        })
        .collect();
    let mut all: Vec<Stamp> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "no stamp handed out twice");
}

#[test]
fn stamps_print_like_upstream() {
    assert_eq!(
        Stamp(1_700_000_000_000_000_123).to_string(),
        "1700000000.000000123"
    );
}
