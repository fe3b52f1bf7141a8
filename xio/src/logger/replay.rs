//! Replay: apply a range of the log to a data device (crash recovery of a primary, and the
//! secondary's way of catching up).
//!
//! Replay is **idempotent** (records are applied in log order, so applying a prefix again and
//! then the rest ends in the same state), applies non-overlapping records **in parallel** and
//! overlapping ones **in log order** (see `apply::Applier`), reports progress and the position
//! reached, and flushes the data device before it returns.
//!
//! ## Pipeline
//! Two threads overlap the work. A **scan thread** reads the log files in large windows
//! (`Scanner`), verifies every record (header and trailer CRC) and decodes the payloads of
//! verified records into write buffers (payloads of at least [`DIRECT_MIN`] bytes that are
//! not in the window are read straight into the buffer the request will carry, and checked
//! there); consecutive records that are adjacent on the device
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
use super::error::{LoggerError, Result};
use super::store::LogStore;
use crate::log::record::{FLAG_LZ4, FLAG_NO_HOLE};
use crate::log::{Expect, LogError, LogPos, RecordHeader, RecordOp, ScanEnd, Scanner, HEADER_LEN};
use brick_core::{Flags, Output};
use crossbeam_channel::{Receiver, Sender};

/// Largest request that merging builds from adjacent records.
pub const MERGE_MAX: usize = 1 << 20;
/// Payloads at least this large that straddle the scanner's window are read straight into
/// the request's buffer (`Scanner::read_payloads_directly`).
pub const DIRECT_MIN: usize = 128 << 10;
/// Default of [`ReplayOptions::flush_behind`]: with `flush`, a device flush is started
/// (without waiting) after every this many bytes applied, so that the disk writes back while
/// replay goes on and the final flush is short.
pub const FLUSH_BEHIND: usize = 128 << 20;
/// Payload bytes per batch sent from the scan thread.
pub const BATCH_BYTES: usize = 4 << 20;
/// Batches the scan thread may be ahead of the applying thread.
pub const AHEAD: usize = 4;
/// Requests per batch at most.
const BATCH_ITEMS: usize = 1024;
/// Spare buffers kept for reuse by the scan thread (their bytes are bounded by the applier:
/// `apply::SPENT_MAX_BYTES` per batch).
const SPARE_MAX: usize = 2048;

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records applied.
    pub records: u64,
    /// Device bytes they touched.
    pub bytes: u64,
    /// Position after the last record applied (or the replay start if none was).
    pub reached: LogPos,
    /// Log files read.
    pub files: u64,
    /// How the last file read ended (`None` when there was no file).
    pub end: Option<ScanEnd>,
    /// The last file read.
    pub last_seq: Option<u64>,
    /// The first file that ended in a torn tail (only empty files may follow it).
    pub torn: Option<(u64, ScanEnd)>,
}

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

/// One request for the data device: one record, or several merged ones.
struct Item {
    op: RecordOp,
    pos: u64,
    len: usize,
    data: Vec<u8>,
    flags: u8,
}

/// What the scan thread sends.
enum Step {
    Apply(Item),
    Progress(LogPos, u64),
}

/// The scan thread's end of the channel: merges, batches and sends.
struct Sink {
    tx: Sender<Vec<Step>>,
    spare: Receiver<Vec<u8>>,
    batch: Vec<Step>,
    bytes: usize,
    pending: Option<Item>,
}

impl Sink {
    fn new(tx: Sender<Vec<Step>>, spare: Receiver<Vec<u8>>) -> Sink {
        Sink {
            tx,
            spare,
            batch: Vec::new(),
            bytes: 0,
            pending: None,
        }
    }

    /// Queue the verified record `rec` (merged into the pending request when it continues it).
    fn record(&mut self, rec: &crate::log::scan::RawRecord<'_>) -> Result<(), SinkError> {
        let h = &rec.header;
        let len = h.data_len as usize;
        if len == 0 {
            return Ok(());
        }
        let flags = h.flags & FLAG_NO_HOLE;
        if self.joins(h) {
            let p = self.pending.as_mut().expect("joins a pending request");
            rec.decode_into(&mut p.data)?;
            p.len += len;
            return Ok(());
        }
        self.close_pending()?;
        let mut data = if h.op == RecordOp::Write {
            let mut b = self.spare.try_recv().unwrap_or_default();
            b.clear();
            b.reserve(len);
            b
        } else {
            Vec::new()
        };
        rec.decode_into(&mut data)?;
        self.pending = Some(Item {
            op: h.op,
            pos: h.pos,
            len,
            data,
            flags,
        });
        Ok(())
    }

