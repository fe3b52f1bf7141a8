//! Memory budget back-pressure.

use brick_core::MemBudget;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn budget_holds_under_concurrent_writers_and_nothing_is_dropped() {
    let budget = MemBudget::new(1 << 20);
    let done = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..6)
        .map(|t| {
            let (b, done) = (budget.clone(), done.clone());
            std::thread::spawn(move || {
                for i in 0..300u64 {
                    let size = 4096 * (1 + (t * 7 + i) % 64);
                    let r = b.acquire(size);
                    assert!(b.used() <= b.limit(), "over budget: {}", b.used());
                    if i.is_multiple_of(50) {
                        std::thread::sleep(Duration::from_micros(100));
                    }
                    drop(r);
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(
        done.load(Ordering::SeqCst),
        1800,
        "every acquirer got through"
    );
    assert!(budget.peak() <= budget.limit());
    assert_eq!(budget.used(), 0);
}

#[test]
fn budget_waits_instead_of_failing_and_admits_an_oversized_request_alone() {
    let budget = MemBudget::new(100);
    let a = budget.acquire(80);
    assert!(budget.try_acquire(30).is_none());
    let b2 = budget.clone();
    let waiter = std::thread::spawn(move || b2.acquire(30).bytes());
    // The event: the waiter has started waiting (counted before it blocks); bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while budget.waits() == 0 {
        assert!(
            std::time::Instant::now() < deadline && !waiter.is_finished(),
            "the acquirer did not wait while the budget is exhausted"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        !waiter.is_finished(),
        "must wait while the budget is exhausted"
    );
    drop(a);
    assert_eq!(waiter.join().unwrap(), 30);
    assert_eq!(budget.waits(), 1);
    let big = budget.acquire(1000); // larger than the whole budget, nothing else held
    assert_eq!(big.bytes(), 1000);
    assert!(budget
        .acquire_timeout(1, Duration::from_millis(20))
        .is_none());
}

/// Acquirers that can only go one at a time, released at once by another thread: a lost
/// wake-up between the atomic fast path and the waiters' condition variable would leave one
/// asleep forever (seen as a timeout here).
#[test]
fn budget_wakes_every_waiter_when_contended() {
    let budget = MemBudget::new(4);
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..4 {
        let (b, tx) = (budget.clone(), tx.clone());
        std::thread::spawn(move || {
            for _ in 0..20_000 {
                drop(b.acquire(3));
            }
            tx.send(()).unwrap();
        });
    }
    for _ in 0..4 {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("an acquirer never woke up: lost wake-up");
    }
    assert_eq!(budget.used(), 0);
    assert!(budget.peak() <= 4);
}
