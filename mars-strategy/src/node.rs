//! [`MetaNode`]: the propagation state machine of one node. Pure: messages come in through
//! [`MetaNode::handle`], time through [`MetaNode::tick`]; what to send accumulates in an
//! outbox that a shell hands to a [`Transport`](crate::transport::Transport). The same code
//! runs in the simulation and in the real daemon.
//!
//! Invariants:
//! - Every message is checked against the cluster uuid (or a uuid merged into it) before
//!   anything in it is used; `Join`/`MergeRequest` are the only messages accepted from a
//!   foreign cluster, and `Welcome`/`MergeRefused` only from the node we asked.
//! - Resource keys are sent only to the resource's members and subscribers; entries of a
//!   resource this node does not hold are ignored.
//! - A new global write is forwarded once per node to `push_fanout` random members; a node
//!   sends at most `global_fanout` global digests per tick, whatever the cluster size.

use crate::entry::{Acks, Entry, Value};
use crate::names::{Key, NodeName, Scope};
use crate::proto::{Body, Envelope, NO_CLUSTER, PROTOCOL};
use crate::store::{MergeOutcome, MetaStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// How metadata travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Ours: resource keys among members, global keys by bounded-fanout anti-entropy + rumour.
    Scoped,
    /// Upstream's: every node pulls the whole tree from every other node every round.
    FullMesh,
}

/// Propagation parameters.
#[derive(Debug, Clone, Copy)]
pub struct PropConfig {
    /// Scoped or full mesh.
    pub mode: Mode,
    /// Random members sent a global digest per tick.
    pub global_fanout: usize,
    /// Random members a new global write is pushed to (by its writer and by every node that
    /// learns it for the first time).
    pub push_fanout: usize,
    /// Resource digests go to the resource's members every this many ticks.
    pub resource_every: u64,
}

impl Default for PropConfig {
    fn default() -> Self {
        PropConfig {
            mode: Mode::Scoped,
            global_fanout: 3,
            push_fanout: 4,
            resource_every: 2,
        }
    }
}

/// Something that happened that the caller (marsadm, tests) waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// join-cluster completed: we are now in this cluster.
    Joined(Arc<str>),
    /// merge-cluster completed with this peer.
    MergedWith(NodeName),
    /// merge-cluster refused by the peer.
    MergeRefused(Vec<String>),
}

/// Per-node counters.
#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    /// Messages refused for a wrong cluster uuid or protocol version.
    pub rejected_cluster: u64,
    /// Resource entries ignored because this node does not hold the resource.
    pub ignored_scope: u64,
    /// Messages handled, by kind.
    pub handled: BTreeMap<&'static str, u64>,
}

/// One node's metadata store plus its propagation logic.
pub struct MetaNode {
    store: MetaStore,
    cfg: PropConfig,
    rng: StdRng,
    outbox: Vec<(NodeName, Envelope)>,
    events: Vec<NodeEvent>,
    stats: NodeStats,
    ticks: u64,
    cluster: Option<Arc<str>>,
    aliases: Vec<Arc<str>>,
    cluster_gen: u64,
    members: Arc<Vec<NodeName>>,
    members_gen: u64,
    pending_join: Option<NodeName>,
    pending_merge: Option<NodeName>,
    mesh_log: Vec<Key>,
    mesh_sent: HashMap<NodeName, usize>,
}

impl MetaNode {
    /// Wrap a store. `seed` drives the random peer choice (fixed in simulations).
    pub fn new(store: MetaStore, cfg: PropConfig, seed: u64) -> MetaNode {
        let mut n = MetaNode {
            store,
            cfg,
            rng: StdRng::seed_from_u64(seed),
            outbox: Vec::new(),
            events: Vec::new(),
            stats: NodeStats::default(),
            ticks: 0,
            cluster: None,
            aliases: Vec::new(),
            cluster_gen: u64::MAX,
            members: Arc::new(Vec::new()),
            members_gen: u64::MAX,
            pending_join: None,
            pending_merge: None,
            mesh_log: Vec::new(),
            mesh_sent: HashMap::new(),
        };
        n.refresh();
        n
    }

