//! [`FsLogStore`], a log directory on a file system.
//!
//! Log files are file bricks of the file layer in its inline synchronous mode
//! (`Backend::Sync` with no worker threads, `crate::file`): the log thread is their only writer
//! and issues exactly one sequential write and one `fdatasync` at a time (group commit), so
//! there is nothing to overlap, and a call on the submitting thread has the lowest latency (no
//! hand-over to another thread). With `direct` the files written are opened with `O_DIRECT`
//! (the writer then writes log format v2, aligned); files opened to be read are always
//! buffered, since readers read at any offset.

use super::error::LoggerError;
use super::slots;
use super::store::LogStore;
use crate::file::{self, Backend, FileOptions};
use crate::log::{LiveEnds, LogName};
use brick_core::{Error, Output, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Open the log file `path` as an inline file brick (buffered, or `O_DIRECT` with `direct`).
fn log_file(path: &Path, direct: bool) -> Result<Arc<dyn Output>> {
    let opts = FileOptions {
        growable: true,
        threads: 0,
        queue_depth: 4,
        start_writeback: !direct,
        direct,
        ..FileOptions::default()
    };
    Ok(file::open(path, Backend::Sync, &opts)?)
}

/// A log directory: log files `log-<seq %09d>-<creator>` ([`LogName`]) and the `state` file.
///
/// The store creates its files under its own creator name and finds a sequence number's file
/// whatever its creator: after a handover a node's directory holds logs made by other nodes
/// (a secondary keeps fetched logs under their own names). Two files of one sequence number
/// from different creators are a split brain: every lookup of that number, and
/// [`LogStore::list`], fails with [`LoggerError::SplitBrain`] (flattened to a
/// `brick_core::Error` by the trait) until an operator resolves it.
///
/// The state file is written once with a rename and then replaced in place, in one of two
/// slots (see `slots.rs`): on a full file system the logger can still record that it
/// stopped using the log. A state file of another length (before slots) is read as the
/// state itself and replaced by a slotted one on the next store.
#[derive(Debug, Clone)]
pub struct FsLogStore {
    dir: PathBuf,
    creator: String,
    /// Open the files written with `O_DIRECT`.
    direct: bool,
    /// Deleted log files kept for reuse, at most (`spares.rs`).
    spares: usize,
    /// Where the durable end of the file being written is published for readers.
    live: Option<LiveEnds>,
    /// The open slotted state file and the newest generation in it (after the first store
    /// or load).
    state: Arc<parking_lot::Mutex<Option<(File, u64)>>>,
}

impl FsLogStore {
    /// Use (and create if needed) the directory `dir`; the files it creates are named after
    /// `creator` (this node), which must be a valid [`LogName`] creator.
    pub fn new(dir: &Path, creator: &str) -> Result<FsLogStore> {
        LogName::check_creator(creator).map_err(|e| Error::Brick {
            brick: dir.display().to_string(),
            message: format!("invalid log creator: {e}"),
        })?;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::from_io(&e, "creating the log directory"))?;
        Ok(FsLogStore {
            dir: dir.to_path_buf(),
            creator: creator.to_string(),
            direct: false,
            spares: super::spares::DEFAULT_SPARES,
            live: None,
            state: Arc::default(),
        })
    }

    /// Keep up to `n` deleted log files as spares for later log files (default
    /// [`super::spares::DEFAULT_SPARES`]; 0: delete them).
    pub fn with_spares(mut self, n: usize) -> FsLogStore {
        self.spares = n;
        self
    }

    /// Publish the durable end of the file being written in `live` (for the log server).
    pub fn with_live_ends(mut self, live: Option<LiveEnds>) -> FsLogStore {
        self.live = live;
        self
    }

    /// Write new log files with `O_DIRECT` (the logger must write format v2 to them).
    pub fn with_direct(mut self, direct: bool) -> FsLogStore {
        self.direct = direct;
        self
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The creator of the files this store creates.
    pub fn creator(&self) -> &str {
        &self.creator
    }

    /// The name of the log file of sequence number `seq`, if there is exactly one.
    pub fn name(&self, seq: u64) -> Option<LogName> {
        self.scan(Some(seq)).ok().and_then(|v| v.into_iter().next())
    }

    /// Every log file in the directory (any creator), sorted by sequence number; names that
    /// are not log names are ignored. Fails on a split brain.
    pub fn logs(&self) -> std::result::Result<Vec<LogName>, LoggerError> {
        self.scan(None)
    }

    /// The log files of the directory (only those of `seq` if given), sorted, each sequence
    /// number at most once.
    fn scan(&self, only: Option<u64>) -> std::result::Result<Vec<LogName>, LoggerError> {
        let list_err = |e: std::io::Error| Error::from_io(&e, "listing the log directory");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| LogName::parse(n).ok())
            else {
                continue;
            };
            if only.is_none_or(|seq| seq == name.seq) {
                names.push(name);
            }
        }
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0].seq == w[1].seq) {
            return Err(LoggerError::SplitBrain {
                first: self.dir.join(w[0].to_string()).display().to_string(),
                second: self.dir.join(w[1].to_string()).display().to_string(),
            });
        }
        Ok(names)
    }

    /// The existing file of `seq` (as a `brick_core` error for the [`LogStore`] methods).
    fn find(&self, seq: u64) -> Result<Option<LogName>> {
        self.scan(Some(seq))
            .map(|v| v.into_iter().next())
            .map_err(|e| self.flatten(&e))
    }

    fn flatten(&self, e: &LoggerError) -> Error {
        e.to_brick(&self.dir.display().to_string())
    }

    /// The path of the existing file of `seq`; ENOENT (as opening a missing file) if none.
    fn existing(&self, seq: u64, context: &'static str) -> Result<PathBuf> {
        const ENOENT: i32 = 2;
        match self.find(seq)? {
            Some(n) => Ok(self.dir.join(n.to_string())),
            None => Err(Error::Os {
                errno: ENOENT,
                context,
            }),
        }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Open the slotted state file if there is one: the file and its newest generation.
    fn open_slotted(&self) -> std::io::Result<Option<(File, u64)>> {
        let f = match OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.state_path())
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if f.metadata()?.len() != slots::FILE_LEN as u64 {
            return Ok(None);
        }
        let mut b = vec![0u8; slots::FILE_LEN];
        f.read_exact_at(&mut b, 0)?;
        Ok(slots::newest(&b).map(|(g, _)| (f, g)))
    }

    /// First store (or replacing a state file from before slots): a new slotted file, made
    /// durable and renamed into place.
    fn create_slotted(&self, bytes: &[u8]) -> std::io::Result<(File, u64)> {
        let tmp = self.dir.join("state.tmp");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all_at(&slots::first_file(bytes), 0)?;
        f.sync_data()?;
        std::fs::rename(&tmp, self.state_path())?;
        Ok((f, 1))
    }

    fn sync_dir(&self) -> Result<()> {
        super::spares::sync_dir(&self.dir)
            .map_err(|e| Error::from_io(&e, "syncing the log directory"))
    }
}

