//! A real 12-node metadata cluster of separate processes on loopback (mars-net transport,
//! redb persistence): join, converge after a change, survive `kill -9` and restart of 3 nodes,
//! catch up on what they missed, converge again. The times are printed; their figures are
//! measured by `cargo bench -p mars-rs --bench metacluster` (no wall-clock assert here: the
//! waits are bounded liveness limits).
//!
//! The node processes are this test binary re-executed (see `meta_support`).
mod meta_support;
use meta_support::{name, Cluster, N, NODE_ENV};
use std::collections::HashMap;
use std::time::Duration;

/// The child side: runs one node when re-executed with `MARS_META_NODE=<dir>|<name>|<join>`.
/// Not a test of its own: ignored, and started by the parent with `--ignored --exact`.
#[test]
#[ignore = "child process of twelve_processes_converge_and_survive_restarts (MARS_META_NODE set); nothing to check alone"]
fn meta_node_child() {
    if let Ok(spec) = std::env::var(NODE_ENV) {
        meta_support::node_main(&spec);
    }
}

#[test]
fn twelve_processes_converge_and_survive_restarts() {
    let mut c = Cluster::new(&[
        "--ignored",
        "--exact",
        "meta_node_child",
        "--nocapture",
        "--test-threads=1",
    ]);
    c.spawn(0, "create");
    let contact = format!("{}@{}", name(0), c.procs[0].as_ref().unwrap().addr);
    for i in 1..N {
        c.spawn(i, &contact);
    }
    let all_ips = |s: &HashMap<String, String>| {
        (0..N).all(|j| s.contains_key(&format!("ips/ip-{}", name(j))))
    };
    let t = c.wait_all(
        "every node knows all 12 members",
        Duration::from_secs(30),
        all_ips,
    );
    println!("12 nodes joined and know each other after {t:?}");

    // One change, measured.
    c.send(5, "set defaults/sync-limit 111");
    let t = c.wait_all("change 1", Duration::from_secs(10), |s| {
        s.get("defaults/sync-limit").map(String::as_str) == Some("111")
    });
    println!("change from node05 reached all 12 nodes in {t:?}");

    // kill -9 three nodes; change while they are down.
    for i in [2, 7, 11] {
        c.kill(i);
    }
    c.send(0, "set userspace/during-outage yes");
    let t = c.wait_all(
        "change during outage (9 nodes)",
        Duration::from_secs(10),
        |s| s.contains_key("userspace/during-outage"),
    );
    println!("change with 3 nodes down reached the 9 others in {t:?}");

    // Restart them from their stores: they catch up on what they missed.
    for i in [2, 7, 11] {
        c.spawn(i, &contact);
    }
    let t = c.wait_all("restarted nodes catch up", Duration::from_secs(20), |s| {
        s.contains_key("userspace/during-outage")
    });
    println!("restarted nodes caught up on the missed change in {t:?}");

    // A change made by a restarted node converges again.
    c.send(7, "set defaults/sync-limit 222");
    let t = c.wait_all("change 2", Duration::from_secs(10), |s| {
        s.get("defaults/sync-limit").map(String::as_str) == Some("222")
    });
    println!("change from restarted node07 reached all 12 nodes in {t:?}");
    // A restarted node still has its pre-crash state (persisted) and the new one.
    assert!(c.state[2].contains_key("defaults/sync-limit"));
}