    /// The store (read access).
    pub fn store(&self) -> &MetaStore {
        &self.store
    }

    /// The store (write access without propagation: tests and bootstraps only).
    pub fn store_mut(&mut self) -> &mut MetaStore {
        &mut self.store
    }

    /// This node's name.
    pub fn me(&self) -> &NodeName {
        self.store.me()
    }

    /// The cluster uuid, once in a cluster.
    pub fn cluster(&self) -> Option<&Arc<str>> {
        self.cluster.as_ref()
    }

    /// Live cluster members (`ips/ip-*`), sorted.
    pub fn members(&self) -> &[NodeName] {
        &self.members
    }

    /// Counters.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Messages to send (drain after every call).
    pub fn take_outbox(&mut self) -> Vec<(NodeName, Envelope)> {
        std::mem::take(&mut self.outbox)
    }

    /// Events since the last call.
    pub fn take_events(&mut self) -> Vec<NodeEvent> {
        std::mem::take(&mut self.events)
    }

    pub(crate) fn set_pending_join(&mut self, contact: NodeName) {
        self.pending_join = Some(contact);
    }

    pub(crate) fn set_pending_merge(&mut self, contact: NodeName) {
        self.pending_merge = Some(contact);
    }

    /// Refresh the cached cluster uuid, aliases and member list if the store changed them.
    fn refresh(&mut self) {
        if self.cluster_gen != self.store.cluster_generation() {
            self.cluster_gen = self.store.cluster_generation();
            self.cluster = self.store.get("uuid").map(Arc::from);
            self.aliases = match &self.cluster {
                Some(u) => self
                    .store
                    .list("merged/")
                    .into_iter()
                    .filter(|(_, v)| *v == &**u)
                    .map(|(k, _)| Arc::from(&k["merged/".len()..]))
                    .collect(),
                None => Vec::new(),
            };
        }
        if self.members_gen != self.store.members_generation() {
            self.members_gen = self.store.members_generation();
            self.members = self.store.member_list();
        }
    }

    pub(crate) fn envelope(&self, body: Body) -> Envelope {
        Envelope {
            version: PROTOCOL,
            cluster: self
                .cluster
                .clone()
                .unwrap_or_else(|| Arc::from(NO_CLUSTER)),
            also: self.aliases.clone(),
            from: self.me().clone(),
            body,
        }
    }

    pub(crate) fn send(&mut self, to: &NodeName, body: Body) {
        let env = self.envelope(body);
        self.outbox.push((to.clone(), env));
    }

    /// Up to `k` random members other than this node and `except`.
    fn random_members(&mut self, k: usize, except: Option<&NodeName>) -> Vec<NodeName> {
        let n = self.members.len();
        let mut out: Vec<NodeName> = Vec::with_capacity(k);
        let eligible = n
            - usize::from(self.members.binary_search(self.me()).is_ok())
            - except.map_or(0, |e| usize::from(self.members.binary_search(e).is_ok()));
        let want = k.min(eligible);
        let mut tries = 0;
        while out.len() < want && tries < 16 * k + 64 {
            tries += 1;
            let c = &self.members[self.rng.gen_range(0..n)];
            if c == self.me() || Some(c) == except || out.contains(c) {
                continue;
            }
            out.push(c.clone());
        }
        out
    }

    /// The nodes that care about a resource, other than this node.
    fn resource_peers(&self, res: &Arc<str>) -> Vec<NodeName> {
        self.store
            .members(&Scope::Resource(res.clone()))
            .into_iter()
            .filter(|m| m != self.me())
            .collect()
    }

