//! # Fault injection for crash tests
//!
//! [`FaultDisk`] wraps an [`Output`] (usually an inline [`brick_core::bricks::MemDisk`]) and
//! remembers, for every write not yet covered by a completed flush, the sectors it replaced.
//! [`FaultDisk::crash`] then decides **per 512-byte sector** which of those versions survive
//! (all dropped, all kept, or a random mixture: a torn write), freezes the disk (every later
//! request fails with EIO, nothing reaches the medium) and [`FaultDisk::reboot`] hands out a
//! fresh, working view of the same medium. Requests are executed synchronously, one at a time,
//! so the recorded pre-images are exact. [`MemLogStore`] is a crashable in-memory log directory
//! built from such disks.

mod store;

pub use store::MemLogStore;

use brick_core::{
    Aio, Brick, Error, Info, Op, Output, Power, PowerState, Rejected, Result, Stats, StatsSnapshot,
};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

/// Sector size of tearing.
pub const SECTOR: u64 = 512;

/// What survives a crash of the writes that were not covered by a completed flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// None of them (a write-back cache lost everything).
    DropAll,
    /// All of them (the cache happened to be written out).
    KeepAll,
    /// A random version per sector (torn writes), chosen by the seed.
    Tear,
}

/// What a crash did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Sectors that had unsynced writes.
    pub sectors: u64,
    /// Sectors that went back to an older version.
    pub reverted: u64,
}

struct Unsynced {
    first_sector: u64,
    pre: Vec<u8>,
}

/// A disk that can crash. See the module docs.
pub struct FaultDisk {
    name: String,
    inner: Arc<dyn Output>,
    pending: Mutex<Vec<Unsynced>>,
    frozen: AtomicBool,
    write_limit: AtomicU64,
    write_align: AtomicU64,
    power: Power,
    stats: Stats,
}

impl FaultDisk {
    /// Wrap `inner`.
    pub fn new(name: impl Into<String>, inner: Arc<dyn Output>) -> Arc<FaultDisk> {
        Arc::new(FaultDisk {
            name: name.into(),
            inner,
            pending: Mutex::new(Vec::new()),
            frozen: AtomicBool::new(false),
            write_limit: AtomicU64::new(u64::MAX),
            write_align: AtomicU64::new(1),
            power: Power::on(),
            stats: Stats::new(),
        })
    }

    /// Fail writes that reach beyond `limit` bytes with ENOSPC (a full file system).
    pub fn fail_writes_beyond(&self, limit: u64) {
        self.write_limit.store(limit, SeqCst);
    }

    /// Fail mutations whose offset or length is not a multiple of `align` with `Invalid`, as
    /// a file opened with `O_DIRECT` does (reads stay free: readers use buffered handles).
    pub fn require_aligned_writes(&self, align: u64) {
        self.write_align.store(align.max(1), SeqCst);
    }

    /// Number of writes not yet covered by a flush.
    pub fn unsynced(&self) -> usize {
        self.pending.lock().len()
    }

    /// Crash: keep, drop or tear the unsynced writes per sector, then freeze.
    pub fn crash(&self, seed: u64, mode: CrashMode) -> CrashReport {
        let mut pending = self.pending.lock();
        self.frozen.store(true, SeqCst);
        let mut versions: BTreeMap<u64, Vec<&[u8]>> = BTreeMap::new();
        for u in pending.iter() {
            for (i, sector) in u.pre.chunks(SECTOR as usize).enumerate() {
                versions
                    .entry(u.first_sector + i as u64)
                    .or_default()
                    .push(sector);
            }
        }
        let mut rng = seed ^ 0x9e37_79b9_7f4a_7c15;
        let mut report = CrashReport::default();
        for (sector, pres) in &versions {
            report.sectors += 1;
            let m = pres.len() as u64;
            let keep = match mode {
                CrashMode::DropAll => 0,
                CrashMode::KeepAll => m,
                CrashMode::Tear => next(&mut rng) % (m + 1),
            };
            if keep < m {
                report.reverted += 1;
                let req = Aio::write(sector * SECTOR, pres[keep as usize].to_vec());
                let _ = brick_core::run(&*self.inner, req);
            }
        }
        pending.clear();
        report
    }

