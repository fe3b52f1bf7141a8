//! Heap allocations per write through the trans_logger in steady state, writeback included,
//! counted over all threads by a counting global allocator (its own test binary with a single
//! test, so nothing else allocates while it measures).
//!
//! The client recycles its requests and refills the buffer each completed write hands back
//! (the logger keeps the written buffer and returns a recycled one). Measured: 5.6 allocations
//! per write before writeback's requests were pooled, the buffer pool covered two writeback
//! rounds and a write's bytes and budget shared one `Arc`; 2.1–2.3 after. What is left: the
//! payload `Arc` (1), B-tree node churn of the index (~0.5), per-round vectors, and buffer
//! pool misses in bursts.

use brick_core::{AioPool, CompletionQueue, Op};
use std::time::Duration;
use xio::file::{self, Backend, FileOptions};
use xio::logger::{LoggerConfig, TransLogger};

mod counting;

#[test]
fn steady_state_writes_allocate_little_with_writeback_running() {
    const REGION: u64 = 16 << 20;
    const QD: usize = 16;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = file::open(
        dir.path().join("data.img"),
        Backend::IoUring,
        &FileOptions {
            create_size: Some(REGION),
            ..FileOptions::default()
        },
    )
    .unwrap();
    // A small budget and short rounds: writeback runs all the time, as under a sustained load.
    let cfg = LoggerConfig {
        resource: "alloc".into(),
        node: "n0".into(),
        mem_budget: 16 << 20,
        writeback_round: 1 << 20,
        ..LoggerConfig::default()
    };
    let logger = TransLogger::open(data, &dir.path().join("logs"), cfg).unwrap();
    let cq = CompletionQueue::new();
    let pool = AioPool::new(QD);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next_pos = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % (REGION / 4096)) * 4096
    };
    let submit = |mut req: Box<brick_core::Aio>, pos: u64| {
        req.op = Op::Write;
        req.pos = pos;
        req.len = 4096;
        req.data.clear();
        req.data.resize(4096, (pos >> 12) as u8);
        cq.submit(&*logger, req).expect("accepted");
    };
    for _ in 0..QD {
        submit(pool.get(Op::Write, 0, 4096), next_pos());
    }
    let mut run = |n: u64| {
        for _ in 0..n {
            let done = cq.recv();
            assert!(done.error.is_none(), "{:?}", done.error);
            submit(done, next_pos());
        }
    };
    // Warm up: several budgets' worth, so that writeback, the buffer pool and the index have
    // reached their steady state.
    run(12_000);
    let n = 20_000;
    let ((), allocs) = counting::count(|| run(n));
    for _ in 0..QD {
        cq.recv();
    }
    let status = logger.status();
    logger.writeback_all(Duration::from_secs(30)).unwrap();
    logger.close().unwrap();
    let per_write = allocs as f64 / n as f64;
    eprintln!(
        "{allocs} allocations in {n} writes ({per_write:.2} per write); {} writeback rounds",
        status.writeback_rounds
    );
    assert!(
        status.writeback_rounds > 5,
        "writeback did not run while measuring"
    );
    // See the module docs: a regression of one allocation per write shows as >= 3.3.
    assert!(
        per_write < 3.0,
        "{per_write:.2} allocations per write in steady state: something allocates per request again"
    );
}
