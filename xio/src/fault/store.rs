//! [`MemLogStore`]: an in-memory [`LogStore`] whose files are [`FaultDisk`]s, so that a test can
//! crash the whole log directory (files torn per sector, state file atomic) and reboot it.

use super::{CrashMode, CrashReport, FaultDisk};
use crate::logger::LogStore;
use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::{Aio, Error, Op, Output, Result};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

struct Medium {
    files: Mutex<BTreeMap<u64, Arc<MemDisk>>>,
    /// Removed files kept for reuse, with their stale bytes (as `FsLogStore`'s spares).
    spares: Mutex<Vec<Arc<MemDisk>>>,
    reused: AtomicU64,
    state: Mutex<Option<Vec<u8>>>,
    capacity: usize,
    write_limit: AtomicU64,
}

/// A crashable in-memory log directory. Files have a fixed capacity (their "length" is the
/// capacity: the scanner sees zeroes after the last write, as after a clean end).
#[derive(Clone)]
pub struct MemLogStore {
    medium: Arc<Medium>,
    frozen: Arc<AtomicBool>,
    disks: Arc<Mutex<BTreeMap<u64, Arc<FaultDisk>>>>,
    /// The creator in the files' names ([`MemLogStore::DEFAULT_CREATOR`] unless set).
    creator: String,
    /// Writes to the files must be multiples of this (1: any; see [`MemLogStore::direct`]).
    write_align: u64,
    /// Removed files kept for reuse, at most ([`MemLogStore::with_spares`]).
    max_spares: usize,
}

impl MemLogStore {
    /// The creator of the files of a store made by [`MemLogStore::new`].
    pub const DEFAULT_CREATOR: &'static str = "mem";

    /// An empty store whose files hold `capacity` bytes each.
    pub fn new(capacity: usize) -> MemLogStore {
        MemLogStore {
            medium: Arc::new(Medium {
                files: Mutex::new(BTreeMap::new()),
                spares: Mutex::new(Vec::new()),
                reused: AtomicU64::new(0),
                state: Mutex::new(None),
                capacity,
                write_limit: AtomicU64::new(u64::MAX),
            }),
            frozen: Arc::new(AtomicBool::new(false)),
            disks: Arc::new(Mutex::new(BTreeMap::new())),
            creator: MemLogStore::DEFAULT_CREATOR.into(),
            write_align: 1,
            max_spares: 0,
        }
    }

    /// Recycle log files as `FsLogStore` does: keep up to `n` removed files and make them
    /// later files again, stale bytes and all, with their first 4 KiB zeroed (durably, before
    /// the file appears under its new number).
    pub fn with_spares(mut self, n: usize) -> MemLogStore {
        self.max_spares = n;
        self
    }

    /// Files created from a spare so far (on this medium, across reboots).
    pub fn reused(&self) -> u64 {
        self.medium.reused.load(SeqCst)
    }

    /// Model log files opened with `O_DIRECT`: writes that are not multiples of `align` (in
    /// offset and length) fail, as they would on a real device.
    pub fn direct(mut self, align: u64) -> MemLogStore {
        self.write_align = align;
        self
    }

    /// Name the files after `creator` instead.
    pub fn with_creator(mut self, creator: impl Into<String>) -> MemLogStore {
        self.creator = creator.into();
        self
    }

    /// Make writes beyond `limit` bytes of any log file fail with ENOSPC.
    pub fn fail_writes_beyond(&self, limit: u64) {
        self.medium.write_limit.store(limit, SeqCst);
        for d in self.disks.lock().values() {
            d.fail_writes_beyond(limit);
        }
    }

    /// Crash every file (see [`FaultDisk::crash`]) and freeze this view of the store.
    pub fn crash(&self, seed: u64, mode: CrashMode) -> CrashReport {
        let _state = self.medium.state.lock();
        self.frozen.store(true, SeqCst);
        let mut total = CrashReport::default();
        for (seq, d) in self.disks.lock().iter() {
            let r = d.crash(seed ^ seq.wrapping_mul(0x1000_0001), mode);
            total.sectors += r.sectors;
            total.reverted += r.reverted;
        }
        total
    }

