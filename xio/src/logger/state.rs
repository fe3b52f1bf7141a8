//! The persisted watermark (FORMAT.md, "State file"): where recovery starts replaying, and
//! whether emergency mode left a hole in the log.

use crate::log::header::{u32_at, u64_at};
use crate::log::LogPos;

const MAGIC: [u8; 8] = *b"MARSLST\0";
const LEN: usize = 64;
const FLAG_HOLE: u32 = 1;

/// Decoded state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogState {
    /// Everything before this position is written back and flushed on the data device.
    pub min_pos: LogPos,
    /// Where emergency mode stopped logging (the log lacks everything written after it).
    pub hole: Option<LogPos>,
}

impl LogState {
    /// Encode (64 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        let flags = if self.hole.is_some() { FLAG_HOLE } else { 0 };
        b[12..16].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.min_pos.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.min_pos.offset.to_le_bytes());
        let hole = self.hole.unwrap_or_default();
        b[32..40].copy_from_slice(&hole.seq.to_le_bytes());
        b[40..48].copy_from_slice(&hole.offset.to_le_bytes());
        let crc = crc32c::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decode, with a message saying what is wrong.
    pub fn decode(b: &[u8]) -> Result<LogState, String> {
        if b.len() != LEN || b[0..8] != MAGIC {
            return Err(format!("not a log state file ({} bytes)", b.len()));
        }
        if crc32c::crc32c(&b[..60]) != u32_at(b, 60) {
            return Err("state file checksum mismatch".into());
        }
        let version = u32_at(b, 8);
        if version != 1 {
            return Err(format!(
                "state file version {version} is unknown: upgrade mars-rs"
            ));
        }
        let hole =
            (u32_at(b, 12) & FLAG_HOLE != 0).then(|| LogPos::new(u64_at(b, 32), u64_at(b, 40)));
        Ok(LogState {
            min_pos: LogPos::new(u64_at(b, 16), u64_at(b, 24)),
            hole,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        for hole in [None, Some(LogPos::new(3, 999))] {
            let s = LogState {
                min_pos: LogPos::new(2, 512),
                hole,
            };
            let b = s.encode();
            assert_eq!(LogState::decode(&b).unwrap(), s);
            let mut c = b.clone();
            c[20] ^= 4;
            assert!(LogState::decode(&c).is_err());
        }
    }
}
