//! The log files of a log directory with their valid lengths, as `marsd` reads them on every
//! round of every resource (its facts, the lengths its version links publish, its status and
//! metrics). The valid length is the one rule of `log::ends::file_end`, the log server's: a
//! finished file (its successor has a valid header) ends where that header's `prev_end` says,
//! as a recycled file is longer than its records (`log/FORMAT.md`, "Recycled log files"); a
//! file whose header block is all zero (a spare renamed into place ahead of the rotation) has
//! none, as a secondary fetching it gets none.
//!
//! The file a logger writes ends at its durable end when the logger runs in this process
//! ([`LogSizes::with_live_ends`], `marsd` passes its loggers'); without it (another process,
//! or a restart before the logger ran) it counts with its length, the stale tail of a
//! recycled life included. Version links publish only logs the logger has left (finished, so
//! ended by `prev_end`) either way; the live end keeps the status, the metrics and the
//! emergency limit's sum free of stale bytes.
//!
//! Reading a header is an open, a read and a close; a secondary lagging behind by hundreds of
//! logs would do hundreds per round. [`LogSizes`] keeps the valid headers it read, so that a
//! round reads only the headers that are not written yet (the file created ahead of the
//! rotation), plus those of files that are new or replaced since the last round.

use crate::log::ends::{file_end, read_head, EndFacts, Head};
use crate::log::{FileHeader, LiveEnds, LogName, HEADER_LEN};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

/// Which file a directory entry is. A file deleted and another created under its name is
/// another file: another inode, or (an inode number reused) another birth time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    born: Option<SystemTime>,
}

/// One log file as listed.
struct Listed {
    len: u64,
    id: FileId,
}

/// Log files with their valid lengths, with the headers already read kept between scans.
///
/// **Invariant (when a kept header is still true):** a log file's header, once valid, is
/// never rewritten while that file stays under its name: the logger writes it once, when it
/// switches to the file (a file created ahead, empty or a recycled spare with its header
/// block zeroed, has no valid header before, and such reads are never kept); a deleted file
/// becomes a spare under another name and is zeroed before it returns under a new log name;
/// fetch writes the creator's bytes of the same log into its copy, and a copy cut back below
/// its header is read again (a file shorter than a header has none). So a kept header is used
/// only while the same file (device, inode, birth time) is listed under the same name with
/// at least a header's bytes; anything else reads it again, and the entries of files no
/// longer listed are dropped. A file whose header is kept is not zeroed; one without is read
/// every scan (the file ahead of the rotation: one read per round, as before its header is
/// written it is also its predecessor's successor). What is kept is a header, not a result:
/// a file's end is recomputed every scan from its current length, its kept or read header
/// block and its successor's header (`log::ends::file_end`), so a log deleted and another
/// listed before the same successor, or a copy that grows, get exactly what a fresh read
/// gives.
#[derive(Debug, Default)]
pub struct LogSizes {
    /// The valid headers read, by file name, with the file they were read from.
    headers: HashMap<LogName, (FileId, FileHeader)>,
    /// Header reads done (file opens), for tests.
    header_reads: u64,
    /// The durable ends the loggers of this process publish.
    live: Option<LiveEnds>,
}

impl LogSizes {
    /// No headers read yet.
    pub fn new() -> LogSizes {
        LogSizes::default()
    }

    /// End the files that loggers of this process write at their durable ends (the log
    /// directory must be spelled as the loggers spell theirs, see [`LiveEnds`]).
    pub fn with_live_ends(mut self, live: LiveEnds) -> LogSizes {
        self.live = Some(live);
        self
    }

