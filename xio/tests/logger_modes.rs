//! Rotation under load, the memory budget under a slow data device, emergency bypass, and
//! replay mode (idempotent, progress, position reached, `until`).

use brick_core::bricks::{MemDisk, MemDiskMode, Probe};
use brick_core::{Aio, Limiter, Op, Output, Rates};
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Duration;
use xio::fault::MemLogStore;
use xio::log::{Expect, LogPos, Scanner};
use xio::logger::{replay_store, LogStore, LoggerConfig, LoggerMode, ReplayOptions, TransLogger};

const BLOCK: usize = 4096;

fn cfg() -> LoggerConfig {
    LoggerConfig {
        resource: "modes".into(),
        node: "n0".into(),
        keep_logs: true,
        writeback_delay: Duration::from_millis(5),
        ..LoggerConfig::default()
    }
}

fn payload(t: u8, i: u32) -> Vec<u8> {
    let mut d = vec![t; BLOCK];
    d[..4].copy_from_slice(&i.to_le_bytes());
    d
}

fn flush(out: &dyn Output) {
    brick_core::run(out, Aio::new(Op::Flush, 0, 0)).unwrap();
}

/// A data device of `blocks` blocks behind a fault disk, and a log store.
fn fault_data(blocks: usize) -> (Arc<MemDisk>, Arc<xio::fault::FaultDisk>, MemLogStore) {
    let mem = MemDisk::new("data", blocks * BLOCK, MemDiskMode::Inline);
    let data = xio::fault::FaultDisk::new("data", mem.clone());
    (mem, data, MemLogStore::new(16 << 20))
}

/// All records of all files, in log order.
fn log_records(store: &MemLogStore) -> Vec<xio::log::Record> {
    let mut all = Vec::new();
    for seq in store.list().unwrap() {
        let (out, len) = store.open(seq).unwrap();
        let s = Scanner::open(
            out,
            store.describe(seq),
            len,
            &Expect {
                resource: Some("modes".into()),
                seq: Some(seq),
            },
        )
        .unwrap();
        let (recs, _) = s.read_all().unwrap();
        all.extend(
            recs.into_iter()
                .filter(|r| r.header.op != xio::log::RecordOp::Commit),
        );
    }
    all
}

#[test]
fn rotation_under_load_loses_and_reorders_nothing() {
    let store = MemLogStore::new(256 << 10);
    let data = MemDisk::new("data", 64 * BLOCK, MemDiskMode::Threaded(2));
    let c = LoggerConfig {
        rotate_size: 64 << 10,
        chunk_size: 32 << 10,
        ..cfg()
    };
    let logger = TransLogger::open_store(data.clone(), Arc::new(store.clone()), c).unwrap();
    let writes_per_thread = 400u32;
    std::thread::scope(|s| {
        for t in 1..=4u8 {
            let logger = logger.clone();
            s.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t as u64);
                for i in 0..writes_per_thread {
                    let blk = rng.gen_range(0..64u64);
                    brick_core::run(&*logger, Aio::write(blk * BLOCK as u64, payload(t, i)))
                        .unwrap();
                }
            });
        }
        let logger = logger.clone();
        s.spawn(move || {
            for _ in 0..40 {
                logger.rotate();
                std::thread::sleep(Duration::from_millis(1));
            }
        });
    });
    flush(&*logger);
    let via_logger = brick_core::read_all(&*logger, 0, 64 * BLOCK).unwrap();
    let rotations = logger.status().rotations;
    logger.close().unwrap();
    assert!(rotations >= 5, "only {rotations} rotations");
    assert_eq!(data.contents(), via_logger, "written back = what reads saw");
    // Every write is in the log exactly once, each writer's writes in their order.
    let recs = log_records(&store);
    let mut next = [0u32; 5];
    for r in &recs {
        let t = r.data[4] as usize;
        let i = u32::from_le_bytes(r.data[..4].try_into().unwrap());
        assert_eq!(
            i, next[t],
            "writer {t}: write {i} out of order or duplicated"
        );
        next[t] += 1;
    }
    assert_eq!(&next[1..], &[writes_per_thread; 4], "nothing lost");
    // Replaying the whole log onto an empty device gives the same device.
    let fresh = MemDisk::new("fresh", 64 * BLOCK, MemDiskMode::Inline);
    let first = store.list().unwrap()[0];
    replay_store(
        &*fresh,
        &store,
        LogPos::new(first, 0),
        ReplayOptions::default(),
    )
    .unwrap();
    assert_eq!(
        fresh.contents(),
        via_logger,
        "log order = acknowledgement order"
    );
}

