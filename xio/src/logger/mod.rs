//! # trans_logger: the durable, crash-safe write path
//!
//! [`TransLogger`] is a brick with inputs **data** (the data device), **log** (the current log
//! file) and **next-log** (the following file, connected ahead of a rotation). Writes are
//! appended to the log by a group-commit thread (many records → one sequential write + one
//! flush), kept in an in-memory extent index so that reads see them at once, and written back
//! to the data device later: sorted and de-duplicated. The data device is flushed periodically;
//! after each flush the **min_pos watermark** advances (and is persisted and reported).
//!
//! ## Completion semantics
//! - A write (or discard, or write-zeroes) **without FUA** completes once it is in the index
//!   and queued for the log: readable at once, durable within `batch_delay` plus one batch.
//! - A **FUA** write and a **FLUSH** complete only when every mutation accepted before them is
//!   durable in the log (a FLUSH with nothing pending completes at once: nothing to wait for).
//! - Discard and write-zeroes are logged records too, so they replicate.
//! - A write's `data` buffer is consumed: the request completes with an empty `data` (a
//!   recycled buffer with capacity when one is free, so a client that refills it allocates
//!   nothing).
//!
//! ## Opening a log directory (what the NBD export calls)
//! ```no_run
//! use std::sync::Arc;
//! use xio::file::{self, Backend, FileOptions};
//! use xio::logger::{LoggerConfig, TransLogger};
//! let opts = FileOptions { create_size: Some(1 << 30), ..FileOptions::default() };
//! let data = file::open("/tmp/disk.img", Backend::IoUring, &opts).unwrap();
//! let logger = TransLogger::open(data, "/tmp/logs".as_ref(), LoggerConfig::default()).unwrap();
//! brick_core::write_all(&*logger, 0, b"hello").unwrap();
//! logger.close().unwrap();
//! ```
//! [`TransLogger::open`] (1) scans the log directory, (2) replays every record from the
//! persisted min_pos (state file, FORMAT.md) to the end of the newest file onto the data
//! device and flushes it, (3) seals a torn tail and starts a fresh log file, (4) persists the
//! new watermark and returns the running brick. [`TransLogger::close`] (also run on drop)
//! logs what is queued, writes everything back, persists the watermark and stops the threads;
//! [`TransLogger::kill`] stops at once like a crash (for tests).
//!
//! ## Other modes
//! - **Rotation** at `rotate_size` or on demand ([`TransLogger::rotate`]), without pausing IO.
//! - **Replay** of a log range onto a data device: [`replay_store`].
//! - **Emergency bypass**: when a log write fails (or on [`TransLogger::enter_emergency`]) the
//!   index is drained to the data device, then writes go there directly; [`TransLogger::log_hole`]
//!   reports where the log stops being complete (replicas need a full sync).
//! - **Memory budget**: written-but-not-written-back bytes are bounded by `mem_budget`; writers
//!   wait (inside `submit`) for writeback, nothing is dropped.

mod apply;
mod bufpool;
mod config;
mod core;
mod error;
mod fs;
mod index;
mod log_policy;
mod log_thread;
mod mode;
mod open;
mod payload;
mod replay;
mod replay_scan;
mod resume;
mod slots;
mod spares;
mod state;
mod store;
mod wb_policy;
mod writeback;

pub use self::config::{LoggerConfig, WatermarkFn};
pub use self::error::{LoggerError, Result};
pub use self::fs::FsLogStore;
pub use self::mode::{IllegalTransition, LoggerMode};
pub use self::replay::{replay_store, ReplayOptions, ReplayReport};
pub use self::spares::DEFAULT_SPARES;
pub use self::state::LogState;
pub use self::store::LogStore;

use self::core::Core;
use crate::log::{LogPos, LogWriter};
use brick_core::{Aio, Brick, Error, Info, MemBudget, Output, PowerState, Rejected, StatsSnapshot};
use parking_lot::Mutex;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The trans_logger brick. See the module docs.
pub struct TransLogger {
    core: Arc<Core>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    recovered_hole: Option<LogPos>,
}

