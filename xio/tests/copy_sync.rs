//! Copy brick: plain copy, fast full sync (only differing chunks travel), strict write order,
//! persisted restart position and resume, limiter, and over the remote client with cuts.

mod remote_common;
use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::{Aio, Info, Limiter, Op, Output, Rates, Rejected};
use mars_net::fault::{FaultPlan, FaultProxy};
use parking_lot::Mutex;
use proptest::prelude::*;
use remote_common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xio::copy::*;
use xio::remote::*;

fn disk(size: usize, seed: Option<u64>) -> Arc<MemDisk> {
    let d = MemDisk::new("d", size, MemDiskMode::Threaded(2));
    if let Some(s) = seed {
        brick_core::write_all(&*d, 0, &pattern(s, size)).unwrap();
    }
    d
}

fn cfg(chunk: usize) -> CopyConfig {
    let mut c = CopyConfig::new();
    c.chunk = chunk;
    c.persist_every = Duration::from_millis(20);
    c
}

#[test]
fn plain_copy_copies_everything() {
    let a = disk(3 << 20, Some(1));
    let b = disk(3 << 20, Some(2));
    let mut c = cfg(256 << 10);
    c.fast = false;
    c.end = Some((3 << 20) - 1000); // an unaligned end
    let p = Copy::new("c", Arc::new(LocalSource(a.clone())), b.clone(), c)
        .run()
        .unwrap();
    assert!(p.complete);
    assert_eq!(p.transferred, (3 << 20) - 1000);
    let (ca, cb) = (a.contents(), b.contents());
    assert_eq!(ca[..(3 << 20) - 1000], cb[..(3 << 20) - 1000]);
    assert_ne!(ca[(3 << 20) - 1000..], cb[(3 << 20) - 1000..]);
}

#[test]
fn fast_sync_transfers_only_differing_chunks() {
    let a = disk(4 << 20, Some(1));
    let b = disk(4 << 20, None);
    brick_core::write_all(&*b, 0, &a.contents()).unwrap();
    // Three chunks differ (one byte each, one of them in the last chunk).
    for pos in [70_000u64, 1_000_000, (4 << 20) - 1] {
        brick_core::write_all(&*b, pos, &[0x5a]).unwrap();
    }
    let p = Copy::new(
        "c",
        Arc::new(LocalSource(a.clone())),
        b.clone(),
        cfg(64 << 10),
    )
    .run()
    .unwrap();
    assert_eq!(p.transferred, 3 * (64 << 10));
    assert_eq!(p.skipped, (4 << 20) - 3 * (64 << 10));
    assert_eq!(a.contents(), b.contents());
}

/// An output that records the order in which writes are submitted and completes them late,
/// out of order.
struct Recorder {
    inner: Arc<MemDisk>,
    order: Mutex<Vec<u64>>,
}

impl Output for Recorder {
    fn info(&self) -> brick_core::Result<Info> {
        self.inner.info()
    }
    fn submit(&self, req: Box<Aio>) -> std::result::Result<(), Rejected> {
        if req.op == Op::Write {
            self.order.lock().push(req.pos);
        }
        self.inner.submit(req)
    }
}

#[test]
fn writes_are_submitted_in_strict_order() {
    let a = disk(8 << 20, Some(7));
    let b = Arc::new(Recorder {
        inner: disk(8 << 20, None),
        order: Mutex::new(Vec::new()),
    });
    let mut c = cfg(64 << 10);
    c.window = 16;
    c.fast = false;
    Copy::new("c", Arc::new(LocalSource(a.clone())), b.clone(), c)
        .run()
        .unwrap();
    let order = b.order.lock().clone();
    assert_eq!(order.len(), 128);
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "writes out of order: {order:?}"
    );
    assert_eq!(a.contents(), b.inner.contents());
}

