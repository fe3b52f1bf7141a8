//! The metadata store: key → [`Entry`], grouped by [`Scope`], with per-scope digests for
//! anti-entropy, ownership enforcement, tombstone acknowledgement and garbage collection.
//!
//! Pure: no IO. Every mutation is also recorded as a [`Change`] so that a shell can persist one
//! logical update in one transaction ([`MetaStore::take_changes`]).
//!
//! Invariants:
//! - A live key reads as its value; a tombstone reads as absent.
//! - A remote entry violating ownership (`owner_of(key) != origin`) is rejected and counted.
//! - Every remote stamp is observed by the Lamport clock, so later local writes are newer.
//! - A tombstone is garbage-collected only when its acknowledgements cover every member of its
//!   scope (or a peer reports `Acks::All`). A collected tombstone leaves a *grave* (key, stamp)
//!   that fences off stragglers carrying the same or older writes (no resurrection).
//! - Bucket hashes are the XOR of the entry digests in the bucket, kept up to date on every
//!   mutation, so the root digest of a scope costs O(buckets).

use crate::entry::{Acks, Entry, Merged, Value};
use crate::error::{Error, Result};
use crate::names::{check_key, fnv64, owner_of, Key, NodeName, Scope};
use brick_core::{LamportClock, Stamp, TimeSource};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Digest buckets of the global scope.
pub const GLOBAL_BUCKETS: u16 = 256;
/// Digest buckets of a resource scope (few keys).
pub const RESOURCE_BUCKETS: u16 = 16;
/// How far ahead of local time a remote stamp may be before the clock clamps it.
pub const MAX_FUTURE: Duration = Duration::from_secs(10);

/// Where the Lamport clock reads real time.
#[derive(Debug, Clone)]
pub enum ClockSource {
    /// The system clock.
    System,
    /// A manually driven clock in nanoseconds (simulations and tests).
    Manual(Arc<AtomicU64>),
}

impl TimeSource for ClockSource {
    fn now_ns(&self) -> u64 {
        match self {
            ClockSource::System => brick_core::SystemTimeSource.now_ns(),
            ClockSource::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}

/// One mutation, for persistence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The key now holds this entry (and has no grave).
    Put(Key, Entry),
    /// The tombstone was collected; the grave remembers its stamp.
    Bury(Key, Stamp),
    /// A whole resource scope was dropped locally (this node left the resource).
    DropScope(Arc<str>),
}

/// A compact description of one entry for anti-entropy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// FNV-1a hash of the key.
    pub khash: u64,
    /// Stamp of the write.
    pub stamp: u64,
    /// Writer.
    pub origin: NodeName,
    /// Digest of the whole entry.
    pub ehash: u64,
}

/// What merging one remote entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The store changed; this is the new local entry.
    Changed(Entry),
    /// Only the acknowledgements of a tombstone grew; this is the new local entry.
    Acked(Entry),
    /// The store already had this or a newer write.
    Unchanged,
    /// The write is at or below the grave of a collected tombstone (stamp of the grave).
    Buried(Stamp),
    /// Ownership violation: rejected.
    Rejected,
}

