//! [`CsumDisk`]: the checksum brick in front of a data device.
//!
//! Invariants:
//! - A block's stored checksum is the checksum of what the last completed write put there;
//!   a block written partially, by two overlapping writes at once, or by a failed write is
//!   *unknown* (never a false alarm).
//! - Before a write reaches a region (4 MiB) that is clean in the intent bitmap, the region's
//!   bit is durable in the checksum file; a region's bit is cleared only at a flush after a
//!   whole flush interval without writes to it, so after a crash every region whose data and
//!   checksums may disagree has its bit set, and opening recomputes its checksums from the
//!   data (which the log replay then rewrites, with checksums, where it must).
//! - A read that raced with a write to its region is never failed.

use super::format::{self, block_sum, BLOCK};
use super::store::{CsumFile, Entry, Table};
use brick_core::{
    Aio, Aspect, Brick, Completer, Error, Flags, Info, Op, Output, Power, PowerState, Rejected,
    Result, Slot, Stats, StatsSnapshot,
};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// How many recent mismatches a [`CsumDisk`] remembers for `view`.
const ALERTS: usize = 16;

/// Counters and state of a checksum brick (for `view` and metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsumStatus {
    /// Blocks whose checksum is known, of all blocks.
    pub known: u64,
    /// All blocks of the device.
    pub blocks: u64,
    /// Reads failed with EIO because the data did not match its checksum.
    pub read_mismatches: u64,
    /// Damaged pages of the checksum file (their blocks cannot be verified).
    pub bad_table_pages: u64,
    /// Whether reads are verified.
    pub verify_reads: bool,
    /// The last mismatches (newest last), as operator messages.
    pub alerts: Vec<String>,
    /// Regions whose checksums were recomputed when this brick opened (unclean shutdown).
    pub recovered_regions: u64,
}

#[derive(Default)]
struct Region {
    inflight: u32,
    /// Its intent bit is set in the file (durably).
    durable: bool,
    /// Written since the last flush.
    touched: bool,
    /// Epoch of the last write submitted to it or completed in it.
    last_write: u64,
}

pub(crate) struct State {
    pub(crate) table: Table,
    /// Writes in flight per block, and whether two of them overlapped.
    inflight: HashMap<u64, (u32, bool)>,
    regions: Vec<Region>,
    epoch: u64,
}

impl State {
    /// Whether block `b`'s data may be changing or changed since `epoch` (a read or scrub
    /// that started at `epoch` cannot judge it).
    pub(crate) fn racy(&self, b: u64, epoch: u64) -> bool {
        let r = &self.regions[self.region_of(b)];
        self.inflight.contains_key(&b) || r.last_write > epoch || r.inflight > 0
    }

    /// The epoch now (a scrub or read starting now compares against it).
    pub(crate) fn epoch_now(&self) -> u64 {
        self.epoch
    }

    fn region_of(&self, b: u64) -> usize {
        ((b * BLOCK / self.table.header.region) as usize).min(self.regions.len() - 1)
    }
}

#[derive(Default)]
struct CsumAspect {
    /// Per covered block of a write: its checksum (0: unknown).
    sums: Vec<u32>,
    first: u64,
    /// Epoch when a read was submitted.
    epoch: u64,
    /// The blocks of the request are tracked (writes: in `inflight` and the regions).
    tracked: bool,
}
impl Aspect for CsumAspect {}

pub(crate) struct Core {
    pub(crate) name: String,

    slot: Slot<CsumAspect>,
    stats: Stats,
    power: Power,
    pub(crate) inner: Arc<dyn Output>,
    pub(crate) state: Mutex<State>,
    /// The file, held by whoever writes it: flushes (serialized by it) and intent marks.
    file: Mutex<CsumFile>,
    verify_reads: AtomicBool,
    read_mismatches: AtomicU64,
    alerts: Mutex<VecDeque<String>>,
    recovered_regions: u64,
    zero_sum: u32,
    /// The flush thread (started with the first flush, ended when idle) and its queue.
    flush_thread: FlushThread,
    /// [`CsumDisk::kill`]: nothing more is persisted.
    killed: std::sync::atomic::AtomicBool,
}

#[path = "flusher.rs"]
mod flusher;
use flusher::FlushThread;

