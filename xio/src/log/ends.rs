//! Where a log file's valid bytes end, for readers that serve or count a file without scanning
//! it (the log server, the log sizes of `marsd`). A recycled log file is longer than its
//! records: stale bytes of an earlier life follow its valid end (FORMAT.md, "Recycled log
//! files"), so its length is not its end.
//!
//! The rule is one pure function, [`file_end`], over what a reader knows of the file
//! ([`EndFacts`]); the readers only gather the facts (and may keep those that cannot change):
//! - A file whose header block is all zero (a spare renamed into place whose header is not
//!   written yet, or an interrupted creation) has no valid bytes and is not finished.
//! - A **finished** file (its successor, the lowest higher sequence number of any creator,
//!   has a valid header) ends where that header's `prev_end` says (0 there: a file from
//!   before recycling, which its length ends), never beyond its length.
//! - The file a logger of this process is writing ends at the logger's durable end,
//!   published in [`LiveEnds`] after every commit: a reader never sees bytes that are not
//!   synced yet. The live end is process-local: `marsd`'s log sizes pass none (see
//!   `replica::log_sizes`), the log server passes its process's.
//! - Otherwise (e.g. a fetched copy): its length.

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
    match read_head(&std::fs::File::open(path).ok()?).ok()? {
        Head::Valid(h) => Some(h),
        Head::Zeroed | Head::Other => None,
    }
}

/// What a log file's header block holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// A valid file header.
    Valid(FileHeader),
    /// All zero (as much of it as the file holds, at least one byte): a spare renamed into
    /// place whose header the logger has not written yet, or an interrupted creation
    /// (`logger/spares.rs`). None of the file's bytes are valid, whatever follows (a spare's
    /// stale bytes of an earlier life), and it is not finished: a reader that has no durable
    /// end from the file's logger (another process, or a restart before the logger ran) must
    /// not take its length for its end.
    Zeroed,
    /// Anything else: an empty file, a header being fetched, a damaged one.
    Other,
}

/// Read the header block of the log file `f` (up to its end if it is shorter).
pub fn read_head(f: &std::fs::File) -> std::io::Result<Head> {
    let mut b = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match f.read_at(&mut b[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(if got == HEADER_LEN {
        FileHeader::decode(&b).map_or_else(|_| zeroed_or_other(&b), Head::Valid)
    } else {
        zeroed_or_other(&b[..got])
    })
}

fn zeroed_or_other(b: &[u8]) -> Head {
    if !b.is_empty() && b.iter().all(|&x| x == 0) {
        Head::Zeroed
    } else {
        Head::Other
    }
}

/// What a reader knows of a log file, to place its valid end without scanning it.
#[derive(Debug, Clone, Copy)]
pub struct EndFacts<'a> {
    /// Its sequence number.
    pub seq: u64,
    /// Its length.
    pub len: u64,
    /// Whether its header block is all zero ([`Head::Zeroed`]).
    pub header_zeroed: bool,
    /// The header of its successor (the lowest higher sequence number, any creator), if that
    /// file has a valid one ([`successor_header`]).
    pub successor: Option<&'a FileHeader>,
    /// The durable end a logger of this process publishes for it ([`LiveEnds`]), if any.
    pub live: Option<u64>,
}

/// Where a log file's valid bytes end, and whether it will grow no more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileEnd {
    /// The end of its valid bytes (never beyond its length).
    pub end: u64,
    /// Whether it is finished: its successor has a valid header.
    pub finished: bool,
}

