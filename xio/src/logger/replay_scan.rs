//! Replay's scan thread (see `replay.rs`, "Pipeline"): walks the log files from a position,
//! verifies every record, merges device-adjacent ones into requests and sends them in
//! batches to the applying thread; errors (naming file and offset) come after the last good
//! request.

use super::error::{LoggerError, Result};
use super::store::LogStore;
use crate::log::record::{FLAG_LZ4, FLAG_NO_HOLE};
use crate::log::{Expect, LogError, LogPos, RecordHeader, RecordOp, ScanEnd, Scanner, HEADER_LEN};
use crossbeam_channel::{Receiver, Sender};

/// Largest request that merging builds from adjacent records.
pub const MERGE_MAX: usize = 1 << 20;
/// Payloads at least this large that straddle the scanner's window are read straight into
/// the request's buffer (`Scanner::read_payloads_directly`).
pub const DIRECT_MIN: usize = 128 << 10;
/// Payload bytes per batch sent from the scan thread.
pub const BATCH_BYTES: usize = 4 << 20;
/// Requests per batch at most.
pub(super) const BATCH_ITEMS: usize = 1024;

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
    /// Where the valid bytes of each file read end, by sequence number (the next file's
    /// header records it: `prev_end`).
    pub file_ends: Vec<(u64, u64)>,
}

/// One request for the data device: one record, or several merged ones.
pub(super) struct Item {
    pub op: RecordOp,
    pub pos: u64,
    pub len: usize,
    pub data: Vec<u8>,
    pub flags: u8,
}

/// What the scan thread sends.
pub(super) enum Step {
    Apply(Item),
    Progress(LogPos, u64),
}

/// The scan thread's end of the channel: merges, batches and sends.
pub(super) struct Sink {
    tx: Sender<Vec<Step>>,
    spare: Receiver<Vec<u8>>,
    batch: Vec<Step>,
    bytes: usize,
    pending: Option<Item>,
}

impl Sink {
    pub(super) fn new(tx: Sender<Vec<Step>>, spare: Receiver<Vec<u8>>) -> Sink {
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
pub(super) fn scan_store(
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
        file_ends: Vec::new(),
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
        report.file_ends.push((seq, end.end()));
        if matches!(end, ScanEnd::TornTail { .. }) && report.torn.is_none() {
            report.torn = Some((seq, end.clone()));
        }
        report.end = Some(end);
        sink.progress(report.reached, report.records)?;
    }
    Ok(report)
}
