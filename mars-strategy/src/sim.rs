//! Simulation harness: thousands of [`MetaNode`]s in one process over a simulated network
//! with loss, delay, duplication, partitions and crashed nodes. Nodes run exactly the
//! propagation code of the daemon; only the transport is simulated.
//!
//! Time advances in rounds. In each round the messages due are delivered (each sent message
//! arrives `1 + rand(0..=max_extra_delay)` rounds later, unless lost), then every live node
//! ticks once. Costs are counted per message with its postcard size.

use crate::entry::Entry;
use crate::names::{Key, NodeName, Scope};
use crate::node::{MetaNode, Mode, PropConfig};
use crate::proto::{Body, Envelope};
use crate::store::{ClockSource, MetaStore, ScopeState, GLOBAL_BUCKETS, RESOURCE_BUCKETS};
use brick_core::Stamp;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Simulation parameters.
#[derive(Debug, Clone, Copy)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Replicas per resource; every node holds `k` resources, so there are `nodes` resources.
    pub k: usize,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub dup: f64,
    /// Extra delay: each message takes `1 + rand(0..=max_extra_delay)` rounds.
    pub max_extra_delay: u64,
    /// Propagation parameters (mode, fanouts).
    pub prop: PropConfig,
    /// Seed for everything random.
    pub seed: u64,
}

impl SimConfig {
    /// A lossless, fixed-delay network of `nodes` nodes with `k` replicas per resource.
    pub fn new(nodes: usize, k: usize, mode: Mode) -> SimConfig {
        SimConfig {
            nodes,
            k,
            loss: 0.0,
            dup: 0.0,
            max_extra_delay: 0,
            prop: PropConfig {
                mode,
                ..PropConfig::default()
            },
            seed: 42,
        }
    }
}

/// The simulated side of the [`Transport`](crate::transport::Transport) seam: collects what a
/// node sends; [`Sim::route`] then applies loss, delay, duplication and partitions.
struct SimWire(Vec<(NodeName, Envelope)>);

impl crate::transport::Transport for SimWire {
    fn send(&mut self, to: &NodeName, msg: Envelope) {
        self.0.push((to.clone(), msg));
    }
}

/// Message and byte counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages sent.
    pub msgs: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// The most messages one node sent in one round.
    pub max_node_round: u64,
}

/// The simulated cluster.
pub struct Sim {
    nodes: Vec<MetaNode>,
    names: Vec<NodeName>,
    resources: Vec<(Arc<str>, Vec<usize>)>,
    pending: VecDeque<Vec<(usize, Envelope)>>,
    round: u64,
    time: Arc<AtomicU64>,
    rng: StdRng,
    cfg: SimConfig,
    group: Vec<u32>,
    down: Vec<bool>,
    traffic: Traffic,
    pull_size: u64,
    sent_round: Vec<u64>,
}

fn node_name(i: usize) -> NodeName {
    Arc::from(format!("n{i:05}"))
}