#[test]
fn memory_budget_holds_under_a_writer_faster_than_the_disk() {
    let store = MemLogStore::new(16 << 20);
    let mem = MemDisk::new("data", 2048 * BLOCK, MemDiskMode::Inline);
    let slow = Probe::throttled(
        "slow",
        Limiter::new(Rates {
            ops_per_sec: 0,
            bytes_per_sec: 16 << 20,
        }),
        mem.clone(),
    );
    let budget = 512 << 10;
    let c = LoggerConfig {
        mem_budget: budget,
        writeback_round: 128 << 10,
        keep_logs: false,
        ..cfg()
    };
    let logger = TransLogger::open_store(slow, Arc::new(store), c).unwrap();
    let b = logger.budget();
    let mut peak_seen = 0;
    for i in 0..2048u32 {
        brick_core::run(&*logger, Aio::write(i as u64 * BLOCK as u64, payload(9, i))).unwrap();
        peak_seen = peak_seen.max(b.used());
    }
    flush(&*logger);
    assert!(
        b.peak() <= budget,
        "peak {} above the budget {budget}",
        b.peak()
    );
    assert!(
        b.waits() > 0,
        "the writer never had to wait: the test did not push the budget"
    );
    assert!(peak_seen > budget / 2, "the budget was used: {peak_seen}");
    let back = brick_core::read_all(&*logger, 0, 2048 * BLOCK).unwrap();
    logger.close().unwrap();
    for i in 0..2048usize {
        assert_eq!(
            &back[i * BLOCK..(i + 1) * BLOCK],
            &payload(9, i as u32)[..],
            "block {i}"
        );
    }
    assert_eq!(mem.contents(), back, "nothing dropped");
}

#[test]
fn emergency_bypass_keeps_serving_and_reports_the_hole() {
    let store = MemLogStore::new(1 << 20);
    store.fail_writes_beyond(64 << 10);
    let data = MemDisk::new("data", 256 * BLOCK, MemDiskMode::Inline);
    let logger = TransLogger::open_store(data.clone(), Arc::new(store.clone()), cfg()).unwrap();
    for i in 0..100u32 {
        let mut w = Aio::write((i % 50) as u64 * BLOCK as u64, payload(1, i));
        if i.is_multiple_of(10) {
            w.flags = brick_core::Flags::FUA;
        }
        brick_core::run(&*logger, w).unwrap();
    }
    flush(&*logger);
    assert_eq!(logger.status().mode, LoggerMode::Bypass);
    let hole = logger.log_hole().expect("the hole is reported");
    assert!(hole.offset <= 64 << 10, "{hole}");
    let seen = brick_core::read_all(&*logger, 0, 50 * BLOCK).unwrap();
    for i in 50..100u32 {
        let b = (i % 50) as usize;
        assert_eq!(&seen[b * BLOCK..(b + 1) * BLOCK], &payload(1, i)[..]);
    }
    logger.close().unwrap();
    assert_eq!(&data.contents()[..50 * BLOCK], &seen[..]);
    // A restart must not replay old records over the direct writes, and still reports the hole.
    store.fail_writes_beyond(u64::MAX);
    let logger = TransLogger::open_store(data.clone(), Arc::new(store.reboot()), cfg()).unwrap();
    assert_eq!(brick_core::read_all(&*logger, 0, 50 * BLOCK).unwrap(), seen);
    assert_eq!(logger.log_hole(), Some(hole));
}