    /// A spare buffer, if the applying side returned one.
    fn spare(&mut self) -> Option<Vec<u8>> {
        self.spare.try_recv().ok()
    }

    /// Whether the write record `h` (not lz4) would start a request of its own, so that its
    /// stored payload can become the request's data as it is.
    fn takes_whole(&self, h: &RecordHeader) -> bool {
        let plain = h.op == RecordOp::Write && h.flags & FLAG_LZ4 == 0 && h.data_len > 0;
        plain && !self.joins(h)
    }

    /// Whether record `h` continues the pending request: same kind, adjacent on the device
    /// (so the two do not overlap), and the sum within [`MERGE_MAX`].
    fn joins(&self, h: &RecordHeader) -> bool {
        self.pending.as_ref().is_some_and(|p| {
            p.op == h.op
                && p.flags == h.flags & FLAG_NO_HOLE
                && p.pos + p.len as u64 == h.pos
                && p.len + h.data_len as usize <= MERGE_MAX
        })
    }

    /// Queue the plain write `h` whose payload is `data` (see [`Sink::takes_whole`]).
    fn record_owned(&mut self, h: &RecordHeader, data: Vec<u8>) -> Result<(), SinkError> {
        self.close_pending()?;
        self.pending = Some(Item {
            op: h.op,
            pos: h.pos,
            len: h.data_len as usize,
            data,
            flags: h.flags & FLAG_NO_HOLE,
        });
        Ok(())
    }

    /// Report `pos` and `records` once everything before it is applied.
    fn progress(&mut self, pos: LogPos, records: u64) -> Result<(), SinkError> {
        self.close_pending()?;
        self.batch.push(Step::Progress(pos, records));
        Ok(())
    }

    fn close_pending(&mut self) -> Result<(), SinkError> {
        if let Some(it) = self.pending.take() {
            self.bytes += it.data.len().max(4096);
            self.batch.push(Step::Apply(it));
            if self.bytes >= BATCH_BYTES || self.batch.len() >= BATCH_ITEMS {
                self.send()?;
            }
        }
        Ok(())
    }

    /// Send everything queued.
    fn send(&mut self) -> Result<(), SinkError> {
        self.close_pending_no_send();
        if self.batch.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        let batch = std::mem::take(&mut self.batch);
        self.tx.send(batch).map_err(|_| SinkError::Hangup)
    }

    fn close_pending_no_send(&mut self) {
        if let Some(it) = self.pending.take() {
            self.batch.push(Step::Apply(it));
        }
    }
}

/// Why the scan thread stopped sending.
enum SinkError {
    /// A log problem: reported to the caller.
    Log(LoggerError),
    /// The applying side is gone (it failed; its error is the one reported).
    Hangup,
}

impl From<LogError> for SinkError {
    fn from(e: LogError) -> Self {
        SinkError::Log(e.into())
    }
}

impl From<LoggerError> for SinkError {
    fn from(e: LoggerError) -> Self {
        SinkError::Log(e)
    }
}

/// The scan thread: walk the files and feed `sink`. Returns the report (the applying side
/// has everything once the sink is flushed).
fn scan_store(
    store: &dyn LogStore,
    from: LogPos,
    resource: Option<String>,
    until: Option<LogPos>,
    window: usize,
    sink: &mut Sink,
) -> Result<ReplayReport> {
    let out = scan_files(store, from, resource, until, window, sink);
    // Whatever was verified before an error is still applied.
    let sent = sink.send();
    match (out, sent) {
        (Err(SinkError::Log(e)), _) => Err(e),
        (Ok(report), Ok(())) => Ok(report),
        // The applier failed; its error is the one the caller sees.
        (Err(SinkError::Hangup), _) | (Ok(_), Err(_)) => Err(brick_core::Error::Brick {
            brick: "replay".into(),
            message: "the applying side stopped".into(),
        }
        .into()),
    }
}