#[test]
fn restart_position_is_persisted_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let rf = dir.path().join("restart");
    let a = disk(16 << 20, Some(3));
    let b = disk(16 << 20, None);
    let mut c = cfg(128 << 10);
    c.fast = false;
    c.restart_file = Some(rf.clone());
    // Slow the first run down and stop it in the middle.
    c.limiter = Some(Limiter::new(Rates {
        ops_per_sec: 0,
        bytes_per_sec: 20 << 20,
    }));
    let copy = Copy::new("c", Arc::new(LocalSource(a.clone())), b.clone(), c.clone());
    let c2 = copy.clone();
    // Stop once the first chunks are through (the limiter keeps the rest for > 0.7 s).
    let stopper = std::thread::spawn(move || {
        wait_for("the first chunks", || c2.progress().restart_pos > 0);
        c2.stop();
    });
    let p1 = copy.run().unwrap();
    stopper.join().unwrap();
    assert!(!p1.complete);
    let stored = restart::load(&rf).unwrap().unwrap();
    assert_eq!(stored.pos, p1.restart_pos);
    assert!(stored.pos > 0 && stored.pos < 16 << 20, "{stored:?}");
    // Everything below the restart position is on B.
    let (ca, cb) = (a.contents(), b.contents());
    assert_eq!(ca[..stored.pos as usize], cb[..stored.pos as usize]);
    // The second run starts there, not at zero.
    c.limiter = None;
    let p2 = Copy::new("c", Arc::new(LocalSource(a.clone())), b.clone(), c)
        .run()
        .unwrap();
    assert!(p2.complete);
    assert_eq!(p2.resumed_from, stored.pos);
    assert_eq!(p2.transferred, (16 << 20) - stored.pos);
    assert_eq!(a.contents(), b.contents());
    assert_eq!(restart::load(&rf).unwrap().unwrap().pos, 16 << 20);
}

#[test]
fn limiter_bounds_the_rate() {
    let a = disk(4 << 20, Some(4));
    let b = disk(4 << 20, None);
    let mut c = cfg(64 << 10);
    c.fast = false;
    c.limiter = Some(Limiter::new(Rates {
        ops_per_sec: 0,
        bytes_per_sec: 8 << 20,
    }));
    let t = Instant::now();
    Copy::new("c", Arc::new(LocalSource(a.clone())), b.clone(), c)
        .run()
        .unwrap();
    // 4 MiB at 8 MiB/s: at least ~0.5 s minus the burst allowance.
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(a.contents(), b.contents());
}

#[test]
fn target_too_small_is_a_clear_error() {
    let a = disk(2 << 20, Some(1));
    let b = disk(1 << 20, None);
    let e = Copy::new("c", Arc::new(LocalSource(a)), b, cfg(64 << 10))
        .run()
        .unwrap_err();
    assert!(e.to_string().contains("grow the target"), "{e}");
}

#[test]
fn fast_sync_over_the_network_with_cuts() {
    let a = disk(16 << 20, Some(9));
    let b = disk(16 << 20, None);
    brick_core::write_all(&*b, 0, &a.contents()[..8 << 20]).unwrap();
    let ex = Exports::new(None);
    ex.add_device("data", a.clone());
    let node = ex.listen("127.0.0.1:0", net("primary")).unwrap();
    let proxy = FaultProxy::start(node.local_addr(), FaultPlan::default()).unwrap();
    let client = RemoteClient::start(
        "data@primary",
        client_cfg(proxy.addr(), Target::Device("data".into())),
    );
    let mut c = cfg(256 << 10);
    c.window = 8;
    c.limiter = Some(Limiter::new(Rates {
        ops_per_sec: 0,
        bytes_per_sec: 16 << 20,
    }));
    let copy = Copy::new("sync", client.clone(), b.clone(), c);
    // Cut the links each time the copy has made progress, up to 3 times, and wait until the
    // client saw the cut (a reconnect). The limiter keeps the copy running for > 0.5 s.
    let cutter = {
        let (copy, client) = (copy.clone(), client.clone());
        std::thread::spawn(move || {
            let done = |p: &CopyProgress| p.transferred + p.skipped;
            let mut seen = 0;
            for _ in 0..3 {
                wait_for("progress", || {
                    let p = copy.progress();
                    p.complete || done(&p) > seen
                });
                let p = copy.progress();
                if p.complete {
                    break;
                }
                seen = done(&p);
                let before = client.reconnects();
                proxy.cut_all();
                wait_for("a reconnect after the cut", || {
                    client.reconnects() > before || copy.progress().complete
                });
            }
            proxy
        })
    };
    let p = copy.run().unwrap();
    let _proxy = cutter.join().unwrap();
    assert!(p.complete);
    assert!(client.reconnects() >= 1, "no cut reached the client");
    assert_eq!(p.skipped, 8 << 20);
    assert_eq!(p.transferred, 8 << 20);
    assert_eq!(a.contents(), b.contents());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Fast sync makes B equal A whatever differs, and transfers exactly the differing chunks.
    #[test]
    fn fast_sync_equals_source(diffs in proptest::collection::vec((0usize..(1 << 20), any::<u8>()), 0..20),
                               chunk_kb in prop_oneof![Just(4usize), Just(64), Just(256)],
                               window in 1usize..6) {
        let a = MemDisk::new("a", 1 << 20, MemDiskMode::Inline);
        brick_core::write_all(&*a, 0, &pattern(5, 1 << 20)).unwrap();
        let b = MemDisk::new("b", 1 << 20, MemDiskMode::Inline);
        brick_core::write_all(&*b, 0, &a.contents()).unwrap();
        let chunk = chunk_kb << 10;
        for (pos, v) in &diffs {
            brick_core::write_all(&*b, *pos as u64, &[*v]).unwrap();
        }
        // A byte rewritten with its old value leaves its chunk clean: compare exactly.
        let (ca, cb) = (a.contents(), b.contents());
        let dirty: Vec<usize> = (0..(1 << 20) / chunk)
            .filter(|k| ca[k * chunk..(k + 1) * chunk] != cb[k * chunk..(k + 1) * chunk])
            .collect();
        let mut c = cfg(chunk);
        c.window = window;
        let p = Copy::new("c", Arc::new(LocalSource(a.clone())), b.clone(), c).run().unwrap();
        prop_assert_eq!(p.transferred as usize, dirty.len() * chunk);
        prop_assert_eq!(a.contents(), b.contents());
    }
}