#[test]
fn replay_is_idempotent_reports_progress_and_stops_at_until() {
    let store = MemLogStore::new(4 << 20);
    let data = MemDisk::new("data", 64 * BLOCK, MemDiskMode::Inline);
    let logger = TransLogger::open_store(data.clone(), Arc::new(store.clone()), cfg()).unwrap();
    for i in 0..300u32 {
        let op = match i % 7 {
            3 => Aio::new(Op::Discard, (i % 64) as u64 * BLOCK as u64, BLOCK),
            5 => Aio::new(Op::WriteZeroes, (i % 60) as u64 * BLOCK as u64, 2 * BLOCK),
            _ => Aio::write((i * 7 % 64) as u64 * BLOCK as u64, payload(2, i)),
        };
        brick_core::run(&*logger, op).unwrap();
        if i == 150 {
            flush(&*logger);
        }
    }
    flush(&*logger);
    let want = brick_core::read_all(&*logger, 0, 64 * BLOCK).unwrap();
    logger.close().unwrap();
    let recs = log_records(&store);
    assert_eq!(recs.len(), 300);
    let seq = store.list().unwrap()[0];
    let fresh = MemDisk::new("fresh", 64 * BLOCK, MemDiskMode::Threaded(4));
    // Progress is reported after each file (one here), every 4096 records (never here) and
    // at `until`: exactly one report, with the end of the last record and every record.
    let mut calls = Vec::new();
    let mut progress = |p: LogPos, n: u64| calls.push((p, n));
    let opts = ReplayOptions {
        progress: Some(&mut progress),
        depth: 16,
        ..ReplayOptions::default()
    };
    let r = replay_store(&*fresh, &store, LogPos::new(seq, 0), opts).unwrap();
    assert_eq!(
        (r.records, r.reached),
        (300, LogPos::new(seq, recs.last().unwrap().end))
    );
    assert_eq!(calls, [(r.reached, 300)]);
    assert_eq!(fresh.contents(), want);
    // Idempotent: replaying again from the middle and then everything changes nothing.
    let mid = LogPos::new(seq, recs[100].offset);
    replay_store(&*fresh, &store, mid, ReplayOptions::default()).unwrap();
    assert_eq!(fresh.contents(), want);
    // `until` stops before the record at that position.
    let part = MemDisk::new("part", 64 * BLOCK, MemDiskMode::Inline);
    let until = LogPos::new(seq, recs[200].offset);
    let mut calls = Vec::new();
    let mut progress = |p: LogPos, n: u64| calls.push((p, n));
    let r = replay_store(
        &*part,
        &store,
        LogPos::new(seq, 0),
        ReplayOptions {
            until: Some(until),
            progress: Some(&mut progress),
            ..ReplayOptions::default()
        },
    )
    .unwrap();
    assert_eq!((r.records, r.reached), (200, until));
    assert_eq!(calls, [(until, 200)]);
}

/// The data device dies (every request fails with EIO) while writeback is behind: the logger
/// fails, says so on every later request, and keeps its log; on a replacement view of the
/// medium the restart replays what the dead device never got. Nothing acknowledged is lost.
#[test]
fn a_dead_data_device_fails_the_logger_and_the_log_restores_everything() {
    use xio::fault::CrashMode;
    const BLOCKS: usize = 64;
    let (mem, data, store) = fault_data(BLOCKS);
    let cfg = || LoggerConfig {
        // Writeback only when asked: the device dies with most data still in the log.
        writeback_delay: Duration::from_secs(600),
        ..cfg()
    };
    let logger = TransLogger::open_store(data.clone(), Arc::new(store.clone()), cfg()).unwrap();
    let mut model = vec![0u8; BLOCKS * BLOCK];
    for i in 0..200u32 {
        let b = (i as usize * 7) % BLOCKS;
        let d = payload(3, i);
        model[b * BLOCK..(b + 1) * BLOCK].copy_from_slice(&d);
        brick_core::run(&*logger, Aio::write((b * BLOCK) as u64, d)).unwrap();
    }
    flush(&*logger);
    // The device dies: what reached it stays, everything later fails with EIO.
    data.crash(1, CrashMode::KeepAll);
    let err = logger
        .writeback_all(Duration::from_secs(30))
        .expect_err("writeback onto a dead device");
    assert_eq!(err.errno(), libc::EIO, "{err}");
    assert_eq!(logger.status().mode, LoggerMode::Failed);
    let later = brick_core::run(&*logger, Aio::write(0, vec![1; BLOCK])).unwrap_err();
    assert_eq!(
        later.errno(),
        libc::EIO,
        "later writes fail with the device's error: {later}"
    );
    assert!(logger.close().is_err(), "close reports the failure");
    // A replacement view of the medium (what the dead device had stored) and the same log.
    let logger = TransLogger::open_store(data.reboot(), Arc::new(store.reboot()), cfg()).unwrap();
    assert!(brick_core::read_all(&*logger, 0, BLOCKS * BLOCK).unwrap() == model);
    logger.close().unwrap();
    assert!(
        mem.contents() == model,
        "the replay wrote everything to the device"
    );
}

