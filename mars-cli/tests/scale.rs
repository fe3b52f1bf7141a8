//! Many resources on one `marsd`: they share the node's memory budget (`--mem-budget`), and
//! each primary's floor (`--mem-floor`) keeps a quiet resource writing while a busy one
//! exhausts what the others leave.

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIZE: u64 = 16 << 20;
const RESOURCES: usize = 20;
/// 20 floors of 2 MiB leave 24 MiB that the busy resource can fill. The quiet one's writes
/// stay well below its floor (it writes back from half of it on a full node).
const BUDGET: &str = "64M";
const FLOOR: &str = "2M";
const FLOOR_BYTES: u64 = 2 << 20;
/// The quiet resource's writes: enough to meet a full node many times without its floor.
const QUIET_WRITES: usize = 1500;

fn memory(n: &Node, res: &str) -> mars_cli::view::MemoryStatus {
    n.status()
        .resources
        .iter()
        .find(|r| r.name == res)
        .and_then(|r| r.memory)
        .unwrap_or_else(|| panic!("{res} on {} shows no memory", n.name))
}

#[test]
fn a_busy_resource_exhausts_the_node_budget_and_a_quiet_one_never_waits_for_memory() {
    let c = Cluster::new_with(&["alice"], |_, mut n| {
        n.extra = ["--mem-budget", BUDGET, "--mem-floor", FLOOR]
            .map(String::from)
            .to_vec();
        n
    });
    let a = &c.nodes[0];
    for i in 0..RESOURCES {
        let dev = c.device(&format!("r{i}.img"), SIZE);
        a.ok(&["create-resource", &format!("r{i}"), &dev]);
    }
    for i in 0..RESOURCES {
        a.wait_state(&format!("r{i}"), "Primary", |m| m.role == "Primary");
    }
    let node = a.status().memory;
    assert_eq!(node.limit, 64 << 20);
    assert_eq!(
        node.floor,
        RESOURCES as u64 * FLOOR_BYTES,
        "every floor fits"
    );

    // r0: four connections writing 1 MiB blocks without flushes until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..4u64)
        .map(|t| {
            let (stop, mut nbd) = (stop.clone(), a.nbd("r0"));
            std::thread::spawn(move || {
                let block = vec![t as u8 + 1; 1 << 20];
                let mut i = t;
                // Bounded: stops when told, or after 100k writes.
                for _ in 0..100_000 {
                    if stop.load(Relaxed) {
                        break;
                    }
                    assert_eq!(nbd.write((i % 16) << 20, &block).unwrap(), 0);
                    i += 4;
                }
            })
        })
        .collect();
    wait_until(Duration::from_secs(60), "r0 to wait for memory", || {
        let m = memory(a, "r0");
        if m.waits > 0 {
            Ok(())
        } else {
            Err(format!("{m:?}"))
        }
    });

    // r1 writes while r0 keeps the node's budget exhausted: it never waits for memory.
    let mut model = vec![0u8; SIZE as usize];
    let mut quiet = a.nbd("r1");
    let t = Instant::now();
    let r0_waits = memory(a, "r0").waits;
    write_blocks(&mut quiet, &mut model, 7, QUIET_WRITES, 20);
    let r0_waited = memory(a, "r0").waits - r0_waits;
    let r1 = memory(a, "r1");
    stop.store(true, Relaxed);
    for b in busy {
        b.join().unwrap();
    }
    eprintln!(
        "r1: {QUIET_WRITES} writes in {:?} while r0 waited {r0_waited} times for memory; r1 {r1:?}; node {:?}",
        t.elapsed(),
        a.status().memory
    );
    assert!(
        r0_waited > 0,
        "r0 did not exhaust the node's budget while r1 wrote: the test proves nothing"
    );
    assert_eq!(r1.waits, 0, "r1 waited for memory: its floor was not kept");
    assert_eq!(r1.floor, FLOOR_BYTES);
    let node = a.status().memory;
    assert!(node.peak <= node.limit, "over the node's budget: {node:?}");
    assert_eq!(read_export(&mut quiet, SIZE), model, "r1's data");
}
