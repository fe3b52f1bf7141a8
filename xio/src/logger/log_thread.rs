//! The log thread: group commit. It takes the queued records (up to `chunk_size` bytes), writes
//! them as one batch (one sequential write + one flush of the current log), then marks them
//! durable and completes the FUA writes and flushes that waited for them. Between batches it
//! rotates to the next log file (make-before-break: the next file is created and its header
//! synced before the `log` input is rewired to it).

use super::core::{Core, Pending, Shared, Via};
use super::log_policy::{self, CommitRule, LogDecision, LogFacts, LogLimits};
use super::mode::{LoggerMode, ModeEvent};
use crate::log::{LogError, LogName, LogPos, LogWriter, RecordIn};
use parking_lot::MutexGuard;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the open (appended, not yet committed) batch stands.
struct Open {
    since: Option<Instant>,
    bytes: u64,
    last_seq: u64,
    waited: bool,
}

/// Body of the log thread: gather the facts, decide (`log_policy::decide`), execute.
pub(crate) fn run(core: Arc<Core>, mut writer: LogWriter) {
    let cfg = core.cfg.clone();
    let mut open = Open {
        since: None,
        bytes: 0,
        last_seq: 0,
        waited: false,
    };
    let mut g = core.shared.lock();
    loop {
        let limits = LogLimits {
            // A quarter of the memory this logger could hold now at most (less than its budget
            // on a crowded node): writeback may only take durable data, and writers wait for
            // the budget.
            commit_bytes: cfg.commit_bytes.min(core.budget.available() / 4).max(1),
            commit_interval: cfg.commit_interval,
            chunk_size: cfg.chunk_size,
            batch_delay: cfg.batch_delay,
            group_wait: cfg.group_wait,
            rotate_size: cfg.rotate_size,
        };
        let facts = LogFacts {
            mode: g.mode.mode(),
            kill: g.kill,
            stop: g.stop,
            rotate_req: g.rotate_req,
            resume_req: g.resume_req,
            pending_bytes: if g.pending.is_empty() {
                0
            } else {
                g.pending_bytes.max(1)
            },
            oldest_pending: g
                .pending
                .front()
                .map_or(Duration::ZERO, |p| p.since.elapsed()),
            waiters: !g.waiters.is_empty(),
            batch_open: writer.batch_open(),
            open_bytes: open.bytes,
            open_age: open.since.map(|t| t.elapsed()),
            group_waited: open.waited,
            file_offset: writer.pos().offset,
            can_prepare_next: core.store.is_some() && !core.next_log.is_connected(),
        };
        match log_policy::decide(&facts, &limits) {
            LogDecision::Exit => break,
            LogDecision::Resume => {
                g.resume_req = false;
                super::resume::run(&core, &mut g, &mut writer);
            }
            LogDecision::Commit => {
                let t0 = Instant::now();
                let result = MutexGuard::unlocked(&mut g, || writer.commit(&Via(&core.log), &[]));
                g.log_io_time += t0.elapsed();
                committed(&core, &mut g, &mut writer, &mut open, result, &[]);
            }
            LogDecision::Rotate => {
                g.rotate_req = false;
                rotate(&core, &mut g, &mut writer);
            }
            LogDecision::Wait { wait, prepare_next } => {
                if prepare_next {
                    self::prepare_next(&core, &mut g, &writer);
                }
                core.log_cv.wait_for(&mut g, wait);
            }
            LogDecision::GroupWait(wait) => {
                // Give the writers just released by the last commit a moment to queue their
                // next writes, so that one fdatasync serves all of them.
                open.waited = true;
                core.log_cv.wait_for(&mut g, wait);
            }
            LogDecision::Append(rule) => append(&core, &mut g, &mut writer, &mut open, rule),
        }
    }
    if !g.kill && g.mode.mode() == LoggerMode::Logging && !writer.batch_open() {
        // Closed cleanly: end the file, so that a restart finds its end without taking the
        // bytes after it (a recycled file's stale ones) for a torn tail to cut off.
        if let Err(e) = MutexGuard::unlocked(&mut g, || writer.finish(&Via(&core.log))) {
            tracing::warn!(brick = %core.name, error = %e, "cannot end the log file at close");
        }
    }
    g.log_threads_done = true;
    drop(g);
    core.wb_cv.notify_all();
}