/// Where the valid bytes of a log file end, and whether it is finished (the module docs).
pub fn file_end(f: &EndFacts<'_>) -> FileEnd {
    if f.header_zeroed {
        return FileEnd {
            end: 0,
            finished: false,
        };
    }
    let (limit, finished) = match f.successor {
        Some(next) => (next.end_of(f.seq), true),
        None => (f.live, false),
    };
    FileEnd {
        end: limit.map_or(f.len, |e| e.min(f.len)),
        finished,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u64, prev_end: u64) -> FileHeader {
        FileHeader {
            prev_end,
            nonce: 5,
            ..FileHeader::new(seq, "r", "b", 0)
        }
    }

    /// A row: what is known of log 1 (10_000 bytes long), and where it ends.
    struct Row<'a> {
        case: &'a str,
        header_zeroed: bool,
        successor: Option<&'a FileHeader>,
        live: Option<u64>,
        end: u64,
        finished: bool,
    }

    #[test]
    fn where_a_log_file_ends_in_every_case_of_its_facts() {
        let (h6k, h0) = (header(2, 6_000), header(2, 0));
        let (h50k, gap) = (header(2, 50_000), header(3, 6_000));
        #[rustfmt::skip]
        let table = [
            ("nothing known: the length", false, None, None, 10_000, false),
            ("the live end", false, None, Some(4_000), 4_000, false),
            ("a live end beyond the length", false, None, Some(12_000), 10_000, false),
            ("finished at prev_end", false, Some(&h6k), None, 6_000, true),
            ("finished: prev_end beats a live end", false, Some(&h6k), Some(4_000), 6_000, true),
            ("finished, prev_end 0 (before recycling): the length", false, Some(&h0), Some(4_000), 10_000, true),
            ("finished, prev_end beyond the length", false, Some(&h50k), None, 10_000, true),
            ("finished across a gap: the length", false, Some(&gap), None, 10_000, true),
            ("header block zero: nothing, not finished", true, None, Some(4_000), 0, false),
            ("header block zero beats a successor", true, Some(&h6k), None, 0, false),
        ]
        .map(|(case, header_zeroed, successor, live, end, finished)| Row {
            case, header_zeroed, successor, live, end, finished,
        });
        for r in table {
            let got = file_end(&EndFacts {
                seq: 1,
                len: 10_000,
                header_zeroed: r.header_zeroed,
                successor: r.successor,
                live: r.live,
            });
            let want = FileEnd {
                end: r.end,
                finished: r.finished,
            };
            assert_eq!(got, want, "{}", r.case);
        }
    }

    #[test]
    fn a_successor_is_the_next_log_by_sequence_number_with_a_valid_header() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("log-000000001-alice"), b"x").unwrap();
        assert_eq!(successor_header(p, 1), None);
        // Not log names: say nothing.
        std::fs::write(p.join("log-000000005"), [0u8; 512]).unwrap();
        std::fs::write(p.join("state"), [0u8; 512]).unwrap();
        assert_eq!(successor_header(p, 1), None);
        // The logger pre-creates its next file empty, or recycled with its header block
        // zeroed: that says nothing yet.
        let two = p.join("log-000000002-bob");
        std::fs::write(&two, b"").unwrap();
        assert_eq!(successor_header(p, 1), None);
        std::fs::write(&two, [0u8; 4096]).unwrap();
        assert_eq!(successor_header(p, 1), None);
        // The next log's header says nothing while it is missing, whatever follows.
        std::fs::write(p.join("log-000000003-bob"), header(3, 1).encode().unwrap()).unwrap();
        assert_eq!(successor_header(p, 1), None);
        // A successor of any creator with its header written.
        std::fs::write(&two, header(2, 6_000).encode().unwrap()).unwrap();
        assert_eq!(successor_header(p, 1), Some(header(2, 6_000)));
        assert_eq!(successor_header(p, 3), None);
        assert_eq!(successor_header(&p.join("missing"), 1), None);
    }

    #[test]
    fn a_header_block_is_valid_zeroed_or_other() {
        let d = tempfile::tempdir().unwrap();
        let head = |bytes: &[u8]| {
            let path = d.path().join("f");
            std::fs::write(&path, bytes).unwrap();
            read_head(&std::fs::File::open(&path).unwrap()).unwrap()
        };
        let mut valid = header(2, 6_000).encode().unwrap().to_vec();
        assert_eq!(head(&valid), Head::Valid(header(2, 6_000)));
        assert_eq!(head(&[0u8; 4096]), Head::Zeroed);
        assert_eq!(head(&[0u8; 100]), Head::Zeroed, "a short all-zero file");
        let mut zero_then_stale = vec![0u8; HEADER_LEN];
        zero_then_stale.extend(&valid);
        assert_eq!(head(&zero_then_stale), Head::Zeroed);
        assert_eq!(head(b""), Head::Other);
        assert_eq!(head(&valid[..100]), Head::Other, "a header being fetched");
        valid[20] ^= 1;
        assert_eq!(head(&valid), Head::Other, "a damaged header");
    }

    #[test]
    fn live_ends_are_kept_by_path() {
        let live = LiveEnds::new();
        let p = Path::new("/logs/log-000000001-a");
        assert_eq!(live.get(p), None);
        live.set(p.to_path_buf(), 4_000);
        assert_eq!(live.get(p), Some(4_000));
        live.remove(p);
        assert_eq!(live.get(p), None);
    }
}
