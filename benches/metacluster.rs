//! Metadata convergence of a real 12-process cluster on loopback (mars-net, redb): the figures
//! that `tests/meta_cluster.rs` prints but does not assert (goal: a change reaches every node
//! in < 5 s, also after three nodes were killed and restarted).
//!
//! `cargo bench -p mars-rs --bench metacluster` (knob: `MARS_BENCH_RUNS`, clusters to start,
//! default 3; each measures 5 changes before and 5 after the restarts). Prints min / median /
//! max seconds per phase. The nodes are this binary re-executed (see `tests/meta_support`).
#[path = "../tests/meta_support/mod.rs"]
mod meta_support;
use meta_support::{name, Cluster, N, NODE_ENV};
use std::collections::HashMap;
use std::time::Duration;

fn mmm(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "{:.3} / {:.3} / {:.3}",
        v[0].as_secs_f64(),
        v[v.len() / 2].as_secs_f64(),
        v[v.len() - 1].as_secs_f64()
    )
}

fn main() {
    if let Ok(spec) = std::env::var(NODE_ENV) {
        meta_support::node_main(&spec);
    }
    let runs: usize = std::env::var("MARS_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let (mut join, mut before, mut catch_up, mut after) = (vec![], vec![], vec![], vec![]);
    let limit = Duration::from_secs(60);
    for run in 0..runs {
        let mut c = Cluster::new(&[]);
        c.spawn(0, "create");
        let contact = format!("{}@{}", name(0), c.procs[0].as_ref().unwrap().addr);
        for i in 1..N {
            c.spawn(i, &contact);
        }
        join.push(c.wait_all("join", limit, |s: &HashMap<String, String>| {
            (0..N).all(|j| s.contains_key(&format!("ips/ip-{}", name(j))))
        }));
        let change = |c: &mut Cluster, from: usize, k: usize| {
            let v = format!("{run}-{k}");
            c.send(from, &format!("set defaults/sync-limit {v}"));
            c.wait_all("change", limit, |s| {
                s.get("defaults/sync-limit") == Some(&v)
            })
        };
        for k in 0..5 {
            before.push(change(&mut c, (k * 5) % N, k));
        }
        for i in [2, 7, 11] {
            c.kill(i);
        }
        c.send(0, &format!("set userspace/outage {run}"));
        for i in [2, 7, 11] {
            c.spawn(i, &contact);
        }
        catch_up.push(c.wait_all("catch up", limit, |s| s.contains_key("userspace/outage")));
        for k in 5..10 {
            after.push(change(&mut c, [2, 7, 11][k % 3], k));
        }
    }
    println!("metacluster: {N} metadata node processes on loopback, {runs} clusters; seconds min / median / max (goal < 5 s per change)");
    println!("| phase | samples | s |");
    println!("|---|---|---|");
    for (what, v) in [
        ("join: all know all members", join),
        ("a change reaches all nodes", before),
        ("3 restarted nodes catch up", catch_up),
        ("a change after the restarts", after),
    ] {
        println!("| {what} | {} | {} |", v.len(), mmm(v));
    }
}
