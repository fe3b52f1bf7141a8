//! What the scanner hands out: the expectations a file is checked against, its valid records
//! (owned, or lent out of the read window with their checks passed), and how the file ended.

use super::error::{LogError, Result};
use super::record::{RecordHeader, RecordOp, FLAG_LZ4};

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

/// One valid record whose payload is lent out of the scanner's read window
/// ([`Scanner::next_raw`](super::scan::Scanner::next_raw)): its header and trailer checks
/// (both CRCs) have passed.
#[derive(Debug)]
pub struct RawRecord<'a> {
    /// Its header.
    pub header: RecordHeader,
    /// The payload as stored in the file (lz4 when the header says so); empty for discard,
    /// write-zeroes and commit records.
    pub stored: &'a [u8],
    /// File offset where the record starts.
    pub offset: u64,
    /// File offset where it ends (the next record starts).
    pub end: u64,
    /// The payload was read into a buffer of its own, which
    /// [`Scanner::take_direct`](super::scan::Scanner::take_direct) hands over once this record
    /// is dropped.
    pub direct: bool,
    pub(crate) file: &'a str,
}

impl RawRecord<'_> {
    /// Append the device bytes of a write record (decompressed when needed) to `out`; appends
    /// nothing for other operations. A payload that does not decompress to its length is
    /// corruption (naming file and offset); `out` is then left as it was.
    pub fn decode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let h = &self.header;
        if h.op != RecordOp::Write {
            return Ok(());
        }
        if h.flags & FLAG_LZ4 == 0 {
            out.extend_from_slice(self.stored);
            return Ok(());
        }
        let old = out.len();
        out.resize(old + h.data_len as usize, 0);
        match lz4_flex::block::decompress_into(self.stored, &mut out[old..]) {
            Ok(n) if n == h.data_len as usize => Ok(()),
            Ok(_) => {
                out.truncate(old);
                Err(self.corrupt("lz4 payload decompresses to the wrong length"))
            }
            Err(_) => {
                out.truncate(old);
                Err(self.corrupt("lz4 payload does not decompress"))
            }
        }
    }

    fn corrupt(&self, reason: &str) -> LogError {
        LogError::Corruption {
            file: self.file.to_string(),
            offset: self.offset,
            reason: reason.to_string(),
        }
    }
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
