//! Writeback merges adjacent extents: 4 KiB sequential writes reach the data device as a few
//! large writes (and the data is still exact, with a hole and an overwrite in between).

use brick_core::bricks::{MemDisk, MemDiskMode, Probe};
use brick_core::{Aio, Brick, Op};
use std::time::Duration;
use xio::fault::MemLogStore;
use xio::logger::{LoggerConfig, TransLogger};

#[test]
fn adjacent_writes_are_written_back_as_few_large_requests() {
    const BLOCK: usize = 4096;
    const BLOCKS: u64 = 512; // 2 MiB
    let mem = MemDisk::new("data", 4 << 20, MemDiskMode::Inline);
    let probe = Probe::new("data-probe", mem.clone());
    let cfg = LoggerConfig {
        resource: "wb".into(),
        node: "n0".into(),
        writeback_delay: Duration::from_secs(60),
        ..LoggerConfig::default()
    };
    let logger = TransLogger::open_store(
        probe.clone(),
        std::sync::Arc::new(MemLogStore::new(64 << 20)),
        cfg,
    )
    .unwrap();
    let mut want = vec![0u8; 4 << 20];
    for b in 0..BLOCKS {
        if b == 300 {
            continue; // a hole: splits the run
        }
        let data = vec![(b % 251) as u8 + 1; BLOCK];
        let pos = b * BLOCK as u64;
        want[pos as usize..pos as usize + BLOCK].copy_from_slice(&data);
        brick_core::run(&*logger, Aio::write(pos, data)).unwrap();
    }
    // An overwrite of the middle of a block: its piece is newer, the rest of the block older.
    brick_core::run(
        &*logger,
        Aio::write(10 * BLOCK as u64 + 100, vec![0xee; 50]),
    )
    .unwrap();
    want[10 * BLOCK + 100..10 * BLOCK + 150].fill(0xee);
    brick_core::run(&*logger, Aio::new(Op::Flush, 0, 0)).unwrap();
    let before = probe.stats().submitted;
    logger.writeback_all(Duration::from_secs(30)).unwrap();
    let writes = probe.stats().submitted - before;
    // 2 MiB in 1 MiB merges, split by the hole: about 3 writes, plus the flushes.
    assert!(
        writes <= 8,
        "{writes} requests to write back {BLOCKS} adjacent blocks: not merged"
    );
    assert_eq!(mem.contents(), want);
    logger.close().unwrap();
}

/// The buffers of written-back writes are kept for the next writes while writes flow (up to
/// the budget: fresh pages cost the kernel's zeroing), and given back once the writes slow
/// down to a trickle (or stop).
#[test]
fn a_burst_leaves_its_buffers_for_reuse_until_the_writes_slow_down() {
    const MIB: usize = 1 << 20;
    const WRITES: usize = 96;
    // A data file: writeback writes from the payloads (a device without a gather write would
    // take a pooled buffer per run to copy into).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = xio::file::open(
        dir.path().join("data.img"),
        xio::file::Backend::IoUring,
        &xio::file::FileOptions {
            create_size: Some(128 << 20),
            ..xio::file::FileOptions::default()
        },
    )
    .unwrap();
    let cfg = LoggerConfig {
        resource: "pool".into(),
        node: "n0".into(),
        mem_budget: 256 << 20,
        // The burst stays in the index (below half the budget) until `writeback_all`: a
        // completed write takes a recycled buffer back out of the pool. The trickle after
        // it stays there too: the index is never empty.
        writeback_delay: Duration::from_secs(60),
        ..LoggerConfig::default()
    };
    let logger = TransLogger::open_store(
        data.clone(),
        std::sync::Arc::new(MemLogStore::new(256 << 20)),
        cfg,
    )
    .unwrap();
    for i in 0..WRITES {
        let data = vec![i as u8 + 1; MIB];
        brick_core::run(&*logger, Aio::write((i * MIB) as u64, data)).unwrap();
    }
    // Everything durable (writeback takes durable data only), then written back.
    brick_core::run(&*logger, Aio::new(Op::Flush, 0, 0)).unwrap();
    logger.writeback_all(Duration::from_secs(30)).unwrap();
    let kept = logger.status().pool_kept;
    // More than a quarter of the budget (the bound before): nearly every buffer of the burst.
    assert!(
        kept > (64 * MIB) as u64,
        "the pool keeps the burst's buffers: {kept} bytes"
    );
    // A trickle: one 4 KiB write every 20 ms, for at most 20 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut n = 0u64;
    while logger.status().pool_kept > 1 << 20 && std::time::Instant::now() < deadline {
        let pos = (100 * MIB) as u64 + (n % 1024) * 4096;
        brick_core::run(&*logger, Aio::write(pos, vec![7u8; 4096])).unwrap();
        n += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let kept = logger.status().pool_kept;
    assert!(
        kept <= 1 << 20,
        "a logger down to a trickle keeps at most 1 MiB of buffers: {kept} bytes"
    );
    assert!(
        logger.status().versions > 0,
        "the trickle is still in the index"
    );
    logger.close().unwrap();
    let back = brick_core::read_all(&*data, 95 * MIB as u64, MIB).unwrap();
    assert!(back.iter().all(|&b| b == 96));
}