    /// Send entries to the nodes that care: resource entries to the resource's members,
    /// global entries as a rumour to `push_fanout` random members.
    fn spread(&mut self, entries: Vec<(Key, Entry)>, except: Option<&NodeName>) {
        let mut global = Vec::new();
        let mut per_res: BTreeMap<Arc<str>, Vec<(Key, Entry)>> = BTreeMap::new();
        for (k, e) in entries {
            match Scope::of(&k) {
                Scope::Global => global.push((k, e)),
                Scope::Resource(r) => per_res.entry(r).or_default().push((k, e)),
            }
        }
        let mut per_peer: BTreeMap<NodeName, Vec<(Key, Entry)>> = BTreeMap::new();
        if !global.is_empty() && self.cfg.mode == Mode::Scoped {
            for p in self.random_members(self.cfg.push_fanout, except) {
                per_peer
                    .entry(p)
                    .or_default()
                    .extend(global.iter().cloned());
            }
        }
        for (r, es) in per_res {
            for p in self.resource_peers(&r) {
                if Some(&p) != except {
                    per_peer.entry(p).or_default().extend(es.iter().cloned());
                }
            }
        }
        for (p, entries) in per_peer {
            self.send(
                &p,
                Body::Push {
                    entries,
                    want: Vec::new(),
                },
            );
        }
    }

    /// Write a key locally and push it to the nodes that care.
    pub fn set(&mut self, key: &str, value: &str) -> crate::Result<()> {
        let e = self.store.set(key, value)?;
        self.after_local(key, e);
        Ok(())
    }

    /// Delete a key locally (tombstone) and push it to the nodes that care.
    pub fn delete(&mut self, key: &str) -> crate::Result<()> {
        let e = self.store.delete(key)?;
        self.after_local(key, e);
        Ok(())
    }

    fn after_local(&mut self, key: &str, e: Entry) {
        let key: Key = Arc::from(key);
        if self.cfg.mode == Mode::FullMesh {
            self.mesh_log.push(key.clone());
        }
        self.refresh();
        self.spread(vec![(key, e)], None);
    }

    fn accepts(&self, env: &Envelope) -> bool {
        if env.version != PROTOCOL {
            return false;
        }
        match &env.body {
            Body::Join { .. } | Body::MergeRequest { .. } => self.cluster.is_some(),
            Body::Welcome { .. } => {
                self.pending_join.as_ref() == Some(&env.from)
                    || self.pending_merge.as_ref() == Some(&env.from)
            }
            Body::MergeRefused { .. } => self.pending_merge.as_ref() == Some(&env.from),
            _ => match &self.cluster {
                None => false,
                Some(mine) => {
                    &env.cluster == mine
                        || self.aliases.contains(&env.cluster)
                        || env.also.contains(mine)
                }
            },
        }
    }

    /// Handle one message from a peer.
    pub fn handle(&mut self, env: Envelope) {
        self.refresh();
        if !self.accepts(&env) {
            self.stats.rejected_cluster += 1;
            tracing::warn!(from = %env.from, cluster = %env.cluster, kind = env.body.kind(),
                mine = ?self.cluster, "metadata message from another cluster (or unexpected) refused");
            return;
        }
        *self.stats.handled.entry(env.body.kind()).or_default() += 1;
        let from = env.from;
        match env.body {
            Body::Digest { global, resources } => self.on_digest(&from, global, resources),
            Body::Buckets { scopes } => self.on_buckets(&from, scopes),
            Body::Summaries { parts } => self.on_summaries(&from, parts),
            Body::Push { entries, want } => {
                self.absorb(&from, entries);
                let mut back = Vec::new();
                for (scope, hashes) in want {
                    back.extend(self.store.entries_by_hash(&scope, &hashes));
                }
                if !back.is_empty() {
                    self.send(
                        &from,
                        Body::Push {
                            entries: back,
                            want: Vec::new(),
                        },
                    );
                }
            }
            Body::Pull => self.on_pull(&from),
            Body::Dump { entries, .. } => self.absorb(&from, entries),
            Body::Join { entries } => {
                let own = entries
                    .into_iter()
                    .filter(|(k, e)| crate::names::owner_of(k) == Some(&*from) && e.origin == from)
                    .collect();
                self.absorb(&from, own);
                let all = self.store.scope_entries(&Scope::Global);
                self.send(&from, Body::Welcome { entries: all });
            }
            Body::Welcome { entries } => {
                self.absorb(&from, entries);
                self.refresh();
                if self.pending_join.take().is_some() {
                    if let Some(u) = self.cluster.clone() {
                        self.events.push(NodeEvent::Joined(u));
                    }
                }
                if self.pending_merge.take().is_some() {
                    self.events.push(NodeEvent::MergedWith(from));
                }
            }
            Body::MergeRequest { resources, entries } => {
                self.on_merge_request(&from, env.cluster, resources, entries)
            }
            Body::MergeRefused { conflicts } => {
                self.pending_merge = None;
                self.events.push(NodeEvent::MergeRefused(conflicts));
            }
        }
        self.refresh();
    }