#[derive(Debug, Clone)]
struct Slot {
    entry: Entry,
    khash: u64,
    ehash: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct BKey {
    bucket: u16,
    key: Key,
}

/// The entries of one scope with their digest buckets and graves.
///
/// Entries live in a shared, immutable `base` map plus a private `overlay` of changes
/// (`None` = removed). Cloning a scope is therefore O(buckets): a simulation gives thousands of
/// nodes one prepared global scope, and each node pays only for what it changes. The overlay
/// is folded into a fresh base once it grows beyond a quarter of the base.
#[derive(Debug, Clone)]
pub struct ScopeState {
    base: Arc<BTreeMap<BKey, Slot>>,
    overlay: BTreeMap<BKey, Option<Slot>>,
    buckets: Vec<u64>,
    graves: HashMap<Key, Stamp>,
    tombstones: BTreeSet<Key>,
    bytes: u64,
    max_stamp: Stamp,
    /// Live `ips/ip-<h>` names, sorted (the global member list), shared until changed.
    ips: Arc<Vec<NodeName>>,
}

/// Wire size of one entry with its key (what a full dump of it costs).
fn wire_len(key: &Key, e: &Entry) -> u64 {
    postcard::to_allocvec(&(key, e)).map_or(0, |v| v.len() as u64)
}

/// Merge the base and overlay iterators (both sorted by key; overlay wins).
struct Merge<'a, B, O>
where
    B: Iterator<Item = (&'a BKey, &'a Slot)>,
    O: Iterator<Item = (&'a BKey, &'a Option<Slot>)>,
{
    base: std::iter::Peekable<B>,
    over: std::iter::Peekable<O>,
}

impl<'a, B, O> Iterator for Merge<'a, B, O>
where
    B: Iterator<Item = (&'a BKey, &'a Slot)>,
    O: Iterator<Item = (&'a BKey, &'a Option<Slot>)>,
{
    type Item = (&'a BKey, &'a Slot);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_over = match (self.base.peek(), self.over.peek()) {
                (None, None) => return None,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((bk, _)), Some((ok, _))) => {
                    if ok <= bk {
                        if ok == bk {
                            self.base.next();
                        }
                        true
                    } else {
                        false
                    }
                }
            };
            if take_over {
                let (k, v) = self.over.next()?;
                if let Some(slot) = v {
                    return Some((k, slot));
                }
            } else {
                return self.base.next();
            }
        }
    }
}

impl ScopeState {
    /// An empty scope with `nbuckets` digest buckets.
    pub fn new(nbuckets: u16) -> ScopeState {
        ScopeState {
            base: Arc::new(BTreeMap::new()),
            overlay: BTreeMap::new(),
            buckets: vec![0; usize::from(nbuckets.max(1))],
            graves: HashMap::new(),
            tombstones: BTreeSet::new(),
            bytes: 0,
            max_stamp: Stamp(0),
            ips: Arc::new(Vec::new()),
        }
    }

    fn for_scope(scope: &Scope) -> ScopeState {
        match scope {
            Scope::Global => ScopeState::new(GLOBAL_BUCKETS),
            Scope::Resource(_) => ScopeState::new(RESOURCE_BUCKETS),
        }
    }

    fn bkey(&self, key: &Key) -> (BKey, u64) {
        let khash = fnv64(key.as_bytes());
        let bucket = (khash % self.buckets.len() as u64) as u16;
        (
            BKey {
                bucket,
                key: key.clone(),
            },
            khash,
        )
    }

