//! The writeback thread: deferred, sorted, de-duplicated writeback and the min_pos watermark.
//!
//! A round selects durable extents (oldest versions first; only the newest version of each
//! byte is in the index, so superseded data is never written), issues them in ascending offset
//! order with adjacent writes merged (up to 1 MiB) and a bounded window, and drops them from the
//! index once written (reads then go to the data device; the budget is released). Rounds never
//! overlap, so two writebacks of one range are never in flight together. The data device is
//! flushed (by the flusher thread, beside writeback) every `data_flush_interval` (or
//! `data_flush_bytes`, or when draining/closing); only then do
//! the written versions stop holding the watermark (start of the oldest record whose effect the
//! flushed data device may lack, or the durable end of the log), which is recomputed,
//! persisted and reported; log files entirely below it are deleted unless `keep_logs`.

use super::apply::Applier;
use super::bufpool::IDLE_KEPT_BYTES;
use super::core::{Core, Shared};
use super::index::WbItem;
use super::mode::{LoggerMode, ModeEvent};
use super::state::LogState;
use super::wb_policy::{
    self, FlushDecision, WbDecision, WbFacts, WbLimits, WriteFailure, NOSPACE_RETRY,
};
use crate::log::{LogPos, RecordOp};
use brick_core::{Aio, Error, Op};
use parking_lot::MutexGuard;
use std::sync::Arc;
use std::time::Instant;

/// Body of the writeback thread: gather the facts, decide (`wb_policy`), execute.
pub(crate) fn run(core: Arc<Core>) {
    let limits = WbLimits {
        writeback_delay: core.cfg.writeback_delay,
        data_flush_interval: core.cfg.data_flush_interval,
        data_flush_bytes: core.cfg.data_flush_bytes,
    };
    let mut last_flush = Instant::now();
    let mut unflushed_bytes = 0u64;
    let mut retired = Vec::new();
    // The buffer pool's period (`wb_policy::pool_keep`): when it started, the peak budget use.
    let (mut period_start, mut period_peak) = (Instant::now(), 0u64);
    // The round's items, one vector for all rounds (`Index::select_into`).
    let mut items = Vec::new();
    let mut g = core.shared.lock();
    loop {
        let mode = g.mode.mode();
        let draining = mode == LoggerMode::Draining;
        let upto = wb_policy::select_upto(draining, g.skip_persisted, g.durable_seq);
        let facts = WbFacts {
            exit: g.kill || mode == LoggerMode::Failed,
            draining,
            skip_persisted: g.skip_persisted,
            closing: g.stop && g.log_threads_done,
            force: g.wb_force,
            budget_pressure: core.budget_pressure(),
            oldest_age: g
                .index
                .oldest()
                .filter(|(seq, _)| *seq <= upto)
                .map(|(_, v)| v.born.elapsed()),
            needs_flush: g.index.needs_flush(),
            flush_running: g.flush.is_some(),
            unflushed: g.index.has_unflushed(),
            index_empty: g.index.is_empty(),
            since_flush: last_flush.elapsed(),
            unflushed_bytes,
        };
        period_peak = period_peak.max(core.budget.used());
        items.clear();
        if wb_policy::due(&facts, &limits) {
            g.index
                .select_into(upto, core.cfg.writeback_round as u64, &mut items);
        }
        match wb_policy::decide(&facts, &limits, !items.is_empty()) {
            WbDecision::Exit => break,
            WbDecision::StartFlush => {
                // The flusher runs it while writeback goes on.
                g.flush = Some(g.index.start_flush());
                core.flush_cv.notify_one();
                last_flush = Instant::now();
                unflushed_bytes = 0;
            }
            WbDecision::AwaitFlush => {
                core.wb_cv.wait_for(&mut g, wb_policy::WB_IDLE);
            }
            WbDecision::PersistSkip => {
                update_min_pos(&core, &mut g);
                persist_skip(&core, &mut g);
            }
            WbDecision::EnterBypass => {
                g.index.drop_zombies();
                enter_bypass(&core, &mut g);
            }
            WbDecision::Rest { clear_force, wait } => {
                if clear_force {
                    g.wb_force = false;
                }
                update_min_pos(&core, &mut g);
                if period_start.elapsed() >= wb_policy::POOL_PERIOD {
                    let keep = wb_policy::pool_keep(period_peak, IDLE_KEPT_BYTES);
                    if core.bufs.kept_bytes() > keep {
                        MutexGuard::unlocked(&mut g, || core.bufs.trim(keep));
                    }
                    (period_start, period_peak) = (Instant::now(), core.budget.used());
                }
                match wait {
                    None => break,
                    Some(wait) => {
                        let spare = core.bufs.kept_bytes() > IDLE_KEPT_BYTES;
                        let wait = wb_policy::rest_wait(wait, spare, period_start.elapsed());
                        core.wb_cv.wait_for(&mut g, wait);
                    }
                }
            }
            WbDecision::Write => {
                g.wb_busy = true;
                items.sort_unstable_by_key(|it| it.start);
                // Driven: an io_uring data device's completions are reaped on this thread,
                // which waits for them anyway (no completion-thread hand-off per batch).
                let result = MutexGuard::unlocked(&mut g, || {
                    crate::file::drive(|| write_items(&core, &items))
                });
                g.wb_busy = false;
                if let Err(e) = result {
                    let no_space = matches!(e, Error::NoSpace { .. });
                    match wb_policy::after_write_error(no_space, g.stop) {
                        WriteFailure::Retry => {
                            if g.wb_error.is_none() {
                                tracing::error!(brick = %core.name, error = %e, "writeback to the data device stalls: no space left there; retrying every {NOSPACE_RETRY:?}");
                            }
                            g.wb_error = Some(e);
                            core.wb_cv.wait_for(&mut g, NOSPACE_RETRY);
                            continue;
                        }
                        WriteFailure::Fail => {
                            core.fail(&mut g, e);
                            break;
                        }
                    }
                }
                if g.wb_error.take().is_some() {
                    tracing::warn!(brick = %core.name, "writeback to the data device works again");
                }
                unflushed_bytes += items.iter().map(|i| i.end - i.start).sum::<u64>();
                // Let go of the data first, so that retired versions can recycle their buffers.
                for it in &mut items {
                    it.src = None;
                }
                g.index.complete(&items);
                retired.extend(g.index.drain_retired());
                g.wb_rounds += 1;
                items.clear();
                // Outside the lock: releasing the budget wakes writers, who then need it.
                MutexGuard::unlocked(&mut g, || core.retire(retired.drain(..)));
                if !(draining && g.skip_persisted) {
                    update_min_pos(&core, &mut g);
                }
                core.wb_cv.notify_all();
            }
        }
    }
    g.wb_done = true;
    drop(g);
    core.flush_cv.notify_all();
}

