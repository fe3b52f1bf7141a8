//! Model-based crash test of the trans_logger.
//!
//! Random sequences of writes (some FUA), discards, write-zeroes, reads, flushes, rotations and
//! **crashes** run against a logger whose log files and data device are fault-injecting disks:
//! a crash drops, keeps or tears (per 512-byte sector) every write not covered by a completed
//! flush, then the logger is killed and recovered from the persisted min_pos. After every
//! recovery the device must equal the model state after some prefix of the mutations that is at
//! least as long as the prefix acknowledged by the last FLUSH / FUA write (so every acknowledged
//! durable write is present, and no block holds invented or mixed data). Reads between crashes
//! must return exactly the model (read-your-writes).
//!
//! Every case runs in each of four modes: log format v1; v2; v2 with the log files modelling
//! `O_DIRECT` (unaligned writes fail: 4 KiB), the data device buffered (`--log-direct-io on`);
//! v2 with the log files and the data device modelling `O_DIRECT` (512 bytes on the data
//! device). The log store recycles deleted log files (two spares), as `FsLogStore` does.
//!
//! Default run: 24 cases. `MARS_LONG_TESTS=1`: 400 cases and at least 1000 crash points.

use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::{Aio, Flags, Op};
use proptest::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use xio::fault::{CrashMode, FaultDisk, MemLogStore};
use xio::logger::{LoggerConfig, TransLogger};

const SECT: usize = 512;
const SECTORS: usize = 128;
const SIZE: usize = SECT * SECTORS;

static CRASHES: AtomicU64 = AtomicU64::new(0);
static REUSED: AtomicU64 = AtomicU64::new(0);

fn long() -> bool {
    std::env::var("MARS_LONG_TESTS").is_ok_and(|v| v == "1")
}

#[derive(Debug, Clone)]
enum Step {
    Write { sector: usize, n: usize, fua: bool },
    Discard { sector: usize, n: usize },
    Zeroes { sector: usize, n: usize },
    Read { sector: usize, n: usize },
    Flush,
    Rotate,
    Pause(u8),
    Crash { seed: u64, mode: u8 },
}

fn step() -> impl Strategy<Value = Step> {
    let range = (0..SECTORS - 8, 1..8usize);
    prop_oneof![
        8 => (range.clone(), any::<bool>()).prop_map(|((sector, n), fua)| Step::Write { sector, n, fua: fua && n.is_multiple_of(3) }),
        1 => range.clone().prop_map(|(sector, n)| Step::Discard { sector, n }),
        1 => range.clone().prop_map(|(sector, n)| Step::Zeroes { sector, n }),
        2 => range.prop_map(|(sector, n)| Step::Read { sector, n }),
        1 => Just(Step::Flush),
        1 => Just(Step::Rotate),
        1 => (0u8..4).prop_map(Step::Pause),
        1 => (any::<u64>(), 0u8..4).prop_map(|(seed, mode)| Step::Crash { seed, mode }),
    ]
}

/// The IO modes: the log's alignment (0: format v1), `O_DIRECT` modelled on the log files and
/// on the data device (`marsd --direct-io`; the log alone: `--log-direct-io on`).
#[derive(Debug, Clone, Copy)]
struct Mode {
    align: u32,
    log_direct: bool,
    data_direct: bool,
}

const MODES: [Mode; 4] = [
    Mode {
        align: 0,
        log_direct: false,
        data_direct: false,
    },
    Mode {
        align: 4096,
        log_direct: false,
        data_direct: false,
    },
    Mode {
        align: 4096,
        log_direct: true,
        data_direct: false,
    },
    Mode {
        align: 4096,
        log_direct: true,
        data_direct: true,
    },
];

fn cfg(delay_ms: u64, log_align: u32) -> LoggerConfig {
    LoggerConfig {
        log_align,
        resource: "crash".into(),
        node: "n0".into(),
        mem_budget: 64 << 10,
        chunk_size: 4096,
        batch_delay: Duration::from_millis(delay_ms),
        rotate_size: 8 << 10,
        writeback_delay: Duration::from_millis(delay_ms),
        writeback_round: 8 << 10,
        writeback_depth: 4,
        data_flush_interval: Duration::from_millis(delay_ms * 3),
        commit_interval: Duration::from_millis(delay_ms * 2),
        ..LoggerConfig::default()
    }
}

struct World {
    store: MemLogStore,
    data: Arc<FaultDisk>,
    logger: Arc<TransLogger>,
    cfg: LoggerConfig,
    /// Device states after each mutation since the last recovery; `floor` indexes the first
    /// state that recovery may return.
    history: Vec<Vec<u8>>,
    floor: usize,
}

impl World {
    fn new(cfg: LoggerConfig, mode: Mode) -> World {
        // Recycled log files, as in production: stale records of earlier lives follow the
        // valid end, and crashes hit the reuse and the first batches written over them.
        let store = MemLogStore::new(64 << 10)
            .direct(if mode.log_direct { 4096 } else { 1 })
            .with_spares(2);
        let data = FaultDisk::new("data", MemDisk::new("data", SIZE, MemDiskMode::Inline));
        if mode.data_direct {
            data.require_aligned_writes(SECT as u64);
        }
        let logger =
            TransLogger::open_store(data.clone(), Arc::new(store.clone()), cfg.clone()).unwrap();
        World {
            store,
            data,
            logger,
            cfg,
            history: vec![vec![0u8; SIZE]],
            floor: 0,
        }
    }