    /// The log files in `dir` (none if it cannot be listed) with their valid lengths
    /// (`log::ends::file_end`). A file's successor is the listed file with the
    /// lowest higher sequence number (any creator).
    pub fn scan(&mut self, dir: &Path) -> BTreeMap<LogName, u64> {
        let listed = list(dir);
        self.headers
            .retain(|name, (id, _)| listed.get(name).is_some_and(|l| l.id == *id));
        let zeroed: Vec<bool> = listed
            .iter()
            .map(|(name, l)| self.read(dir, name, l))
            .collect();
        let names: Vec<&LogName> = listed.keys().collect();
        let mut out = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            let successor = names[i + 1..]
                .iter()
                .find(|n| n.seq > name.seq)
                .and_then(|n| self.headers.get(*n))
                .map(|(_, h)| h);
            let live = match (successor, &self.live) {
                (None, Some(l)) => l.get(&dir.join(name.to_string())),
                _ => None,
            };
            let end = file_end(&EndFacts {
                seq: name.seq,
                len: listed[*name].len,
                header_zeroed: zeroed[i],
                successor,
                live,
            });
            out.insert((*name).clone(), end.end);
        }
        out
    }

    /// Read the header block of the listed file `name` unless its valid header is kept; keep
    /// a valid one. Whether it is all zero.
    fn read(&mut self, dir: &Path, name: &LogName, l: &Listed) -> bool {
        if l.len < HEADER_LEN as u64 {
            self.headers.remove(name);
        }
        if l.len == 0 || self.headers.contains_key(name) {
            return false;
        }
        self.header_reads += 1;
        let head = std::fs::File::open(dir.join(name.to_string())).and_then(|f| read_head(&f));
        match head {
            Ok(Head::Valid(h)) => {
                self.headers.insert(name.clone(), (l.id, h));
                false
            }
            Ok(Head::Zeroed) => true,
            Ok(Head::Other) | Err(_) => false,
        }
    }
}

/// Log files in a log directory with their lengths; a finished file (its successor has a
/// header) with its valid length as that header records it (a recycled file is longer).
/// Reads every successor's header: a caller that asks repeatedly keeps a [`LogSizes`].
pub fn local_log_state(dir: &Path) -> BTreeMap<LogName, u64> {
    LogSizes::new().scan(dir)
}