impl LogStore for FsLogStore {
    fn list(&self) -> Result<Vec<u64>> {
        let names = self.scan(None).map_err(|e| self.flatten(&e))?;
        Ok(names.into_iter().map(|n| n.seq).collect())
    }

    fn create(&self, seq: u64) -> Result<Arc<dyn Output>> {
        let name = LogName::new(seq, self.creator.as_str());
        if let Some(other) = self.find(seq)? {
            // Creating ours beside it would make a split brain.
            return Err(Error::Brick {
                brick: self.dir.display().to_string(),
                message: format!(
                    "cannot create log file {name}: {other} has the same sequence number"
                ),
            });
        }
        let path = self.dir.join(name.to_string());
        // Nothing of the new file is durable yet: a spare renamed into place is as long as
        // its earlier life, and the log server must not serve those stale bytes before the
        // first commit publishes the real end (it serves unpublished files to their length).
        self.durable(seq, 0);
        let reused = super::spares::reuse(&self.dir, &path)
            .map_err(|e| Error::from_io(&e, "reusing a spare log file"))?;
        if !reused {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| Error::from_io(&e, "creating a log file"))?;
        }
        self.sync_dir()?;
        log_file(&path, self.direct)
    }

    fn open(&self, seq: u64) -> Result<(Arc<dyn Output>, u64)> {
        let path = self.existing(seq, "opening a log file")?;
        let out = log_file(&path, false)?;
        let len = out.info()?.size;
        Ok((out, len))
    }

    fn truncate(&self, seq: u64, len: u64) -> Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .open(self.existing(seq, "sealing a log file")?)
            .map_err(|e| Error::from_io(&e, "opening a log file to seal it"))?;
        file.set_len(len)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::from_io(&e, "sealing a log file"))
    }

    fn remove(&self, seq: u64) -> Result<()> {
        let path = self.existing(seq, "deleting a log file")?;
        if let Some(live) = &self.live {
            live.remove(&path);
        }
        let kept = super::spares::keep(&self.dir, &path, seq, self.spares)
            .map_err(|e| Error::from_io(&e, "keeping a log file as a spare"))?;
        if kept {
            return Ok(());
        }
        std::fs::remove_file(path).map_err(|e| Error::from_io(&e, "deleting a log file"))
    }

    fn durable(&self, seq: u64, end: u64) {
        if let Some(live) = &self.live {
            let name = LogName::new(seq, self.creator.as_str());
            live.set(self.dir.join(name.to_string()), end);
        }
    }

    fn load_state(&self) -> Result<Option<Vec<u8>>> {
        let b = match std::fs::read(self.state_path()) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::from_io(&e, "reading the log state file")),
        };
        if b.len() != slots::FILE_LEN {
            // Written before slots: the whole file is the state.
            return Ok(Some(b));
        }
        match slots::newest(&b) {
            Some((_, payload)) => Ok(Some(payload)),
            None => Err(Error::Brick {
                brick: self.state_path().display().to_string(),
                message: "the log state file is damaged in both of its slots (checksums fail). \
                          If no log hole was reported, delete it: the next start replays every \
                          log file (replay is idempotent). If a hole was reported, move the log \
                          files away first, or they would be replayed over newer direct writes"
                    .into(),
            }),
        }
    }

    fn store_state(&self, bytes: &[u8]) -> Result<()> {
        let err = |e: std::io::Error| Error::from_io(&e, "writing the log state file");
        let mut state = self.state.lock();
        if state.is_none() {
            *state = self.open_slotted().map_err(err)?;
        }
        match state.as_mut() {
            Some((f, generation)) => {
                // In place: the slot written never holds the newest state (see `slots.rs`).
                let next = *generation + 1;
                f.write_all_at(&slots::encode(next, bytes), slots::offset_of(next))
                    .and_then(|()| f.sync_data())
                    .map_err(err)?;
                *generation = next;
                Ok(())
            }
            None => {
                *state = Some(self.create_slotted(bytes).map_err(err)?);
                self.sync_dir()
            }
        }
    }

    /// The path of the file of `seq`, or of the one `create` would make.
    fn describe(&self, seq: u64) -> String {
        let name = self
            .find(seq)
            .ok()
            .flatten()
            .unwrap_or_else(|| LogName::new(seq, self.creator.as_str()));
        self.dir.join(name.to_string()).display().to_string()
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    #[test]
    fn the_state_is_replaced_in_place_and_survives_a_damaged_newest_slot() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsLogStore::new(dir.path(), "a").unwrap();
        assert_eq!(store.load_state().unwrap(), None);
        for s in [b"one".as_slice(), b"two", b"three"] {
            store.store_state(s).unwrap();
        }
        let path = dir.path().join("state");
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        let before = inode(&path);
        store.store_state(b"four").unwrap();
        assert_eq!(inode(&path), before, "replaced in place, not renamed");
        // A fresh store (a restart) reads the newest state.
        let again = FsLogStore::new(dir.path(), "a").unwrap();
        assert_eq!(again.load_state().unwrap().as_deref(), Some(&b"four"[..]));
        // The newest slot torn: the previous state is read.
        let mut b = std::fs::read(&path).unwrap();
        let newest = slots::offset_of(4) as usize;
        b[newest + 24] ^= 0xff;
        std::fs::write(&path, &b).unwrap();
        assert_eq!(again.load_state().unwrap().as_deref(), Some(&b"three"[..]));
        // Both slots damaged: an error that says what to do.
        let other = slots::offset_of(3) as usize;
        b[other + 24] ^= 0xff;
        std::fs::write(&path, &b).unwrap();
        let err = again.load_state().unwrap_err().to_string();
        assert!(
            err.contains("damaged in both") && err.contains("delete it"),
            "{err}"
        );
    }

    #[test]
    fn a_state_file_from_before_slots_is_read_and_then_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state"), b"legacy state").unwrap();
        let store = FsLogStore::new(dir.path(), "a").unwrap();
        assert_eq!(
            store.load_state().unwrap().as_deref(),
            Some(&b"legacy state"[..])
        );
        store.store_state(b"new").unwrap();
        store.store_state(b"newer").unwrap();
        let len = std::fs::metadata(dir.path().join("state")).unwrap().len();
        assert_eq!(len, slots::FILE_LEN as u64);
        let again = FsLogStore::new(dir.path(), "a").unwrap();
        assert_eq!(again.load_state().unwrap().as_deref(), Some(&b"newer"[..]));
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn a_recycled_file_is_published_empty_until_its_first_commit() {
        let dir = tempfile::tempdir().unwrap();
        let live = LiveEnds::new();
        let store = FsLogStore::new(dir.path(), "a")
            .unwrap()
            .with_spares(1)
            .with_live_ends(Some(live.clone()));
        store.create(1).unwrap();
        std::fs::write(dir.path().join("log-000000001-a"), vec![7u8; 8192]).unwrap();
        store.remove(1).unwrap();
        store.create(2).unwrap();
        let path = dir.path().join("log-000000002-a");
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            8192,
            "a spare was reused"
        );
        assert_eq!(live.get(&path), Some(0), "stale bytes must not be served");
        store.durable(2, 4096);
        assert_eq!(live.get(&path), Some(4096));
    }

    #[test]
    fn files_are_named_after_the_creator_and_found_whatever_their_creator() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsLogStore::new(dir.path(), "node-b").unwrap();
        assert_eq!(store.dir(), dir.path());
        // A log fetched from another node keeps its name; other names are ignored.
        std::fs::write(dir.path().join("log-000000001-node-a"), b"one").unwrap();
        for other in ["log-000000009", "log-x-a", "state.tmp", "notes"] {
            std::fs::write(dir.path().join(other), b"").unwrap();
        }
        store.create(2).unwrap();
        assert!(dir.path().join("log-000000002-node-b").exists());
        assert_eq!(store.list().unwrap(), [1, 2]);
        assert_eq!(store.name(1), Some(LogName::new(1, "node-a")));
        assert_eq!(store.name(2), Some(LogName::new(2, "node-b")));
        assert_eq!(store.name(3), None);
        assert_eq!(store.open(1).unwrap().1, 3);
        assert!(store.describe(1).ends_with("/log-000000001-node-a"));
        assert!(store.describe(3).ends_with("/log-000000003-node-b"));
        store.truncate(1, 1).unwrap();
        assert_eq!(store.open(1).unwrap().1, 1);
        store.remove(1).unwrap();
        assert!(!dir.path().join("log-000000001-node-a").exists());
        assert_eq!(store.open(1).err().unwrap().errno(), 2);
        // Creating a sequence number another node's file holds would make a split brain.
        std::fs::write(dir.path().join("log-000000003-node-a"), b"").unwrap();
        let e = store.create(3).err().unwrap().to_string();
        assert!(e.contains("log-000000003-node-a"), "{e}");
        assert!(FsLogStore::new(dir.path(), "-bad").is_err());
        assert!(FsLogStore::new(dir.path(), "a/b").is_err());
    }

    #[test]
    fn two_creators_of_one_sequence_number_are_a_split_brain() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsLogStore::new(dir.path(), "a").unwrap();
        std::fs::write(dir.path().join("log-000000001-a"), b"").unwrap();
        std::fs::write(dir.path().join("log-000000002-a"), b"").unwrap();
        std::fs::write(dir.path().join("log-000000002-b"), b"").unwrap();
        match store.logs().unwrap_err() {
            LoggerError::SplitBrain { first, second } => {
                assert!(first.ends_with("/log-000000002-a"), "{first}");
                assert!(second.ends_with("/log-000000002-b"), "{second}");
            }
            e => panic!("{e}"),
        }
        let msg = store.list().unwrap_err().to_string();
        assert!(
            msg.contains("log-000000002-a")
                && msg.contains("log-000000002-b")
                && msg.contains("two logs with the same sequence number from different creators (split brain): resolve it before using this directory"),
            "{msg}"
        );
        for e in [
            store.open(2).err().unwrap(),
            store.remove(2).unwrap_err(),
            store.truncate(2, 0).unwrap_err(),
        ] {
            assert!(e.to_string().contains("split brain"), "{e}");
        }
        assert_eq!(store.name(2), None);
        // Other sequence numbers still work.
        assert_eq!(store.name(1), Some(LogName::new(1, "a")));
        store.open(1).unwrap();
    }
}
