//! Leaving emergency bypass without a restart (`TransLogger::resume_logging`): IO goes on
//! throughout, the bypass writes are flushed to the data device before the log claims to be
//! complete again, the new writes are logged in a new file, and a power cut right after the
//! resume loses nothing that was acknowledged as durable.

use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::{Aio, Flags, Op, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xio::fault::{CrashMode, FaultDisk, MemLogStore};
use xio::log::{Expect, RecordOp, Scanner};
use xio::logger::{LogStore, LoggerConfig, LoggerError, LoggerMode, TransLogger};

const BLOCK: usize = 4096;
const BLOCKS: usize = 64;
const WAIT: Duration = Duration::from_secs(20);

fn cfg() -> LoggerConfig {
    LoggerConfig {
        resource: "resume".into(),
        node: "n0".into(),
        keep_logs: true,
        writeback_delay: Duration::from_millis(5),
        ..LoggerConfig::default()
    }
}

fn payload(tag: u8, i: u32) -> Vec<u8> {
    let mut d = vec![tag; BLOCK];
    d[..4].copy_from_slice(&i.to_le_bytes());
    d
}

/// Write block `b` through `out` and into the model.
fn write(out: &dyn Output, model: &mut [u8], b: usize, data: Vec<u8>, fua: bool) {
    model[b * BLOCK..(b + 1) * BLOCK].copy_from_slice(&data);
    let mut w = Aio::write((b * BLOCK) as u64, data);
    if fua {
        w.flags = Flags::FUA;
    }
    brick_core::run(out, w).expect("a write fails: IO must go on in every mode");
}

fn flush(out: &dyn Output) {
    brick_core::run(out, Aio::new(Op::Flush, 0, 0)).unwrap();
}

/// Data records (not commits) of the log files from `first` on.
fn records_from(store: &MemLogStore, first: u64) -> usize {
    let files = store.list().unwrap().into_iter().filter(|&s| s >= first);
    files.map(|seq| records_in(store, seq)).sum()
}

/// Data records (not commits) of log file `seq`.
fn records_in(store: &MemLogStore, seq: u64) -> usize {
    let (out, len) = store.open(seq).unwrap();
    let expect = Expect {
        resource: Some("resume".into()),
        seq: Some(seq),
    };
    let (recs, _) = Scanner::open(out, store.describe(seq), len, &expect)
        .unwrap()
        .read_all()
        .unwrap();
    recs.iter()
        .filter(|r| r.header.op != RecordOp::Commit)
        .count()
}

/// A logger on a crashable data device and log store whose log fills up at 64 KiB, driven
/// into bypass by writes that all succeed.
fn in_bypass(model: &mut [u8]) -> (Arc<FaultDisk>, MemLogStore, Arc<TransLogger>) {
    let data = FaultDisk::new(
        "data",
        MemDisk::new("medium", BLOCKS * BLOCK, MemDiskMode::Inline),
    );
    let store = MemLogStore::new(1 << 20);
    store.fail_writes_beyond(64 << 10);
    let logger = TransLogger::open_store(data.clone(), Arc::new(store.clone()), cfg()).unwrap();
    for i in 0..60u32 {
        write(
            &*logger,
            model,
            i as usize % BLOCKS,
            payload(1, i),
            i % 10 == 0,
        );
    }
    flush(&*logger);
    assert_eq!(
        logger.status().mode,
        LoggerMode::Bypass,
        "the log filled up"
    );
    (data, store, logger)
}

#[test]
fn resume_logs_again_and_a_power_cut_after_it_loses_nothing() {
    let mut model = vec![0u8; BLOCKS * BLOCK];
    let (data, store, logger) = in_bypass(&mut model);
    let hole = logger.log_hole().expect("bypass reports its hole");
    // Bypass writes that no flush covered yet: only the resume's data flush saves them.
    for i in 0..20u32 {
        write(
            &*logger,
            &mut model,
            (i as usize * 3) % BLOCKS,
            payload(2, i),
            false,
        );
    }
    assert!(data.unsynced() > 0, "the bypass writes are still unflushed");

    // Still no log space: the resume fails, the logger stays in bypass and IO goes on.
    store.fail_writes_beyond(0);
    let err = logger.resume_logging(WAIT).unwrap_err();
    assert!(!matches!(err, LoggerError::NotInBypass { .. }), "{err}");
    assert_eq!(logger.status().mode, LoggerMode::Bypass);
    write(&*logger, &mut model, 5, payload(3, 0), false);

    store.fail_writes_beyond(u64::MAX);
    let start = logger.resume_logging(WAIT).unwrap();
    assert!(
        start.seq > hole.seq,
        "a new log file after the hole: {start} vs {hole}"
    );
    let st = logger.status();
    assert_eq!(
        (st.mode, st.hole),
        (LoggerMode::Logging, Some(hole)),
        "{st}"
    );
    assert_eq!(data.unsynced(), 0, "the resume flushed the data device");

    for i in 0..30u32 {
        write(
            &*logger,
            &mut model,
            (i as usize * 7) % BLOCKS,
            payload(4, i),
            false,
        );
    }
    flush(&*logger);
    assert_eq!(
        records_from(&store, start.seq),
        30,
        "the new writes are logged"
    );
    assert_eq!(
        brick_core::read_all(&*logger, 0, BLOCKS * BLOCK).unwrap(),
        model
    );

    // Power cut of both devices: nothing unflushed survives; recovery replays the new log.
    data.crash(1, CrashMode::DropAll);
    store.crash(2, CrashMode::DropAll);
    logger.kill();
    let data = data.reboot();
    let logger = TransLogger::open_store(data.clone(), Arc::new(store.reboot()), cfg()).unwrap();
    assert_eq!(
        brick_core::read_all(&*logger, 0, BLOCKS * BLOCK).unwrap(),
        model,
        "after the power cut"
    );
    assert_eq!(logger.log_hole(), Some(hole), "the hole is still reported");
    logger.close().unwrap();
}

#[test]
fn writers_keep_going_while_the_logger_resumes() {
    let mut model = vec![0u8; BLOCKS * BLOCK];
    let (data, store, logger) = in_bypass(&mut model);
    store.fail_writes_beyond(u64::MAX);
    const WRITERS: usize = 4;
    const PER: usize = BLOCKS / WRITERS;
    let stop = Arc::new(AtomicBool::new(false));
    // Writes done, per writer.
    let written: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let handles: Vec<_> = (0..WRITERS)
        .map(|t| {
            let (logger, stop, written) = (logger.clone(), stop.clone(), written.clone());
            std::thread::spawn(move || {
                // Each writer owns its blocks; it returns its part of the final contents.
                let mut mine = vec![0u8; BLOCKS * BLOCK];
                let mut n = 0u32;
                // `stop` ends the loop; the count only bounds it. It must stay far above what
                // a writer can do before the resume (100,000 was reached there 1 run in 12:
                // that writer then never went on after it, and the wait below timed out).
                while !stop.load(SeqCst) && n < 50_000_000 {
                    let b = t * PER + n as usize % PER;
                    write(
                        &*logger,
                        &mut mine,
                        b,
                        payload(10 + t as u8, n),
                        n.is_multiple_of(16),
                    );
                    written[t].fetch_add(1, SeqCst);
                    n += 1;
                }
                mine
            })
        })
        .collect();
    let count = |t: usize| written[t].load(SeqCst);
    // Let every writer get going in bypass, then resume under their load, and let them go on
    // until each one wrote 50 more and 200 more writes are logged (each writer's progress is
    // waited for: on two busy cores one writer may lag far behind the others).
    wait_until(|| (0..WRITERS).all(|t| count(t) >= 25), "writes in bypass");
    let start = logger.resume_logging(WAIT).unwrap();
    let at_resume: Vec<u64> = (0..WRITERS).map(count).collect();
    let logged_before = logger.status().records_logged;
    wait_until(
        || {
            logger.status().records_logged >= logged_before + 200
                && (0..WRITERS).all(|t| count(t) >= at_resume[t] + 50)
        },
        "every writer going on after the resume",
    );
    stop.store(true, SeqCst);
    for (t, h) in handles.into_iter().enumerate() {
        let mine = h.join().unwrap();
        // Blocks a writer did not reach keep what `in_bypass` wrote.
        for b in t * PER..(t + 1) * PER {
            let blk = b * BLOCK..(b + 1) * BLOCK;
            if mine[blk.clone()].iter().any(|&x| x != 0) {
                model[blk.clone()].copy_from_slice(&mine[blk]);
            }
        }
    }
    flush(&*logger);
    assert!(
        records_from(&store, start.seq) >= 200,
        "writes after the resume are logged"
    );
    data.crash(3, CrashMode::DropAll);
    store.crash(4, CrashMode::DropAll);
    logger.kill();
    let logger = TransLogger::open_store(data.reboot(), Arc::new(store.reboot()), cfg()).unwrap();
    assert_eq!(
        brick_core::read_all(&*logger, 0, BLOCKS * BLOCK).unwrap(),
        model
    );
}

#[test]
fn resume_is_refused_outside_bypass() {
    let data = MemDisk::new("data", BLOCKS * BLOCK, MemDiskMode::Inline);
    let store = MemLogStore::new(1 << 20);
    let logger = TransLogger::open_store(data, Arc::new(store), cfg()).unwrap();
    match logger.resume_logging(WAIT) {
        Err(LoggerError::NotInBypass {
            mode: LoggerMode::Logging,
        }) => {}
        other => panic!("expected NotInBypass, got {other:?}"),
    }
    logger.close().unwrap();
}

/// Wait (bounded) until `f` holds.
fn wait_until(f: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}