fn scan_files(
    store: &dyn LogStore,
    from: LogPos,
    resource: Option<String>,
    until: Option<LogPos>,
    window: usize,
    sink: &mut Sink,
) -> Result<ReplayReport, SinkError> {
    let seqs: Vec<u64> = store
        .list()
        .map_err(LoggerError::from)?
        .into_iter()
        .filter(|&s| s >= from.seq)
        .collect();
    let mut report = ReplayReport {
        records: 0,
        bytes: 0,
        reached: from,
        files: 0,
        end: None,
        last_seq: None,
        torn: None,
    };
    if let (Some(&first), true) = (seqs.first(), from.offset > 0) {
        if first != from.seq {
            return Err(LoggerError::Gap {
                missing: store.describe(from.seq),
                context: format!("replay starts at {from}"),
            }
            .into());
        }
    }
    for (i, &seq) in seqs.iter().enumerate() {
        if i > 0 && seqs[i - 1] + 1 != seq {
            return Err(LoggerError::Gap {
                missing: store.describe(seqs[i - 1] + 1),
                context: format!("between {} and {}", seqs[i - 1], seq),
            }
            .into());
        }
        if until.is_some_and(|u| u.seq < seq) {
            break;
        }
        let (out, len) = store.open(seq).map_err(LoggerError::from)?;
        let expect = Expect {
            resource: resource.clone(),
            seq: Some(seq),
        };
        let mut scanner = Scanner::open(out, store.describe(seq), len, &expect)?;
        scanner.set_window(window);
        scanner.read_payloads_directly(DIRECT_MIN);
        let start = if seq == from.seq {
            from.offset.max(HEADER_LEN as u64)
        } else {
            HEADER_LEN as u64
        };
        report.files += 1;
        report.last_seq = Some(seq);
        if report.reached.seq < seq || report.reached.offset < start {
            report.reached = LogPos::new(seq, start);
        }
        loop {
            if scanner.wants_buffer() {
                if let Some(buf) = sink.spare() {
                    scanner.give_buffer(buf);
                }
            }
            let Some(rec) = scanner.next_raw()? else {
                break;
            };
            if let Some((tseq, tend)) = &report.torn {
                return Err(LogError::Corruption {
                    file: store.describe(*tseq),
                    offset: tend.end(),
                    reason: format!(
                        "torn tail ({tend:?}), but the newer log file {seq} has records"
                    ),
                }
                .into());
            }
            if rec.end <= start {
                continue;
            }
            if rec.offset < start {
                return Err(LogError::Corruption {
                    file: store.describe(seq),
                    offset: start,
                    reason: format!(
                        "replay start {start} is inside the record at {}",
                        rec.offset
                    ),
                }
                .into());
            }
            if until.is_some_and(|u| LogPos::new(seq, rec.offset) >= u) {
                report.end = scanner.end().cloned();
                sink.progress(report.reached, report.records)?;
                return Ok(report);
            }
            let (h, rec_end) = (rec.header, rec.end);
            if h.op == RecordOp::Commit {
                report.reached = LogPos::new(seq, rec_end);
                continue;
            }
            if rec.direct && sink.takes_whole(&h) {
                // The payload sits in a buffer of its own: it becomes the request's data.
                let buf = scanner
                    .take_direct()
                    .expect("a direct record has its buffer");
                sink.record_owned(&h, buf)?;
            } else {
                sink.record(&rec)?;
            }
            report.records += 1;
            report.bytes += h.data_len as u64;
            report.reached = LogPos::new(seq, rec_end);
            if report.records.is_multiple_of(4096) {
                sink.progress(report.reached, report.records)?;
            }
        }
        let end = scanner.end().cloned().expect("scanner finished");
        if seq == from.seq && end.end() < start && from.offset > HEADER_LEN as u64 {
            return Err(LogError::Corruption {
                file: store.describe(seq),
                offset: end.end(),
                reason: format!("the valid log ends before the replay start {start}"),
            }
            .into());
        }
        if matches!(end, ScanEnd::TornTail { .. }) && report.torn.is_none() {
            report.torn = Some((seq, end.clone()));
        }
        report.end = Some(end);
        sink.progress(report.reached, report.records)?;
    }
    Ok(report)
}
