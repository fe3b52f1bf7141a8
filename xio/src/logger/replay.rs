//! Replay: apply a range of the log to a data device (crash recovery of a primary, and the
//! secondary's way of catching up).
//!
//! Replay is **idempotent** (records are applied in log order, so applying a prefix again and
//! then the rest ends in the same state), applies non-overlapping records **in parallel** and
//! overlapping ones **in log order** (see `apply::Applier`), reports progress and the position
//! reached, and flushes the data device before it returns.

use super::apply::Applier;
use super::error::{LoggerError, Result};
use super::store::LogStore;
use crate::log::{Expect, LogError, LogPos, ScanEnd, Scanner, HEADER_LEN};
use brick_core::Output;

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
    /// Called after each file and every 4096 records with the position reached and the
    /// records applied so far.
    pub progress: Option<&'a mut dyn FnMut(LogPos, u64)>,
    /// Flush the data device at the end (default true). A secondary that replays in steps may
    /// flush only where it persists its replay position.
    pub flush: bool,
}

impl Default for ReplayOptions<'_> {
    fn default() -> Self {
        ReplayOptions {
            resource: None,
            until: None,
            depth: 64,
            progress: None,
            flush: true,
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
    mut opts: ReplayOptions<'_>,
) -> Result<ReplayReport> {
    let seqs: Vec<u64> = store
        .list()?
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
            });
        }
    }
    let mut applier = Applier::new(data, opts.depth)?;
    for (i, &seq) in seqs.iter().enumerate() {
        if i > 0 && seqs[i - 1] + 1 != seq {
            return Err(LoggerError::Gap {
                missing: store.describe(seqs[i - 1] + 1),
                context: format!("between {} and {}", seqs[i - 1], seq),
            });
        }
        if opts.until.is_some_and(|u| u.seq < seq) {
            break;
        }
        let (out, len) = store.open(seq)?;
        let expect = Expect {
            resource: opts.resource.clone(),
            seq: Some(seq),
        };
        let mut scanner = Scanner::open(out, store.describe(seq), len, &expect)?;
        let start = if seq == from.seq {
            from.offset.max(HEADER_LEN as u64)
        } else {
            HEADER_LEN as u64
        };
        scanner.skip_payloads_until(start);
        report.files += 1;
        report.last_seq = Some(seq);
        if report.reached.seq < seq || report.reached.offset < start {
            report.reached = LogPos::new(seq, start);
        }
        while let Some(rec) = scanner.next()? {
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
            if opts
                .until
                .is_some_and(|u| LogPos::new(seq, rec.offset) >= u)
            {
                report.end = scanner.end().cloned();
                return finish(applier, report, &mut opts);
            }
            let h = rec.header;
            if h.op == crate::log::RecordOp::Commit {
                report.reached = LogPos::new(seq, rec.end);
                continue;
            }
            applier.apply(h.op, h.pos, h.data_len as usize, rec.data, h.flags)?;
            report.records += 1;
            report.bytes += h.data_len as u64;
            report.reached = LogPos::new(seq, rec.end);
            if report.records.is_multiple_of(4096) {
                if let Some(p) = opts.progress.as_mut() {
                    p(report.reached, report.records);
                }
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
        if let Some(p) = opts.progress.as_mut() {
            p(report.reached, report.records);
        }
    }
    finish(applier, report, &mut opts)
}

fn finish(
    applier: Applier<'_>,
    report: ReplayReport,
    opts: &mut ReplayOptions<'_>,
) -> Result<ReplayReport> {
    applier.finish(opts.flush)?;
    Ok(report)
}