    fn slot(&self, bk: &BKey) -> Option<&Slot> {
        match self.overlay.get(bk) {
            Some(v) => v.as_ref(),
            None => self.base.get(bk),
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&BKey, &Slot)> {
        Merge {
            base: self.base.iter().peekable(),
            over: self.overlay.iter().peekable(),
        }
    }

    fn set_slot(&mut self, bk: BKey, slot: Option<Slot>) -> Option<Slot> {
        let old = self.slot(&bk).cloned();
        let in_base = self.base.contains_key(&bk);
        match (&slot, in_base) {
            (None, false) => {
                self.overlay.remove(&bk);
            }
            _ => {
                self.overlay.insert(bk, slot);
            }
        }
        if self.overlay.len() > 64 && self.overlay.len() * 4 > self.base.len() {
            let merged: BTreeMap<BKey, Slot> =
                self.iter().map(|(k, s)| (k.clone(), s.clone())).collect();
            self.base = Arc::new(merged);
            self.overlay.clear();
        }
        old
    }

    fn get(&self, key: &Key) -> Option<&Entry> {
        self.slot(&self.bkey(key).0).map(|s| &s.entry)
    }

    fn track_ips(&mut self, key: &Key, live: bool) {
        if let Some(h) = key.strip_prefix("ips/ip-") {
            let pos = self.ips.binary_search_by(|n| (**n).cmp(h));
            match (pos, live) {
                (Err(i), true) => Arc::make_mut(&mut self.ips).insert(i, Arc::from(h)),
                (Ok(i), false) => {
                    Arc::make_mut(&mut self.ips).remove(i);
                }
                _ => {}
            }
        }
    }

    fn put(&mut self, key: &Key, entry: Entry) {
        let (bk, khash) = self.bkey(key);
        let ehash = entry.digest(key);
        if entry.is_tombstone() {
            self.tombstones.insert(key.clone());
        } else {
            self.tombstones.remove(key);
        }
        self.track_ips(key, !entry.is_tombstone());
        self.graves.remove(key);
        self.max_stamp = self.max_stamp.max(entry.stamp);
        let b = usize::from(bk.bucket);
        self.bytes += wire_len(key, &entry);
        let slot = Slot {
            entry,
            khash,
            ehash,
        };
        if let Some(old) = self.set_slot(bk, Some(slot)) {
            self.buckets[b] ^= old.ehash;
            self.bytes = self.bytes.saturating_sub(wire_len(key, &old.entry));
        }
        self.buckets[b] ^= ehash;
    }

    fn bury(&mut self, key: &Key, stamp: Stamp) {
        let (bk, _) = self.bkey(key);
        let b = usize::from(bk.bucket);
        if let Some(old) = self.set_slot(bk, None) {
            self.buckets[b] ^= old.ehash;
            self.bytes = self.bytes.saturating_sub(wire_len(key, &old.entry));
        }
        self.track_ips(key, false);
        self.tombstones.remove(key);
        self.graves.insert(key.clone(), stamp);
    }

    /// Root digest: XOR of all entry digests.
    pub fn root(&self) -> u64 {
        self.buckets.iter().fold(0, |a, b| a ^ b)
    }

    /// Bytes of a full dump of this scope.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Insert an entry as is (building prepared states; no ownership check).
    pub fn insert(&mut self, key: &Key, entry: Entry) {
        self.put(key, entry);
    }

    /// Number of entries (live and tombstones).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the scope holds no entries.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    fn bucket_range(&self, bucket: u16) -> impl Iterator<Item = (&Key, &Slot)> {
        let lo = BKey {
            bucket,
            key: Arc::from(""),
        };
        Merge {
            base: self.base.range(lo.clone()..).peekable(),
            over: self.overlay.range(lo..).peekable(),
        }
        .take_while(move |(k, _)| k.bucket == bucket)
        .map(|(k, s)| (&k.key, s))
    }
}

/// Counters of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Remote writes rejected for violating ownership.
    pub rejected_owner: u64,
    /// Remote writes that changed the store.
    pub merged: u64,
    /// Remote writes that were stale or duplicate.
    pub stale: u64,
    /// Remote writes fenced off by a grave.
    pub buried_hits: u64,
    /// Tombstones collected.
    pub collected: u64,
}

/// The replicated metadata store of one node.
pub struct MetaStore {
    me: NodeName,
    clock: LamportClock<ClockSource>,
    scopes: HashMap<Scope, ScopeState>,
    changes: Vec<Change>,
    stats: StoreStats,
    gen_members: u64,
    gen_cluster: u64,
}

impl MetaStore {
    /// An empty store for node `me`.
    pub fn new(me: &str, clock: ClockSource) -> Result<MetaStore> {
        crate::names::check_node(me)?;
        let mut scopes = HashMap::new();
        scopes.insert(Scope::Global, ScopeState::for_scope(&Scope::Global));
        Ok(MetaStore {
            me: Arc::from(me),
            clock: LamportClock::with_time(clock, MAX_FUTURE),
            scopes,
            changes: Vec::new(),
            stats: StoreStats::default(),
            gen_members: 0,
            gen_cluster: 0,
        })
    }

    /// Rebuild a store from persisted entries and graves (no changes are recorded).
    pub fn restore(
        me: &str,
        clock: ClockSource,
        entries: impl IntoIterator<Item = (Key, Entry)>,
        graves: impl IntoIterator<Item = (Key, Stamp)>,
    ) -> Result<MetaStore> {
        let mut s = MetaStore::new(me, clock)?;
        for (k, e) in entries {
            s.clock.observe(e.stamp);
            s.scope_mut(&Scope::of(&k)).put(&k, e);
        }
        for (k, st) in graves {
            s.clock.observe(st);
            s.scope_mut(&Scope::of(&k)).graves.insert(k, st);
        }
        s.gen_members += 1;
        s.gen_cluster += 1;
        Ok(s)
    }

