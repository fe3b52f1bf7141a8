//! The 512-byte file header of a log file (FORMAT.md, "File header").

use super::error::{LogError, Result};

/// Length of the file header; the first record starts here.
pub const HEADER_LEN: usize = 512;
/// File magic `MARSLOG\0`.
pub const FILE_MAGIC: [u8; 8] = *b"MARSLOG\0";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const NAME_MAX: usize = 200;

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
    /// Encode into exactly [`HEADER_LEN`] bytes.
    pub fn encode(&self) -> Result<[u8; HEADER_LEN]> {
        check_name("resource", &self.resource)?;
        check_name("node", &self.node)?;
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&FILE_MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.nonce.to_le_bytes());
        b[32..40].copy_from_slice(&self.created.to_le_bytes());
        b[40..42].copy_from_slice(&(self.resource.len() as u16).to_le_bytes());
        b[42..44].copy_from_slice(&(self.node.len() as u16).to_le_bytes());
        b[48..48 + self.resource.len()].copy_from_slice(self.resource.as_bytes());
        b[248..248 + self.node.len()].copy_from_slice(self.node.as_bytes());
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
        if version != FORMAT_VERSION {
            return Err(HeaderProblem::Version(version));
        }
        if u32_at(b, 12) as usize != HEADER_LEN {
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
        };
        let mut b = h.encode().unwrap();
        assert_eq!(FileHeader::decode(&b).unwrap(), h);
        b[100] ^= 1;
        assert!(matches!(
            FileHeader::decode(&b),
            Err(HeaderProblem::Damaged(_))
        ));
    }
}
