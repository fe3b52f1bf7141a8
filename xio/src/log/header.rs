//! The 512-byte file header of a log file (FORMAT.md, "File header"): format v1 (records back
//! to back from offset 512) or v2 (records aligned for `O_DIRECT`, from offset `align`).

use super::error::{LogError, Result};

/// Length of the file header; the first record starts here.
pub const HEADER_LEN: usize = 512;
/// File magic `MARSLOG\0`.
pub const FILE_MAGIC: [u8; 8] = *b"MARSLOG\0";
/// Format v1: records back to back from [`HEADER_LEN`] on.
pub const FORMAT_V1: u32 = 1;
/// Format v2: every write of the writer starts at a multiple of the header's `align`.
pub const FORMAT_V2: u32 = 2;
/// The smallest and largest alignment a v2 file may declare.
pub const ALIGN_RANGE: std::ops::RangeInclusive<u32> = 512..=65536;
/// The alignment of v2 files unless the device needs more (4 KiB: a page, and the logical
/// block size of nearly every device).
pub const DEFAULT_ALIGN: u32 = 4096;
const NAME_MAX: usize = 200;
/// Offset of `prev_end` (in bytes that were reserved and zero before log recycling).
const PREV_END_AT: usize = 448;

/// Decoded file header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    /// Log sequence number.
    pub seq: u64,
    /// Random per-file value repeated in every record.
    pub nonce: u64,
    /// Creation stamp (Lamport ns).
    pub created: u64,
    /// Resource name.
    pub resource: String,
    /// Creator node name.
    pub node: String,
    /// Format v2: the alignment of every write (a power of two in [`ALIGN_RANGE`]; records
    /// start at offset `align`). 0: format v1.
    pub align: u32,
    /// The valid end of the previous log file (`seq - 1`) when this one was started: where
    /// readers stop in that file (a recycled file holds stale bytes after it). 0: unknown
    /// (files from before recycling, or a predecessor this writer did not see end).
    pub prev_end: u64,
}

/// Why a header did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderProblem {
    /// Bad magic or checksum: damaged or never completely written.
    Damaged(&'static str),
    /// Valid checksum but an unknown format version.
    Version(u32),
}

impl FileHeader {
    /// The header of a new log file `seq` of `resource` made by `node`: a fresh nonce,
    /// creation stamp 0 and `prev_end` 0 (set them where they are known); `align` 0 for
    /// format v1.
    pub fn new(seq: u64, resource: &str, node: &str, align: u32) -> FileHeader {
        FileHeader {
            seq,
            nonce: new_nonce(),
            created: 0,
            resource: resource.to_string(),
            node: node.to_string(),
            align,
            prev_end: 0,
        }
    }

    /// The format version: [`FORMAT_V1`] or [`FORMAT_V2`].
    pub fn version(&self) -> u32 {
        if self.align == 0 {
            FORMAT_V1
        } else {
            FORMAT_V2
        }
    }

    /// Offset of the first record ([`HEADER_LEN`] in v1, `align` in v2).
    pub fn data_start(&self) -> u64 {
        if self.align == 0 {
            HEADER_LEN as u64
        } else {
            self.align as u64
        }
    }

    /// Where the next write starts after one that ended at `end`: `end` in v1, `end` rounded
    /// up to the alignment in v2.
    pub fn align_up(&self, end: u64) -> u64 {
        match self.align as u64 {
            0 => end,
            a => end.div_ceil(a) * a,
        }
    }

    /// The valid end of log file `seq` as this file's header records it: only for the file
    /// right before this one, and only when known (`prev_end` > 0).
    pub fn end_of(&self, seq: u64) -> Option<u64> {
        (seq + 1 == self.seq && self.prev_end > 0).then_some(self.prev_end)
    }

    /// Encode into exactly [`HEADER_LEN`] bytes.
    pub fn encode(&self) -> Result<[u8; HEADER_LEN]> {
        check_name("resource", &self.resource)?;
        check_name("node", &self.node)?;
        if self.align != 0 && !(ALIGN_RANGE.contains(&self.align) && self.align.is_power_of_two()) {
            return Err(LogError::Encode(format!(
                "log alignment must be a power of two in {ALIGN_RANGE:?}, got {}",
                self.align
            )));
        }
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&FILE_MAGIC);
        b[8..12].copy_from_slice(&self.version().to_le_bytes());
        b[12..16].copy_from_slice(&(self.data_start() as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.nonce.to_le_bytes());
        b[32..40].copy_from_slice(&self.created.to_le_bytes());
        b[40..42].copy_from_slice(&(self.resource.len() as u16).to_le_bytes());
        b[42..44].copy_from_slice(&(self.node.len() as u16).to_le_bytes());
        b[44..48].copy_from_slice(&self.align.to_le_bytes());
        b[48..48 + self.resource.len()].copy_from_slice(self.resource.as_bytes());
        b[248..248 + self.node.len()].copy_from_slice(self.node.as_bytes());
        b[PREV_END_AT..PREV_END_AT + 8].copy_from_slice(&self.prev_end.to_le_bytes());
        let crc = crc32c::crc32c(&b[..508]);
        b[508..512].copy_from_slice(&crc.to_le_bytes());
        Ok(b)
    }

