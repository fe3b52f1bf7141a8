//! The append side of one log file (group commit, FORMAT.md "Batches"): records are appended
//! to the open batch with sequential writes and no flush ([`LogWriter::append`]); a commit
//! closes the batch and issues the one flush (`fdatasync`) that makes all of it durable.
//!
//! **Invariant:** nothing of batch *b+1* is written before the flush of batch *b* completed;
//! a failed write poisons the writer (the caller switches to emergency mode).
//!
//! A write is one gather write (`brick_core::write_gather`): the records' headers and trailers
//! come from one small buffer, their payloads from the callers' buffers, uncopied where the
//! output can (a buffered file: `pwritev`).
//!
//! Format v2 (a header with `align`): the header is written as one block of `align` bytes, and
//! every write is padded with zeroes to a multiple of `align` (its last record carries
//! `FLAG_PAD`), so that each write starts and ends aligned as `O_DIRECT` requires.

use super::error::{LogError, Result};
use super::gather::Gather;
use super::header::FileHeader;
use super::pos::LogPos;
use super::record::{encode_parts, RecordIn, RecordOp, FLAG_PAD};
use brick_core::{Aio, Op, Output};
use std::io::IoSlice;

/// Writer of one log file.
#[derive(Debug)]
pub struct LogWriter {
    header: FileHeader,
    name: String,
    pos: u64,
    next_rec: u64,
    next_batch: u64,
    compress: bool,
    poisoned: bool,
    open: bool,
    /// The record headers, trailers and padding of a write (the payloads are written from
    /// the callers' buffers); kept for its capacity.
    buf: Vec<u8>,
}

/// Where the records of one batch landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSpans {
    /// Log file sequence number.
    pub seq: u64,
    /// Start offset of each record, in order.
    pub starts: Vec<u64>,
    /// End offset of the batch (= append position afterwards).
    pub end: u64,
    /// Batch number.
    pub batch: u64,
}

impl LogWriter {
    /// Start a new log file on `out`: write the header at offset 0 and flush it. A v2 header
    /// (`align` > 0) gets the alignment `out` needs if that is more (its `Info::block_size`).
    pub fn create(
        out: &dyn Output,
        name: impl Into<String>,
        mut header: FileHeader,
        compress: bool,
    ) -> Result<LogWriter> {
        let name = name.into();
        let io = |e| LogError::Io {
            file: name.clone(),
            source: e,
        };
        if header.align != 0 {
            let needed = out.info().map_err(io)?.block_size;
            header.align = header.align.max(needed);
        }
        let mut bytes = header.encode()?.to_vec();
        bytes.resize(header.data_start() as usize, 0);
        brick_core::write_gather(out, 0, &[IoSlice::new(&bytes)]).map_err(io)?;
        brick_core::run(out, Aio::new(Op::Flush, 0, 0)).map_err(io)?;
        Ok(LogWriter {
            pos: header.data_start(),
            header,
            name,
            next_rec: 1,
            next_batch: 1,
            compress,
            poisoned: false,
            open: false,
            buf: Vec::new(),
        })
    }

    /// The file's header.
    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// File name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Append position (end of the last record written).
    pub fn pos(&self) -> LogPos {
        LogPos::new(self.header.seq, self.pos)
    }

    /// Whether records were appended to the current batch and not committed yet.
    pub fn batch_open(&self) -> bool {
        self.open
    }

