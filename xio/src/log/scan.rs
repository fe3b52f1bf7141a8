//! The read side: walk a log file record by record and classify how it ends (FORMAT.md,
//! "Batches and the torn-tail rule"): clean end, torn tail (reported with the end of the valid
//! prefix), or an error (corruption, unknown version, wrong resource).
//!
//! **Invariant:** [`Scanner::next`] (and [`Scanner::next_raw`]) never yields a record that
//! failed a check, and never yields anything after the first damaged record.
//!
//! **Invariant (recycled files):** the valid end of a file is explicit where stale bytes may
//! follow it. A file the writer rotated away from ends with an end-of-file record
//! ([`RecordOp::End`], not yielded): the scan ends there, [`ScanEnd::Clean`], and the bytes
//! after it are never read. Without one (the file being written, files from before
//! recycling) the torn-tail rule applies: stale bytes of an earlier life carry that life's
//! nonce, so they fail the chain check like a torn write and can never pass for a later batch
//! (hence never for corruption); a file whose header block is all zero is a recycled file
//! not started yet (an interrupted creation). Only the last file may end without an
//! end-of-file record and with bytes after its valid end (the replay checks that).
//!
//! Reading: the file is read through one reusable window of [`WINDOW`] bytes (one large read
//! per window, no per-record reads); a record that straddles the window's end makes the window
//! move to that record's start. [`Scanner::next_raw`] lends the verified payload out of the
//! window without copying it.

use super::chain::Chain;
use super::error::{LogError, Result};
use super::header::{FileHeader, HeaderProblem, HEADER_LEN};
use super::record::{
    check_trailer, decode_payload, RecordHeader, RecordOp, REC_HEADER_LEN, REC_MAGIC, REC_OVERHEAD,
    TRAILER_LEN,
};
pub use super::scanned::{Expect, RawRecord, Record, ScanEnd};
use brick_core::{Aio, Output};
use std::sync::Arc;

/// Bytes read per window (one read; records larger than this get a window of their own size).
pub const WINDOW: usize = 8 << 20;
/// Window read after a directly read payload: its trailer and the next header.
const SMALL_WINDOW: usize = 4096;

