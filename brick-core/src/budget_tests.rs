use super::*;
use proptest::prelude::*;

fn pool(limit: u64, used: u64, floors: u64, excess: u64) -> PoolCounts {
    PoolCounts {
        limit,
        used,
        floors,
        excess,
    }
}

fn share(used: u64, floor: u64, cap: u64) -> ShareCounts {
    ShareCounts { used, floor, cap }
}

#[test]
fn admits_golden() {
    // (node, share, n, admitted, why)
    #[rustfmt::skip]
    let rows = [
        (pool(100, 0, 50, 0), share(0, 10, 100), 500, true, "alone on the node: oversized goes"),
        (pool(100, 90, 50, 50), share(0, 10, 100), 10, true, "within the floor, node full"),
        (pool(100, 90, 50, 50), share(5, 10, 100), 6, false, "1 beyond the floor, no room"),
        (pool(100, 60, 50, 20), share(20, 10, 100), 30, true, "beyond the floor, 30 of room"),
        (pool(100, 60, 50, 20), share(20, 10, 100), 31, false, "beyond the room"),
        (pool(100, 10, 50, 0), share(10, 10, 20), 11, false, "over the cap"),
        (pool(100, 10, 50, 0), share(0, 10, 5), 8, true, "over the cap, but holds nothing"),
        (pool(100, 10, 120, 0), share(0, 0, 100), 1, false, "floors over the limit: no room"),
    ];
    for (p, s, n, want, why) in rows {
        assert_eq!(admits(p, s, n), want, "{why}: {p:?} {s:?} n={n}");
    }
}

#[test]
fn never_more_than_depth() {
    let a = MemBudget::new(2);
    assert!(a.take(1, Duration::ZERO));
    assert!(a.take(1, Duration::ZERO));
    assert!(!a.take(1, Duration::ZERO));
    assert!(!a.take(1, Duration::from_millis(5)));
    a.give(1);
    assert!(a.take(1, Duration::ZERO));
    assert_eq!(a.used(), 2);
}

#[test]
fn a_waiter_gets_a_released_slot() {
    let a = MemBudget::new(1);
    assert!(a.take(1, Duration::ZERO));
    let b = a.clone();
    let t = std::thread::spawn(move || b.take(1, Duration::from_secs(10)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.waits() == 0 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    a.give(1);
    assert!(t.join().unwrap());
    assert_eq!(a.used(), 1);
}

#[test]
fn a_busy_share_uses_what_the_others_leave_and_never_their_floors() {
    let node = NodeBudget::new(100);
    let busy = node.share(10, 100);
    let idle = node.share(30, 100);
    let got: Vec<_> = std::iter::from_fn(|| busy.try_acquire(10))
        .take(20)
        .collect();
    assert_eq!(got.len(), 7, "busy gets 100 minus idle's floor of 30");
    assert!(busy.pressure());
    let floor = idle.try_acquire(30).expect("the idle share's floor");
    assert_eq!(node.used(), 100);
    assert!(
        idle.try_acquire(1).is_none(),
        "beyond its floor on a full node"
    );
    drop(floor);
    drop(idle);
    assert_eq!(
        node.counts().floors,
        10,
        "a dropped share gives its floor back"
    );
    assert!(busy.try_acquire(30).is_some());
}

#[test]
fn a_floor_beyond_the_node_is_cut_to_what_fits() {
    let node = NodeBudget::new(100);
    let first = node.share(80, 100);
    assert_eq!(first.floor(), 80);
    assert_eq!(node.share(80, 100).floor(), 20);
}

#[test]
fn a_waiter_of_one_share_is_woken_by_a_release_of_another() {
    let node = NodeBudget::new(100);
    let (a, b) = (node.share(0, 100), node.share(0, 100));
    let held = a.acquire(100);
    let b2 = b.clone();
    let t = std::thread::spawn(move || b2.acquire(50).bytes());
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.waits() == 0 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(b.used(), 0, "must wait while the node is full");
    drop(held);
    assert_eq!(t.join().unwrap(), 50);
    assert_eq!((node.used(), b.used(), a.used()), (0, 0, 0));
}

#[derive(Debug, Clone)]
enum Op {
    Take { share: usize, n: u64 },
    Release { share: usize, which: usize },
}

fn op(shares: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..shares, 1u64..40).prop_map(|(share, n)| Op::Take { share, n }),
        (0..shares, any::<usize>()).prop_map(|(share, which)| Op::Release { share, which }),
    ]
}

proptest! {
    /// Random takes and releases on shares of one node: the node never holds more than its
    /// limit, the counts agree, every share can always get the rest of its floor, and
    /// everything is released at the end.
    #[test]
    fn accounting_holds(
        limit in 50u64..400,
        shares in prop::collection::vec((0u64..60, 1u64..400), 1..6),
        ops in prop::collection::vec(op(6), 1..200),
    ) {
        let node = NodeBudget::new(limit);
        let sh: Vec<_> = shares.iter().map(|&(f, c)| node.share(f, c)).collect();
        let mut held: Vec<Vec<Reservation>> = sh.iter().map(|_| Vec::new()).collect();
        prop_assert!(node.counts().floors <= limit);
        for o in ops {
            match o {
                Op::Take { share, n } => {
                    let i = share % sh.len();
                    if let Some(r) = sh[i].try_acquire(n) {
                        held[i].push(r);
                    }
                }
                Op::Release { share, which } => {
                    let i = share % sh.len();
                    if !held[i].is_empty() {
                        let w = which % held[i].len();
                        held[i].swap_remove(w);
                    }
                }
            }
            let c = node.counts();
            // Larger than its share could ever hold: admitted alone, may exceed the limit.
            let most = |i: usize| sh[i].floor() + limit - c.floors;
            let oversized = (0..sh.len()).any(|i| held[i].iter().any(|r| r.bytes() > most(i)));
            if !oversized {
                prop_assert!(c.used <= limit, "over the node limit: {c:?}");
                let claimed: u64 = sh.iter().map(|s| s.used().max(s.floor())).sum();
                prop_assert!(claimed <= limit, "floors not covered: {claimed} > {limit}");
            }
            prop_assert_eq!(c.used, sh.iter().map(|s| s.used()).sum::<u64>());
            for (i, s) in sh.iter().enumerate() {
                let held_i: u64 = held[i].iter().map(Reservation::bytes).sum();
                prop_assert_eq!(s.used(), held_i);
                let rest = s.floor().saturating_sub(s.used());
                if rest > 0 && !oversized {
                    prop_assert!(s.try_acquire(rest).is_some(), "floor of share {} not grantable", i);
                }
            }
        }
        held.clear();
        prop_assert_eq!(node.counts(), PoolCounts { limit, used: 0, floors: node.counts().floors, excess: 0 });
        drop(sh);
        prop_assert_eq!(node.counts().floors, 0);
    }
}
