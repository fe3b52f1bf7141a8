//! Where a log file's valid bytes end, for readers that serve or count a file without scanning
//! it (the log server, the log sizes of `marsd`). A recycled log file is longer than its
//! records: stale bytes of an earlier life follow its valid end (FORMAT.md, "Recycled log
//! files"), so its length is not its end.
//!
//! - A **finished** file (its successor has a valid header) ends where that header's
//!   `prev_end` says (0 there: a file from before recycling, which its length ends).
//! - The file a logger is writing ends at the logger's durable end, published in
//!   [`LiveEnds`] after every commit: a reader never sees bytes that are not synced yet.
//! - Otherwise (no logger in this process writes it, e.g. a fetched copy): its length, except
//!   that a file whose header block is all zero (a recycled file not started yet) has no
//!   valid bytes ([`header_zeroed`]; the log server applies it).

use super::header::{FileHeader, HEADER_LEN};
use super::name::LogName;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The durable ends of the log files that loggers of this process are writing, by path (the
/// log store's directory joined with the file name: writers and readers must spell the
/// directory the same way, as `marsd` does with its `DIR`).
#[derive(Debug, Clone, Default)]
pub struct LiveEnds(Arc<Mutex<HashMap<PathBuf, u64>>>);

impl LiveEnds {
    /// An empty registry.
    pub fn new() -> LiveEnds {
        LiveEnds::default()
    }

    /// The file at `path` is durable up to `end`.
    pub fn set(&self, path: PathBuf, end: u64) {
        self.0.lock().insert(path, end);
    }

    /// The durable end of the file at `path`, if a logger publishes one.
    pub fn get(&self, path: &Path) -> Option<u64> {
        self.0.lock().get(path).copied()
    }

    /// The file at `path` is gone (deleted or recycled).
    pub fn remove(&self, path: &Path) {
        self.0.lock().remove(path);
    }
}

/// The header of the next log file after `seq` in `dir` (the lowest higher sequence number,
/// any creator), if it has a valid one: the logger writes it only when it switches to that
/// file, after the last batch of `seq` (upstream's rule that a log is finished once a
/// successor exists, made exact for files created early or recycled).
pub fn successor_header(dir: &Path, seq: u64) -> Option<FileHeader> {
    let (_, next) = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let n = LogName::parse(e.file_name().to_str()?).ok()?;
            (n.seq > seq).then(|| (n.seq, e.path()))
        })
        .min()?;
    read_header(&next)
}

/// The header of the log file at `path`, if it has a valid one.
pub fn read_header(path: &Path) -> Option<FileHeader> {
    let f = std::fs::File::open(path).ok()?;
    let mut b = [0u8; HEADER_LEN];
    f.read_exact_at(&mut b, 0).ok()?;
    FileHeader::decode(&b).ok()
}

/// Whether the log file `f` (of `len` bytes) starts with a header block that is all zero
/// (as much of it as the file holds): a spare renamed into place whose header the logger has
/// not written yet, or an interrupted creation (`logger/spares.rs`). None of its bytes are
/// valid, whatever follows (a spare's stale bytes of an earlier life), and it is not
/// finished: a reader that has no durable end from the file's logger (another process, or
/// a restart before the logger ran) must not take its length for its end.
pub fn header_zeroed(f: &std::fs::File, len: u64) -> std::io::Result<bool> {
    let mut b = [0u8; HEADER_LEN];
    let want = len.min(HEADER_LEN as u64) as usize;
    let mut got = 0;
    while got < want {
        match f.read_at(&mut b[got..want], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got > 0 && b[..got].iter().all(|&x| x == 0))
}

/// Where the valid bytes of log file `name` in `dir` (of `len` bytes) end, and whether it is
/// finished (see the module docs).
pub fn valid_end(dir: &Path, name: &LogName, len: u64, live: Option<&LiveEnds>) -> (u64, bool) {
    if let Some(next) = successor_header(dir, name.seq) {
        return (next.end_of(name.seq).map_or(len, |e| e.min(len)), true);
    }
    let live = live.and_then(|l| l.get(&dir.join(name.to_string())));
    (live.map_or(len, |e| e.min(len)), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u64, prev_end: u64) -> Vec<u8> {
        FileHeader {
            seq,
            nonce: 5,
            created: 0,
            resource: "r".into(),
            node: "b".into(),
            align: 0,
            prev_end,
        }
        .encode()
        .unwrap()
        .to_vec()
    }

    #[test]
    fn a_file_ends_where_its_successor_says_else_at_the_live_end_else_at_its_length() {
        let d = tempfile::tempdir().unwrap();
        let one = LogName::new(1, "a");
        std::fs::write(d.path().join(one.to_string()), vec![7u8; 10_000]).unwrap();
        let live = LiveEnds::new();
        assert_eq!(
            valid_end(d.path(), &one, 10_000, Some(&live)),
            (10_000, false)
        );
        live.set(d.path().join(one.to_string()), 4_000);
        assert_eq!(
            valid_end(d.path(), &one, 10_000, Some(&live)),
            (4_000, false)
        );
        assert_eq!(valid_end(d.path(), &one, 10_000, None), (10_000, false));
        // A successor created early (or recycled, its header block zeroed) says nothing.
        let two = d.path().join("log-000000002-b");
        std::fs::write(&two, vec![0u8; 4096]).unwrap();
        assert_eq!(
            valid_end(d.path(), &one, 10_000, Some(&live)),
            (4_000, false)
        );
        // Its header, written at the switch, finishes the file at `prev_end`.
        std::fs::write(&two, header(2, 6_000)).unwrap();
        assert_eq!(
            valid_end(d.path(), &one, 10_000, Some(&live)),
            (6_000, true)
        );
        // A header from before recycling (no `prev_end`): the length.
        std::fs::write(&two, header(2, 0)).unwrap();
        assert_eq!(valid_end(d.path(), &one, 10_000, None), (10_000, true));
        live.remove(&d.path().join(one.to_string()));
        assert_eq!(live.get(&d.path().join(one.to_string())), None);
    }
}