/// Walks one log file.
pub struct Scanner {
    src: Arc<dyn Output>,
    name: String,
    len: u64,
    header: Option<FileHeader>,
    pos: u64,
    win: Vec<u8>,
    win_pos: u64,
    /// The expected next record (`None` without a header: the scan has ended then).
    chain: Option<Chain>,
    skip_until: u64,
    end: Option<ScanEnd>,
    /// Payloads of at least this many bytes that are not in the window are read into a buffer
    /// of their own ([`Scanner::read_payloads_directly`]).
    direct_min: Option<usize>,
    /// The last record's payload when it was read directly (`direct_len` bytes of it).
    direct: Option<Vec<u8>>,
    /// Buffers for direct reads.
    spare: Vec<Vec<u8>>,
    /// Bytes per window read ([`Scanner::set_window`]).
    window: usize,
    /// Bytes of the next window read: `window`, or [`SMALL_WINDOW`] right after a direct read.
    win_size: usize,
    /// The scan met the file's end-of-file record.
    closed: bool,
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
            chain: None,
            skip_until: 0,
            end: None,
            direct_min: None,
            direct: None,
            spare: Vec::new(),
            window: WINDOW,
            win_size: WINDOW,
            closed: false,
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
                s.pos = h.data_start();
                s.chain = Some(Chain::new(&h));
                s.header = Some(h);
            }
            Err(HeaderProblem::Version(version)) => {
                return Err(LogError::UnknownVersion {
                    file: s.name.clone(),
                    version,
                })
            }
            Err(HeaderProblem::Damaged(reason)) => {
                // A recycled file waits for its header with a zeroed header block in front of
                // stale bytes (`FsLogStore::create`): not started, whatever follows.
                let zero_header = hb.iter().all(|&b| b == 0);
                if !zero_header && len > HEADER_LEN as u64 && !s.zero_from(HEADER_LEN as u64)? {
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

    /// Read `bytes` (at least 512) per window instead of [`WINDOW`] (less memory; tests use
    /// small windows to make records straddle window ends).
    pub fn set_window(&mut self, bytes: usize) {
        self.window = bytes.max(512);
        self.win_size = self.window;
        self.win.truncate(self.window);
    }

    /// Read payloads of at least `min_len` bytes that do not lie in the current read window
    /// into a buffer of their own (one read straight into it, no copy out of the window), for
    /// [`Scanner::take_direct`]. Checks and results are the same as without.
    pub fn read_payloads_directly(&mut self, min_len: usize) {
        self.direct_min = Some(min_len.max(1));
    }

    /// Whether a buffer for a direct read would be welcome ([`Scanner::give_buffer`]).
    pub fn wants_buffer(&self) -> bool {
        self.direct_min.is_some() && self.spare.is_empty()
    }

    /// A buffer (any capacity; it is resized) to read a payload into directly.
    pub fn give_buffer(&mut self, buf: Vec<u8>) {
        if self.spare.len() < 4 {
            self.spare.push(buf);
        }
    }

    /// The payload (as stored) of the record [`Scanner::next_raw`] returned last, when it was
    /// read directly ([`RawRecord::direct`]); `None` otherwise or when already taken.
    pub fn take_direct(&mut self) -> Option<Vec<u8>> {
        self.direct.take()
    }

    /// How the file ended, once [`Scanner::next`] returned `None`.
    pub fn end(&self) -> Option<&ScanEnd> {
        self.end.as_ref()
    }

    /// Whether the scan ended at the file's end-of-file record (the writer rotated away; the
    /// end is [`ScanEnd::Clean`] whatever bytes follow).
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Offset of the next record to read.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// The next valid record, or `None` at the end of the valid prefix (see [`Scanner::end`]).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record>> {
        let Some((h, pos, end)) = self.advance()? else {
            return Ok(None);
        };
        let data = if end <= self.skip_until {
            Vec::new()
        } else {
            let stored = self.stored(pos, &h);
            decode_payload(&h, stored).map_err(|r| self.corrupt(pos, r.to_string()))?
        };
        Ok(Some(Record {
            header: h,
            data,
            offset: pos,
            end,
        }))
    }

    /// Like [`Scanner::next`], but the payload is lent out of the read window instead of
    /// being copied (and decompressed) into a new buffer: see [`RawRecord::decode_into`].
    /// [`Scanner::skip_payloads_until`] does not apply (the caller decides what to decode).
    pub fn next_raw(&mut self) -> Result<Option<RawRecord<'_>>> {
        let Some((h, pos, end)) = self.advance()? else {
            return Ok(None);
        };
        Ok(Some(RawRecord {
            header: h,
            stored: self.stored(pos, &h),
            offset: pos,
            end,
            direct: self.direct.is_some(),
            file: &self.name,
        }))
    }

    /// The stored payload of the record at `pos`, which [`Scanner::advance`] left in the window
    /// (or read directly).
    fn stored(&self, pos: u64, h: &RecordHeader) -> &[u8] {
        if let Some(d) = &self.direct {
            return &d[..h.stored_len as usize];
        }
        let off = (pos - self.win_pos) as usize + REC_HEADER_LEN;
        &self.win[off..off + h.stored_len as usize]
    }

    /// Check the next record and step over it; returns its header, offset and end (where the
    /// next record starts: after the padding in v2, at most the file's end), with the whole
    /// record inside the read window. `None` at the end of the valid prefix.
    fn advance(&mut self) -> Result<Option<(RecordHeader, u64, u64)>> {
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
        let mut hbuf = [0u8; REC_HEADER_LEN];
        hbuf[..avail].copy_from_slice(self.bytes(pos, avail)?);
        let hb = &hbuf[..avail];
        let h = match RecordHeader::decode(hb) {
            Ok(h) => h,
            Err(reason) => return self.damage(pos, reason.to_string()).map(|_| None),
        };
        let chain = self
            .chain
            .as_ref()
            .expect("a scan without header has ended");
        if let Err(reason) = chain.check(&h) {
            return self.damage(pos, reason).map(|_| None);
        }
        let total = h.total_len();
        if pos + total > self.len {
            let reason = "record extends past the end of the file".into();
            return self.damage(pos, reason).map(|_| None);
        }
        if let Some(old) = self.direct.take() {
            self.give_buffer(old);
        }
        let in_window = pos >= self.win_pos && pos + total <= self.win_pos + self.win.len() as u64;
        let checked = if !in_window && self.direct_min.is_some_and(|m| h.stored_len as usize >= m) {
            self.check_direct(pos, &h, hb)?
        } else {
            self.win_size = self.window;
            let rec = self.bytes(pos, total as usize)?;
            let payload_end = REC_HEADER_LEN + h.stored_len as usize;
            let stored = &rec[REC_HEADER_LEN..payload_end];
            check_trailer(rec, stored, &rec[payload_end..payload_end + TRAILER_LEN])
        };
        if let Err(reason) = checked {
            if let Some(buf) = self.direct.take() {
                self.give_buffer(buf);
            }
            return self.damage(pos, reason.to_string()).map(|_| None);
        }
        let chain = self.chain.as_mut().expect("checked above");
        self.pos = chain.accept(&h, pos).min(self.len);
        if h.op == RecordOp::End {
            // The writer closed the file here: what follows is not part of it (stale bytes
            // of a recycled file's earlier life), never records and never damage.
            self.closed = true;
            self.end = Some(ScanEnd::Clean { end: self.pos });
            return Ok(None);
        }
        Ok(Some((h, pos, self.pos)))
    }

    /// Read the payload of the record at `pos` (header `h`, bytes `hb`) into a buffer of its
    /// own (kept in `self.direct`), then check its trailer through a small window.
    fn check_direct(
        &mut self,
        pos: u64,
        h: &RecordHeader,
        hb: &[u8],
    ) -> Result<std::result::Result<(), &'static str>> {
        let n = h.stored_len as usize;
        let buf = self.spare.pop().unwrap_or_default();
        let payload = read_into(&*self.src, pos + REC_HEADER_LEN as u64, n, buf)
            .map_err(|e| self.io_error(e))?;
        self.direct = Some(payload);
        self.win_size = SMALL_WINDOW;
        let trailer = self
            .bytes(pos + (REC_HEADER_LEN + n) as u64, TRAILER_LEN)?
            .to_vec();
        let payload = self.direct.as_deref().expect("just read");
        Ok(check_trailer(hb, &payload[..n], &trailer))
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
        let chain = self
            .chain
            .as_ref()
            .expect("a scan without header has ended");
        self.end = Some(if chain.last_closed() {
            ScanEnd::Clean { end: pos }
        } else {
            ScanEnd::TornTail {
                end: pos,
                reason: format!("batch {} is incomplete", chain.last_batch()),
            }
        });
    }

    /// A failed read of this file.
    fn io_error(&self, source: brick_core::Error) -> LogError {
        LogError::Io {
            file: self.name.clone(),
            source,
        }
    }

    /// Classify damage at `pos`: corruption (error) or the torn tail (sets `end`).
    fn damage(&mut self, pos: u64, reason: String) -> Result<()> {
        let chain = self
            .chain
            .as_ref()
            .expect("a scan without header has ended");
        let damaged_batch = chain.expected_batch();
        if let Some((at, batch)) = self.find_later_batch(pos + 1, damaged_batch)? {
            return Err(self.corrupt(
                pos,
                format!(
                    "{reason}; a valid record of the later batch {batch} follows at offset {at}"
                ),
            ));
        }
        self.end = Some(ScanEnd::TornTail { end: pos, reason });
        Ok(())
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
            let want = n.max(self.win_size).min((self.len - pos) as usize).max(n);
            let buf = std::mem::take(&mut self.win);
            self.win_pos = pos;
            self.win = read_into(&*self.src, pos, want, buf).map_err(|e| self.io_error(e))?;
        }
        let off = (pos - self.win_pos) as usize;
        Ok(&self.win[off..off + n])
    }
}

/// Read `len` bytes at `pos` into the recycled allocation `buf` (one request when the source
/// takes it whole; otherwise piecewise).
fn read_into(src: &dyn Output, pos: u64, len: usize, buf: Vec<u8>) -> brick_core::Result<Vec<u8>> {
    let mut req = Aio::read(pos, len);
    req.data = buf;
    src.prepare(&mut req)?;
    if req.len == len {
        let got = brick_core::run(src, req)?;
        if got.len == len && got.data.len() >= len {
            let mut data = got.data;
            data.truncate(len);
            return Ok(data);
        }
    }
    brick_core::read_all(src, pos, len)
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
