//! The append side of one log file: batches of records become one sequential write plus one
//! flush (`fdatasync`) of the log output (group commit, FORMAT.md "Batches").
//!
//! **Invariant:** batch *b+1* is written only after the flush of batch *b* completed; a failed
//! batch poisons the writer (the caller switches to another file or to emergency mode).

use super::error::{LogError, Result};
use super::header::{FileHeader, HEADER_LEN};
use super::pos::LogPos;
use super::record::{encode_record, RecordIn};
use brick_core::{Aio, Op, Output};

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
    /// Start a new log file on `out`: write the header at offset 0 and flush it.
    pub fn create(
        out: &dyn Output,
        name: impl Into<String>,
        header: FileHeader,
        compress: bool,
    ) -> Result<LogWriter> {
        let name = name.into();
        let bytes = header.encode()?;
        let io = |e| LogError::Io {
            file: name.clone(),
            source: e,
        };
        write_at(out, 0, bytes.to_vec()).map_err(io)?;
        brick_core::run(out, Aio::new(Op::Flush, 0, 0)).map_err(io)?;
        Ok(LogWriter {
            header,
            name,
            pos: HEADER_LEN as u64,
            next_rec: 1,
            next_batch: 1,
            compress,
            poisoned: false,
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

    /// Append position (end of the last durable batch).
    pub fn pos(&self) -> LogPos {
        LogPos::new(self.header.seq, self.pos)
    }

    /// Encode `recs` as one batch, write it with one sequential write and make it durable with
    /// one flush. Empty `recs` is a no-op.
    pub fn write_batch(&mut self, out: &dyn Output, recs: &[RecordIn<'_>]) -> Result<BatchSpans> {
        if self.poisoned {
            return Err(LogError::Io {
                file: self.name.clone(),
                source: brick_core::Error::Invalid("log writer failed before; switch files"),
            });
        }
        let batch = self.next_batch;
        let mut starts = Vec::with_capacity(recs.len());
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        for (i, r) in recs.iter().enumerate() {
            starts.push(self.pos + buf.len() as u64);
            let last = i + 1 == recs.len();
            let seq = self.next_rec + i as u64;
            encode_record(
                &mut buf,
                r,
                self.header.nonce,
                seq,
                batch,
                last,
                self.compress,
            );
        }
        if recs.is_empty() {
            self.buf = buf;
            return Ok(BatchSpans {
                seq: self.header.seq,
                starts,
                end: self.pos,
                batch,
            });
        }
        let len = buf.len() as u64;
        let io = |e| LogError::Io {
            file: self.name.clone(),
            source: e,
        };
        let result = write_at(out, self.pos, buf)
            .and_then(|b| brick_core::run(out, Aio::new(Op::Flush, 0, 0)).map(|_| b));
        match result {
            Ok(b) => {
                self.buf = b;
                self.pos += len;
                self.next_rec += recs.len() as u64;
                self.next_batch += 1;
                Ok(BatchSpans {
                    seq: self.header.seq,
                    starts,
                    end: self.pos,
                    batch,
                })
            }
            Err(e) => {
                self.poisoned = true;
                Err(io(e))
            }
        }
    }
}

/// Write `data` at `pos`, looping when the output shortens requests; returns the buffer.
fn write_at(out: &dyn Output, pos: u64, data: Vec<u8>) -> brick_core::Result<Vec<u8>> {
    let total = data.len();
    let mut probe = Aio::new(Op::Write, pos, total);
    out.prepare(&mut probe)?;
    if probe.len == total {
        let mut req = probe;
        req.data = data;
        let done = brick_core::run(out, req)?;
        return Ok(done.data);
    }
    // The output shortens requests (small `max_len`): write the pieces from copies.
    brick_core::write_all(out, pos, &data)?;
    Ok(data)
}