impl Sim {
    /// A converged cluster: every node knows every member (`ips/ip-*`) and the resource
    /// directory; every resource's members hold its keys.
    pub fn new(cfg: SimConfig) -> Sim {
        let n = cfg.nodes.max(2);
        let k = cfg.k.clamp(1, n);
        let time = Arc::new(AtomicU64::new(1_700_000_000_000_000_000));
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let names: Vec<NodeName> = (0..n).map(node_name).collect();
        let t0 = Stamp(1_600_000_000_000_000_000);
        let mut global = ScopeState::new(GLOBAL_BUCKETS);
        global.insert(
            &Arc::from("uuid"),
            Entry::set("sim_cluster", t0, names[0].clone()),
        );
        for (i, name) in names.iter().enumerate() {
            let key: Key = Arc::from(format!("ips/ip-{name}"));
            let addr = format!("10.{}.{}.{}:7777", i >> 16, (i >> 8) & 255, i & 255);
            global.insert(&key, Entry::set(&addr, t0, name.clone()));
        }
        // Resource j has k members spread by a random permutation; every node is in k of them.
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(&mut rng);
        let mut resources = Vec::with_capacity(n);
        let mut scopes = Vec::with_capacity(n);
        for j in 0..n {
            let members: Vec<usize> = (0..k).map(|t| perm[(j + t * (n / k)) % n]).collect();
            let r: Arc<str> = Arc::from(format!("r{j:05}"));
            let m0 = names[members[0]].clone();
            global.insert(
                &Arc::from(format!("resources/{r}")),
                Entry::set(&m0, t0, m0.clone()),
            );
            let mut s = ScopeState::new(RESOURCE_BUCKETS);
            let mut put = |key: String, val: &str, origin: &NodeName| {
                s.insert(&Arc::from(key), Entry::set(val, t0, origin.clone()));
            };
            put(format!("resource-{r}/size"), "1073741824", &m0);
            put(format!("resource-{r}/primary"), &m0, &m0);
            put(format!("resource-{r}/log-000000001-{m0}"), "", &m0);
            let v1 = crate::views::VersionLink::next(
                "",
                crate::views::LogName::new(1, m0.to_string()),
                0,
            );
            for &m in &members {
                let h = &names[m];
                put(format!("resource-{r}/data-{h}"), &format!("/dev/vg/{r}"), h);
                put(format!("resource-{r}/device-{h}"), &r, h);
                put(
                    format!("resource-{r}/replay-{h}"),
                    &format!("log-000000001-{m0},0,0"),
                    h,
                );
                put(
                    format!("resource-{r}/version-000000001-{h}"),
                    &v1.to_string(),
                    h,
                );
                put(format!("resource-{r}/syncstatus-{h}"), "1073741824", h);
                for sw in ["attach", "connect", "sync", "allow-replay"] {
                    put(format!("resource-{r}/todo-{h}/{sw}"), "1", h);
                }
                put(
                    format!("resource-{r}/actual-{h}/is-primary"),
                    if *h == m0 { "1" } else { "0" },
                    h,
                );
            }
            scopes.push(s);
            resources.push((r, members));
        }
        let mut nodes: Vec<MetaNode> = Vec::with_capacity(n);
        for (i, name) in names.iter().enumerate() {
            let mut store =
                MetaStore::new(name, ClockSource::Manual(time.clone())).expect("valid name");
            store.install_scope(Scope::Global, global.clone());
            nodes.push(MetaNode::new(
                store,
                cfg.prop,
                cfg.seed ^ (i as u64).wrapping_mul(0x9e37_79b9),
            ));
        }
        for (j, (r, members)) in resources.iter().enumerate() {
            for &m in members {
                nodes[m]
                    .store_mut()
                    .install_scope(Scope::Resource(r.clone()), scopes[j].clone());
            }
        }
        let pull_size = nodes[0].envelope(Body::Pull).wire_size();
        Sim {
            nodes,
            names,
            resources,
            pending: VecDeque::new(),
            round: 0,
            time,
            rng,
            cfg,
            group: vec![0; n],
            down: vec![false; n],
            traffic: Traffic::default(),
            pull_size,
            sent_round: vec![0; n],
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the simulation has no nodes (never: at least 2).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &MetaNode {
        &self.nodes[i]
    }

    /// Node `i`, mutably; call [`Sim::route`] after queueing messages through it.
    pub fn node_mut(&mut self, i: usize) -> &mut MetaNode {
        &mut self.nodes[i]
    }

    /// Name of node `i`.
    pub fn name(&self, i: usize) -> &NodeName {
        &self.names[i]
    }

    /// Resources and their members (node indices).
    pub fn resources(&self) -> &[(Arc<str>, Vec<usize>)] {
        &self.resources
    }

    /// Current round.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// Counters since the last [`Sim::reset_traffic`].
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// Zero the counters.
    pub fn reset_traffic(&mut self) {
        self.traffic = Traffic::default();
    }

    /// Split the nodes into groups; messages between groups are lost.
    pub fn partition(&mut self, group_of: impl Fn(usize) -> u32) {
        for i in 0..self.nodes.len() {
            self.group[i] = group_of(i);
        }
    }

    /// Heal all partitions.
    pub fn heal(&mut self) {
        self.group.iter_mut().for_each(|g| *g = 0);
    }

    /// Stop node `i` (messages to it are lost; it does not tick).
    pub fn crash(&mut self, i: usize) {
        self.down[i] = true;
    }

    /// Restart node `i` with its store as it was (the store is persistent).
    pub fn restart(&mut self, i: usize) {
        self.down[i] = false;
    }

    /// Whether node `i` is up.
    pub fn is_up(&self, i: usize) -> bool {
        !self.down[i]
    }

    /// Change the loss rate.
    pub fn set_loss(&mut self, loss: f64) {
        self.cfg.loss = loss;
    }

    /// Index of a node name (`n%05d`, checked against the table).
    fn index_of(&self, name: &NodeName) -> Option<usize> {
        let i: usize = name.get(1..)?.parse().ok()?;
        (self.names.get(i) == Some(name)).then_some(i)
    }

    /// Move what node `i` queued onto the simulated network.
    pub fn route(&mut self, i: usize) {
        self.nodes[i].store_mut().take_changes();
        let mut wire = SimWire(Vec::new());
        crate::transport::flush(&mut self.nodes[i], &mut wire);
        let out = wire.0;
        self.sent_round[i] += out.len() as u64;
        self.traffic.max_node_round = self.traffic.max_node_round.max(self.sent_round[i]);
        for (to, env) in out {
            let Some(ti) = self.index_of(&to) else {
                continue;
            };
            self.traffic.msgs += 1;
            self.traffic.bytes += match &env.body {
                Body::Pull => self.pull_size,
                Body::Dump {
                    entries,
                    dump_bytes,
                } if entries.is_empty() => *dump_bytes,
                _ => env.wire_size(),
            };
            if self.group[i] != self.group[ti] || self.rng.gen_bool(self.cfg.loss.clamp(0.0, 1.0)) {
                continue;
            }
            let copies = if self.rng.gen_bool(self.cfg.dup.clamp(0.0, 1.0)) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay = 1 + self.rng.gen_range(0..=self.cfg.max_extra_delay) as usize;
                while self.pending.len() < delay {
                    self.pending.push_back(Vec::new());
                }
                self.pending[delay - 1].push((ti, env.clone()));
            }
        }
    }

    /// One round: deliver what is due, then tick every live node.
    pub fn step(&mut self) {
        self.round += 1;
        self.time.fetch_add(10_000_000, Ordering::Relaxed);
        let batch = self.pending.pop_front().unwrap_or_default();
        self.sent_round.iter_mut().for_each(|c| *c = 0);
        for (to, env) in batch {
            if self.down[to] {
                continue;
            }
            self.nodes[to].handle(env);
            self.route(to);
        }
        for i in 0..self.nodes.len() {
            if self.down[i] {
                continue;
            }
            self.nodes[i].tick();
            self.route(i);
        }
    }

    /// Whether every live node that should hold `key` holds the same write as node `src`.
    pub fn converged_on(&self, src: usize, key: &str) -> bool {
        let Some(want) = self.nodes[src].store().entry(key) else {
            return false;
        };
        let scope = Scope::of(key);
        self.nodes.iter().enumerate().all(|(i, n)| {
            if self.down[i] || !n.store().holds(&scope) {
                return true;
            }
            n.store()
                .entry(key)
                .is_some_and(|e| e.stamp == want.stamp && e.origin == want.origin)
        })
    }

    /// Step until `converged_on(src, key)` or `max_rounds` passed; the rounds it took.
    pub fn run_until_converged(&mut self, src: usize, key: &str, max_rounds: u64) -> Option<u64> {
        let start = self.round;
        while self.round - start < max_rounds {
            self.step();
            if self.converged_on(src, key) {
                return Some(self.round - start);
            }
        }
        None
    }

    /// Whether all live nodes agree on every scope they hold (same root digest per scope).
    pub fn fully_converged(&self) -> bool {
        let mut roots: HashMap<Scope, u64> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if self.down[i] {
                continue;
            }
            let mut scopes = vec![Scope::Global];
            scopes.extend(n.store().resources().into_iter().map(Scope::Resource));
            for s in scopes {
                let r = n.store().root(&s).unwrap_or(0);
                if *roots.entry(s).or_insert(r) != r {
                    return false;
                }
            }
        }
        true
    }

