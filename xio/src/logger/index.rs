//! The in-memory extent index: which device bytes have a newer version in memory than on the
//! data device. Pure data structure (no IO, no locking).
//!
//! **Invariants** (checked by `check` in tests):
//! - extents are disjoint, non-empty, and each points to a live version that covers it;
//! - a version's `refs` equals the number of extents pointing to it; a version with no
//!   extents is removed once every version that superseded part of it is durable in the log
//!   (until then it is a *zombie*: it holds the watermark back, because if the newer version
//!   were lost in a crash, replaying this one is what restores the superseded bytes);
//! - for every byte, the extent covering it points to the newest version written there.

use super::payload::Payload;
use crate::log::{LogPos, RecordOp};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::Instant;

/// One logged mutation still (partly) waiting for writeback.
#[derive(Debug)]
pub(crate) struct Version {
    pub op: RecordOp,
    pub pos: u64,
    pub len: u64,
    /// Bytes of a write (empty for discard / write-zeroes).
    pub data: Arc<Payload>,
    pub flags: u8,
    /// Where its record starts in the log, once written.
    pub log: Option<LogPos>,
    /// When it was accepted.
    pub born: Instant,
    pub refs: usize,
    /// The newest version that took bytes from this one (0: none).
    pub superseded_by: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ext {
    end: u64,
    seq: u64,
}

/// A covered piece of a lookup: `[start, end)` reads from `src`.
#[derive(Debug, Clone)]
pub(crate) struct Piece {
    pub start: u64,
    pub end: u64,
    /// The version's data and the offset of `start` in it; `None` reads as zeroes.
    pub src: Option<(Arc<Payload>, usize)>,
}

/// A range to write back from one version.
#[derive(Debug, Clone)]
pub(crate) struct WbItem {
    pub start: u64,
    pub end: u64,
    pub seq: u64,
    pub op: RecordOp,
    pub flags: u8,
    pub src: Option<(Arc<Payload>, usize)>,
}

/// Writeback epochs (for flushes of the data device that run while writeback goes on): every
/// completed writeback is stamped with the current epoch; starting a flush covers that epoch
/// and opens the next one; when the flush completes, everything stamped with an epoch it
/// covers is flushed.
#[derive(Debug, Default)]
pub(crate) struct Index {
    extents: BTreeMap<u64, Ext>,
    pub versions: BTreeMap<u64, Version>,
    /// Every version up to this one is durable in the log.
    durable: u64,
    /// Retired versions (no extents left) that still hold the watermark.
    zombies: BTreeMap<u64, Zombie>,
    /// Zombies waiting for their superseder to become durable: `(superseded_by, seq)`.
    awaiting_durable: BinaryHeap<Reverse<(u64, u64)>>,
    /// Zombies waiting for a flush of the data device: `(epoch, seq)`.
    awaiting_flush: BinaryHeap<Reverse<(u64, u64)>>,
    /// Live versions with written-back, unflushed bytes: seq -> epoch of the last writeback.
    unflushed: BTreeMap<u64, u64>,
    /// The current writeback epoch.
    epoch: u64,
    /// Something was written back in the current epoch (a new flush would cover it).
    dirty: bool,
    /// Reused by `overlapping_scratch` (no allocation per insert).
    scratch: Vec<(u64, Ext)>,
    /// Payloads of retired versions. The caller lets go of them (recycling their buffers,
    /// releasing their budget), preferably after it released the logger's lock: see
    /// [`Index::drain_retired`].
    retired: Vec<Arc<Payload>>,
}

/// What is left of a retired version. It goes once its superseder is durable (if the newer
/// version were lost in a crash, replaying this one restores the superseded bytes) and its
/// written-back bytes are flushed (`unflushed: None`).
#[derive(Debug, Clone, Copy)]
struct Zombie {
    log: Option<LogPos>,
    superseded_by: u64,
    unflushed: Option<u64>,
}

impl Index {
    /// Whether no extent waits for writeback.
    pub fn is_empty(&self) -> bool {
        self.extents.is_empty()
    }