    /// Decode a header; `b` must hold at least [`HEADER_LEN`] bytes.
    pub fn decode(b: &[u8]) -> std::result::Result<FileHeader, HeaderProblem> {
        if b.len() < HEADER_LEN {
            return Err(HeaderProblem::Damaged("file shorter than its header"));
        }
        if b[0..8] != FILE_MAGIC {
            return Err(HeaderProblem::Damaged("bad file magic"));
        }
        if crc32c::crc32c(&b[..508]) != u32_at(b, 508) {
            return Err(HeaderProblem::Damaged("file header checksum mismatch"));
        }
        let version = u32_at(b, 8);
        let align = match version {
            FORMAT_V1 if u32_at(b, 44) == 0 => 0,
            FORMAT_V1 => return Err(HeaderProblem::Damaged("reserved header bytes are not zero")),
            FORMAT_V2 => u32_at(b, 44),
            _ => return Err(HeaderProblem::Version(version)),
        };
        if align != 0 && !(ALIGN_RANGE.contains(&align) && align.is_power_of_two()) {
            return Err(HeaderProblem::Damaged("v2 alignment out of range"));
        }
        let start = if align == 0 { HEADER_LEN as u32 } else { align };
        if u32_at(b, 12) != start {
            return Err(HeaderProblem::Damaged("unexpected header length"));
        }
        let rlen = u16::from_le_bytes([b[40], b[41]]) as usize;
        let nlen = u16::from_le_bytes([b[42], b[43]]) as usize;
        if rlen == 0 || rlen > NAME_MAX || nlen == 0 || nlen > NAME_MAX {
            return Err(HeaderProblem::Damaged("name length out of range"));
        }
        let resource = std::str::from_utf8(&b[48..48 + rlen])
            .map_err(|_| HeaderProblem::Damaged("resource name is not UTF-8"))?;
        let node = std::str::from_utf8(&b[248..248 + nlen])
            .map_err(|_| HeaderProblem::Damaged("node name is not UTF-8"))?;
        Ok(FileHeader {
            seq: u64_at(b, 16),
            nonce: u64_at(b, 24),
            created: u64_at(b, 32),
            resource: resource.to_string(),
            node: node.to_string(),
            align,
            prev_end: u64_at(b, PREV_END_AT),
        })
    }
}

fn check_name(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > NAME_MAX {
        return Err(LogError::Encode(format!(
            "{what} name must be 1..={NAME_MAX} bytes, got {}",
            s.len()
        )));
    }
    Ok(())
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// A fresh random-enough nonce (time, pid, a counter, hashed).
pub fn new_nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut seed = [0u8; 24];
    seed[..8].copy_from_slice(&t.to_le_bytes());
    seed[8..16].copy_from_slice(&(std::process::id() as u64).to_le_bytes());
    seed[16..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&seed) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_damage() {
        let h = FileHeader {
            seq: 7,
            nonce: 42,
            created: 1,
            resource: "r0".into(),
            node: "n1".into(),
            align: 0,
            prev_end: 0,
        };
        let v2 = FileHeader {
            align: 4096,
            prev_end: 123_456,
            ..h.clone()
        };
        let b2 = v2.encode().unwrap();
        assert_eq!(FileHeader::decode(&b2).unwrap(), v2);
        assert_eq!((v2.data_start(), v2.align_up(4097)), (4096, 8192));
        for bad in [100, 3000, 1 << 17] {
            assert!(FileHeader {
                align: bad,
                ..h.clone()
            }
            .encode()
            .is_err());
        }
        let mut b = h.encode().unwrap();
        assert_eq!(FileHeader::decode(&b).unwrap(), h);
        b[100] ^= 1;
        assert!(matches!(
            FileHeader::decode(&b),
            Err(HeaderProblem::Damaged(_))
        ));
    }
}