    /// A working view of the same medium after a crash.
    pub fn reboot(&self) -> MemLogStore {
        MemLogStore {
            medium: self.medium.clone(),
            frozen: Arc::new(AtomicBool::new(false)),
            disks: Arc::new(Mutex::new(BTreeMap::new())),
            creator: self.creator.clone(),
            write_align: self.write_align,
            max_spares: self.max_spares,
        }
    }

    /// Raw bytes of log file `seq` (for corruption tests).
    pub fn raw(&self, seq: u64) -> Option<Arc<MemDisk>> {
        self.medium.files.lock().get(&seq).cloned()
    }

    fn check(&self) -> Result<()> {
        if self.frozen.load(SeqCst) {
            return Err(Error::Os {
                errno: 5,
                context: "using a crashed log store",
            });
        }
        Ok(())
    }

    fn disk(&self, seq: u64) -> Result<Arc<FaultDisk>> {
        let mem = self
            .medium
            .files
            .lock()
            .get(&seq)
            .cloned()
            .ok_or(Error::Os {
                errno: 2,
                context: "opening a log file that does not exist",
            })?;
        let mut disks = self.disks.lock();
        let d = disks
            .entry(seq)
            .or_insert_with(|| {
                let d = FaultDisk::new(self.describe(seq), mem);
                d.fail_writes_beyond(self.medium.write_limit.load(SeqCst));
                d.require_aligned_writes(self.write_align);
                d
            })
            .clone();
        Ok(d)
    }
}

impl LogStore for MemLogStore {
    fn list(&self) -> Result<Vec<u64>> {
        self.check()?;
        Ok(self.medium.files.lock().keys().copied().collect())
    }

    fn create(&self, seq: u64) -> Result<Arc<dyn Output>> {
        self.check()?;
        {
            let mut files = self.medium.files.lock();
            if files.contains_key(&seq) {
                return Err(Error::Os {
                    errno: 17,
                    context: "creating a log file that exists",
                });
            }
            let file = match self.medium.spares.lock().pop() {
                Some(spare) => {
                    brick_core::write_all(&*spare, 0, &[0u8; 4096])?;
                    self.medium.reused.fetch_add(1, SeqCst);
                    spare
                }
                None => MemDisk::new(
                    self.describe(seq),
                    self.medium.capacity,
                    MemDiskMode::Inline,
                ),
            };
            files.insert(seq, file);
        }
        Ok(self.disk(seq)?)
    }

    fn open(&self, seq: u64) -> Result<(Arc<dyn Output>, u64)> {
        self.check()?;
        Ok((self.disk(seq)?, self.medium.capacity as u64))
    }

    fn truncate(&self, seq: u64, len: u64) -> Result<()> {
        self.check()?;
        let d = self.disk(seq)?;
        let cap = self.medium.capacity as u64;
        if len < cap {
            // On the medium itself: cutting a file is no (aligned) write through the file.
            let mem = self.raw(seq).ok_or(Error::Os {
                errno: 2,
                context: "sealing a log file that does not exist",
            })?;
            brick_core::write_all(&*mem, len, &vec![0u8; (cap - len) as usize])?;
        }
        brick_core::run(&*d, Aio::new(Op::Flush, 0, 0)).map(|_| ())
    }

    fn remove(&self, seq: u64) -> Result<()> {
        self.check()?;
        let gone = self.medium.files.lock().remove(&seq);
        self.disks.lock().remove(&seq);
        let mut spares = self.medium.spares.lock();
        if let Some(file) = gone.filter(|_| spares.len() < self.max_spares) {
            spares.push(file);
        }
        Ok(())
    }

    fn load_state(&self) -> Result<Option<Vec<u8>>> {
        self.check()?;
        Ok(self.medium.state.lock().clone())
    }

    fn store_state(&self, bytes: &[u8]) -> Result<()> {
        let mut st = self.medium.state.lock();
        self.check()?;
        *st = Some(bytes.to_vec());
        Ok(())
    }

    fn describe(&self, seq: u64) -> String {
        format!(
            "mem:{}",
            crate::log::LogName::new(seq, self.creator.as_str())
        )
    }
}