/// Per-block checksums of a data device, kept in a checksum file; verified reads. See the
/// module docs and `FORMAT.md`.
///
/// A flush completes on the brick's flush thread (started with the first flush): the device
/// is flushed, then the checksums that changed are persisted. `submit` blocks only for the
/// first write into a clean region (an `fdatasync` of the checksum file for its intent bit):
/// call it from threads that may block (writeback, replay, sync, NBD connections), not from an
/// io_uring completion thread.
pub struct CsumDisk {
    core: Arc<Core>,
}

impl CsumDisk {
    /// Put checksums in front of `inner` (the device called `device` in messages), kept in
    /// the file `path` (created when missing, grown when the device grew). Regions that were
    /// being written when the last run ended get their checksums recomputed from the data now.
    pub fn open(
        inner: Arc<dyn Output>,
        device: &str,
        path: &Path,
        verify_reads: bool,
    ) -> Result<Arc<CsumDisk>> {
        let name = device.to_string();
        let size = inner.info()?.size;
        let fail = |message: String| Error::Brick {
            brick: name.clone(),
            message,
        };
        let mut o = CsumFile::open(path, size).map_err(fail)?;
        let header = o.table.header;
        let regions: Vec<Region> = (0..header.regions()).map(|_| Region::default()).collect();
        for &r in &o.dirty_regions {
            relearn_region(&*inner, &mut o.table, r).map_err(|e| {
                fail(format!(
                    "recomputing the checksums of region {r} after an unclean shutdown: {e}"
                ))
            })?;
        }
        if !o.dirty_regions.is_empty() {
            tracing::warn!(file = %name, regions = o.dirty_regions.len(),
                "checksums of regions written when the last run ended were recomputed from the data");
        }
        let pages = o.table.take_dirty();
        o.file
            .write_table_pages(&pages)
            .and_then(|()| o.file.write_bitmap(|_| false))
            .and_then(|()| o.file.sync())
            .map_err(fail)?;
        Ok(Arc::new(CsumDisk {
            core: Arc::new(Core {
                name,
                slot: Slot::new(),
                stats: Stats::new(),
                power: Power::on(),
                inner,
                state: Mutex::new(State {
                    table: o.table,
                    inflight: HashMap::new(),
                    regions,
                    epoch: 0,
                }),
                file: Mutex::new(o.file),
                verify_reads: AtomicBool::new(verify_reads),
                read_mismatches: AtomicU64::new(0),
                alerts: Mutex::new(VecDeque::new()),
                recovered_regions: o.dirty_regions.len() as u64,
                zero_sum: block_sum(&[0u8; BLOCK as usize]),
                flush_thread: flusher::flush_thread(),
                killed: std::sync::atomic::AtomicBool::new(false),
            }),
        }))
    }

    /// Switch verified reads on or off.
    pub fn set_verify_reads(&self, on: bool) {
        self.core.verify_reads.store(on, Ordering::Relaxed);
    }

    /// Counters and state.
    pub fn status(&self) -> CsumStatus {
        let st = self.core.state.lock();
        let (known, blocks) = st.table.known();
        CsumStatus {
            known,
            blocks,
            read_mismatches: self.core.read_mismatches.load(Ordering::Relaxed),
            bad_table_pages: st.table.bad_pages().len() as u64,
            verify_reads: self.core.verify_reads.load(Ordering::Relaxed),
            alerts: self.core.alerts.lock().iter().cloned().collect(),
            recovered_regions: self.core.recovered_regions,
        }
    }

    /// Reads failed because the data did not match its checksum, and the last such error
    /// (cheap: for polling every round; [`CsumDisk::status`] counts the whole table).
    pub fn read_errors(&self) -> (u64, Option<String>) {
        let last = self.core.alerts.lock().back().cloned();
        (self.core.read_mismatches.load(Ordering::Relaxed), last)
    }

    /// The device grew to `size` bytes (already visible below): grow the checksum file (the
    /// new blocks are unknown until written).
    pub fn grow(&self, size: u64) -> Result<()> {
        let core = &self.core;
        let fail = |message: String| Error::Brick {
            brick: core.name.clone(),
            message,
        };
        let mut file = core.file.lock();
        // Under both locks nothing changes the table: persist it, then rebuild the file
        // larger from what is on disk (the same), intent bits included.
        let mut st = core.state.lock();
        if size <= st.table.header.device_size {
            return Ok(());
        }
        let pages = st.table.take_dirty();
        file.write_table_pages(&pages)
            .and_then(|()| file.sync())
            .map_err(fail)?;
        let o = file.grown(size).map_err(fail)?;
        let regions = o.table.header.regions() as usize;
        st.table = o.table;
        st.regions.resize_with(regions, Region::default);
        *file = o.file;
        Ok(())
    }