    /// Versions up to `seq` are durable now: drop the zombies that this makes safe.
    /// O(log n) per zombie released.
    pub fn set_durable(&mut self, seq: u64) {
        self.durable = self.durable.max(seq);
        while let Some(&Reverse((sup, zseq))) = self.awaiting_durable.peek() {
            if sup > self.durable {
                break;
            }
            self.awaiting_durable.pop();
            if self
                .zombies
                .get(&zseq)
                .is_some_and(|z| z.unflushed.is_none())
            {
                self.zombies.remove(&zseq);
            }
        }
    }

    /// A flush of the data device starts now: it covers every writeback completed so far.
    /// Returns the epoch to pass to [`Index::data_flushed`] when it completes.
    pub fn start_flush(&mut self) -> u64 {
        let covered = self.epoch;
        self.epoch += 1;
        self.dirty = false;
        covered
    }

    /// The flush started by [`Index::start_flush`] (returning `covered`) completed.
    pub fn data_flushed(&mut self, covered: u64) {
        self.unflushed.retain(|_, e| *e > covered);
        while let Some(&Reverse((epoch, zseq))) = self.awaiting_flush.peek() {
            if epoch > covered {
                break;
            }
            self.awaiting_flush.pop();
            let Some(z) = self.zombies.get_mut(&zseq) else {
                continue;
            };
            z.unflushed = None;
            if z.superseded_by <= self.durable {
                self.zombies.remove(&zseq);
            }
        }
    }

    /// Whether written-back data waits for a flush of the data device (started or not).
    pub fn has_unflushed(&self) -> bool {
        !self.unflushed.is_empty() || !self.awaiting_flush.is_empty()
    }

    /// Whether data was written back since the last flush started.
    pub fn needs_flush(&self) -> bool {
        self.dirty
    }

    /// Forget every zombie (emergency mode: the log no longer matters).
    pub fn drop_zombies(&mut self) {
        self.zombies.clear();
        self.awaiting_durable.clear();
        self.awaiting_flush.clear();
    }

    /// Record where version `seq`'s record starts in the log.
    pub fn set_log(&mut self, seq: u64, pos: LogPos) {
        if let Some(v) = self.versions.get_mut(&seq) {
            v.log = Some(pos);
        } else if let Some(z) = self.zombies.get_mut(&seq) {
            z.log = Some(pos);
        }
    }

    /// The watermark: the start of the oldest record whose effect the data device may lack,
    /// or `durable_end` when every durable record is written back and flushed.
    pub fn min_pos(&self, durable_seq: u64, durable_end: LogPos) -> LogPos {
        let live = self.versions.iter().next().map(|(&s, v)| (s, v.log));
        let dead = self.zombies.iter().next().map(|(&s, z)| (s, z.log));
        [live, dead]
            .into_iter()
            .flatten()
            .filter(|(s, _)| *s <= durable_seq)
            .map(|(_, log)| log.unwrap_or(durable_end))
            .fold(durable_end, LogPos::min)
    }

    /// Extents overlapping `[s, e)`, **descending**: one B-tree search, then a walk back from
    /// the last extent starting before `e` (extents are disjoint, so their ends descend too
    /// and the first one ending at or before `s` ends the walk).
    fn overlapping_desc(&self, s: u64, e: u64) -> impl Iterator<Item = (u64, Ext)> + '_ {
        self.extents
            .range(..e)
            .rev()
            .take_while(move |(_, x)| x.end > s)
            .map(|(&k, &x)| (k, x))
    }

    /// [`Index::overlapping_desc`] collected into the reusable scratch vector (for callers
    /// that change the extents while they go); give it back with `self.scratch = v`.
    fn overlapping_scratch(&mut self, s: u64, e: u64) -> Vec<(u64, Ext)> {
        let mut v = std::mem::take(&mut self.scratch);
        v.clear();
        v.extend(self.overlapping_desc(s, e));
        v
    }

    fn unref(&mut self, seq: u64, written: bool) {
        let Some(v) = self.versions.get_mut(&seq) else {
            return;
        };
        v.refs -= 1;
        if written {
            self.unflushed.insert(seq, self.epoch);
            self.dirty = true;
        }
        if v.refs > 0 {
            return;
        }
        let v = self.versions.remove(&seq).expect("present");
        self.retired.push(v.data);
        let unflushed = self.unflushed.remove(&seq);
        let superseded_later = v.superseded_by > self.durable;
        if !superseded_later && unflushed.is_none() {
            return;
        }
        self.zombies.insert(
            seq,
            Zombie {
                log: v.log,
                superseded_by: v.superseded_by,
                unflushed,
            },
        );
        if superseded_later {
            self.awaiting_durable.push(Reverse((v.superseded_by, seq)));
        }
        if let Some(epoch) = unflushed {
            self.awaiting_flush.push(Reverse((epoch, seq)));
        }
    }

