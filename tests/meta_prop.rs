//! Property tests of the replicated metadata store and its propagation, on 4 nodes (resource
//! `r` held by n0, n1, n2; n3 only in the global scope):
//! - any delivery order, duplication and loss (followed by eventual reliable delivery)
//!   converges every replica of every key to the same entry, namely the newest write;
//! - a deleted key is never resurrected (the newest write being a tombstone, the key reads
//!   as absent everywhere at the end);
//! - ownership is enforced locally (error) and remotely (forged entries rejected);
//! - garbage collection never drops a tombstone that a member has not stored.
use brick_core::Stamp;
use mars_strategy::entry::Entry;
use mars_strategy::names::{Key, Scope};
use mars_strategy::proto::{Body, Envelope, PROTOCOL};
use mars_strategy::store::{ScopeState, GLOBAL_BUCKETS, RESOURCE_BUCKETS};
use mars_strategy::{ClockSource, Error, MetaNode, MetaStore, NodeName, PropConfig};
use proptest::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const N: usize = 4;
const MEMBERS: [usize; 3] = [0, 1, 2];

fn name(i: usize) -> NodeName {
    Arc::from(format!("n{i}"))
}

struct Net {
    nodes: Vec<MetaNode>,
    pool: Vec<(usize, Envelope)>,
    time: Arc<AtomicU64>,
    writes: Vec<(Key, Entry)>,
}

impl Net {
    fn new() -> Net {
        let time = Arc::new(AtomicU64::new(1_000_000_000));
        let t0 = Stamp(1);
        let mut g = ScopeState::new(GLOBAL_BUCKETS);
        g.insert(&Arc::from("uuid"), Entry::set("prop", t0, name(0)));
        for i in 0..N {
            g.insert(
                &Arc::from(format!("ips/ip-n{i}")),
                Entry::set("addr", t0, name(i)),
            );
        }
        let mut r = ScopeState::new(RESOURCE_BUCKETS);
        for &m in &MEMBERS {
            r.insert(
                &Arc::from(format!("resource-r/data-n{m}")),
                Entry::set("/dev/x", t0, name(m)),
            );
        }
        let nodes = (0..N)
            .map(|i| {
                let mut s = MetaStore::new(&name(i), ClockSource::Manual(time.clone())).unwrap();
                s.install_scope(Scope::Global, g.clone());
                if MEMBERS.contains(&i) {
                    s.install_scope(Scope::Resource(Arc::from("r")), r.clone());
                }
                MetaNode::new(s, PropConfig::default(), i as u64)
            })
            .collect();
        Net {
            nodes,
            pool: Vec::new(),
            time,
            writes: Vec::new(),
        }
    }

    fn collect(&mut self, i: usize) {
        self.nodes[i].store_mut().take_changes();
        for (to, env) in self.nodes[i].take_outbox() {
            let t: usize = to[1..].parse().unwrap();
            self.pool.push((t, env));
        }
    }

    fn deliver(&mut self, idx: usize, keep: bool) {
        if self.pool.is_empty() {
            return;
        }
        let idx = idx % self.pool.len();
        let (to, env) = if keep {
            self.pool[idx].clone()
        } else {
            self.pool.swap_remove(idx)
        };
        self.nodes[to].handle(env);
        self.collect(to);
    }

    fn tick(&mut self, i: usize) {
        self.time.fetch_add(1_000, Ordering::Relaxed);
        self.nodes[i].tick();
        self.collect(i);
    }

    fn holders(&self, key: &str) -> Vec<usize> {
        match Scope::of(key) {
            Scope::Global => (0..N).collect(),
            Scope::Resource(_) => MEMBERS.to_vec(),
        }
    }

    /// GC safety: every grave anywhere is covered by every member's entry or grave.
    fn check_gc(&self) {
        for x in &self.nodes {
            for (key, s) in x.store().graves() {
                for m in self.holders(&key) {
                    let st = self.nodes[m].store();
                    let seen = st.entry(&key).is_some_and(|e| e.stamp >= s)
                        || st.grave(&key).is_some_and(|g| g >= s);
                    assert!(
                        seen,
                        "{} collected {key}@{s} but member n{m} has not stored it",
                        x.me()
                    );
                }
            }
        }
    }

    fn converged(&self) -> bool {
        let g: Vec<Option<u64>> = self
            .nodes
            .iter()
            .map(|n| n.store().root(&Scope::Global))
            .collect();
        let r: Vec<Option<u64>> = MEMBERS
            .iter()
            .map(|&m| self.nodes[m].store().root(&Scope::Resource(Arc::from("r"))))
            .collect();
        g.iter().all(|x| *x == g[0]) && r.iter().all(|x| *x == r[0])
    }
}

const KEYS: [&str; 5] = [
    "userspace/k0",
    "userspace/k1",
    "defaults/x",
    "resource-r/primary",
    "resource-r/todo-n1/sync",
];

#[derive(Debug, Clone)]
enum Op {
    Set(usize, usize, u8),
    Del(usize, usize),
    SetOwned(usize, bool),
    Deliver(usize),
    Dup(usize),
    Lose(usize),
    Tick(usize),
    Forge(usize, usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..N, 0..KEYS.len(), 0u8..3).prop_map(|(n, k, v)| Op::Set(n, k, v)),
        2 => (0..N, 0..KEYS.len()).prop_map(|(n, k)| Op::Del(n, k)),
        1 => (0..N, any::<bool>()).prop_map(|(n, d)| Op::SetOwned(n, d)),
        6 => any::<usize>().prop_map(Op::Deliver),
        1 => any::<usize>().prop_map(Op::Dup),
        1 => any::<usize>().prop_map(Op::Lose),
        2 => (0..N).prop_map(Op::Tick),
        1 => (0..N, 0..N, 0..N).prop_map(|(f, v, t)| Op::Forge(f, v, t)),
    ]
}

