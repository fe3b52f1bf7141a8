//! Replay: apply a range of the log to a data device (crash recovery of a primary, and the
//! secondary's way of catching up).
//!
//! Replay is **idempotent** (records are applied in log order, so applying a prefix again and
//! then the rest ends in the same state), applies non-overlapping records **in parallel** and
//! overlapping ones **in log order** (see `apply::Applier`), reports progress and the position
//! reached, and flushes the data device before it returns.
//!
//! ## Pipeline
//! Two threads overlap the work. A **scan thread** (`replay_scan.rs`) reads the log files in
//! large windows (`Scanner`), verifies every record (header and trailer CRC) and decodes the
//! payloads of verified records into write buffers (payloads of at least [`DIRECT_MIN`] bytes
//! that are not in the window are read straight into the buffer the request will carry, and
//! checked there); consecutive records that are adjacent on the device
//! and of the same kind are **merged** into one request of at most [`MERGE_MAX`] bytes
//! (consecutive in log order, so the merged request holds exactly what applying them one by
//! one would leave). It sends the requests in batches over a bounded channel (at most
//! [`AHEAD`] batches of about [`BATCH_BYTES`] ahead). The calling thread applies them in
//! channel order through `Applier` (`depth` in flight, overlapping ones in order; requests
//! carry `Flags::MAY_BLOCK`, so a backend may write on this thread instead of handing each
//! request to a worker and back: aio does, 4 KiB random records 0.7 -> 1.7 GiB/s), calls the
//! progress callback, and hands the buffers of completed writes back to the scan thread. With
//! `flush`, it also starts a device flush every `flush_behind` bytes without waiting for it
//! (disk writeback overlaps the replay; the final flush still covers everything).
//!
//! **Invariants** (tested in `xio/tests/replay_*.rs` and the logger tests):
//! - a record reaches the data device only after it (and every record before it) passed its
//!   checks: the scan thread sends nothing for a bad record or anything after it, and reports
//!   the error (naming file and offset) after the last good request;
//! - the device ends as if every record were applied one by one in log order (merging only
//!   joins log-consecutive, device-adjacent, non-overlapping records);
//! - a progress position is reported only after every request before it was submitted.

use super::apply::Applier;
use super::error::Result;
pub use super::replay_scan::ReplayReport;
use super::replay_scan::{scan_store, Sink, Step};
#[cfg(doc)]
use super::replay_scan::{BATCH_BYTES, DIRECT_MIN, MERGE_MAX};
use super::store::LogStore;
use crate::log::LogPos;
use brick_core::{Flags, Output};
use crossbeam_channel::{Receiver, Sender};

/// Default of [`ReplayOptions::flush_behind`]: with `flush`, a device flush is started
/// (without waiting) after every this many bytes applied, so that the disk writes back while
/// replay goes on and the final flush is short.
pub const FLUSH_BEHIND: usize = 128 << 20;
/// Batches the scan thread may be ahead of the applying thread.
pub const AHEAD: usize = 4;
/// Spare buffers kept for reuse by the scan thread (their bytes are bounded by the applier:
/// `apply::SPENT_MAX_BYTES` per batch).
const SPARE_MAX: usize = 2048;

/// Options of a replay.
pub struct ReplayOptions<'a> {
    /// Resource the files must belong to.
    pub resource: Option<String>,
    /// Stop before the first record starting at or after this position.
    pub until: Option<LogPos>,
    /// Requests in flight on the data device.
    pub depth: usize,
    /// Called after each file, every 4096 records and when stopping at `until`, with the
    /// position reached and the records applied so far (all of them submitted to `data`).
    pub progress: Option<&'a mut dyn FnMut(LogPos, u64)>,
    /// Flush the data device at the end (default true). A secondary that replays in steps may
    /// flush only where it persists its replay position.
    pub flush: bool,
    /// Bytes the scanner reads from a log file at once (default `log::scan::WINDOW`, 8 MiB).
    pub read_window: usize,
    /// With `flush`: start a device flush without waiting every this many bytes applied
    /// (default 128 MiB; 0: only the final flush).
    pub flush_behind: usize,
}

