//! Simulation tests of metadata propagation (same code as the daemon, simulated network) and
//! of the membership operations.
use mars_strategy::node::Mode;
use mars_strategy::sim::{measure, Sim, SimConfig};
use mars_strategy::{ClockSource, Error, MetaNode, MetaStore, NodeEvent, PropConfig};
use std::collections::BTreeMap;

#[test]
fn converges_despite_loss_delay_and_duplication() {
    let mut cfg = SimConfig::new(300, 2, Mode::Scoped);
    cfg.loss = 0.1;
    cfg.dup = 0.05;
    cfg.max_extra_delay = 2;
    let mut sim = Sim::new(cfg);
    sim.node_mut(17).set("defaults/sync-limit", "5").unwrap();
    sim.route(17);
    let r = sim
        .run_until_converged(17, "defaults/sync-limit", 80)
        .expect("global change converges");
    let (res, members) = sim.resources()[3].clone();
    let key = format!("resource-{res}/todo-{}/sync", sim.name(members[0]));
    sim.node_mut(members[1]).set(&key, "0").unwrap();
    sim.route(members[1]);
    let rr = sim
        .run_until_converged(members[1], &key, 40)
        .expect("resource change converges");
    sim.set_loss(0.0);
    for _ in 0..30 {
        sim.step();
    }
    assert!(sim.fully_converged(), "all scopes equal after loss stops");
    println!("lossy net: global change in {r} rounds, resource change in {rr} rounds");
}

#[test]
fn partition_heals_and_crashed_node_catches_up() {
    let mut sim = Sim::new(SimConfig::new(200, 3, Mode::Scoped));
    sim.partition(|i| u32::from(i >= 100));
    sim.crash(150);
    sim.node_mut(3).set("userspace/x", "1").unwrap();
    sim.route(3);
    for _ in 0..25 {
        sim.step();
    }
    assert!(
        !sim.converged_on(3, "userspace/x"),
        "the change crossed the partition"
    );
    assert_eq!(sim.node(42).store().get("userspace/x"), Some("1"));
    sim.heal();
    sim.restart(150);
    let r = sim
        .run_until_converged(3, "userspace/x", 40)
        .expect("converges after heal");
    assert_eq!(sim.node(150).store().get("userspace/x"), Some("1"));
    println!("converged {r} rounds after the partition healed");
}

#[test]
fn scoped_costs_stay_bounded_and_beat_full_mesh() {
    let n = 200;
    let ours = measure(SimConfig::new(n, 3, Mode::Scoped), 5, 100);
    let mesh = measure(SimConfig::new(n, 3, Mode::FullMesh), 2, 100);
    let goal = 2.0 * (n as f64).log2();
    println!("ours {ours:?}\nmesh {mesh:?}");
    assert!(ours.global_msgs <= 20.0 && ours.idle_msgs <= 20.0);
    assert!(ours.global_rounds.unwrap() as f64 <= goal);
    assert!(ours.resource_rounds.unwrap() <= 2);
    assert!(mesh.idle_msgs > 10.0 * ours.idle_msgs);
    assert!(mesh.idle_bytes > 100.0 * ours.idle_bytes);
}

/// A few nodes with reliable, immediate delivery.
struct Mini {
    nodes: BTreeMap<String, MetaNode>,
}

impl Mini {
    fn new(names: &[&str]) -> Mini {
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let s = MetaStore::new(n, ClockSource::System).unwrap();
                (
                    n.to_string(),
                    MetaNode::new(s, PropConfig::default(), i as u64),
                )
            })
            .collect();
        Mini { nodes }
    }

    fn node(&mut self, n: &str) -> &mut MetaNode {
        self.nodes.get_mut(n).unwrap()
    }

    fn settle(&mut self) {
        for _ in 0..20 {
            loop {
                let mut moved = false;
                let names: Vec<String> = self.nodes.keys().cloned().collect();
                for n in names {
                    for (to, env) in self.node(&n).take_outbox() {
                        moved = true;
                        if let Some(t) = self.nodes.get_mut(&*to) {
                            t.handle(env);
                        }
                    }
                }
                if !moved {
                    break;
                }
            }
            self.nodes.values_mut().for_each(|n| n.tick());
        }
    }

    fn events(&mut self, n: &str) -> Vec<NodeEvent> {
        self.node(n).take_events()
    }
}

