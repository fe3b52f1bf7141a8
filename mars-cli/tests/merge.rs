//! merge-cluster: refused (with the list, nothing changed) when resource names collide;
//! otherwise two clusters become one, their resources keep replicating, and propagation
//! stays scoped (a node holds only its own resources' keys plus the global ones).

mod common;
use common::*;
use std::time::Duration;

const SIZE: u64 = 8 << 20;

fn resource(c: &Cluster, res: &str) -> Vec<u8> {
    let (p, s) = (&c.nodes[0], &c.nodes[1]);
    p.ok(&[
        "create-resource",
        res,
        &c.device(&format!("{res}-p.img"), SIZE),
    ]);
    p.wait_state(res, "Primary", |m| m.role == "Primary");
    s.ok(&[
        "join-resource",
        res,
        &c.device(&format!("{res}-s.img"), SIZE),
    ]);
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = p.nbd(res);
    write_blocks(&mut nbd, &mut model, res.len() as u64, 200, 50);
    nbd.disconnect().unwrap();
    s.wait_uptodate(res);
    model
}

/// Metadata messages and bytes each node sends per propagation round, measured over `window`
/// of steady state (no writes).
fn per_round(nodes: &[&Node], window: Duration) -> Vec<(String, f64, f64)> {
    let before: Vec<_> = nodes.iter().map(|n| n.status().meta).collect();
    std::thread::sleep(window); // a measurement window, not a synchronisation
    nodes
        .iter()
        .zip(before)
        .map(|(n, b)| {
            let a = n.status().meta;
            let rounds = (a.rounds - b.rounds).max(1) as f64;
            (
                n.name.clone(),
                (a.sent - b.sent) as f64 / rounds,
                (a.sent_bytes - b.sent_bytes) as f64 / rounds,
            )
        })
        .collect()
}

#[test]
fn merge_cluster_refuses_colliding_names_and_otherwise_keeps_replicating() {
    let x = Cluster::new(&["a1", "a2"]);
    let y = Cluster::new(&["b1", "b2"]);
    let z = Cluster::new(&["c1", "c2"]);
    let mut mx = resource(&x, "r0");
    let mut my = resource(&y, "r1");
    resource(&z, "r0");
    let ips_before = x.nodes[0].ok(&["lowlevel-ls", "ips/"]);
    let everyone: Vec<&Node> = x.nodes.iter().chain(&y.nodes).collect();
    let before = per_round(&everyone, Duration::from_secs(3));

    let err = z.nodes[0].refused(&["merge-cluster", &x.nodes[0].addr()], "r0");
    assert!(err.contains("exist in both clusters"), "{err}");
    assert_eq!(
        x.nodes[0].ok(&["lowlevel-ls", "ips/"]),
        ips_before,
        "a refused merge changed cluster x"
    );

    let out = y.nodes[0].ok(&["merge-cluster", &x.nodes[0].addr()]);
    assert!(out.contains("merged"), "{out}");
    let all = ["a1", "a2", "b1", "b2"];
    for n in x.nodes.iter().chain(&y.nodes) {
        wait_until(
            Duration::from_secs(30),
            "every node to know all four",
            || {
                let ips = n.ok(&["lowlevel-ls", "ips/"]);
                match all.iter().find(|h| !ips.contains(&format!("ips/ip-{h} "))) {
                    None => Ok(()),
                    Some(h) => Err(format!("{} does not know {h}: {ips}", n.name)),
                }
            },
        );
    }
    let after = per_round(&everyone, Duration::from_secs(3));
    eprintln!("metadata messages (bytes) sent per node per round, before / after the merge:");
    for ((n, m0, b0), (_, m1, b1)) in before.iter().zip(&after) {
        eprintln!("  {n}: {m0:.2} ({b0:.0} B) / {m1:.2} ({b1:.0} B)");
    }
    for (n, m, _) in &after {
        // Bounded fanout: a node talks to a few peers per round, not to all of them each time.
        assert!(
            *m < 20.0,
            "{n} sends {m:.1} messages per round after the merge"
        );
    }
    // Both resources keep replicating after the merge.
    for (c, res, model) in [(&x, "r0", &mut mx), (&y, "r1", &mut my)] {
        let mut nbd = c.nodes[0].nbd(res);
        write_blocks(&mut nbd, model, 77, 200, 50);
        nbd.disconnect().unwrap();
        c.nodes[1].wait_uptodate(res);
        wait_equal(&c.path(&format!("{res}-s.img")), model, res);
    }
    // Scoped propagation: a2 holds nothing of r1, b2 nothing of r0.
    assert!(x.nodes[1]
        .ok(&["lowlevel-ls", "resource-r1/"])
        .trim()
        .is_empty());
    assert!(y.nodes[1]
        .ok(&["lowlevel-ls", "resource-r0/"])
        .trim()
        .is_empty());
    assert!(x.nodes[1]
        .ok(&["lowlevel-ls", "resources/"])
        .contains("resources/r1"));
}