    /// This node's name.
    pub fn me(&self) -> &NodeName {
        &self.me
    }

    /// The Lamport clock.
    pub fn clock(&self) -> &LamportClock<ClockSource> {
        &self.clock
    }

    /// Counters.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// The global member list (live `ips/ip-<h>`), sorted, shared with the scope state.
    pub fn member_list(&self) -> Arc<Vec<NodeName>> {
        self.scopes
            .get(&Scope::Global)
            .map(|s| s.ips.clone())
            .unwrap_or_default()
    }

    /// Bumped whenever an `ips/` key changes (cached member lists are then stale).
    pub fn members_generation(&self) -> u64 {
        self.gen_members
    }

    /// Bumped whenever `uuid` or a `merged/` key changes.
    pub fn cluster_generation(&self) -> u64 {
        self.gen_cluster
    }

    fn touched(&mut self, key: &str) {
        if key.starts_with("ips/") {
            self.gen_members += 1;
        }
        if key == "uuid" || key.starts_with("merged/") {
            self.gen_cluster += 1;
        }
    }

    /// Bytes of a full dump of every scope held.
    pub fn dump_bytes(&self) -> u64 {
        self.scopes.values().map(|s| s.bytes).sum()
    }

    /// Whether this node holds a scope.
    pub fn holds(&self, scope: &Scope) -> bool {
        self.scopes.contains_key(scope)
    }

    fn scope_mut(&mut self, scope: &Scope) -> &mut ScopeState {
        self.scopes
            .entry(scope.clone())
            .or_insert_with(|| ScopeState::for_scope(scope))
    }

    /// The scope state, if this node holds the scope.
    pub fn scope(&self, scope: &Scope) -> Option<&ScopeState> {
        self.scopes.get(scope)
    }

    /// Replace a whole scope (simulation bootstrap: many nodes share one prepared state).
    pub fn install_scope(&mut self, scope: Scope, state: ScopeState) {
        self.clock.observe(state.max_stamp);
        if scope == Scope::Global {
            self.gen_members += 1;
            self.gen_cluster += 1;
        }
        self.scopes.insert(scope, state);
    }

