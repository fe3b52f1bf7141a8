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
