//! The read side: walk a log file record by record and classify how it ends (FORMAT.md,
//! "Batches and the torn-tail rule"): clean end, torn tail (reported with the end of the valid
//! prefix), or an error (corruption, unknown version, wrong resource).
//!
//! **Invariant:** [`Scanner::next`] never yields a record that failed a check, and never yields
//! anything after the first damaged record.

use super::error::{LogError, Result};
use super::header::{FileHeader, HeaderProblem, HEADER_LEN};
use super::record::{
    check_trailer, decode_payload, RecordHeader, REC_HEADER_LEN, REC_MAGIC, REC_OVERHEAD,
    TRAILER_LEN,
};
use brick_core::Output;
use std::sync::Arc;

const WINDOW: usize = 1 << 20;

/// What the reader expects of a file.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Resource name the header must carry (`None`: any).
    pub resource: Option<String>,
    /// Sequence number the header must carry (`None`: any).
    pub seq: Option<u64>,
}

/// One valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its header.
    pub header: RecordHeader,
    /// Device bytes for a write (decompressed); empty for discard and write-zeroes, and for
    /// records before the scanner's skip offset.
    pub data: Vec<u8>,
    /// File offset where the record starts.
    pub offset: u64,
    /// File offset where it ends (the next record starts).
    pub end: u64,
}

/// How a file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte after `end` is absent or zero and the last batch is complete.
    Clean {
        /// End of the last record.
        end: u64,
    },
    /// Damage confined to the last batch: the valid prefix ends at `end`.
    TornTail {
        /// End of the valid prefix (where the damage starts).
        end: u64,
        /// What was found there.
        reason: String,
    },
}

impl ScanEnd {
    /// End of the valid prefix.
    pub fn end(&self) -> u64 {
        match self {
            ScanEnd::Clean { end } | ScanEnd::TornTail { end, .. } => *end,
        }
    }
}

/// Walks one log file.
pub struct Scanner {
    src: Arc<dyn Output>,
    name: String,
    len: u64,
    header: Option<FileHeader>,
    pos: u64,
    win: Vec<u8>,
    win_pos: u64,
    next_rec: u64,
    last_batch: u64,
    last_closed: bool,
    skip_until: u64,
    end: Option<ScanEnd>,
}

impl Scanner {
    /// Open the file `name` of `len` bytes on `src` and check its header against `expect`.
    /// A file whose header is damaged while everything after it is zero (an interrupted
    /// creation) opens with [`ScanEnd::TornTail`] at offset 0 and no header.
    pub fn open(
        src: Arc<dyn Output>,
        name: impl Into<String>,
        len: u64,
        expect: &Expect,
    ) -> Result<Scanner> {
        let mut s = Scanner {
            src,
            name: name.into(),
            len,
            header: None,
            pos: HEADER_LEN as u64,
            win: Vec::new(),
            win_pos: 0,
            next_rec: 1,
            last_batch: 0,
            last_closed: true,
            skip_until: 0,
            end: None,
        };
        let hlen = (len as usize).min(HEADER_LEN);
        let hb = s.bytes(0, hlen)?.to_vec();
        match FileHeader::decode(&hb) {
            Ok(h) => {
                if let Some(want) = &expect.resource {
                    if &h.resource != want {
                        return Err(LogError::WrongResource {
                            file: s.name.clone(),
                            expected: want.clone(),
                            found: h.resource,
                        });
                    }
                }
                if let Some(seq) = expect.seq {
                    if h.seq != seq {
                        return Err(s.corrupt(0, format!("header says log {} not {seq}", h.seq)));
                    }
                }
                s.header = Some(h);
            }
            Err(HeaderProblem::Version(version)) => {
                return Err(LogError::UnknownVersion {
                    file: s.name.clone(),
                    version,
                })
            }
            Err(HeaderProblem::Damaged(reason)) => {
                if len > HEADER_LEN as u64 && !s.zero_from(HEADER_LEN as u64)? {
                    return Err(s.corrupt(0, reason.to_string()));
                }
                s.end = Some(ScanEnd::TornTail {
                    end: 0,
                    reason: format!("file header incomplete ({reason}): interrupted creation"),
                });
            }
        }
        Ok(s)
    }

    /// The file header (`None` for an interrupted creation).
    pub fn header(&self) -> Option<&FileHeader> {
        self.header.as_ref()
    }

    /// The file's name as used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Records ending at or before `offset` are checked but their payload is not decoded.
    pub fn skip_payloads_until(&mut self, offset: u64) {
        self.skip_until = offset;
    }

    /// How the file ended, once [`Scanner::next`] returned `None`.
    pub fn end(&self) -> Option<&ScanEnd> {
        self.end.as_ref()
    }