/// A snapshot of the logger's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerStatus {
    /// What the logger does with writes now.
    pub mode: LoggerMode,
    /// Watermark: everything before it is written back.
    pub min_pos: LogPos,
    /// End of the durable log.
    pub durable_end: LogPos,
    /// Records queued for the log.
    pub pending: usize,
    /// Versions in the index (not yet written back).
    pub versions: usize,
    /// Budget bytes in use and the peak.
    pub mem_used: u64,
    /// Highest budget use seen.
    pub mem_peak: u64,
    /// Empty write buffers kept for reuse (bytes of capacity; outside the budget): up to
    /// the last second's peak budget use, 1 MiB once the logger is idle.
    pub pool_kept: u64,
    /// Batches written (group commits).
    pub batches: u64,
    /// Records written to the log.
    pub records_logged: u64,
    /// Time the log thread spent writing and flushing the log (divide by `batches` for the
    /// mean commit latency).
    pub log_io_time: Duration,
    /// Writeback rounds done.
    pub writeback_rounds: u64,
    /// Log rotations done.
    pub rotations: u64,
    /// Where the log stopped being complete (see [`TransLogger::log_hole`]): replicas fed
    /// from this log need a full sync.
    pub hole: Option<LogPos>,
    /// Why the logger failed (mode `"failed"`).
    pub error: Option<String>,
    /// Writeback to the data device stalls for lack of space there (it retries; nothing is
    /// lost: the writes stay in the index and the log).
    pub writeback_error: Option<String>,
}

impl std::fmt::Display for LoggerStatus {
    /// One line of `key=value` pairs (for logs and status output).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let commit_us = if self.batches == 0 {
            0
        } else {
            self.log_io_time.as_micros() / u128::from(self.batches)
        };
        write!(
            f,
            "mode={} min_pos={} durable_end={} hole={} mem_used_mib={:.1} mem_peak_mib={:.1} \
             pool_mib={:.1} pending={} versions={} batches={} records={} commit_mean_us={} writeback_rounds={} \
             rotations={}",
            self.mode,
            self.min_pos,
            self.durable_end,
            self.hole
                .map_or_else(|| "none".to_string(), |h| h.to_string()),
            mib(self.mem_used),
            mib(self.mem_peak),
            mib(self.pool_kept),
            self.pending,
            self.versions,
            self.batches,
            self.records_logged,
            commit_us,
            self.writeback_rounds,
            self.rotations,
        )?;
        if let Some(e) = &self.error {
            write!(f, " error={e:?}")?;
        }
        if let Some(e) = &self.writeback_error {
            write!(f, " writeback_error={e:?}")?;
        }
        Ok(())
    }
}

impl TransLogger {
    fn start(core: Core, writer: LogWriter, recovered_hole: Option<LogPos>) -> Arc<TransLogger> {
        let core = Arc::new(core);
        let (c1, c2, c3) = (core.clone(), core.clone(), core.clone());
        let log = std::thread::Builder::new()
            .name("logger-log".into())
            .spawn(move || log_thread::run(c1, writer))
            .expect("spawning the log thread");
        let wb = std::thread::Builder::new()
            .name("logger-writeback".into())
            .spawn(move || writeback::run(c2))
            .expect("spawning the writeback thread");
        let flusher = std::thread::Builder::new()
            .name("logger-flush".into())
            .spawn(move || writeback::run_flusher(c3))
            .expect("spawning the data flush thread");
        Arc::new(TransLogger {
            core,
            threads: Mutex::new(vec![log, wb, flusher]),
            recovered_hole,
        })
    }

    /// The current watermark.
    pub fn min_pos(&self) -> LogPos {
        self.core.shared.lock().min_pos
    }

    /// Where the log stopped being complete (emergency mode now, left by
    /// [`TransLogger::resume_logging`], or recorded in the state file by an earlier run).
    pub fn log_hole(&self) -> Option<LogPos> {
        self.hole_in(&self.core.shared.lock())
    }

    fn hole_in(&self, g: &core::Shared) -> Option<LogPos> {
        g.mode.hole().or(g.resumed_hole).or(self.recovered_hole)
    }

    /// Byte extents `(pos, len)` of the versions not yet written back (or not yet flushed)
    /// to the data device: what the device may still lack of the log.
    pub fn unwritten_extents(&self) -> Vec<(u64, u64)> {
        let g = self.core.shared.lock();
        g.index.versions.values().map(|v| (v.pos, v.len)).collect()
    }