    /// Encode `recs` as one complete batch: one sequential write, one flush. Empty `recs`
    /// commits an open batch with a commit marker, and is a no-op otherwise.
    pub fn write_batch(&mut self, out: &dyn Output, recs: &[RecordIn<'_>]) -> Result<BatchSpans> {
        self.put(out, recs, true)
    }

    /// Append `recs` to the open batch with one sequential write and **no** flush: they are
    /// not durable until [`LogWriter::commit`]. A crash may tear any part of the open batch.
    pub fn append(&mut self, out: &dyn Output, recs: &[RecordIn<'_>]) -> Result<BatchSpans> {
        self.put(out, recs, false)
    }

    /// Append `recs` (possibly none), close the batch (`BATCH_END` on its last record, or on a
    /// commit marker) and flush: everything appended so far is durable on success.
    pub fn commit(&mut self, out: &dyn Output, recs: &[RecordIn<'_>]) -> Result<BatchSpans> {
        self.put(out, recs, true)
    }

    /// Close the file for good: an end-of-file record as a batch of its own, flushed. Returns
    /// the file's valid end (the next file's header records it as `prev_end`); readers stop
    /// there whatever follows (a recycled file holds stale bytes after it). Call between
    /// batches only: an open batch would be left without `BATCH_END`.
    pub fn finish(&mut self, out: &dyn Output) -> Result<u64> {
        debug_assert!(!self.open, "finish with an open batch");
        let end = marker(RecordOp::End);
        Ok(self.put(out, std::slice::from_ref(&end), true)?.end)
    }

    fn put(&mut self, out: &dyn Output, recs: &[RecordIn<'_>], commit: bool) -> Result<BatchSpans> {
        if self.poisoned {
            return Err(LogError::Io {
                file: self.name.clone(),
                source: brick_core::Error::Invalid("log writer failed before; switch files"),
            });
        }
        let batch = self.next_batch;
        let mut starts = Vec::with_capacity(recs.len());
        if recs.is_empty() && !(commit && self.open) {
            return Ok(BatchSpans {
                seq: self.header.seq,
                starts,
                end: self.pos,
                batch,
            });
        }
        let marker = marker(RecordOp::Commit);
        let all: &[RecordIn<'_>] = if recs.is_empty() {
            std::slice::from_ref(&marker)
        } else {
            recs
        };
        let mut g = Gather::new(std::mem::take(&mut self.buf));
        let mut last_start = 0;
        let v2 = self.header.align != 0;
        for (i, r) in all.iter().enumerate() {
            last_start = g.len();
            starts.push(self.pos + g.len() as u64);
            let is_last = i + 1 == all.len();
            let seq = self.next_rec + i as u64;
            let mut r = *r;
            if v2 && is_last {
                r.flags |= FLAG_PAD;
            }
            let e = encode_parts(
                &r,
                self.header.nonce,
                seq,
                batch,
                commit && is_last,
                self.compress,
            );
            g.put_meta(&e.header);
            g.put_payload(e.payload);
            g.put_meta(&e.trailer);
        }
        let padded = self.header.align_up(self.pos + g.len() as u64) - self.pos;
        g.put_zeroes(padded as usize - g.len());
        if recs.is_empty() {
            starts.clear();
        }
        let len = g.len() as u64;
        let mut result = if crate::fail_point!(crate::failpoint::LOG_MID_RECORD) {
            // The write stops in the middle of the batch's last record: half of it reaches the
            // file; then the write fails, or the process dies (a crash mid-record).
            let cut = last_start + (g.len() - last_start) / 2;
            let partial = brick_core::write_gather(out, self.pos, &g.slices(cut));
            #[cfg(feature = "failpoints")]
            if partial.is_ok() {
                crate::failpoint::crash_if_armed(crate::failpoint::LOG_MID_RECORD);
            }
            partial.and(Err(brick_core::Error::Os {
                errno: libc::EIO,
                context: "writing a log record (fail point log-mid-record)",
            }))
        } else {
            brick_core::write_gather(out, self.pos, &g.slices(usize::MAX))
        };
        // The payloads are borrowed from the caller's records: the small bytes' buffer is
        // what stays for the next write.
        self.buf = g.into_meta();
        if commit {
            result = result.and_then(|()| {
                if crate::fail_point!(crate::failpoint::LOG_FSYNC) {
                    return Err(brick_core::Error::Os {
                        errno: libc::EIO,
                        context: "syncing the log (fail point log-fsync)",
                    });
                }
                brick_core::run(out, Aio::new(Op::Flush, 0, 0)).map(drop)
            });
        }
        match result {
            Ok(()) => {
                self.pos += len;
                self.next_rec += all.len() as u64;
                if commit {
                    self.next_batch += 1;
                    self.open = false;
                } else {
                    self.open = true;
                }
                Ok(BatchSpans {
                    seq: self.header.seq,
                    starts,
                    end: self.pos,
                    batch,
                })
            }
            Err(e) => {
                self.poisoned = true;
                Err(LogError::Io {
                    file: self.name.clone(),
                    source: e,
                })
            }
        }
    }
}

/// A record without payload or device effect (commit marker, end of file).
fn marker(op: RecordOp) -> RecordIn<'static> {
    RecordIn {
        op,
        pos: 0,
        len: 0,
        data: &[],
        stamp: 0,
        flags: 0,
        data_crc: None,
    }
}