    /// The resource scopes this node holds.
    pub fn resources(&self) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self
            .scopes
            .keys()
            .filter_map(|s| match s {
                Scope::Resource(r) => Some(r.clone()),
                Scope::Global => None,
            })
            .collect();
        v.sort();
        v
    }

    /// Forget a resource scope (after leaving it).
    pub fn drop_scope(&mut self, res: &Arc<str>) {
        if self.scopes.remove(&Scope::Resource(res.clone())).is_some() {
            self.changes.push(Change::DropScope(res.clone()));
        }
    }

    /// The entry of a key, tombstones included.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        let key: Key = Arc::from(key);
        self.scopes.get(&Scope::of(&key))?.get(&key)
    }

    /// The live value of a key (tombstones read as absent).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key)?.live()
    }

    /// Live entries whose key starts with `prefix`, sorted by key.
    pub fn list(&self, prefix: &str) -> Vec<(Key, &str)> {
        let mut out = Vec::new();
        let scopes: Vec<&ScopeState> = match crate::names::resource_of(prefix) {
            Some(r) => self
                .scopes
                .get(&Scope::Resource(Arc::from(r)))
                .into_iter()
                .collect(),
            None => self.scopes.values().collect(),
        };
        for s in scopes {
            for (bk, slot) in s.iter() {
                if let (true, Some(v)) = (bk.key.starts_with(prefix), slot.entry.live()) {
                    out.push((bk.key.clone(), v));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn check_local_write(&self, key: &str) -> Result<Key> {
        check_key(key)?;
        if let Some(owner) = owner_of(key) {
            if owner != &*self.me {
                return Err(Error::NotOwner {
                    key: Arc::from(key),
                    owner: owner.to_string(),
                    writer: self.me.to_string(),
                });
            }
        }
        Ok(Arc::from(key))
    }

    /// Write a value locally, stamped from the clock. Returns the new entry.
    pub fn set(&mut self, key: &str, value: &str) -> Result<Entry> {
        let key = self.check_local_write(key)?;
        let e = Entry::set(value, self.clock.now(), self.me.clone());
        self.scope_mut(&Scope::of(&key)).put(&key, e.clone());
        self.touched(&key);
        self.changes.push(Change::Put(key, e.clone()));
        Ok(e)
    }

    /// Delete a key locally (writes a tombstone). Returns the tombstone.
    pub fn delete(&mut self, key: &str) -> Result<Entry> {
        let key = self.check_local_write(key)?;
        let e = Entry::tombstone(self.clock.now(), self.me.clone());
        self.scope_mut(&Scope::of(&key)).put(&key, e.clone());
        self.touched(&key);
        self.changes.push(Change::Put(key, e.clone()));
        Ok(e)
    }

    /// Merge one remote entry.
    pub fn merge_remote(&mut self, key: &Key, remote: &Entry) -> MergeOutcome {
        if check_key(key).is_err() {
            self.stats.rejected_owner += 1;
            tracing::warn!(%key, origin = %remote.origin, "remote entry with an invalid key rejected");
            return MergeOutcome::Rejected;
        }
        if let Some(owner) = owner_of(key) {
            if owner != &*remote.origin {
                self.stats.rejected_owner += 1;
                tracing::warn!(%key, owner, origin = %remote.origin,
                    "remote write violates key ownership; rejected");
                return MergeOutcome::Rejected;
            }
        }
        self.clock.observe(remote.stamp);
        let sc = Scope::of(key);
        let scope = self
            .scopes
            .entry(sc.clone())
            .or_insert_with(|| ScopeState::for_scope(&sc));
        let local = scope.get(key);
        if local.is_none() {
            if let Some(&g) = scope.graves.get(key) {
                if remote.stamp <= g {
                    self.stats.buried_hits += 1;
                    return MergeOutcome::Buried(g);
                }
            }
        }
        let same_write = local.is_some_and(|l| l.write_order(remote).is_eq());
        match Entry::merge(local, remote) {
            Merged::Keep => {
                self.stats.stale += 1;
                MergeOutcome::Unchanged
            }
            Merged::Take(mut e) => {
                e.ack(&self.me);
                scope.put(key, e.clone());
                self.stats.merged += 1;
                self.changes.push(Change::Put(key.clone(), e.clone()));
                self.touched(key);
                if same_write {
                    MergeOutcome::Acked(e)
                } else {
                    MergeOutcome::Changed(e)
                }
            }
        }
    }

    /// The members of a scope: live `ips/ip-<h>` for the global scope, holders of live
    /// `data-<h>` or `device-<h>` for a resource.
    pub fn members(&self, scope: &Scope) -> BTreeSet<NodeName> {
        let mut out = BTreeSet::new();
        let Some(state) = self.scopes.get(scope) else {
            return out;
        };
        let Some(gstate) = self.scopes.get(&Scope::Global) else {
            return out;
        };
        match scope {
            Scope::Global => out.extend(gstate.ips.iter().cloned()),
            Scope::Resource(r) => {
                let pre = format!("resource-{r}/");
                for (bk, slot) in state.iter() {
                    let Some(last) = bk.key.strip_prefix(&pre) else {
                        continue;
                    };
                    let h = last
                        .strip_prefix("data-")
                        .or_else(|| last.strip_prefix("device-"));
                    if let (Some(h), Some(_)) = (h, slot.entry.live()) {
                        out.insert(Arc::from(h));
                    }
                }
            }
        }
        out
    }

    /// Collect tombstones acknowledged by every member (or marked `All` by a peer). Returns
    /// them (with `Acks::All`), so that the caller can tell the scope's members.
    pub fn collect_garbage(&mut self) -> Vec<(Key, Entry)> {
        let mut out = Vec::new();
        let scopes: Vec<Scope> = self
            .scopes
            .iter()
            .filter(|(_, s)| !s.tombstones.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for scope in scopes {
            let members = self.members(&scope);
            let state = self.scopes.get_mut(&scope).expect("listed");
            let keys: Vec<Key> = state.tombstones.iter().cloned().collect();
            for key in keys {
                let Some(e) = state.get(&key).cloned() else {
                    continue;
                };
                let done = match &e.value {
                    Value::Tombstone(Acks::All) => true,
                    Value::Tombstone(Acks::Some(acks)) => {
                        !members.is_empty() && members.is_subset(acks)
                    }
                    Value::Set(_) => false,
                };
                if done {
                    state.bury(&key, e.stamp);
                    if key.starts_with("ips/") {
                        self.gen_members += 1;
                    }
                    self.stats.collected += 1;
                    self.changes.push(Change::Bury(key.clone(), e.stamp));
                    let all = Entry {
                        value: Value::Tombstone(Acks::All),
                        ..e
                    };
                    out.push((key, all));
                }
            }
        }
        out
    }

    /// Every grave (collected tombstone: key and stamp), sorted.
    pub fn graves(&self) -> Vec<(Key, Stamp)> {
        let mut v: Vec<(Key, Stamp)> = self
            .scopes
            .values()
            .flat_map(|s| s.graves.iter().map(|(k, st)| (k.clone(), *st)))
            .collect();
        v.sort();
        v
    }

    /// The grave of a collected tombstone, if any.
    pub fn grave(&self, key: &str) -> Option<Stamp> {
        let key: Key = Arc::from(key);
        self.scopes.get(&Scope::of(&key))?.graves.get(&key).copied()
    }

    /// Root digest of a scope (`None` if not held).
    pub fn root(&self, scope: &Scope) -> Option<u64> {
        self.scopes.get(scope).map(ScopeState::root)
    }

    /// Bucket digests of a scope.
    pub fn bucket_hashes(&self, scope: &Scope) -> Vec<u64> {
        self.scopes
            .get(scope)
            .map(|s| s.buckets.clone())
            .unwrap_or_default()
    }

    /// Summaries of the entries in the given buckets.
    pub fn summaries(&self, scope: &Scope, buckets: &[u16]) -> Vec<Summary> {
        let Some(s) = self.scopes.get(scope) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for &b in buckets {
            for (_, slot) in s.bucket_range(b) {
                out.push(Summary {
                    khash: slot.khash,
                    stamp: slot.entry.stamp.0,
                    origin: slot.entry.origin.clone(),
                    ehash: slot.ehash,
                });
            }
        }
        out
    }

    /// Compare a peer's summaries of `buckets` with ours: the entries the peer lacks or has
    /// older (to send), and the key hashes where the peer is newer or we lack the key (to ask).
    pub fn diff_summaries(
        &self,
        scope: &Scope,
        buckets: &[u16],
        theirs: &[Summary],
    ) -> (Vec<(Key, Entry)>, Vec<u64>) {
        let Some(s) = self.scopes.get(scope) else {
            return (Vec::new(), theirs.iter().map(|t| t.khash).collect());
        };
        let by_hash: HashMap<u64, &Summary> = theirs.iter().map(|t| (t.khash, t)).collect();
        let mut send = Vec::new();
        let mut want = Vec::new();
        let mut seen = BTreeSet::new();
        for &b in buckets {
            for (key, slot) in s.bucket_range(b) {
                seen.insert(slot.khash);
                match by_hash.get(&slot.khash) {
                    None => send.push((key.clone(), slot.entry.clone())),
                    Some(t) if t.ehash == slot.ehash => {}
                    Some(t) => {
                        let ord =
                            (slot.entry.stamp.0, &slot.entry.origin).cmp(&(t.stamp, &t.origin));
                        if ord != std::cmp::Ordering::Less {
                            send.push((key.clone(), slot.entry.clone()));
                        }
                        if ord != std::cmp::Ordering::Greater {
                            want.push(t.khash);
                        }
                    }
                }
            }
        }
        want.extend(
            theirs
                .iter()
                .filter(|t| !seen.contains(&t.khash))
                .map(|t| t.khash),
        );
        (send, want)
    }

    /// The entries of a scope with the given key hashes.
    pub fn entries_by_hash(&self, scope: &Scope, khashes: &[u64]) -> Vec<(Key, Entry)> {
        let Some(s) = self.scopes.get(scope) else {
            return Vec::new();
        };
        let nb = s.buckets.len() as u64;
        let mut out = Vec::new();
        for &h in khashes {
            if let Some((k, slot)) = s
                .bucket_range((h % nb) as u16)
                .find(|(_, sl)| sl.khash == h)
            {
                out.push((k.clone(), slot.entry.clone()));
            }
        }
        out
    }

    /// All entries of a scope (tombstones included), sorted by key.
    pub fn scope_entries(&self, scope: &Scope) -> Vec<(Key, Entry)> {
        let mut v: Vec<(Key, Entry)> = self
            .scopes
            .get(scope)
            .map(|s| {
                s.iter()
                    .map(|(k, sl)| (k.key.clone(), sl.entry.clone()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every entry of every scope, sorted by key.
    pub fn all_entries(&self) -> Vec<(Key, Entry)> {
        let mut v: Vec<(Key, Entry)> = self
            .scopes
            .values()
            .flat_map(|s| {
                s.iter()
                    .map(|(k, sl)| (k.key.clone(), sl.entry.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Mutations since the last call (persist them in one transaction).
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Human-readable dump, one line per key, sorted: `key = value  [stamp origin]` or
    /// `key (deleted; acked by a,b)  [stamp origin]`, then the graves.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for (k, e) in self.all_entries() {
            out.push_str(&format_entry(&k, &e));
            out.push('\n');
        }
        let mut graves: Vec<(Key, Stamp)> = self
            .scopes
            .values()
            .flat_map(|s| s.graves.iter().map(|(k, st)| (k.clone(), *st)))
            .collect();
        graves.sort();
        for (k, st) in graves {
            out.push_str(&format!("{k} (collected tombstone)  [{st}]\n"));
        }
        out
    }
}

/// One dump line for an entry.
pub fn format_entry(key: &str, e: &Entry) -> String {
    match &e.value {
        Value::Set(v) => format!("{key} = {v}  [{} {}]", e.stamp, e.origin),
        Value::Tombstone(Acks::All) => {
            format!("{key} (deleted; acked by all)  [{} {}]", e.stamp, e.origin)
        }
        Value::Tombstone(Acks::Some(a)) => {
            let names: Vec<&str> = a.iter().map(|n| &**n).collect();
            format!(
                "{key} (deleted; acked by {})  [{} {}]",
                names.join(","),
                e.stamp,
                e.origin
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The shared-base + overlay layout behaves like one plain map (iteration order,
        /// lookups, bucket ranges, root digest), across compactions.
        #[test]
        fn overlay_matches_a_plain_map(
            template in proptest::collection::vec((0u16..300, 0u64..5), 0..200),
            ops in proptest::collection::vec((0u16..300, 0u64..5, any::<bool>()), 0..400),
        ) {
            let key = |i: u16| -> Key { Arc::from(format!("userspace/k{i}")) };
            let ent = |v: u64| Entry::set(&v.to_string(), Stamp(v + 1), Arc::from("a"));
            let mut base = ScopeState::new(16);
            let mut model: BTreeMap<Key, Entry> = BTreeMap::new();
            for (i, v) in template {
                base.insert(&key(i), ent(v));
                model.insert(key(i), ent(v));
            }
            let mut s = base.clone();
            for (i, v, bury) in ops {
                if bury {
                    s.bury(&key(i), Stamp(9));
                    model.remove(&key(i));
                } else {
                    s.put(&key(i), ent(v));
                    model.insert(key(i), ent(v));
                }
            }
            let mut got: Vec<(Key, Entry)> = s.iter().map(|(k, sl)| (k.key.clone(), sl.entry.clone())).collect();
            got.sort_by(|a, b| a.0.cmp(&b.0));
            let want: Vec<(Key, Entry)> = model.iter().map(|(k, e)| (k.clone(), e.clone())).collect();
            prop_assert_eq!(&got, &want);
            let mut fresh = ScopeState::new(16);
            for (k, e) in &model {
                fresh.insert(k, e.clone());
                prop_assert_eq!(s.get(k), Some(e));
            }
            prop_assert_eq!(s.root(), fresh.root());
            for b in 0..16 {
                let x: Vec<&Key> = s.bucket_range(b).map(|(k, _)| k).collect();
                let y: Vec<&Key> = fresh.bucket_range(b).map(|(k, _)| k).collect();
                prop_assert_eq!(x, y);
            }
        }
    }
}