#[test]
fn create_join_leave_cluster() {
    let mut m = Mini::new(&["a", "b", "c"]);
    let uuid = m.node("a").create_cluster("10.0.0.1:1").unwrap();
    m.node("b").join_cluster("a", "10.0.0.2:1").unwrap();
    m.settle();
    assert_eq!(m.events("b"), vec![NodeEvent::Joined(uuid.clone())]);
    m.node("c").join_cluster("b", "10.0.0.3:1").unwrap(); // via any member
    m.settle();
    for n in ["a", "b", "c"] {
        assert_eq!(m.node(n).cluster(), Some(&uuid));
        assert_eq!(m.node(n).members().len(), 3, "{n}");
    }
    assert!(matches!(
        m.node("a").join_cluster("b", "x"),
        Err(Error::AlreadyInCluster { .. })
    ));
    // c holds data of r: leave-cluster refused, naming r.
    m.node("c").create_resource("r", 1 << 20).unwrap();
    m.node("a").join_resource("r", "c").unwrap();
    m.settle();
    assert_eq!(
        m.node("a").store().get("resource-r/data-c"),
        Some("/mars/r/data")
    );
    assert!(
        m.node("b").store().get("resource-r/data-c").is_none(),
        "b is no member of r"
    );
    match m.node("c").leave_cluster() {
        Err(Error::StillHoldsData { resources, .. }) => {
            assert_eq!(resources, vec!["r".to_string()])
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    m.node("c").leave_resource("r").unwrap();
    m.node("c").leave_cluster().unwrap();
    m.settle();
    for n in ["a", "b"] {
        assert_eq!(m.node(n).store().get("ips/ip-c"), None, "{n}");
        assert_eq!(m.node(n).members().len(), 2);
    }
}

#[test]
fn merge_cluster_checks_resource_names() {
    let mut m = Mini::new(&["x1", "x2", "y1", "y2"]);
    let ux = m.node("x1").create_cluster("10.0.1.1:1").unwrap();
    m.node("x2").join_cluster("x1", "10.0.1.2:1").unwrap();
    let uy = m.node("y1").create_cluster("10.0.2.1:1").unwrap();
    m.node("y2").join_cluster("y1", "10.0.2.2:1").unwrap();
    m.settle();
    m.node("x1").create_resource("web", 1 << 20).unwrap();
    m.node("y1").create_resource("web", 1 << 20).unwrap();
    m.node("y2").create_resource("db", 1 << 20).unwrap();
    m.settle();
    // Messages between different clusters are refused.
    let before = m.node("y1").stats().rejected_cluster;
    m.node("x1").set("userspace/hello", "1").unwrap();
    let out = m.node("x1").take_outbox();
    for (_, env) in out {
        m.node("y1").handle(env);
    }
    assert!(m.node("y1").stats().rejected_cluster > before);
    // Colliding names: refused with the list.
    m.node("x2").merge_cluster("y2").unwrap();
    m.settle();
    assert!(m
        .events("x2")
        .contains(&NodeEvent::MergeRefused(vec!["web".into()])));
    assert_eq!(m.node("y1").cluster(), Some(&uy));
    // After y deletes its "web", the merge goes through and everyone ends in one cluster.
    m.node("y1").store_mut().delete("resources/web").unwrap();
    m.node("y1").set("resources/web-old", "y1").unwrap();
    m.settle();
    m.node("x2").merge_cluster("y2").unwrap();
    m.settle();
    assert!(m.events("x2").contains(&NodeEvent::MergedWith("y2".into())));
    for n in ["x1", "x2", "y1", "y2"] {
        assert_eq!(m.node(n).cluster(), Some(&ux), "{n}");
        assert_eq!(m.node(n).members().len(), 4, "{n}");
        assert_eq!(m.node(n).store().get("userspace/hello"), Some("1"), "{n}");
    }
}