    /// Mode of the simulated nodes.
    pub fn mode(&self) -> Mode {
        self.cfg.prop.mode
    }
}

/// What [`measure`] found for one configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Report {
    /// Steady state (no change): messages per node per round.
    pub idle_msgs: f64,
    /// Steady state: bytes per node per round.
    pub idle_bytes: f64,
    /// After one global change: rounds until every node has it.
    pub global_rounds: Option<u64>,
    /// Messages per node per round while the global change spread.
    pub global_msgs: f64,
    /// Bytes per node per round while the global change spread.
    pub global_bytes: f64,
    /// After one resource change: rounds until every member has it.
    pub resource_rounds: Option<u64>,
    /// Messages per node per round while the resource change spread.
    pub resource_msgs: f64,
    /// Most messages one node sent in one round, over the whole run.
    pub max_node_round: u64,
}

/// Build a simulation and measure idle cost and convergence of one global and one resource
/// change.
pub fn measure(cfg: SimConfig, idle_rounds: u64, max_rounds: u64) -> Report {
    let mut sim = Sim::new(cfg);
    let n = sim.len() as f64;
    let mut rep = Report::default();
    let per = |t: Traffic, rounds: u64| {
        (
            t.msgs as f64 / n / rounds.max(1) as f64,
            t.bytes as f64 / n / rounds.max(1) as f64,
        )
    };
    for _ in 0..2 {
        sim.step();
    }
    sim.reset_traffic();
    for _ in 0..idle_rounds {
        sim.step();
    }
    let mut max_node = sim.traffic().max_node_round;
    (rep.idle_msgs, rep.idle_bytes) = per(sim.traffic(), idle_rounds);
    // One global change at a random node.
    let src = sim.len() / 3;
    sim.reset_traffic();
    sim.node_mut(src)
        .set("defaults/sync-limit", "12345")
        .expect("shared key");
    sim.route(src);
    rep.global_rounds = sim.run_until_converged(src, "defaults/sync-limit", max_rounds);
    let r = rep.global_rounds.unwrap_or(max_rounds);
    max_node = max_node.max(sim.traffic().max_node_round);
    (rep.global_msgs, rep.global_bytes) = per(sim.traffic(), r);
    // One resource change by a member.
    let (res, members) = sim.resources()[0].clone();
    let m = members[members.len() - 1];
    let key = format!("resource-{res}/primary");
    let who = sim.name(m).clone();
    sim.reset_traffic();
    sim.node_mut(m).set(&key, &who).expect("shared key");
    sim.route(m);
    rep.resource_rounds = sim.run_until_converged(m, &key, max_rounds);
    let r = rep.resource_rounds.unwrap_or(max_rounds);
    max_node = max_node.max(sim.traffic().max_node_round);
    rep.resource_msgs = per(sim.traffic(), r).0;
    rep.max_node_round = max_node;
    rep
}