/// The `Output` contract: the logger may block in `submit` (budget, draining), so a call
/// from an IO completion thread is a bug that debug builds catch at once, before it stalls.
#[cfg(debug_assertions)]
#[test]
fn the_logger_is_never_called_from_a_completion_thread() {
    let data = MemDisk::new("data", 1 << 20, MemDiskMode::Inline);
    let logger = TransLogger::open_store(data, Arc::new(MemLogStore::new(1 << 20)), cfg()).unwrap();
    let l2 = logger.clone();
    let r = std::thread::spawn(move || {
        brick_core::mark_completion_thread("test completion");
        brick_core::write_all(&*l2, 0, &[1; BLOCK])
    })
    .join();
    let msg = r.expect_err("submit on a completion thread panics");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("modes/logger") && msg.contains("may block"),
        "{msg}"
    );
    // From an ordinary thread the same write goes through.
    brick_core::write_all(&*logger, 0, &[1; BLOCK]).unwrap();
    logger.close().unwrap();
}

/// The data device's file system fills up (ENOSPC on writeback): nothing fails and nothing
/// is lost. Reads come from the index, new writes are still accepted, the status says why
/// writeback stalls; once there is space again writeback catches up by itself.
#[test]
fn a_full_data_device_stalls_writeback_until_there_is_space() {
    const BLOCKS: usize = 64;
    let (mem, data, store) = fault_data(BLOCKS);
    let logger = TransLogger::open_store(data.clone(), Arc::new(store), cfg()).unwrap();
    data.fail_writes_beyond(8 * BLOCK as u64);
    let mut model = vec![0u8; BLOCKS * BLOCK];
    let mut write = |i: u32| {
        let b = (i as usize * 7) % BLOCKS;
        let d = payload(5, i);
        model[b * BLOCK..(b + 1) * BLOCK].copy_from_slice(&d);
        brick_core::run(&*logger, Aio::write((b * BLOCK) as u64, d)).unwrap();
    };
    for i in 0..200 {
        write(i);
    }
    flush(&*logger);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while logger.status().writeback_error.is_none() {
        let st = logger.status();
        assert!(
            std::time::Instant::now() < deadline && st.mode != LoggerMode::Failed,
            "writeback never reported the full device: {st}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = logger.status();
    assert_eq!(st.mode, LoggerMode::Logging, "{st}");
    assert!(
        st.writeback_error.as_deref().unwrap().contains("space"),
        "{st}"
    );
    for i in 200..240 {
        write(i);
    }
    assert!(brick_core::read_all(&*logger, 0, BLOCKS * BLOCK).unwrap() == model);
    // Space again: writeback catches up without a restart.
    data.fail_writes_beyond(u64::MAX);
    flush(&*logger);
    logger.writeback_all(Duration::from_secs(30)).unwrap();
    let st = logger.status();
    assert!(st.writeback_error.is_none() && st.versions == 0, "{st}");
    assert!(mem.contents() == model, "the data device holds every write");
    logger.close().unwrap();
}