    fn current(&self) -> &Vec<u8> {
        self.history.last().unwrap()
    }

    fn mutate(
        &mut self,
        op: Op,
        sector: usize,
        n: usize,
        fua: bool,
        tag: u16,
    ) -> Result<(), TestCaseError> {
        let (pos, len) = ((sector * SECT) as u64, n * SECT);
        let mut next = self.current().clone();
        let mut req = Aio::new(op, pos, len);
        if op == Op::Write {
            let mut d = vec![0u8; len];
            for (i, s) in d.chunks_mut(SECT).enumerate() {
                for (j, b) in s.iter_mut().enumerate() {
                    *b = [tag as u8, (tag >> 8) as u8, (sector + i) as u8, 0xA5][j % 4];
                }
            }
            next[pos as usize..pos as usize + len].copy_from_slice(&d);
            req.data = d;
        } else {
            next[pos as usize..pos as usize + len].fill(0);
        }
        if fua {
            req.flags = Flags::FUA;
        }
        brick_core::run(&*self.logger, req).map_err(|e| TestCaseError::fail(e.to_string()))?;
        self.history.push(next);
        if fua {
            self.floor = self.history.len() - 1;
        }
        Ok(())
    }

    fn crash(&mut self, seed: u64, mode: u8) -> Result<(), TestCaseError> {
        let mode = match mode {
            0 => CrashMode::DropAll,
            1 => CrashMode::KeepAll,
            _ => CrashMode::Tear,
        };
        self.store.crash(seed, mode);
        self.data.crash(seed.rotate_left(17), mode);
        self.logger.kill();
        self.store = self.store.reboot();
        self.data = self.data.reboot();
        self.logger = TransLogger::open_store(
            self.data.clone(),
            Arc::new(self.store.clone()),
            self.cfg.clone(),
        )
        .map_err(|e| TestCaseError::fail(format!("recovery failed: {e}")))?;
        CRASHES.fetch_add(1, Ordering::Relaxed);
        let dev = brick_core::read_all(&*self.logger, 0, SIZE)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let ok = self.history[self.floor..].iter().rposition(|s| *s == dev);
        prop_assert!(
            ok.is_some(),
            "after recovery the device equals no state between the last acknowledged flush (#{}) and the end (#{})",
            self.floor,
            self.history.len() - 1
        );
        self.history = vec![dev];
        self.floor = 0;
        Ok(())
    }
}

fn run_case(steps: Vec<Step>, delay_ms: u64) -> Result<(), TestCaseError> {
    for mode in MODES {
        run_mode(steps.clone(), delay_ms, mode)
            .map_err(|e| TestCaseError::fail(format!("{mode:?}: {e}")))?;
    }
    Ok(())
}

fn run_mode(steps: Vec<Step>, delay_ms: u64, mode: Mode) -> Result<(), TestCaseError> {
    let mut w = World::new(cfg(delay_ms, mode.align), mode);
    for (i, s) in steps.into_iter().enumerate() {
        let tag = i as u16 + 1;
        match s {
            Step::Write { sector, n, fua } => w.mutate(Op::Write, sector, n, fua, tag)?,
            Step::Discard { sector, n } => w.mutate(Op::Discard, sector, n, false, tag)?,
            Step::Zeroes { sector, n } => w.mutate(Op::WriteZeroes, sector, n, false, tag)?,
            Step::Read { sector, n } => {
                let pos = sector * SECT;
                let got = brick_core::read_all(&*w.logger, pos as u64, n * SECT)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(
                    &got[..],
                    &w.current()[pos..pos + n * SECT],
                    "read-your-writes"
                );
            }
            Step::Flush => {
                brick_core::run(&*w.logger, Aio::new(Op::Flush, 0, 0))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                w.floor = w.history.len() - 1;
            }
            Step::Rotate => w.logger.rotate(),
            Step::Pause(ms) => std::thread::sleep(Duration::from_millis(ms as u64)),
            Step::Crash { seed, mode } => w.crash(seed, mode)?,
        }
    }
    w.crash(0xfeed, 2)?;
    w.logger
        .close()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    REUSED.fetch_add(w.store.reused(), Ordering::Relaxed);
    Ok(())
}

#[test]
fn crashes_never_lose_acknowledged_writes_nor_invent_data() {
    let cases = if long() { 400 } else { 24 };
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(prop::collection::vec(step(), 1..60), 0u64..3),
            |(steps, delay)| run_case(steps, delay),
        )
        .unwrap();
    let n = CRASHES.load(Ordering::Relaxed);
    let reused = REUSED.load(Ordering::Relaxed);
    eprintln!("crash points checked: {n}; log files reused: {reused}");
    assert!(reused > 0, "no case recycled a log file");
    if long() {
        assert!(n >= 1000, "only {n} crash points");
    }
}