    /// Merge remote entries; spread what was new.
    pub(crate) fn absorb(&mut self, from: &NodeName, entries: Vec<(Key, Entry)>) {
        let mut spread = Vec::new();
        let mut collected_back = Vec::new();
        let mut newcomers: Vec<(Arc<str>, NodeName)> = Vec::new();
        for (k, e) in entries {
            let scope = Scope::of(&k);
            if let Scope::Resource(_) = scope {
                if !self.store.holds(&scope) {
                    self.stats.ignored_scope += 1;
                    continue;
                }
            }
            match self.store.merge_remote(&k, &e) {
                MergeOutcome::Changed(ne) => {
                    if self.cfg.mode == Mode::FullMesh {
                        self.mesh_log.push(k.clone());
                    }
                    if let Scope::Resource(r) = &scope {
                        if let Some(h) = joined_member(&k, &ne, r) {
                            if &h != self.me() {
                                newcomers.push((r.clone(), h));
                            }
                        }
                        if ne.is_tombstone() {
                            spread.push((k, ne)); // tell the members about our ack
                        }
                    } else {
                        spread.push((k, ne));
                    }
                }
                MergeOutcome::Acked(ne) => {
                    if let Scope::Resource(_) = scope {
                        spread.push((k, ne));
                    }
                }
                MergeOutcome::Buried(stamp) => {
                    if matches!(e.value, Value::Tombstone(Acks::Some(_))) && e.stamp == stamp {
                        collected_back.push((
                            k,
                            Entry {
                                value: Value::Tombstone(Acks::All),
                                ..e
                            },
                        ));
                    }
                }
                MergeOutcome::Unchanged | MergeOutcome::Rejected => {}
            }
        }
        if !collected_back.is_empty() {
            self.send(
                from,
                Body::Push {
                    entries: collected_back,
                    want: Vec::new(),
                },
            );
        }
        self.refresh();
        if !spread.is_empty() {
            self.spread(spread, Some(from));
        }
        for (r, h) in newcomers {
            let all = self.store.scope_entries(&Scope::Resource(r));
            self.send(
                &h,
                Body::Push {
                    entries: all,
                    want: Vec::new(),
                },
            );
        }
    }

    fn on_digest(&mut self, from: &NodeName, global: Option<u64>, resources: Vec<(Arc<str>, u64)>) {
        let mut scopes = Vec::new();
        if let Some(root) = global {
            if self.store.root(&Scope::Global) != Some(root) {
                scopes.push((Scope::Global, self.store.bucket_hashes(&Scope::Global)));
            }
        }
        for (r, root) in resources {
            let s = Scope::Resource(r);
            if let Some(mine) = self.store.root(&s) {
                if mine != root {
                    let h = self.store.bucket_hashes(&s);
                    scopes.push((s, h));
                }
            }
        }
        if !scopes.is_empty() {
            self.send(from, Body::Buckets { scopes });
        }
    }

    fn on_buckets(&mut self, from: &NodeName, scopes: Vec<(Scope, Vec<u64>)>) {
        let mut parts = Vec::new();
        for (scope, theirs) in scopes {
            let mine = self.store.bucket_hashes(&scope);
            if mine.len() != theirs.len() {
                continue;
            }
            let diff: Vec<u16> = (0..mine.len())
                .filter(|&i| mine[i] != theirs[i])
                .map(|i| i as u16)
                .collect();
            if !diff.is_empty() {
                let items = self.store.summaries(&scope, &diff);
                parts.push((scope, diff, items));
            }
        }
        if !parts.is_empty() {
            self.send(from, Body::Summaries { parts });
        }
    }