    /// Insert `v` (the newest version) as `seq`; older versions lose the overlapped bytes.
    pub fn insert(&mut self, seq: u64, mut v: Version) {
        let (s, e) = (v.pos, v.pos + v.len);
        debug_assert!(e > s);
        let overlaps = self.overlapping_scratch(s, e);
        for &(k, x) in &overlaps {
            self.extents.remove(&k);
            let mut keep = 0;
            if k < s {
                self.extents.insert(k, Ext { end: s, seq: x.seq });
                keep += 1;
            }
            if x.end > e {
                self.extents.insert(
                    e,
                    Ext {
                        end: x.end,
                        seq: x.seq,
                    },
                );
                keep += 1;
            }
            if let Some(old) = self.versions.get_mut(&x.seq) {
                old.refs += keep;
                old.superseded_by = old.superseded_by.max(seq);
            }
            self.unref(x.seq, false);
        }
        self.scratch = overlaps;
        self.extents.insert(s, Ext { end: e, seq });
        v.refs = 1;
        self.versions.insert(seq, v);
    }

    fn src_of(&self, seq: u64, start: u64) -> Option<(Arc<Payload>, usize)> {
        let v = &self.versions[&seq];
        (v.op == RecordOp::Write).then(|| (v.data.clone(), (start - v.pos) as usize))
    }

    /// Covered pieces of `[pos, pos+len)`, ascending; the gaps read from the data device.
    pub fn lookup(&self, pos: u64, len: u64) -> Vec<Piece> {
        let e = pos + len;
        let mut pieces: Vec<Piece> = self
            .overlapping_desc(pos, e)
            .map(|(k, x)| {
                let start = k.max(pos);
                Piece {
                    start,
                    end: x.end.min(e),
                    src: self.src_of(x.seq, start),
                }
            })
            .collect();
        pieces.reverse();
        pieces
    }

    /// Up to about `max_bytes` of extents to write back, oldest versions first, taking only
    /// versions with `seq <= upto`.
    #[cfg(test)]
    pub fn select(&self, upto: u64, max_bytes: u64) -> Vec<WbItem> {
        let mut out = Vec::new();
        self.select_into(upto, max_bytes, &mut out);
        out
    }

    /// [`select`](Index::select) into `out` (cleared first): writeback keeps one vector for
    /// its rounds (a round of 4 KiB writes is ~8000 items, and a fresh vector that size
    /// each round came from fresh pages: the kernel zeroing them was 3% of the process's
    /// samples under random writes).
    pub fn select_into(&self, upto: u64, max_bytes: u64, out: &mut Vec<WbItem>) {
        out.clear();
        let mut bytes = 0;
        for (&seq, v) in self.versions.range(..=upto) {
            if bytes >= max_bytes {
                break;
            }
            for (k, x) in self.overlapping_desc(v.pos, v.pos + v.len) {
                if x.seq == seq {
                    bytes += x.end - k;
                    out.push(WbItem {
                        start: k,
                        end: x.end,
                        seq,
                        op: v.op,
                        flags: v.flags,
                        src: self.src_of(seq, k),
                    });
                }
            }
        }
    }

    /// The items were written back (not yet flushed): forget what still points to those
    /// versions inside those ranges; reads go to the data device from now on. The versions
    /// keep holding the watermark until [`Index::data_flushed`].
    pub fn complete(&mut self, items: &[WbItem]) {
        for it in items {
            let overlaps = self.overlapping_scratch(it.start, it.end);
            for &(k, x) in &overlaps {
                if x.seq == it.seq && k >= it.start && x.end <= it.end {
                    self.extents.remove(&k);
                    self.unref(x.seq, true);
                }
            }
            self.scratch = overlaps;
        }
    }

