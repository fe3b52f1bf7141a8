//! The persisted restart position of a copy: a tiny file written atomically (temporary file,
//! `fdatasync`, rename, directory sync), so that after a crash it holds either the old or the
//! new position, never a torn one.
//!
//! Layout (little-endian, 32 bytes): magic `MRSCOPY1`, u64 restart position, u64 end of the
//! range, u32 chunk size, u32 crc32c of the first 28 bytes.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"MRSCOPY1";
const LEN: usize = 32;

/// A restart position as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPoint {
    /// Everything below this offset is copied and durable on the target.
    pub pos: u64,
    /// End of the copied range.
    pub end: u64,
    /// Chunk size used.
    pub chunk: u32,
}

/// Load the restart point at `path`: `Ok(None)` if absent, an error if present but damaged.
pub fn load(path: &Path) -> std::io::Result<Option<RestartPoint>> {
    let b = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "restart file {} is damaged ({what}): delete it to copy from the start",
                path.display()
            ),
        )
    };
    if b.len() != LEN || &b[..8] != MAGIC {
        return Err(bad("wrong size or magic"));
    }
    let crc = u32::from_le_bytes(b[28..32].try_into().expect("4 bytes"));
    if crc32c::crc32c(&b[..28]) != crc {
        return Err(bad("checksum mismatch"));
    }
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    Ok(Some(RestartPoint {
        pos: u64_at(8),
        end: u64_at(16),
        chunk: u32::from_le_bytes(b[24..28].try_into().expect("4 bytes")),
    }))
}

/// Store `p` at `path` atomically and durably.
pub fn store(path: &Path, p: RestartPoint) -> std::io::Result<()> {
    let mut b = [0u8; LEN];
    b[..8].copy_from_slice(MAGIC);
    b[8..16].copy_from_slice(&p.pos.to_le_bytes());
    b[16..24].copy_from_slice(&p.end.to_le_bytes());
    b[24..28].copy_from_slice(&p.chunk.to_le_bytes());
    let crc = crc32c::crc32c(&b[..28]);
    b[28..32].copy_from_slice(&crc.to_le_bytes());
    let tmp = tmp_path(path);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&b)?;
        f.sync_data()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_damage() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("restart");
        assert_eq!(load(&p).unwrap(), None);
        let rp = RestartPoint {
            pos: 1 << 20,
            end: 1 << 30,
            chunk: 65536,
        };
        store(&p, rp).unwrap();
        assert_eq!(load(&p).unwrap(), Some(rp));
        let mut b = fs::read(&p).unwrap();
        b[9] ^= 1;
        fs::write(&p, &b).unwrap();
        let e = load(&p).unwrap_err();
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
    }
}