#[test]
fn stopping_while_the_source_is_unreachable_keeps_the_restart_position() {
    let dir = tempfile::tempdir().unwrap();
    let a = disk(8 << 20, Some(12));
    let b = disk(8 << 20, None);
    let ex = Exports::new(None);
    ex.add_device("data", a.clone());
    let node = ex.listen("127.0.0.1:0", net("primary")).unwrap();
    let proxy = FaultProxy::start(node.local_addr(), FaultPlan::default()).unwrap();
    let mut ccfg = client_cfg(proxy.addr(), Target::Device("data".into()));
    ccfg.timeout = Duration::from_millis(200);
    let client = RemoteClient::start("data", ccfg);
    let mut c = cfg(256 << 10);
    c.fast = false;
    c.window = 4;
    c.restart_file = Some(dir.path().join("restart"));
    c.limiter = Some(Limiter::new(Rates {
        ops_per_sec: 0,
        bytes_per_sec: 16 << 20,
    }));
    let copy = Copy::new("sync", client.clone(), b.clone(), c);
    let c2 = copy.clone();
    let h = std::thread::spawn(move || c2.run());
    wait_for("the first chunks", || copy.progress().restart_pos > 0);
    proxy.set_down(true);
    proxy.cut_all();
    // The copy is now retrying against an unreachable source: the client keeps failing to
    // reconnect (its links stay down), and the copy has not finished.
    wait_for("the links to go down", || client.connected_links() == 0);
    assert!(!copy.progress().complete);
    copy.stop();
    let p = h
        .join()
        .unwrap()
        .expect("a stop during retries is not an error");
    assert!(!p.complete);
    let rp = restart::load(&dir.path().join("restart")).unwrap().unwrap();
    assert_eq!(rp.pos, p.restart_pos);
    assert!(rp.pos > 0 && rp.pos < 8 << 20, "{rp:?}");
    assert_eq!(
        a.contents()[..rp.pos as usize],
        b.contents()[..rp.pos as usize]
    );
}

#[test]
fn fast_sync_adapts_to_long_differing_runs() {
    // First half differs everywhere, second half is identical.
    let a = disk(4 << 20, Some(21));
    let b = disk(4 << 20, None);
    brick_core::write_all(&*b, 2 << 20, &a.contents()[2 << 20..]).unwrap();
    let mut c = cfg(4096);
    c.window = 4;
    let p = Copy::new("c", Arc::new(LocalSource(a.clone())), b.clone(), c)
        .run()
        .unwrap();
    assert_eq!(a.contents(), b.contents());
    // Everything that differs travels, and at most 15 identical chunks (plus the window)
    // after the differing run before a probe switches comparing back on.
    assert!(p.transferred >= 2 << 20);
    assert!(p.transferred <= (2 << 20) + (15 + 4) * 4096, "{p:?}");
}