    /// The payloads of the versions retired since the last call (no allocation).
    pub fn drain_retired(&mut self) -> std::vec::Drain<'_, Arc<Payload>> {
        self.retired.drain(..)
    }

    /// The oldest live version.
    pub fn oldest(&self) -> Option<(u64, &Version)> {
        self.versions.iter().next().map(|(&s, v)| (s, v))
    }

    /// Check the invariants (tests).
    #[cfg(test)]
    pub fn check(&self) {
        let mut last_end = 0;
        let mut refs: BTreeMap<u64, usize> = BTreeMap::new();
        for (&k, x) in &self.extents {
            assert!(x.end > k && k >= last_end, "extents overlap or are empty");
            last_end = x.end;
            let v = &self.versions[&x.seq];
            assert!(k >= v.pos && x.end <= v.pos + v.len);
            *refs.entry(x.seq).or_default() += 1;
        }
        for (seq, v) in &self.versions {
            assert_eq!(refs.get(seq).copied().unwrap_or(0), v.refs, "refs of {seq}");
            assert!(v.refs > 0 && !self.zombies.contains_key(seq), "live {seq}");
        }
        for (seq, z) in &self.zombies {
            assert!(
                z.superseded_by > self.durable || z.unflushed.is_some(),
                "zombie {seq} should have been released"
            );
            if z.superseded_by > self.durable {
                assert!(self.awaiting_durable.iter().any(|r| r.0 .1 == *seq));
            }
            if let Some(e) = z.unflushed {
                assert!(self.awaiting_flush.iter().any(|r| r.0 == (e, *seq)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brick_core::MemBudget;
    use proptest::prelude::*;

    fn version(pos: u64, len: u64, fill: u8, budget: &Arc<MemBudget>) -> Version {
        Version {
            op: RecordOp::Write,
            pos,
            len,
            data: Payload::new(vec![fill; len as usize], budget.acquire(1), None),
            flags: 0,
            log: None,
            born: Instant::now(),
            refs: 0,
            superseded_by: 0,
        }
    }

    #[test]
    fn a_flush_releases_only_what_was_written_back_before_it_started() {
        let budget = MemBudget::new(1 << 30);
        let mut idx = Index::default();
        idx.insert(1, version(0, 10, 1, &budget));
        idx.insert(2, version(20, 10, 2, &budget));
        idx.set_durable(2);
        let first = idx.select(1, 100);
        idx.complete(&first);
        let covered = idx.start_flush();
        // Written back while the flush runs: not covered by it.
        let second = idx.select(2, 100);
        idx.complete(&second);
        assert!(idx.needs_flush());
        idx.check();
        idx.data_flushed(covered);
        idx.check();
        let end = LogPos::new(1, 999);
        assert_eq!(idx.zombies.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert!(idx.has_unflushed());
        let covered = idx.start_flush();
        idx.data_flushed(covered);
        idx.check();
        assert!(!idx.has_unflushed() && idx.zombies.is_empty());
        assert_eq!(idx.min_pos(2, end), end);
    }

    proptest! {
        #[test]
        fn index_matches_model(ops in prop::collection::vec((0u64..60, 1u64..20, any::<bool>()), 1..60)) {
            let budget = MemBudget::new(1 << 30);
            let mut idx = Index::default();
            let mut model: Vec<Option<u8>> = vec![None; 100];
            for (i, (pos, len, wb)) in ops.into_iter().enumerate() {
                let seq = i as u64 + 1;
                if wb {
                    idx.set_durable(seq / 2);
                    let items = idx.select(seq, 25);
                    for it in &items {
                        for b in it.start..it.end { model[b as usize] = None; }
                    }
                    idx.complete(&items);
                    if seq.is_multiple_of(3) { let c = idx.start_flush(); idx.data_flushed(c); }
                } else {
                    let fill = (seq % 250) as u8 + 1;
                    idx.insert(seq, version(pos, len, fill, &budget));
                    for b in pos..pos + len { model[b as usize] = Some(fill); }
                }
                idx.check();
                let mut seen: Vec<Option<u8>> = vec![None; 100];
                for p in idx.lookup(0, 100) {
                    let (d, off) = p.src.clone().unwrap();
                    for b in p.start..p.end { seen[b as usize] = Some(d[off + (b - p.start) as usize]); }
                }
                prop_assert_eq!(&seen, &model);
            }
        }
    }
}