/// Body of the flusher thread: runs the data-device flushes that the writeback thread asks
/// for, then releases what they covered and advances the watermark.
pub(crate) fn run_flusher(core: Arc<Core>) {
    let mut g = core.shared.lock();
    loop {
        let exit = g.kill || g.mode.mode() == LoggerMode::Failed;
        match wb_policy::flusher_decide(exit, g.flush.is_some(), g.wb_done) {
            FlushDecision::Exit => break,
            FlushDecision::Wait => {
                core.flush_cv.wait(&mut g);
                continue;
            }
            FlushDecision::Flush => {}
        }
        if let Some(covered) = g.flush {
            let result = MutexGuard::unlocked(&mut g, || {
                // MAY_BLOCK: this thread exists to wait for it, so a backend that can flush
                // right here does (io_uring: no hand-off to its completion thread and io-wq).
                let mut flush = Aio::new(Op::Flush, 0, 0);
                flush.flags = brick_core::Flags::MAY_BLOCK;
                brick_core::run(&super::core::Via(&core.data), flush)
            });
            g.flush = None;
            if g.kill {
                break;
            }
            if let Err(e) = result {
                core.fail(&mut g, e);
                break;
            }
            g.index.data_flushed(covered);
            update_min_pos(&core, &mut g);
            core.wb_cv.notify_all();
        }
    }
    g.flush = None;
    drop(g);
    core.wb_cv.notify_all();
}

/// Adjacent written-back extents are merged into writes of up to this many bytes.
const MERGE_MAX: usize = 1 << 20;

/// Write one round back (`items` sorted by offset), adjacent writes merged into one request
/// (the items of a round are disjoint, so merging cannot reorder overlapping data).
fn write_items(core: &Core, items: &[WbItem]) -> Result<(), Error> {
    let data = super::core::Via(&core.data);
    let mut applier = Applier::new(&data, core.cfg.writeback_depth)?;
    applier.request_flags(brick_core::Flags::MAY_BLOCK);
    applier.keep_buffers();
    debug_assert!(items.windows(2).all(|w| w[0].start < w[1].start));
    let mut run = Run::default();
    for it in items {
        let len = (it.end - it.start) as usize;
        // Only writes carry data (`src`); discards and write-zeroes go on their own.
        let Some((d, off)) = &it.src else {
            run.write(core, &data, &mut applier)?;
            applier.apply(it.op, it.start, len, Vec::new(), it.flags)?;
            continue;
        };
        let bytes = &d[*off..*off + len];
        if !run.extends(it.start, len) {
            run.write(core, &data, &mut applier)?;
            run.start = it.start;
        }
        run.len += len;
        run.pieces.push(std::io::IoSlice::new(bytes));
    }
    run.write(core, &data, &mut applier)?;
    applier.finish(false)
}

/// Adjacent writes of a round, written as one.
#[derive(Default)]
struct Run<'a> {
    start: u64,
    len: usize,
    pieces: Vec<std::io::IoSlice<'a>>,
    /// Buffers of completed submitted runs, on their way back to the pool (reused).
    spent: Vec<Vec<u8>>,
}

