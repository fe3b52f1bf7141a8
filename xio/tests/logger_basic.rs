//! Basic behaviour of the trans_logger: read-your-writes, FUA and FLUSH durability, discard and
//! write-zeroes, close and reopen on real files and on the in-memory store.

use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::{Aio, Flags, Op, Output};
use std::sync::Arc;
use std::time::Duration;
use xio::fault::{CrashMode, FaultDisk, MemLogStore};
use xio::file::{Backend, FileOptions};
use xio::logger::{LoggerConfig, TransLogger};

fn cfg() -> LoggerConfig {
    LoggerConfig {
        resource: "r0".into(),
        node: "n0".into(),
        mem_budget: 4 << 20,
        rotate_size: 256 << 10,
        writeback_delay: Duration::from_millis(20),
        ..LoggerConfig::default()
    }
}

fn op(out: &dyn Output, op: Op, pos: u64, len: usize, flags: Flags) {
    let mut r = Aio::new(op, pos, len);
    r.flags = flags;
    brick_core::run(out, r).unwrap();
}

/// A 1 MiB data file on io_uring in a fresh temp dir (which holds the logs too).
fn file_disk() -> (tempfile::TempDir, Arc<dyn Output>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = FileOptions {
        create_size: Some(1 << 20),
        ..FileOptions::default()
    };
    let data = xio::file::open(dir.path().join("disk"), Backend::IoUring, &opts).unwrap();
    (dir, data)
}

#[test]
fn read_your_writes_and_reopen_on_files() {
    let (dir, data) = file_disk();
    let logger = TransLogger::open(data.clone(), &dir.path().join("logs"), cfg()).unwrap();
    brick_core::write_all(&*logger, 4096, &[7u8; 8192]).unwrap();
    assert_eq!(
        brick_core::read_all(&*logger, 4096, 8192).unwrap(),
        vec![7u8; 8192]
    );
    op(&*logger, Op::Discard, 8192, 4096, Flags::NONE);
    op(&*logger, Op::WriteZeroes, 4096, 512, Flags::NONE);
    let got = brick_core::read_all(&*logger, 0, 16384).unwrap();
    assert_eq!(&got[..4096], &[0u8; 4096][..]);
    assert_eq!(&got[4096..4608], &[0u8; 512][..]);
    assert_eq!(&got[4608..8192], &[7u8; 3584][..]);
    assert_eq!(&got[8192..12288], &[0u8; 4096][..]);
    op(&*logger, Op::Flush, 0, 0, Flags::NONE);
    logger.close().unwrap();
    drop(logger);
    // After a clean close the data device holds everything.
    assert_eq!(
        brick_core::read_all(&*data, 4608, 10).unwrap(),
        vec![7u8; 10]
    );
    let logger = TransLogger::open(data, &dir.path().join("logs"), cfg()).unwrap();
    assert_eq!(brick_core::read_all(&*logger, 0, 16384).unwrap(), got);
}

#[test]
fn fua_write_survives_a_crash_of_both_disks() {
    let store = MemLogStore::new(1 << 20);
    let mem = MemDisk::new("data", 1 << 20, MemDiskMode::Inline);
    let data = FaultDisk::new("data", mem.clone());
    let mut c = cfg();
    c.writeback_delay = Duration::from_secs(3600);
    c.batch_delay = Duration::from_secs(3600);
    let logger = TransLogger::open_store(data.clone(), Arc::new(store.clone()), c.clone()).unwrap();
    let mut w = Aio::write(0, vec![1u8; 4096]);
    w.flags = Flags::FUA;
    brick_core::run(&*logger, w).unwrap();
    store.crash(1, CrashMode::DropAll);
    data.crash(1, CrashMode::DropAll);
    logger.kill();
    let data = data.reboot();
    let logger = TransLogger::open_store(data, Arc::new(store.reboot()), c).unwrap();
    assert_eq!(
        brick_core::read_all(&*logger, 0, 4096).unwrap(),
        vec![1u8; 4096]
    );
}

#[test]
fn flush_waits_for_the_log_and_counts_batches() {
    let store = MemLogStore::new(4 << 20);
    let data = MemDisk::new("data", 1 << 20, MemDiskMode::Inline);
    let logger = TransLogger::open_store(data, Arc::new(store), cfg()).unwrap();
    for i in 0..64u64 {
        brick_core::write_all(&*logger, i * 4096, &[i as u8; 4096]).unwrap();
    }
    op(&*logger, Op::Flush, 0, 0, Flags::NONE);
    let st = logger.status();
    assert!(
        st.durable_end > xio::log::LogPos::new(1, 64 * 4096),
        "{st:?}"
    );
    assert!(st.batches >= 1 && st.pending == 0, "{st:?}");
    logger.writeback_all(Duration::from_secs(10)).unwrap();
    assert_eq!(logger.status().versions, 0);
    logger.close().unwrap();
}

/// A planned handover closes the old primary's logger; the next log file it created early
/// (half way to the rotation size) must not stay behind, or the new primary's log of that
/// number would meet it there as a second log of one sequence number (a false split brain).
#[test]
fn close_removes_the_unused_next_log_file() {
    let (dir, data) = file_disk();
    let logs = dir.path().join("logs");
    let logger = TransLogger::open(data, &logs, cfg()).unwrap();
    let log_files = || {
        let mut v: Vec<String> = std::fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("log-"))
            .collect();
        v.sort();
        v
    };
    // Past half of rotate_size (256 KiB), without reaching it.
    for i in 0..40u64 {
        brick_core::write_all(&*logger, (i % 64) * 4096, &[i as u8 + 1; 4096]).unwrap();
    }
    op(&*logger, Op::Flush, 0, 0, Flags::NONE);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log_files().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no next log file was prepared: {:?}",
            log_files()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    logger.close().unwrap();
    assert_eq!(log_files(), vec!["log-000000001-n0".to_string()]);
}