fn run(ops: Vec<Op>) {
    let mut net = Net::new();
    for op in ops {
        match op {
            Op::Set(n, k, _) | Op::Del(n, k) if !net.holders(KEYS[k]).contains(&n) => {}
            Op::Set(n, k, v) => {
                net.nodes[n].set(KEYS[k], &format!("v{v}")).unwrap();
                net.writes.push((
                    Arc::from(KEYS[k]),
                    net.nodes[n].store().entry(KEYS[k]).unwrap().clone(),
                ));
                net.collect(n);
            }
            Op::Del(n, k) => {
                net.nodes[n].delete(KEYS[k]).unwrap();
                net.writes.push((
                    Arc::from(KEYS[k]),
                    net.nodes[n].store().entry(KEYS[k]).unwrap().clone(),
                ));
                net.collect(n);
            }
            Op::SetOwned(n, del) => {
                // Own keys work; another node's key is refused with NotOwner.
                let own = format!("defaults-n{n}/sync-limit");
                if del {
                    net.nodes[n].delete(&own).unwrap()
                } else {
                    net.nodes[n].set(&own, "7").unwrap()
                }
                net.writes.push((
                    Arc::from(own.as_str()),
                    net.nodes[n].store().entry(&own).unwrap().clone(),
                ));
                net.collect(n);
                let other = format!("ips/ip-n{}", (n + 1) % N);
                assert!(matches!(
                    net.nodes[n].set(&other, "x"),
                    Err(Error::NotOwner { .. })
                ));
            }
            Op::Deliver(i) => net.deliver(i, false),
            Op::Dup(i) => net.deliver(i, true),
            Op::Lose(i) => {
                if !net.pool.is_empty() {
                    let i = i % net.pool.len();
                    net.pool.swap_remove(i);
                }
            }
            Op::Tick(n) => net.tick(n),
            Op::Forge(f, v, t) => {
                if f == v {
                    continue;
                }
                let key: Key = Arc::from(format!("ips/ip-n{v}"));
                let forged = Entry::set("evil", Stamp(u64::MAX / 2), name(f));
                let env = Envelope {
                    version: PROTOCOL,
                    cluster: Arc::from("prop"),
                    also: Vec::new(),
                    from: name(f),
                    body: Body::Push {
                        entries: vec![(key.clone(), forged)],
                        want: Vec::new(),
                    },
                };
                let before = net.nodes[t].store().stats().rejected_owner;
                net.nodes[t].handle(env);
                net.collect(t);
                assert_eq!(net.nodes[t].store().stats().rejected_owner, before + 1);
                assert_ne!(net.nodes[t].store().get(&key), Some("evil"));
            }
        }
        net.check_gc();
    }
    // Eventual delivery: everything still in flight arrives, then reliable rounds.
    let mut rounds = 0;
    loop {
        while !net.pool.is_empty() {
            net.deliver(0, false);
            net.check_gc();
        }
        if net.converged() && rounds > 2 {
            break;
        }
        rounds += 1;
        assert!(rounds < 200, "no convergence after 200 reliable rounds");
        for i in 0..N {
            net.tick(i);
        }
    }
    // Every replica holds the newest write of every key (tombstones read as absent).
    for (key, _) in &net.writes {
        let newest = net
            .writes
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, e)| e)
            .max_by(|a, b| a.write_order(b))
            .unwrap();
        for h in net.holders(key) {
            let st = net.nodes[h].store();
            assert_eq!(
                st.get(key),
                newest.live(),
                "n{h} {key}: resurrected or stale"
            );
            match st.entry(key) {
                Some(e) => assert_eq!(
                    (e.stamp, &e.origin),
                    (newest.stamp, &newest.origin),
                    "n{h} {key}"
                ),
                None => assert!(newest.is_tombstone() && st.grave(key) >= Some(newest.stamp)),
            }
        }
    }
}

fn cases() -> u32 {
    if std::env::var("MARS_LONG_TESTS").is_ok() {
        2000
    } else {
        96
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn any_delivery_converges_without_resurrection(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops);
    }
}

#[test]
fn tombstones_are_collected_once_every_member_acked() {
    let mut net = Net::new();
    net.nodes[0].set("userspace/gone", "1").unwrap();
    net.collect(0);
    for _ in 0..5 {
        while !net.pool.is_empty() {
            net.deliver(0, false);
        }
        (0..N).for_each(|i| net.tick(i));
    }
    net.nodes[1].delete("userspace/gone").unwrap();
    net.collect(1);
    // n3 never hears of it: nobody may collect.
    for _ in 0..10 {
        net.pool.retain(|(to, _)| *to != 3);
        while !net.pool.is_empty() {
            net.deliver(0, false);
            net.pool.retain(|(to, _)| *to != 3);
        }
        (0..3).for_each(|i| net.tick(i));
        net.pool.retain(|(to, _)| *to != 3);
        net.check_gc();
    }
    assert!(net
        .nodes
        .iter()
        .all(|n| n.store().grave("userspace/gone").is_none()));
    assert_eq!(net.nodes[3].store().get("userspace/gone"), Some("1"));
    // n3 comes back: it acks, everyone collects, the value does not come back.
    for _ in 0..30 {
        while !net.pool.is_empty() {
            net.deliver(0, false);
        }
        (0..N).for_each(|i| net.tick(i));
        net.check_gc();
    }
    for n in &net.nodes {
        assert_eq!(n.store().get("userspace/gone"), None);
        assert!(
            n.store().grave("userspace/gone").is_some(),
            "{} did not collect",
            n.me()
        );
    }
}