impl Run<'_> {
    /// Whether `len` bytes at `start` continue this run (within [`MERGE_MAX`]).
    fn extends(&self, start: u64, len: usize) -> bool {
        !self.pieces.is_empty()
            && self.start + self.len as u64 == start
            && self.len + len <= MERGE_MAX
    }

    /// Write the run (if any) and empty it: a gather write straight from the payloads where
    /// the data device has one (a buffered file: the kernel's copy into the page cache is the
    /// only one), else one copy into a buffer of the run's size class, submitted.
    fn write(
        &mut self,
        core: &Core,
        data: &dyn brick_core::Output,
        applier: &mut Applier<'_>,
    ) -> Result<(), Error> {
        if self.pieces.is_empty() {
            return Ok(());
        }
        let result = match data.write_gather(self.start, &self.pieces) {
            Some(r) => r,
            None => {
                // Of the run's size class: a large write's run gets a recycled large buffer
                // instead of growing a small one (fresh pages, zeroed by the kernel).
                let mut buf = core.bufs.get_for(self.len);
                for p in &self.pieces {
                    buf.extend_from_slice(p);
                }
                let r = applier.apply(RecordOp::Write, self.start, self.len, buf, 0);
                applier.take_spent(&mut self.spent);
                self.spent.drain(..).for_each(|b| core.bufs.put(b));
                r
            }
        };
        self.pieces.clear();
        self.len = 0;
        result
    }
}

/// Recompute the watermark; persist, report and delete old logs when it advanced.
pub(crate) fn update_min_pos(core: &Core, g: &mut MutexGuard<'_, Shared>) {
    if !matches!(g.mode.mode(), LoggerMode::Logging | LoggerMode::Draining) || g.skip_persisted {
        return;
    }
    let mp = g.index.min_pos(g.durable_seq, g.durable_end);
    if mp <= g.min_pos {
        return;
    }
    g.min_pos = mp;
    let oldest = g.oldest_file;
    let new_oldest = MutexGuard::unlocked(g, || publish(core, mp, None, oldest));
    g.oldest_file = g.oldest_file.max(new_oldest);
}

/// Persist `min_pos`, call the callback, delete files below it; returns the oldest kept file.
fn publish(core: &Core, mp: LogPos, hole: Option<LogPos>, oldest: u64) -> u64 {
    // Two threads publish (writeback and flusher): one at a time, and never backwards (a
    // late, older watermark must not land after a newer one deleted its log files).
    let mut published = core.published.lock();
    if published.1 || mp <= published.0 {
        return oldest;
    }
    if let Some(store) = &core.store {
        let state = LogState { min_pos: mp, hole };
        if let Err(e) = store.store_state(&state.encode()) {
            tracing::warn!(brick = %core.name, error = %e, "cannot persist the log watermark; will retry");
            return oldest;
        }
    }
    published.0 = mp;
    if let Some(cb) = &core.cfg.on_min_pos {
        cb(mp);
    }
    let mut kept = oldest;
    if let (Some(store), false) = (&core.store, core.cfg.keep_logs) {
        while kept < mp.seq {
            if let Err(e) = store.remove(kept) {
                tracing::debug!(brick = %core.name, error = %e, seq = kept, "log file not deleted");
            }
            kept += 1;
        }
    }
    kept
}

/// Every durable version is written back after a log failure: record that a restart must
/// not replay the log (everything still in memory goes to the data device next).
fn persist_skip(core: &Core, g: &mut MutexGuard<'_, Shared>) {
    let (LoggerMode::Draining, Some(hole)) = (g.mode.mode(), g.mode.hole()) else {
        return;
    };
    let next_seq = g.durable_end.seq.max(core.next_log_seq.lock().unwrap_or(0)) + 1;
    let mp = LogPos::new(next_seq, 0);
    let ok = MutexGuard::unlocked(g, || {
        let mut published = core.published.lock();
        published.1 = true;
        let Some(store) = &core.store else {
            return Ok(());
        };
        let state = LogState {
            min_pos: mp,
            hole: Some(hole),
        }
        .encode();
        if store.store_state(&state).is_ok() {
            // Every log file is below the new watermark now.
            if !core.cfg.keep_logs {
                for seq in store.list()?.into_iter().filter(|&s| s < mp.seq) {
                    let _ = store.remove(seq);
                }
            }
            return Ok(());
        }
        // The log space may be full: every durable record is on the data device now, so the
        // files can go.
        for seq in store.list()? {
            let _ = store.remove(seq);
        }
        store.store_state(&state)
    });
    match ok {
        Ok(()) => {
            g.min_pos = mp;
            g.skip_persisted = true;
            if let Some(cb) = &core.cfg.on_min_pos {
                cb(mp);
            }
        }
        Err(e) => core.fail(g, e),
    }
}

/// The index is empty: from now on writes go straight to the data device.
fn enter_bypass(core: &Core, g: &mut MutexGuard<'_, Shared>) {
    if core.change_mode(g, ModeEvent::Drained).is_err() {
        return;
    }
    let hole = g.mode.hole().unwrap_or_default();
    g.wb_force = false;
    core.release_waiters(g, Some(Ok(())));
    tracing::warn!(brick = %core.name, hole = %hole, "emergency bypass: the log has a hole from here on");
}