/// Take a batch from the queue, append it, and commit it when `rule` says so.
fn append(
    core: &Core,
    g: &mut MutexGuard<'_, Shared>,
    writer: &mut LogWriter,
    open: &mut Open,
    rule: CommitRule,
) {
    let batch = take_batch(g, core.cfg.chunk_size);
    let last = batch.last().map_or(0, |p| p.seq);
    let commit = log_policy::commit_after_take(
        rule,
        !g.pending.is_empty(),
        g.waiters.iter().any(|(t, _)| *t <= last),
    );
    let t0 = Instant::now();
    let result = MutexGuard::unlocked(g, || write(core, writer, &batch, commit));
    g.log_io_time += t0.elapsed();
    g.records_logged += batch.len() as u64;
    if commit {
        return committed(core, g, writer, open, result, &batch);
    }
    match result {
        Ok(spans) => {
            note_positions(g, &batch, &spans);
            open.since.get_or_insert_with(Instant::now);
            open.bytes += spans
                .end
                .saturating_sub(spans.starts.first().copied().unwrap_or(spans.end));
            open.last_seq = batch.last().map_or(open.last_seq, |p| p.seq);
        }
        Err(e) => {
            let hole = g.durable_end;
            emergency(core, g, hole, &e)
        }
    }
}

fn note_positions(g: &mut Shared, batch: &[Pending], spans: &crate::log::BatchSpans) {
    for (p, start) in batch.iter().zip(&spans.starts) {
        g.index.set_log(p.seq, LogPos::new(spans.seq, *start));
    }
}

/// After a commit: everything appended is durable; release waiters, maybe rotate.
fn committed(
    core: &Core,
    g: &mut MutexGuard<'_, Shared>,
    writer: &mut LogWriter,
    open: &mut Open,
    result: Result<crate::log::BatchSpans, LogError>,
    batch: &[Pending],
) {
    match result {
        Ok(spans) => {
            note_positions(g, batch, &spans);
            let last = batch.last().map_or(open.last_seq, |p| p.seq);
            g.durable_seq = g.durable_seq.max(last);
            let durable = g.durable_seq;
            g.index.set_durable(durable);
            g.durable_end = LogPos::new(spans.seq, spans.end);
            if let Some(store) = &core.store {
                store.durable(spans.seq, spans.end);
            }
            g.batches += 1;
            *open = Open {
                since: None,
                bytes: 0,
                last_seq: last,
                waited: false,
            };
            core.release_waiters(g, None);
            // Wake writeback only when it has a reason to act now (it times its own deferred
            // work); a wake-up per commit was a context switch per commit.
            if g.wb_force || g.stop || core.budget_pressure() {
                core.wb_cv.notify_all();
            }
            if writer.pos().offset >= core.cfg.rotate_size || g.rotate_req {
                g.rotate_req = false;
                rotate(core, g, writer);
            }
        }
        Err(e) => {
            let hole = g.durable_end;
            emergency(core, g, hole, &e)
        }
    }
}

fn take_batch(g: &mut Shared, chunk: usize) -> Vec<Pending> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while let Some(p) = g.pending.front() {
        let sz = p.data.len() + crate::log::record::REC_OVERHEAD;
        if !batch.is_empty() && bytes + sz > chunk {
            break;
        }
        bytes += sz;
        g.pending_bytes -= sz;
        batch.push(g.pending.pop_front().expect("front exists"));
    }
    batch
}