/// The files of `dir` with a log name, with their lengths and identities.
fn list(dir: &Path) -> BTreeMap<LogName, Listed> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let Some(name) = e.file_name().to_str().and_then(|n| LogName::parse(n).ok()) else {
            continue;
        };
        if let Ok(m) = e.metadata() {
            let id = FileId {
                dev: m.dev(),
                ino: m.ino(),
                born: m.created().ok(),
            };
            out.insert(name, Listed { len: m.len(), id });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u64, prev_end: u64) -> [u8; HEADER_LEN] {
        FileHeader {
            prev_end,
            ..FileHeader::new(seq, "r", "a", 0)
        }
        .encode()
        .unwrap()
    }

    /// A log file of `len` bytes: `head` first (a header or nothing), then stale bytes.
    fn log(dir: &Path, name: &str, head: &[u8], len: usize) {
        let mut b = vec![7u8; len];
        b[..head.len()].copy_from_slice(head);
        std::fs::write(dir.join(name), b).unwrap();
    }

    fn sizes(m: &BTreeMap<LogName, u64>) -> Vec<(String, u64)> {
        m.iter().map(|(n, l)| (n.to_string(), *l)).collect()
    }

    #[test]
    fn finished_logs_end_at_their_successors_prev_end_unstarted_ones_at_zero_else_at_their_length()
    {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        log(p, "log-000000001-a", &header(1, 0), 10_000);
        // prev_end 0: a header from before recycling; the length ends log 1.
        log(p, "log-000000002-a", &header(2, 0), 10_000);
        log(p, "log-000000003-a", &header(3, 6_000), 10_000);
        // prev_end beyond log 3's length: the length.
        log(p, "log-000000004-a", &header(4, 50_000), 8_000);
        // A gap: log 6's header says nothing of log 4.
        log(p, "log-000000006-a", &header(6, 1_000), 9_000);
        // Created ahead: empty, and a recycled one with a zeroed header block (a spare renamed
        // into place: its stale bytes are not log, as the log server serves none of them).
        std::fs::write(p.join("log-000000007-a"), b"").unwrap();
        log(p, "log-000000008-a", &[0u8; 4096], 20_000);
        std::fs::write(p.join("spare-3"), [1u8; 100]).unwrap();
        std::fs::write(p.join("state"), [1u8; 100]).unwrap();
        let want = [
            ("log-000000001-a", 10_000),
            ("log-000000002-a", 6_000),
            ("log-000000003-a", 10_000),
            ("log-000000004-a", 8_000),
            ("log-000000006-a", 9_000),
            ("log-000000007-a", 0),
            ("log-000000008-a", 0),
        ]
        .map(|(n, l)| (n.to_string(), l));
        let mut s = LogSizes::new();
        assert_eq!(sizes(&s.scan(p)), want);
        assert_eq!(sizes(&local_log_state(p)), want);
        assert!(LogSizes::new().scan(&p.join("missing")).is_empty());
        // A logger of this process writes log 6: its durable end, not its length. A live end
        // of a finished log is not asked (log 3's successor says where it ends).
        let live = LiveEnds::new();
        live.set(p.join("log-000000006-a"), 3_000);
        live.set(p.join("log-000000003-a"), 1_000);
        let mut s = LogSizes::new().with_live_ends(live);
        let got = s.scan(p);
        assert_eq!(got[&LogName::new(6, "a")], 3_000);
        assert_eq!(got[&LogName::new(3, "a")], 10_000);
    }

    #[test]
    fn a_second_scan_of_an_unchanged_directory_reads_no_finished_logs_header() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for seq in 1..=20u64 {
            log(p, &format!("log-{seq:09}-a"), &header(seq, 5_000), 10_000);
        }
        // The file created ahead of the rotation, its header not written yet.
        log(p, "log-000000021-a", &[0u8; 4096], 10_000);
        let mut s = LogSizes::new();
        let first = s.scan(p);
        assert_eq!(s.header_reads, 21, "logs 1..=21 once each");
        assert_eq!(first[&LogName::new(1, "a")], 5_000);
        assert_eq!(first[&LogName::new(21, "a")], 0, "not started");
        let second = s.scan(p);
        assert_eq!(second, first);
        assert_eq!(
            s.header_reads, 22,
            "only log 21's, which has no valid header yet"
        );
        // Its header written (the rotation): read once more, then kept.
        log(p, "log-000000021-a", &header(21, 7_000), 10_000);
        assert_eq!(s.scan(p)[&LogName::new(20, "a")], 7_000);
        s.scan(p);
        assert_eq!(s.header_reads, 23);
    }

    #[test]
    fn a_replaced_log_or_successor_is_read_again() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        log(p, "log-000000001-a", &header(1, 0), 10_000);
        log(p, "log-000000002-a", &header(2, 6_000), 10_000);
        let mut s = LogSizes::new();
        assert_eq!(s.scan(p)[&LogName::new(1, "a")], 6_000);
        // Both deleted; log 1 again with the same length, its successor of another creator.
        std::fs::remove_file(p.join("log-000000001-a")).unwrap();
        std::fs::remove_file(p.join("log-000000002-a")).unwrap();
        log(p, "log-000000001-a", &header(1, 0), 10_000);
        log(p, "log-000000002-b", &header(2, 7_000), 10_000);
        assert_eq!(s.scan(p)[&LogName::new(1, "a")], 7_000);
        // The successor replaced by another file under its name (renamed over it, so the
        // inode differs for sure).
        log(p, "tmp", &header(2, 8_000), 10_000);
        std::fs::rename(p.join("tmp"), p.join("log-000000002-b")).unwrap();
        assert_eq!(s.scan(p)[&LogName::new(1, "a")], 8_000);
        // Cut back below its header (fetch after damage) and fetched again.
        std::fs::write(p.join("log-000000002-b"), [0u8; 100]).unwrap();
        assert_eq!(s.scan(p)[&LogName::new(1, "a")], 10_000);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(p.join("log-000000002-b"))
            .unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &header(2, 9_000), 0).unwrap();
        assert_eq!(s.scan(p)[&LogName::new(1, "a")], 9_000);
        // A predecessor whose length changes: min(prev_end, length) anew.
        log(p, "log-000000001-a", &header(1, 0), 5_000);
        assert_eq!(s.scan(p)[&LogName::new(1, "a")], 5_000);
    }
}
