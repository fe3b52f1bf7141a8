//! What an idle resource costs a node: threads and resident memory per resource.
//!
//! A real `marsd` ("alice", a one-node cluster) creates `MARS_BENCH_RESOURCES` resources (default
//! 100) on small fallocated files; once every one is Primary, the bench reads `Threads` and
//! `VmRSS` from `/proc/<pid>/status` and prints them against the node without resources, per
//! resource. Then a second `marsd` ("bob") joins the cluster and every resource as a secondary;
//! once all are UpToDate the same is printed for bob (the secondaries' cost) and alice again.
//! The threads are also counted by name (`/proc/<pid>/task/*/comm`), which shows what costs.
//!
//! Goal (issue 13): ≤ 4 threads and ≤ 4 MiB per idle resource.
//!
//! `cargo bench -p mars-rs --bench idle` (needs `fallocate`). Binaries as in the `marsd`
//! bench (`MARS_BENCH_BIN_DIR` skips the build). `MARS_BENCH_SECONDARY=0` skips bob,
//! `MARS_BENCH_DIR` is where the temp dir goes, `MARS_BENCH_SETTLE_SECS` (default 12) how long
//! the node is left idle before each measurement.
#[path = "support/env.rs"]
mod env;
#[path = "support/marsd_node.rs"]
mod marsd_node;
use env::env_or;
use marsd_node::{binaries, fallocate, wait_until, Node};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SECRET: &str = "idle bench cluster secret, long enough";
/// Each resource's device: small, the cost measured is the resource's, not its data's.
const DEV_SIZE: u64 = 16 << 20;

/// Threads, resident KiB and the threads counted by name of process `pid`.
#[derive(Debug, Clone, Default)]
struct Usage {
    threads: u64,
    rss_kib: u64,
    by_name: BTreeMap<String, u64>,
}

fn usage(pid: u32) -> Usage {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        st.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let mut by_name = BTreeMap::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            // Numbered workers ("sio-3") count as one kind.
            let kind = comm.trim().trim_end_matches(|c: char| c.is_ascii_digit());
            *by_name.entry(kind.to_string()).or_insert(0) += 1;
        }
    }
    Usage {
        threads: field("Threads:"),
        rss_kib: field("VmRSS:"),
        by_name,
    }
}

/// One line per node: the totals, the cost per resource, and the thread kinds that grew. A
/// kind that grew by less than `n` (or by a remainder of it) is node-wide, not per resource:
/// shared threads (one accept thread for all exports) are counted apart.
fn report(who: &str, base: &Usage, now: &Usage, n: u64) {
    let grown: Vec<(&String, u64)> = now
        .by_name
        .iter()
        .filter_map(|(k, &v)| {
            let b = base.by_name.get(k).copied().unwrap_or(0);
            (v > b).then_some((k, v - b))
        })
        .collect();
    let node_wide: u64 = grown.iter().map(|(_, g)| g % n).sum();
    let dt = now.threads.saturating_sub(base.threads) as f64 / n as f64;
    let per_res = now
        .threads
        .saturating_sub(base.threads)
        .saturating_sub(node_wide) as f64
        / n as f64;
    let dm = now.rss_kib.saturating_sub(base.rss_kib) as f64 / 1024.0 / n as f64;
    println!(
        "{who:<26} threads {:>5} (base {:>3}) = {dt:>5.2}/resource ({per_res:.2} each + {node_wide} node-wide)   RSS {:>6.1} MiB (base {:>4.1}) = {dm:>4.2} MiB/resource   goal <= 4 and <= 4 MiB: {}",
        now.threads,
        base.threads,
        now.rss_kib as f64 / 1024.0,
        base.rss_kib as f64 / 1024.0,
        if per_res <= 4.0 && dm <= 4.0 { "met" } else { "MISSED" }
    );
    let kinds: Vec<String> = grown.iter().map(|(k, g)| format!("{k}: +{g}")).collect();
    println!("{:<26} threads by name: {}", "", kinds.join(", "));
}

/// Wait until every resource's replica on `node` satisfies `ok`.
fn wait_all(node: &Node, n: u64, what: &str, ok: impl Fn(&mars_cli::view::ReplicaStatus) -> bool) {
    wait_until(
        Duration::from_secs(60 + 2 * n),
        &format!("{n} resources on {}: {what}", node.name),
        || {
            let s = node.status_raw()?;
            let ready = s
                .resources
                .iter()
                .filter(|r| r.replicas.iter().any(|m| m.host == node.name && ok(m)))
                .count() as u64;
            if ready >= n {
                Ok(())
            } else {
                Err(format!("{ready} of {n} ready"))
            }
        },
    );
}

/// Let the node settle before a measurement: threads started on demand end when idle (the
/// checksum flush thread after 10 s without a flush).
fn settled(pid: u32) -> Usage {
    std::thread::sleep(Duration::from_secs(env_or("MARS_BENCH_SETTLE_SECS", 12)));
    usage(pid)
}

fn main() {
    let n = env_or("MARS_BENCH_RESOURCES", 100).max(1);
    let with_secondary = env_or("MARS_BENCH_SECONDARY", 1) != 0;
    let bin = binaries();
    let base_dir = std::env::var("MARS_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let root = tempfile::tempdir_in(base_dir).expect("creating the bench directory");
    let r = root.path();
    let secret = r.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let dev = |name: String| {
        let p = r.join(name);
        fallocate(&p, DEV_SIZE);
        p.display().to_string()
    };
    let t0 = Instant::now();
    let alice = Node::start(r, &bin, "alice", &secret);
    let bob = with_secondary.then(|| Node::start(r, &bin, "bob", &secret));
    alice.ok(&["create-cluster"]);
    if let Some(b) = &bob {
        b.ok(&["join-cluster", &alice.addr()]);
    }
    let alice_base = settled(alice.pid());
    let bob_base = bob.as_ref().map(|b| settled(b.pid()));
    for i in 0..n {
        alice.ok(&[
            "create-resource",
            &format!("r{i}"),
            &dev(format!("a{i}.img")),
        ]);
    }
    wait_all(&alice, n, "Primary", |m| m.role == "Primary");
    println!(
        "idle bench: {n} resources of {} MiB, all Primary on alice after {:?}",
        DEV_SIZE >> 20,
        t0.elapsed()
    );
    report(
        "alice, primaries only",
        &alice_base,
        &settled(alice.pid()),
        n,
    );
    if let (Some(b), Some(bb)) = (&bob, &bob_base) {
        let t = Instant::now();
        for i in 0..n {
            b.ok(&["join-resource", &format!("r{i}"), &dev(format!("b{i}.img"))]);
        }
        wait_all(b, n, "UpToDate", |m| m.up_to_date);
        println!("idle bench: all UpToDate on bob after {:?}", t.elapsed());
        report("bob, secondaries", bb, &settled(b.pid()), n);
        report(
            "alice, with secondaries",
            &alice_base,
            &settled(alice.pid()),
            n,
        );
    }
    println!("idle bench: took {:?}", t0.elapsed());
}