    fn on_summaries(
        &mut self,
        from: &NodeName,
        parts: Vec<(Scope, Vec<u16>, Vec<crate::store::Summary>)>,
    ) {
        let mut entries = Vec::new();
        let mut want = Vec::new();
        for (scope, buckets, items) in parts {
            if !self.store.holds(&scope) {
                continue;
            }
            let (send, w) = self.store.diff_summaries(&scope, &buckets, &items);
            entries.extend(send);
            if !w.is_empty() {
                want.push((scope, w));
            }
        }
        if !entries.is_empty() || !want.is_empty() {
            self.send(from, Body::Push { entries, want });
        }
    }

    fn on_pull(&mut self, from: &NodeName) {
        let sent = self.mesh_sent.get(from).copied().unwrap_or(0);
        let mut keys: BTreeSet<&Key> = BTreeSet::new();
        keys.extend(self.mesh_log[sent.min(self.mesh_log.len())..].iter());
        let entries: Vec<(Key, Entry)> = keys
            .into_iter()
            .filter_map(|k| self.store.entry(k).map(|e| (k.clone(), e.clone())))
            .collect();
        self.mesh_sent.insert(from.clone(), self.mesh_log.len());
        let dump_bytes = self.store.dump_bytes();
        self.send(
            from,
            Body::Dump {
                entries,
                dump_bytes,
            },
        );
    }

    /// One round: collect acknowledged tombstones, then start anti-entropy exchanges.
    pub fn tick(&mut self) {
        self.ticks += 1;
        self.refresh();
        if self.cluster.is_none() {
            return;
        }
        let collected = self.store.collect_garbage();
        if !collected.is_empty() {
            self.refresh();
            self.spread(collected, None);
        }
        match self.cfg.mode {
            Mode::FullMesh => {
                let peers: Vec<NodeName> = self
                    .members
                    .iter()
                    .filter(|m| *m != self.me())
                    .cloned()
                    .collect();
                for p in peers {
                    self.send(&p, Body::Pull);
                }
            }
            Mode::Scoped => self.anti_entropy(),
        }
    }

    fn anti_entropy(&mut self) {
        type Roots = (Option<u64>, Vec<(Arc<str>, u64)>);
        let mut per_peer: BTreeMap<NodeName, Roots> = BTreeMap::new();
        let groot = self.store.root(&Scope::Global);
        for p in self.random_members(self.cfg.global_fanout, None) {
            per_peer.entry(p).or_default().0 = groot;
        }
        let every = self.cfg.resource_every.max(1);
        let resources = self.store.resources();
        for r in resources {
            let peers = self.resource_peers(&r);
            let root = self.store.root(&Scope::Resource(r.clone())).unwrap_or(0);
            for p in peers {
                // Spread resource exchanges over the ticks: each pair every `every` ticks.
                let phase = crate::names::fnv64(p.as_bytes()) % every;
                if self.ticks % every == phase || per_peer.contains_key(&p) {
                    per_peer.entry(p).or_default().1.push((r.clone(), root));
                }
            }
        }
        for (p, (global, resources)) in per_peer {
            self.send(&p, Body::Digest { global, resources });
        }
    }

    pub(crate) fn push_event(&mut self, ev: NodeEvent) {
        self.events.push(ev);
    }
}

/// If `key` is a live `data-<h>`/`device-<h>` of resource `r`, the member `h`.
fn joined_member(key: &str, e: &Entry, r: &str) -> Option<NodeName> {
    e.live()?;
    let last = key
        .strip_prefix("resource-")?
        .strip_prefix(r)?
        .strip_prefix('/')?;
    let h = last
        .strip_prefix("data-")
        .or_else(|| last.strip_prefix("device-"))?;
    Some(Arc::from(h))
}