fn write(
    core: &Core,
    writer: &mut LogWriter,
    batch: &[Pending],
    commit: bool,
) -> Result<crate::log::BatchSpans, LogError> {
    let recs: Vec<RecordIn<'_>> = batch
        .iter()
        .map(|p| RecordIn {
            op: p.op,
            pos: p.pos,
            len: p.len,
            data: &p.data,
            stamp: p.stamp,
            flags: p.flags,
            data_crc: Some(p.data.crc()),
        })
        .collect();
    if commit {
        writer.commit(&Via(&core.log), &recs)
    } else {
        writer.append(&Via(&core.log), &recs)
    }
}

/// Create the next log file early (half way to the size limit) so that the switch is only a
/// rewire.
fn prepare_next(core: &Core, g: &mut MutexGuard<'_, Shared>, writer: &LogWriter) {
    if core.store.is_none()
        || core.next_log.is_connected()
        || writer.pos().offset < core.cfg.rotate_size / 2
    {
        return;
    }
    let seq = writer.header().seq + 1;
    let store = core.store.clone().expect("checked");
    match MutexGuard::unlocked(g, || store.create(seq)) {
        Ok(out) => {
            let _ = core.next_log.connect(out);
            *core.next_log_seq.lock() = Some(seq);
        }
        Err(e) => {
            tracing::warn!(brick = %core.name, error = %e, "cannot create the next log file yet")
        }
    }
}

fn rotate(core: &Core, g: &mut MutexGuard<'_, Shared>, writer: &mut LogWriter) {
    if core.store.is_some() && !core.next_log.is_connected() {
        // Force creation regardless of the size.
        let seq = writer.header().seq + 1;
        let store = core.store.clone().expect("checked");
        match MutexGuard::unlocked(g, || store.create(seq)) {
            Ok(out) => {
                let _ = core.next_log.connect(out);
                *core.next_log_seq.lock() = Some(seq);
            }
            Err(e) => {
                let err = LogError::Io {
                    file: store.describe(seq),
                    source: e,
                };
                return emergency(core, g, writer.pos(), &err);
            }
        }
    }
    let Some(seq) = *core.next_log_seq.lock() else {
        tracing::warn!(brick = %core.name, "rotation requested but no next log is connected");
        return;
    };
    let Some(drain) = core.next_log.disconnect() else {
        return;
    };
    let out = drain.output();
    let mut header = core.new_header(seq);
    let name = core.store.as_ref().map_or_else(
        || LogName::new(seq, core.cfg.node.as_str()).to_string(),
        |s| s.describe(seq),
    );
    let compress = core.cfg.compress;
    // The old file gets its end-of-file record first, the new one records that end: readers
    // stop there in the old file whatever follows (FORMAT.md, "Recycled log files").
    let made = MutexGuard::unlocked(g, || {
        header.prev_end = writer.finish(&Via(&core.log))?;
        LogWriter::create(&*out, name, header, compress)
    });
    match made {
        Ok(w) => {
            if let Some(old) = core.log.rewire(out) {
                // Nothing is in flight: the log thread is the only submitter.
                let _ = old.wait(Duration::from_secs(5));
            }
            *core.next_log_seq.lock() = None;
            *writer = w;
            g.durable_end = writer.pos();
            if let Some(store) = &core.store {
                store.durable(seq, g.durable_end.offset);
            }
            g.rotations += 1;
            core.wb_cv.notify_one();
            tracing::info!(brick = %core.name, log = seq, "rotated to a new log file");
        }
        Err(e) => emergency(core, g, writer.pos(), &e),
    }
}

/// Logging failed: drain the index to the data device, then bypass the log.
pub(crate) fn emergency(core: &Core, g: &mut MutexGuard<'_, Shared>, hole: LogPos, e: &LogError) {
    // Only a logging logger enters emergency mode (a second log error while draining, or a
    // request in bypass, changes nothing).
    if core.change_mode(g, ModeEvent::LogFailed { hole }).is_err() {
        return;
    }
    tracing::error!(brick = %core.name, error = %e, hole = %hole,
        "log write failed: emergency mode, draining to the data device and bypassing the log");
    g.pending.clear();
    g.pending_bytes = 0;
    g.wb_force = true;
    core.wb_cv.notify_all();
}