    /// Offset of the next record to read.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// The next valid record, or `None` at the end of the valid prefix (see [`Scanner::end`]).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record>> {
        if self.end.is_some() {
            return Ok(None);
        }
        let pos = self.pos;
        if pos >= self.len {
            self.finish_at(pos);
            return Ok(None);
        }
        if self.zero_from(pos)? {
            self.finish_at(pos);
            return Ok(None);
        }
        let avail = (self.len - pos).min(REC_HEADER_LEN as u64) as usize;
        let hb = self.bytes(pos, avail)?.to_vec();
        let h = match RecordHeader::decode(&hb) {
            Ok(h) => h,
            Err(reason) => return self.damage(pos, reason.to_string()),
        };
        if Some(h.nonce) != self.header.as_ref().map(|h| h.nonce) {
            return self.damage(pos, "record belongs to another file (nonce)".into());
        }
        let total = h.total_len();
        if pos + total > self.len {
            return self.damage(pos, "record extends past the end of the file".into());
        }
        let want_batch = if self.last_closed {
            self.last_batch + 1
        } else {
            self.last_batch
        };
        if h.rec_seq != self.next_rec || h.batch != want_batch {
            let reason = format!(
                "record {} of batch {} where record {} of batch {want_batch} was expected",
                h.rec_seq, h.batch, self.next_rec
            );
            return self.damage(pos, reason);
        }
        let skip = pos + total <= self.skip_until;
        let rec = self.bytes(pos, total as usize)?;
        let payload_end = REC_HEADER_LEN + h.stored_len as usize;
        let stored = &rec[REC_HEADER_LEN..payload_end];
        if let Err(reason) =
            check_trailer(rec, stored, &rec[payload_end..payload_end + TRAILER_LEN])
        {
            return self.damage(pos, reason.to_string());
        }
        let data = if skip {
            Ok(Vec::new())
        } else {
            decode_payload(&h, stored)
        };
        let data = data.map_err(|r| self.corrupt(pos, r.to_string()))?;
        self.next_rec += 1;
        self.last_batch = h.batch;
        self.last_closed = h.batch_end();
        self.pos = pos + total;
        Ok(Some(Record {
            header: h,
            data,
            offset: pos,
            end: pos + total,
        }))
    }

    /// Read every record to the end; returns them and how the file ended.
    pub fn read_all(mut self) -> Result<(Vec<Record>, ScanEnd)> {
        let mut recs = Vec::new();
        while let Some(r) = self.next()? {
            recs.push(r);
        }
        let end = self.end.clone().expect("set when next returns None");
        Ok((recs, end))
    }

    fn finish_at(&mut self, pos: u64) {
        self.end = Some(if self.last_closed {
            ScanEnd::Clean { end: pos }
        } else {
            ScanEnd::TornTail {
                end: pos,
                reason: format!("batch {} is incomplete", self.last_batch),
            }
        });
    }

    fn damage(&mut self, pos: u64, reason: String) -> Result<Option<Record>> {
        let damaged_batch = if self.last_closed {
            self.last_batch + 1
        } else {
            self.last_batch
        };
        if let Some((at, batch)) = self.find_later_batch(pos + 1, damaged_batch)? {
            return Err(self.corrupt(
                pos,
                format!(
                    "{reason}; a valid record of the later batch {batch} follows at offset {at}"
                ),
            ));
        }
        self.end = Some(ScanEnd::TornTail { end: pos, reason });
        Ok(None)
    }

    fn corrupt(&self, offset: u64, reason: String) -> LogError {
        LogError::Corruption {
            file: self.name.clone(),
            offset,
            reason,
        }
    }

    /// A valid record (of this file) with a batch number above `batch`, at or after `from`.
    fn find_later_batch(&mut self, from: u64, batch: u64) -> Result<Option<(u64, u64)>> {
        let Some(nonce) = self.header.as_ref().map(|h| h.nonce) else {
            return Ok(None);
        };
        let mut x = from;
        while x + (REC_OVERHEAD as u64) <= self.len {
            let n = ((self.len - x) as usize).min(WINDOW);
            let cands: Vec<u64> = self
                .bytes(x, n)?
                .windows(4)
                .enumerate()
                .filter(|(_, w)| *w == REC_MAGIC)
                .map(|(i, _)| x + i as u64)
                .collect();
            for c in cands {
                if c + REC_OVERHEAD as u64 > self.len {
                    break;
                }
                let Ok(h) = RecordHeader::decode(self.bytes(c, REC_HEADER_LEN)?) else {
                    continue;
                };
                if h.nonce != nonce || h.batch <= batch || c + h.total_len() > self.len {
                    continue;
                }
                let rec = self.bytes(c, h.total_len() as usize)?;
                let pe = REC_HEADER_LEN + h.stored_len as usize;
                if check_trailer(rec, &rec[REC_HEADER_LEN..pe], &rec[pe..pe + TRAILER_LEN]).is_ok()
                {
                    return Ok(Some((c, h.batch)));
                }
            }
            if x + n as u64 >= self.len {
                break;
            }
            x += n as u64 - 3;
        }
        Ok(None)
    }

    /// Whether every byte from `pos` to the end of the file is zero.
    fn zero_from(&mut self, pos: u64) -> Result<bool> {
        // Cheap probe first (usually inside the window): a record starts with its magic.
        let probe = ((self.len.saturating_sub(pos)) as usize).min(8);
        if self.bytes(pos, probe)?.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        let mut x = pos;
        while x < self.len {
            let n = ((self.len - x) as usize).min(WINDOW);
            if self.bytes(x, n)?.iter().any(|&b| b != 0) {
                return Ok(false);
            }
            x += n as u64;
        }
        Ok(true)
    }

    /// `n` bytes at `pos` (inside the file), through the read window.
    fn bytes(&mut self, pos: u64, n: usize) -> Result<&[u8]> {
        let have = pos >= self.win_pos && pos + n as u64 <= self.win_pos + self.win.len() as u64;
        if !have {
            let want = n.max(WINDOW).min((self.len - pos) as usize).max(n);
            self.win = brick_core::read_all(&*self.src, pos, want).map_err(|e| LogError::Io {
                file: self.name.clone(),
                source: e,
            })?;
            self.win_pos = pos;
        }
        let off = (pos - self.win_pos) as usize;
        Ok(&self.win[off..off + n])
    }
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("name", &self.name)
            .field("len", &self.len)
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish()
    }
}
