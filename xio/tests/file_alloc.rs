//! Heap allocations per request through the file backends in steady state, counted over all
//! threads (the completion thread and workers included) by a counting global allocator. Its own
//! test binary with a single test, so nothing else allocates while it measures.
//!
//! Requests are recycled through an `AioPool` and completed into a pre-allocated slot.

use brick_core::{Aio, AioPool, Completer, Op, Output};
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use xio::file::{self, Backend, FileOptions};

mod counting;

struct Park {
    slot: Mutex<Option<Box<Aio>>>,
    cv: Condvar,
}

impl Completer for Park {
    fn complete(&self, req: Box<Aio>) {
        *self.slot.lock() = Some(req);
        self.cv.notify_one();
    }
}

#[test]
fn steady_state_requests_allocate_nothing() {
    let cases = [
        (Backend::IoUring, false),
        (Backend::Sync, false),
        // O_DIRECT: the bounce buffers stay with the pooled request (aio) or the worker (sio).
        (Backend::IoUring, true),
        (Backend::Sync, true),
    ];
    for (backend, direct) in cases {
        // Not the system temp dir for O_DIRECT: tmpfs has none.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let opts = FileOptions {
            create_size: Some(1 << 20),
            direct,
            ..FileOptions::default()
        };
        let f = file::open(dir.path().join("disk.img"), backend, &opts).unwrap();
        let pool = AioPool::new(4);
        let park = Arc::new(Park {
            slot: Mutex::new(None),
            cv: Condvar::new(),
        });
        let hook: Arc<dyn Completer> = park.clone();
        let payload = vec![0x5au8; 4096];
        let one = |i: u64| {
            let op = match i % 3 {
                0 => Op::Write,
                1 => Op::Read,
                _ => Op::Flush,
            };
            let mut req = pool.get(op, (i * 4096) % (1 << 20), 4096);
            if op == Op::Write {
                req.data.extend_from_slice(&payload);
            }
            req.push_hook(hook.clone());
            f.submit(req).expect("accepted");
            let mut g = park.slot.lock();
            let done = loop {
                if let Some(r) = g.take() {
                    break r;
                }
                park.cv.wait(&mut g);
            };
            drop(g);
            assert!(done.error.is_none(), "{:?}", done.error);
            pool.put(done);
        };
        // Warm up long enough that every worker thread has parked and woken a few times.
        for i in 0..1000 {
            one(i);
        }
        let n = 3000;
        let ((), allocs) = counting::count(|| {
            for i in 0..n {
                one(i);
            }
        });
        eprintln!("{backend:?} (direct: {direct}): {allocs} allocations in {n} requests");
        // Per-request allocation would show as >= n. A handful of one-off allocations (a
        // worker thread parking for the first time grows a waiter list inside the channel or
        // the lock's parking table) is not per request; CI saw 1 in 3000 once.
        assert!(
            allocs <= 3,
            "{backend:?} (direct: {direct}): {allocs} allocations in {n} steady-state requests: something allocates per request"
        );
    }
}