    /// Stop as a crash would (tests): when dropped, nothing more is persisted.
    pub fn kill(&self) {
        self.core.killed.store(true, Ordering::Release);
    }

    /// Flush the device and persist every checksum; clear every intent bit (a clean end).
    pub fn close(&self) -> Result<()> {
        self.core.flush(true)
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }
}

impl Drop for CsumDisk {
    fn drop(&mut self) {
        // The flush thread handles what is queued and ends.
        self.core.flush_thread.stop();
        if self.core.killed.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.core.flush(true) {
            tracing::warn!(file = %self.core.name, "checksums not persisted at close: {e}; the next start recomputes what was being written");
        }
    }
}

/// Recompute the checksums of region `r` from the data (blocks of damaged pages stay so).
fn relearn_region(inner: &dyn Output, table: &mut Table, r: u64) -> Result<()> {
    let h = table.header;
    let start = r * h.region;
    let end = (start + h.region).min(h.device_size);
    let mut pos = start;
    while pos < end {
        let len = (end - pos).min(1 << 20) as usize;
        let data = brick_core::read_all(inner, pos, len)?;
        for (i, blk) in data.chunks(BLOCK as usize).enumerate() {
            let b = pos / BLOCK + i as u64;
            if table.get(b) != Entry::BadPage {
                table.set(b, block_sum(blk));
            }
        }
        pos += len as u64;
    }
    Ok(())
}

impl Core {
    /// The blocks `[first, end)` a request touches, within the table.
    fn blocks(&self, st: &State, pos: u64, len: u64) -> (u64, u64) {
        let n = st.table.header.blocks();
        ((pos / BLOCK).min(n), (pos + len).div_ceil(BLOCK).min(n))
    }

    /// Checksums a mutation leaves in the blocks it covers (0 where not known).
    fn sums_of(&self, req: &Aio, first: u64, end: u64, size: u64) -> Vec<u32> {
        (first..end)
            .map(|b| {
                let (bs, be) = (b * BLOCK, ((b + 1) * BLOCK).min(size));
                let whole = req.pos <= bs && req.pos + req.len as u64 >= be;
                match (req.op, whole) {
                    (Op::Write, true) => {
                        let off = (bs - req.pos) as usize;
                        req.data
                            .get(off..off + (be - bs) as usize)
                            .map_or(0, block_sum)
                    }
                    (Op::WriteZeroes, true) if be - bs == BLOCK => self.zero_sum,
                    (Op::WriteZeroes, true) => block_sum(&vec![0u8; (be - bs) as usize]),
                    // A discarded block may read as anything the device likes.
                    _ => 0,
                }
            })
            .collect()
    }

    fn submit_mutation(self: &Arc<Self>, mut req: Box<Aio>) -> Result<(), Rejected> {
        let (first, end, size) = {
            let st = self.state.lock();
            let (f, e) = self.blocks(&st, req.pos, req.len as u64);
            (f, e, st.table.header.device_size)
        };
        let sums = self.sums_of(&req, first, end, size);
        let mut fresh = Vec::new();
        {
            let mut st = self.state.lock();
            st.epoch += 1;
            let epoch = st.epoch;
            for b in first..end {
                let e = st.inflight.entry(b).or_insert((0, false));
                e.1 |= e.0 > 0;
                e.0 += 1;
            }
            if first < end {
                let (r0, r1) = (st.region_of(first), st.region_of(end - 1));
                for r in r0..=r1 {
                    let reg = &mut st.regions[r];
                    reg.inflight += 1;
                    reg.touched = true;
                    reg.last_write = epoch;
                    if !reg.durable {
                        fresh.push(r);
                    }
                }
            }
        }
        if !fresh.is_empty() {
            if let Err(e) = self.mark_intent(&fresh) {
                // Without the intent bit a crash could leave data and checksum disagreeing
                // unnoticed: make these blocks unknown instead of risking a false alarm.
                tracing::error!(file = %self.name, "cannot record write intent: {e}; the checksums of this write are dropped");
                let mut st = self.state.lock();
                for b in first..end {
                    if let Some(e) = st.inflight.get_mut(&b) {
                        e.1 = true;
                    }
                }
            }
        }
        let a = req.aspect(&self.slot);
        a.sums = sums;
        a.first = first;
        a.tracked = true;
        self.forward(req)
    }