    /// The memory budget (to observe back-pressure).
    pub fn budget(&self) -> Arc<MemBudget> {
        self.core.budget.clone()
    }

    /// A snapshot of counters and positions.
    pub fn status(&self) -> LoggerStatus {
        let g = self.core.shared.lock();
        LoggerStatus {
            mode: g.mode.mode(),
            min_pos: g.min_pos,
            durable_end: g.durable_end,
            pending: g.pending.len(),
            versions: g.index.versions.len(),
            mem_used: self.core.budget.used(),
            mem_peak: self.core.budget.peak(),
            pool_kept: self.core.bufs.kept_bytes() as u64,
            batches: g.batches,
            records_logged: g.records_logged,
            log_io_time: g.log_io_time,
            writeback_rounds: g.wb_rounds,
            rotations: g.rotations,
            hole: self.hole_in(&g),
            error: g.mode.failure().map(|e| e.to_string()),
            writeback_error: g.wb_error.as_ref().map(ToString::to_string),
        }
    }

    /// Grow the device this logger serves to `size` bytes (the data device must already be
    /// at least that large). Requests up to the new end are accepted from now on; NBD clients
    /// see the new size when they connect again. Shrinking is refused.
    pub fn grow(&self, size: u64) -> brick_core::Result<()> {
        let data = self.core.data.info()?.size;
        if size < self.core.size.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::Invalid("a logger's device cannot shrink"));
        }
        if data < size {
            return Err(Error::OutOfRange {
                pos: 0,
                len: size,
                size: data,
            });
        }
        self.core
            .size
            .store(size, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Rotate to the next log file after the current batch (on demand).
    pub fn rotate(&self) {
        self.core.shared.lock().rotate_req = true;
        self.core.log_cv.notify_all();
    }

    /// Connect the next log file (hand-wired loggers): it becomes log `seq` at the next rotation.
    pub fn connect_next_log(&self, log: Arc<dyn Output>, seq: u64) -> brick_core::Result<()> {
        self.core.next_log.connect(log)?;
        *self.core.next_log_seq.lock() = Some(seq);
        Ok(())
    }

    /// Stop logging now (log space is running out): drain the index to the data device, then
    /// write directly. The log has a hole from here on.
    pub fn enter_emergency(&self) {
        let mut g = self.core.shared.lock();
        let hole = g.durable_end;
        let err = crate::log::LogError::Encode("emergency mode requested".into());
        log_thread::emergency(&self.core, &mut g, hole, &err);
    }

    /// Leave emergency bypass without interrupting IO: writers wait a moment while the bypass
    /// writes in flight finish, the data device is flushed and a new log file starts; then
    /// writes are logged again. Returns where the new log starts. The hole stays reported
    /// ([`TransLogger::log_hole`]): replicas fed from this log need a full sync past it. On
    /// an error (no space for the new file yet, a failed flush) the logger stays in bypass.
    pub fn resume_logging(&self, timeout: Duration) -> Result<LogPos> {
        let deadline = std::time::Instant::now() + timeout;
        let mut g = self.core.shared.lock();
        if let Some(e) = g.mode.failure() {
            return Err(LoggerError::Io(e.clone()));
        }
        if g.mode.mode() != LoggerMode::Bypass {
            return Err(LoggerError::NotInBypass {
                mode: g.mode.mode(),
            });
        }
        g.resume_outcome = None;
        g.resume_req = true;
        self.core.log_cv.notify_all();
        loop {
            if let Some(outcome) = g.resume_outcome.take() {
                return outcome;
            }
            if let Some(e) = g.mode.failure() {
                return Err(LoggerError::Io(e.clone()));
            }
            if self.core.mode_cv.wait_until(&mut g, deadline).timed_out()
                && g.resume_outcome.is_none()
            {
                return Err(LoggerError::Io(Error::Timeout {
                    context: "leaving emergency bypass",
                    millis: timeout.as_millis() as u64,
                }));
            }
        }
    }

    /// Write everything durable back now and wait until that is done (or `timeout` passes).
    pub fn writeback_all(&self, timeout: Duration) -> brick_core::Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        let mut g = self.core.shared.lock();
        loop {
            if let Some(e) = g.mode.failure() {
                return Err(e.clone());
            }
            let durable_left = g.index.oldest().is_some_and(|(s, _)| s <= g.durable_seq);
            if !durable_left
                && !g.wb_busy
                && g.flush.is_none()
                && g.pending.is_empty()
                && g.waiters.is_empty()
                && !g.index.has_unflushed()
                && (g.index.is_empty() || g.mode.mode() == LoggerMode::Logging)
            {
                return Ok(());
            }
            g.wb_force = true;
            self.core.wb_cv.notify_all();
            self.core.log_cv.notify_all();
            // Re-check every few milliseconds: the threads wake this condition variable only
            // when they have a reason to.
            let slice = (std::time::Instant::now() + Duration::from_millis(5)).min(deadline);
            if self.core.wb_cv.wait_until(&mut g, slice).timed_out()
                && std::time::Instant::now() >= deadline
            {
                return Err(Error::Timeout {
                    context: "writing back the logger's index",
                    millis: timeout.as_millis() as u64,
                });
            }
        }
    }

    /// Log what is queued, write everything back, persist the watermark, stop the threads.
    /// Idempotent. Returns the error that failed the logger, if any.
    pub fn close(&self) -> brick_core::Result<()> {
        {
            let mut g = self.core.shared.lock();
            g.stop = true;
            g.wb_force = true;
        }
        self.join();
        // Let go of the log files: a restart on a full log file system needs their space
        // once it deletes them (an open file keeps its blocks).
        drop(self.core.log.disconnect());
        drop(self.core.next_log.disconnect());
        // The next log file, created early and still empty, belongs to no history: left
        // behind, the next primary's log of that number would make this directory look
        // like a split brain (two logs of one sequence number) when it replays that log.
        if let (Some(seq), Some(store)) = (self.core.next_log_seq.lock().take(), &self.core.store) {
            if let Err(e) = store.remove(seq) {
                tracing::warn!(brick = %self.core.name, log = seq, error = %e, "cannot remove the unused next log file");
            }
        }
        let mut g = self.core.shared.lock();
        self.core.release_waiters(
            &mut g,
            Some(Err(Error::Off {
                brick: self.core.name.clone(),
            })),
        );
        match g.mode.failure() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Stop at once, as a crash would: nothing more is written; waiting requests fail.
    pub fn kill(&self) {
        self.core.shared.lock().kill = true;
        self.join();
        let mut g = self.core.shared.lock();
        self.core.release_waiters(
            &mut g,
            Some(Err(Error::Off {
                brick: self.core.name.clone(),
            })),
        );
        // A logger that failed before keeps its error.
        let _ = self
            .core
            .change_mode(&mut g, mode::ModeEvent::Fatal(self.core.off()));
    }

    fn join(&self) {
        self.core.log_cv.notify_all();
        self.core.wb_cv.notify_all();
        self.core.flush_cv.notify_all();
        self.core.mode_cv.notify_all();
        let threads: Vec<_> = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for TransLogger {
    fn drop(&mut self) {
        if !self.threads.lock().is_empty() {
            let _ = self.close();
        }
    }
}

impl Output for TransLogger {
    fn info(&self) -> brick_core::Result<Info> {
        Ok(Info {
            size: self.core.size.load(std::sync::atomic::Ordering::Acquire),
            ..self.core.info
        })
    }

    fn prepare(&self, req: &mut Aio) -> brick_core::Result<()> {
        let max = match req.op {
            brick_core::Op::Write => self.core.info.max_len,
            brick_core::Op::Discard | brick_core::Op::WriteZeroes => core::MAX_RANGE_OP,
            _ => return Ok(()),
        };
        if req.len > max {
            req.shorten(max);
        }
        Ok(())
    }

    fn submit(&self, req: Box<Aio>) -> Result<(), Rejected> {
        self.core.submit(req)
    }
}

impl Brick for TransLogger {
    fn name(&self) -> &str {
        &self.core.name
    }

    fn switch(&self, on: bool) -> brick_core::Result<()> {
        if on {
            self.core.power.switch_on(|| Ok(()))
        } else {
            self.core.power.switch_off(&self.core.name, || Ok(()))
        }
    }

    fn power(&self) -> PowerState {
        self.core.power.state()
    }

    fn stats(&self) -> StatsSnapshot {
        self.core.stats.snapshot()
    }
}