    /// Whether the disk crashed.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(SeqCst)
    }

    /// A working view of the same medium after a crash (nothing unsynced).
    pub fn reboot(&self) -> Arc<FaultDisk> {
        let d = FaultDisk::new(self.name.clone(), self.inner.clone());
        d.write_limit.store(self.write_limit.load(SeqCst), SeqCst);
        d.write_align.store(self.write_align.load(SeqCst), SeqCst);
        d
    }

    fn execute(&self, req: &mut Aio) -> Result<()> {
        let mut pending = self.pending.lock();
        if self.frozen.load(SeqCst) {
            return Err(Error::Os {
                errno: 5,
                context: "using a crashed disk",
            });
        }
        if req.op.is_mutation() {
            let end = req.end().ok_or(Error::Invalid("pos + len overflows"))?;
            let align = self.write_align.load(SeqCst);
            if !req.pos.is_multiple_of(align) || !(req.len as u64).is_multiple_of(align) {
                return Err(Error::Invalid(
                    "unaligned write to a fault disk that models O_DIRECT",
                ));
            }
            if end > self.write_limit.load(SeqCst) {
                return Err(Error::NoSpace {
                    context: "writing to a fault disk",
                });
            }
            let size = self.inner.info()?.size;
            req.check_range(size)?;
            let a = req.pos / SECTOR * SECTOR;
            let b = end.div_ceil(SECTOR).saturating_mul(SECTOR).min(size);
            if b > a {
                let pre = brick_core::read_all(&*self.inner, a, (b - a) as usize)?;
                pending.push(Unsynced {
                    first_sector: a / SECTOR,
                    pre,
                });
            }
        }
        let mut inner = Aio::new(req.op, req.pos, req.len);
        inner.flags = req.flags;
        inner.data = std::mem::take(&mut req.data);
        let result = brick_core::submit_wait(&*self.inner, inner);
        if req.op == Op::Flush {
            if let Ok(done) = &result {
                if done.error.is_none() {
                    pending.clear();
                }
            }
        }
        match result {
            Ok(mut done) => {
                req.data = std::mem::take(&mut done.data);
                done.error.map_or(Ok(()), Err)
            }
            Err(e) => Err(e),
        }
    }
}

fn next(state: &mut u64) -> u64 {
    // splitmix64
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Output for FaultDisk {
    fn info(&self) -> Result<Info> {
        self.inner.info()
    }

    fn prepare(&self, req: &mut Aio) -> Result<()> {
        self.inner.prepare(req)
    }

    fn submit(&self, mut req: Box<Aio>) -> Result<(), Rejected> {
        if let Err(e) = self.power.enter(&self.name) {
            return Err(Rejected::new(req, e));
        }
        self.stats.on_submit();
        let started = std::time::Instant::now();
        let result = self.execute(&mut req);
        self.stats
            .on_complete(req.len as u64, started.elapsed(), result.is_err());
        self.power.leave();
        req.finish(result);
        Ok(())
    }
}

impl Brick for FaultDisk {
    fn name(&self) -> &str {
        &self.name
    }
    fn switch(&self, on: bool) -> Result<()> {
        if on {
            self.power.switch_on(|| Ok(()))
        } else {
            self.power.switch_off(&self.name, || Ok(()))
        }
    }
    fn power(&self) -> PowerState {
        self.power.state()
    }
    fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brick_core::bricks::{MemDisk, MemDiskMode};

    #[test]
    fn unsynced_writes_drop_and_synced_survive() {
        let mem = MemDisk::new("m", 8192, MemDiskMode::Inline);
        let d = FaultDisk::new("f", mem.clone());
        brick_core::write_all(&*d, 0, &[1u8; 1024]).unwrap();
        brick_core::run(&*d, Aio::new(Op::Flush, 0, 0)).unwrap();
        brick_core::write_all(&*d, 512, &[2u8; 1024]).unwrap();
        brick_core::write_all(&*d, 1024, &[3u8; 100]).unwrap();
        d.crash(1, CrashMode::DropAll);
        assert!(brick_core::read_all(&*d, 0, 10).is_err(), "frozen");
        let d = d.reboot();
        let got = brick_core::read_all(&*d, 0, 2048).unwrap();
        assert_eq!(&got[..1024], &[1u8; 1024][..]);
        assert_eq!(&got[1024..], &[0u8; 1024][..]);
    }

    #[test]
    fn tearing_picks_a_written_version_per_sector() {
        for seed in 0..50 {
            let mem = MemDisk::new("m", 4096, MemDiskMode::Inline);
            let d = FaultDisk::new("f", mem.clone());
            brick_core::write_all(&*d, 0, &[1u8; 4096]).unwrap();
            brick_core::write_all(&*d, 0, &[2u8; 4096]).unwrap();
            d.crash(seed, CrashMode::Tear);
            let got = mem.contents();
            for s in got.chunks(512) {
                assert!(
                    s.iter().all(|&b| b == s[0]) && s[0] <= 2,
                    "sector mixes versions"
                );
            }
        }
    }
}