    /// Set the intent bits of `regions` durably (one `fdatasync` for all of them). The file
    /// lock is held until the bits are marked durable in memory too, so that a flush cannot
    /// write a bitmap without them in between (lock order: file, then state).
    fn mark_intent(&self, regions: &[usize]) -> std::result::Result<(), String> {
        let file = self.file.lock();
        let (todo, pages) = {
            let st = self.state.lock();
            let todo: Vec<usize> = regions
                .iter()
                .copied()
                .filter(|&r| !st.regions[r].durable)
                .collect();
            let mut pages: Vec<u64> = todo
                .iter()
                .map(|&r| r as u64 / format::BITS_PER_PAGE)
                .collect();
            pages.dedup();
            // The bits of the bitmap pages to write (only those: a large device has many).
            let pages: Vec<(u64, Vec<bool>)> = pages
                .into_iter()
                .map(|p| {
                    let first = (p * format::BITS_PER_PAGE) as usize;
                    let end = (first + format::BITS_PER_PAGE as usize).min(st.regions.len());
                    let bits = (first..end)
                        .map(|r| st.regions[r].durable || todo.contains(&r))
                        .collect();
                    (p, bits)
                })
                .collect();
            (todo, pages)
        };
        if todo.is_empty() {
            return Ok(());
        }
        for (p, bits) in &pages {
            let first = p * format::BITS_PER_PAGE;
            file.write_bitmap_for(first, |r| bits[(r - first) as usize])?;
        }
        file.sync()?;
        let mut st = self.state.lock();
        for r in todo {
            st.regions[r].durable = true;
        }
        Ok(())
    }

    fn forward(self: &Arc<Self>, mut req: Box<Aio>) -> Result<(), Rejected> {
        req.push_hook(self.clone());
        self.inner.submit(req).map_err(|mut rej| {
            rej.req.pop_hook();
            self.untrack(&mut rej.req, false);
            self.power.leave();
            rej
        })
    }

    /// A mutation is done (or was rejected): record its checksums, release its blocks.
    fn untrack(&self, req: &mut Aio, ok: bool) {
        let a = req.aspect(&self.slot);
        if !std::mem::take(&mut a.tracked) {
            return;
        }
        let (first, sums) = (a.first, std::mem::take(&mut a.sums));
        let mut st = self.state.lock();
        for (i, sum) in sums.iter().enumerate() {
            let b = first + i as u64;
            let overlapped = match st.inflight.get_mut(&b) {
                Some(e) => {
                    e.0 -= 1;
                    let o = e.1;
                    if e.0 == 0 {
                        st.inflight.remove(&b);
                    }
                    o
                }
                None => true,
            };
            st.table.set(b, if ok && !overlapped { *sum } else { 0 });
        }
        if !sums.is_empty() {
            // A completion is a change too: a read that started while this write was in
            // flight may have seen either version.
            st.epoch += 1;
            let epoch = st.epoch;
            let end = first + sums.len() as u64;
            let (r0, r1) = (st.region_of(first), st.region_of(end - 1));
            for r in r0..=r1 {
                st.regions[r].inflight -= 1;
                st.regions[r].last_write = epoch;
            }
        }
    }

    /// Verify a completed read; `Some(error)` for the first damaged block.
    fn verify(&self, req: &mut Aio) -> Option<Error> {
        if !self.verify_reads.load(Ordering::Relaxed) || req.data.len() < req.len {
            return None;
        }
        let epoch = req.aspect(&self.slot).epoch;
        let (pos, len) = (req.pos, req.len as u64);
        let first = pos.div_ceil(BLOCK);
        let expect: Vec<(u64, u32, usize)> = {
            let st = self.state.lock();
            let size = st.table.header.device_size;
            (first..st.table.header.blocks())
                .map(|b| (b, ((b + 1) * BLOCK).min(size)))
                .take_while(|&(_, end)| end <= pos + len)
                .filter_map(|(b, end)| match st.table.get(b) {
                    Entry::Known(s) => Some((b, s, (end - b * BLOCK) as usize)),
                    _ => None,
                })
                .collect()
        };
        for (b, want, blen) in expect {
            let off = (b * BLOCK - pos) as usize;
            if block_sum(&req.data[off..off + blen]) == want {
                continue;
            }
            // Judge only what did not change under the read.
            if self.state.lock().racy(b, epoch) {
                continue;
            }
            self.read_mismatches.fetch_add(1, Ordering::Relaxed);
            let e = Error::Checksum {
                device: self.name.clone(),
                pos: b * BLOCK,
                len: blen as u64,
            };
            tracing::error!("{e}");
            let mut alerts = self.alerts.lock();
            if alerts.len() >= ALERTS {
                alerts.pop_front();
            }
            alerts.push_back(e.to_string());
            return Some(e);
        }
        None
    }