impl Default for ReplayOptions<'_> {
    fn default() -> Self {
        ReplayOptions {
            resource: None,
            until: None,
            depth: 64,
            progress: None,
            flush: true,
            read_window: crate::log::scan::WINDOW,
            flush_behind: FLUSH_BEHIND,
        }
    }
}

/// Replay every record of the log files in `store` from `from` to the end of the newest file
/// (or to `opts.until`) onto `data`.
///
/// Errors: a missing file in the sequence, corruption anywhere, a torn tail in any file but the
/// last one, a foreign or unknown-version file. Nothing after the first bad record is applied.
pub fn replay_store(
    data: &dyn Output,
    store: &dyn LogStore,
    from: LogPos,
    opts: ReplayOptions<'_>,
) -> Result<ReplayReport> {
    // Driven: this thread waits for the replay's IO anyway; an io_uring data device's
    // completions are reaped here (and its completion thread is not started for it).
    crate::aio::drive(|| replay_driven(data, store, from, opts))
}

fn replay_driven(
    data: &dyn Output,
    store: &dyn LogStore,
    from: LogPos,
    opts: ReplayOptions<'_>,
) -> Result<ReplayReport> {
    let ReplayOptions {
        resource,
        until,
        depth,
        mut progress,
        flush,
        read_window,
        flush_behind,
    } = opts;
    let mut applier = Applier::new(data, depth)?;
    applier.keep_buffers();
    // This thread exists to wait for the replay's IO: a backend may write on it directly
    // (aio: a buffered write is then a copy on this thread, not a hand-off to an io-wq worker
    // and back through the completion thread).
    applier.request_flags(Flags::MAY_BLOCK);
    let (tx, rx) = crossbeam_channel::bounded::<Vec<Step>>(AHEAD);
    let (spare_tx, spare_rx) = crossbeam_channel::bounded::<Vec<u8>>(SPARE_MAX);
    std::thread::scope(|s| {
        let scan = std::thread::Builder::new()
            .name("replay-scan".into())
            .spawn_scoped(s, move || {
                let mut sink = Sink::new(tx, spare_rx);
                scan_store(store, from, resource, until, read_window, &mut sink)
            })
            .map_err(|e| brick_core::Error::from_io(&e, "starting the replay scan thread"))?;
        let mut spent = Vec::new();
        let flush_every = (flush && flush_behind > 0).then_some(flush_behind);
        let applied = apply_steps(
            &mut applier,
            &rx,
            &spare_tx,
            &mut spent,
            &mut progress,
            flush_every,
        );
        // Dropping the receiver stops a scan thread still sending (after an apply error).
        drop(rx);
        let scanned = match scan.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        applied?;
        scanned
    })
    .and_then(|report| {
        applier.finish(flush)?;
        Ok(report)
    })
}

/// Apply what the scan thread sends, in order, until it hangs up.
fn apply_steps(
    applier: &mut Applier<'_>,
    rx: &Receiver<Vec<Step>>,
    spare_tx: &Sender<Vec<u8>>,
    spent: &mut Vec<Vec<u8>>,
    progress: &mut Option<&mut dyn FnMut(LogPos, u64)>,
    flush_every: Option<usize>,
) -> Result<()> {
    let mut unflushed = 0usize;
    for batch in rx {
        for step in batch {
            match step {
                Step::Apply(it) => {
                    unflushed += it.len;
                    applier.apply(it.op, it.pos, it.len, it.data, it.flags)?;
                    if flush_every.is_some_and(|n| unflushed >= n) && applier.flush_behind()? {
                        unflushed = 0;
                    }
                }
                Step::Progress(pos, records) => {
                    if let Some(p) = progress.as_mut() {
                        p(pos, records);
                    }
                }
            }
        }
        applier.take_spent(spent);
        for buf in spent.drain(..) {
            if spare_tx.try_send(buf).is_err() {
                break;
            }
        }
        spent.clear();
    }
    Ok(())
}
