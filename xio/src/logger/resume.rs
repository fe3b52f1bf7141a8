//! Leaving emergency bypass without a restart ([`super::TransLogger::resume_logging`]).
//!
//! The invariant: once the logger logs again from position P of a new file, every write
//! acknowledged before P is on the flushed data device (the watermark P says so). So the log
//! thread, which owns the log writer, (1) holds new writers back (`LoggerMode::Resuming`), (2) waits
//! for the bypass writes already forwarded to the data device, (3) flushes the data device,
//! (4) creates the next log file, (5) persists the watermark at its start (still naming the
//! hole: replicas fed from this log need a full sync), and only then (6) logs again. Any
//! failure leaves it in bypass, where IO goes on as before.

use super::core::{Core, Shared, Via};
use super::mode::ModeEvent;
use super::state::LogState;
use super::LoggerError;
use crate::log::{LogPos, LogWriter};
use brick_core::{Aio, Op};
use parking_lot::MutexGuard;
use std::time::{Duration, Instant};

/// How long bypass writes in flight may take to finish before a resume gives up.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Run a requested resume on the log thread; the outcome goes to `Shared::resume_outcome`.
pub(crate) fn run(core: &Core, g: &mut MutexGuard<'_, Shared>, writer: &mut LogWriter) {
    let Some(hole) = g.mode.hole() else {
        return;
    };
    if core.change_mode(g, ModeEvent::ResumeStarted).is_err() {
        return;
    }
    let outcome = match resume(core, g, hole) {
        Ok((w, start)) => {
            *writer = w;
            g.durable_end = start;
            g.min_pos = start;
            g.oldest_file = start.seq;
            g.skip_persisted = false;
            g.resumed_hole = Some(hole);
            core.change_mode(g, ModeEvent::Resumed)
                .expect("only the log thread leaves Resuming");
            tracing::warn!(brick = %core.name, hole = %hole, log = start.seq,
                "left emergency bypass: logging again; replicas fed from this log need a full sync past the hole");
            Ok(start)
        }
        Err(e) => {
            core.change_mode(g, ModeEvent::ResumeFailed)
                .expect("only the log thread leaves Resuming");
            tracing::error!(brick = %core.name, error = %e,
                "cannot leave emergency bypass; writes keep going to the data device");
            Err(e)
        }
    };
    g.resume_outcome = Some(outcome);
}

fn resume(
    core: &Core,
    g: &mut MutexGuard<'_, Shared>,
    hole: LogPos,
) -> Result<(LogWriter, LogPos), LoggerError> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    while g.bypass_inflight > 0 {
        if core.log_cv.wait_until(g, deadline).timed_out() && g.bypass_inflight > 0 {
            return Err(LoggerError::Io(brick_core::Error::Timeout {
                context: "waiting for bypass writes before logging again",
                millis: DRAIN_LIMIT.as_millis() as u64,
            }));
        }
    }
    let store = core.store.clone().ok_or(LoggerError::NoStore)?;
    let next_connected = *core.next_log_seq.lock();
    let seq = g
        .min_pos
        .seq
        .max(g.durable_end.seq + 1)
        .max(hole.seq + 1)
        .max(next_connected.map_or(0, |s| s + 1));
    // The old file's valid end is the hole (its last write failed): readers stop there.
    let prev_end = if g.durable_end.seq + 1 == seq {
        g.durable_end.offset
    } else {
        0
    };
    MutexGuard::unlocked(g, || {
        // A next file made before the emergency was deleted with the others.
        drop(core.next_log.disconnect());
        *core.next_log_seq.lock() = None;
        brick_core::run(&Via(&core.data), Aio::new(Op::Flush, 0, 0))?;
        let out = store.create(seq)?;
        let made = LogWriter::create(
            &*out,
            store.describe(seq),
            crate::log::FileHeader {
                prev_end,
                ..core.new_header(seq)
            },
            core.cfg.compress,
        )
        .map_err(LoggerError::from)
        .and_then(|w| {
            let start = w.pos();
            store.durable(seq, start.offset);
            let mut published = core.published.lock();
            store.store_state(
                &LogState {
                    min_pos: start,
                    hole: Some(hole),
                }
                .encode(),
            )?;
            *published = (start, false);
            Ok((w, start))
        });
        match made {
            Ok((w, start)) => {
                if let Some(old) = core.log.rewire(out) {
                    // The old file saw its last write when logging failed.
                    let _ = old.wait(Duration::from_secs(5));
                }
                Ok((w, start))
            }
            Err(e) => {
                let _ = store.remove(seq);
                Err(e)
            }
        }
    })
}
