//! The main demo: three MARS nodes, alice, bob and carol, replicate one 256 MiB resource.
//! Each node is a real `marsd` (the daemon's code, on a thread of this process) with its own
//! temporary mars directory, all on loopback, driven only through the control protocol that
//! `marsadm` speaks; the data goes through the NBD export with our own client.
//!
//! 1. alice creates a cluster (bob and carol join it; a peer with a wrong secret is
//!    refused) and resource `r0` on a 256 MiB file: she is its primary.
//! 2. A client writes random 4 KiB blocks through alice's NBD export.
//! 3. bob joins `r0` (full sync, then fetch + replay); then carol joins while the client
//!    keeps writing, and the demo prints `marsadm view` every second while she syncs.
//! 4. Planned handover: bob becomes primary (nothing is lost); the client writes to him.
//! 5. Forced failover: alice and carol pause fetching, bob writes a tail that nobody
//!    fetches and stops (unreachable); `primary --force` on carol, who writes. bob comes
//!    back: split brain, reported on every node; `invalidate` on bob resolves it.
//! 6. All three devices hash equal to what the client wrote (without bob's lost tail); a
//!    summary table; everything is stopped and removed. Exit code 1 on any failure.
//!
//! Run: `cargo run --release --example demo-cluster`. The same steps by hand, with `marsd`
//! and `marsadm` processes on real hosts: `docs/operations.md`.

// The binaries' allocator: see ARCHITECTURE.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod node;
mod steps;
mod workload;

use anyhow::{Context, Result};
use std::time::{Duration, Instant};
use steps::Demo;

/// The resource's size.
pub const SIZE: u64 = 256 << 20;

/// What a step moved.
#[derive(Debug, Default, Clone, Copy)]
pub struct Moved {
    /// Bytes the NBD client wrote (acknowledged).
    pub written: u64,
    /// Bytes of full sync (the resource's size per joining replica).
    pub synced: u64,
}

/// One row of the summary table.
struct Row {
    step: &'static str,
    time: Duration,
    moved: Moved,
    result: String,
}

type Step = fn(&mut Demo) -> Result<Moved>;

/// The steps after the setup, in order.
const STEPS: &[(&str, Step)] = &[
    ("write through alice's NBD export", Demo::write_alice),
    ("bob joins (full sync, fetch, replay)", Demo::bob_joins),
    (
        "carol joins while alice is written",
        Demo::carol_joins_under_load,
    ),
    ("planned handover to bob, writes", Demo::handover),
    ("forced failover to carol, writes", Demo::forced_failover),
    (
        "bob back: split brain, invalidate",
        Demo::resolve_split_brain,
    ),
    ("verify: hash all three devices", Demo::verify),
];

pub fn main() -> Result<()> {
    let started = Instant::now();
    // Dropped after the nodes (which live in `run`): the daemons stop first.
    let root = tempfile::tempdir().context("creating a temp dir")?;
    let mut rows = Vec::new();
    let result = run(root.path(), &mut rows);
    print_summary(&rows);
    let t = Instant::now();
    root.close().context("removing the demo's temp dir")?;
    println!("daemons stopped, temp dir removed ({:.1?})", t.elapsed());
    match &result {
        Ok(h) => println!(
            "all replicas equal: alice == bob == carol == the client's model (blake3 {h}); demo took {:.1?}",
            started.elapsed()
        ),
        Err(e) => println!("demo FAILED after {:.1?}: {e:#}", started.elapsed()),
    }
    result.map(drop)
}

/// Run the steps, one row each; stop at the first failure (its row says why).
fn run(root: &std::path::Path, rows: &mut Vec<Row>) -> Result<String> {
    let mut demo = None;
    timed(rows, "create cluster, 256 MiB resource", || {
        demo = Some(Demo::setup(root)?);
        Ok(Moved::default())
    })?;
    let demo = demo.as_mut().expect("set up");
    for (name, f) in STEPS {
        timed(rows, name, || f(demo))?;
    }
    Ok(demo.model.hash().to_hex()[..16].to_string())
}

fn timed(rows: &mut Vec<Row>, step: &'static str, f: impl FnOnce() -> Result<Moved>) -> Result<()> {
    println!("\n=== {step}");
    let t = Instant::now();
    let r = f();
    rows.push(Row {
        step,
        time: t.elapsed(),
        moved: r.as_ref().copied().unwrap_or_default(),
        result: r
            .as_ref()
            .map_or_else(|e| format!("FAILED: {e:#}"), |_| "ok".into()),
    });
    r.map(drop)
}

fn print_summary(rows: &[Row]) {
    println!("\n=== summary");
    println!(
        "{:<38} {:>8} {:>10} {:>10}  result",
        "step", "time", "written", "synced"
    );
    for r in rows {
        println!(
            "{:<38} {:>6.2} s {:>10} {:>10}  {}",
            r.step,
            r.time.as_secs_f64(),
            mib(r.moved.written),
            mib(r.moved.synced),
            r.result
        );
    }
}

fn mib(bytes: u64) -> String {
    if bytes == 0 {
        "-".into()
    } else {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    }
}