    /// Complete a flush this brick admitted.
    fn finish_flush(&self, req: Box<Aio>, r: Result<()>) {
        self.stats
            .on_complete(0, std::time::Duration::ZERO, r.is_err());
        self.power.leave();
        req.finish(r);
    }

    /// Flush the device, then persist the checksums that changed and clear the intent bits
    /// of regions that were not written for a whole flush interval (`all`: of every region
    /// without writes in flight). Serialized: one flush at a time.
    pub(crate) fn flush(&self, all: bool) -> Result<()> {
        let file = self.file.lock();
        // This thread waits anyway: the device may flush on it (see `Flags::MAY_BLOCK`).
        let mut req = Aio::new(Op::Flush, 0, 0);
        req.flags = Flags::MAY_BLOCK;
        brick_core::run(&*self.inner, req)?;
        let (pages, bits) = {
            let mut st = self.state.lock();
            let mut changed = false;
            for r in &mut st.regions {
                if r.durable && r.inflight == 0 && (all || !r.touched) {
                    r.durable = false;
                    changed = true;
                }
                r.touched = false;
            }
            // The whole bitmap is rewritten only when a bit was cleared.
            let bits: Option<Vec<bool>> =
                changed.then(|| st.regions.iter().map(|r| r.durable).collect());
            (st.table.take_dirty(), bits)
        };
        let persisted = file.write_table_pages(&pages).and_then(|()| {
            if let Some(bits) = &bits {
                file.write_bitmap(|r| bits[r as usize])?;
            }
            if bits.is_some() || !pages.is_empty() {
                file.sync()?;
            }
            Ok(())
        });
        persisted.map_err(|message| Error::Brick {
            brick: self.name.clone(),
            message,
        })
    }
}

impl Completer for Core {
    fn complete(&self, mut req: Box<Aio>) {
        let ok = req.error.is_none();
        if req.op.is_mutation() {
            self.untrack(&mut req, ok);
        } else if req.op == Op::Read && ok {
            if let Some(e) = self.verify(&mut req) {
                req.error = Some(e);
            }
        }
        self.stats.on_complete(
            req.len as u64,
            std::time::Duration::ZERO,
            req.error.is_some(),
        );
        self.power.leave();
        req.complete();
    }
}

impl Output for CsumDisk {
    fn info(&self) -> Result<Info> {
        self.core.inner.info()
    }

    fn prepare(&self, req: &mut Aio) -> Result<()> {
        self.core.inner.prepare(req)
    }

    fn submit(&self, mut req: Box<Aio>) -> Result<(), Rejected> {
        let core = &self.core;
        if let Err(e) = core.power.enter(&core.name) {
            return Err(Rejected::new(req, e));
        }
        core.stats.on_submit();
        match req.op {
            Op::Flush => {
                // Flushes run on the flush thread: the submitter goes on submitting (a flush
                // is two `fdatasync`s here: the device's and the checksum file's).
                if let Err(req) = core.queue_flush(&self.core, req) {
                    let r = core.flush(false);
                    core.finish_flush(req, r);
                }
                Ok(())
            }
            Op::Read => {
                let epoch = core.state.lock().epoch;
                req.aspect(&core.slot).epoch = epoch;
                core.forward(req)
            }
            _ => core.submit_mutation(req),
        }
    }
}

impl Brick for CsumDisk {
    fn name(&self) -> &str {
        &self.core.name
    }
    fn switch(&self, on: bool) -> Result<()> {
        if on {
            self.core.power.switch_on(|| Ok(()))
        } else {
            self.core.power.switch_off(&self.core.name, || Ok(()))
        }
    }
    fn power(&self) -> PowerState {
        self.core.power.state()
    }
    fn stats(&self) -> StatsSnapshot {
        self.core.stats.snapshot()
    }
}
