//! Harder scenarios with real marsd processes, external tools and network namespaces:
//! a forced failover while the link is cut (the old primary goes on writing on its side of
//! the partition), with and without a log rotation around the fork; emergency mode on a
//! really full tmpfs mars directory. Needs root and the tools: `--features interop`.
//! (The merge-cluster message counts are measured in `merge.rs`.)
#![cfg(feature = "interop")]

mod common;
use common::*;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

fn split_brain_of(n: &Node, res: &str) -> Option<String> {
    n.status()
        .resources
        .iter()
        .find(|r| r.name == res)
        .and_then(|r| r.split_brain.clone())
}

/// Where a log rotation happens around the fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rotate {
    None,
    /// `log-rotate` on the old primary just before the link is cut.
    OldPrimaryBeforeCut,
    /// `log-rotate` on the new primary right after `primary --force`.
    NewPrimaryAfterForce,
}

/// alice (ns a) primary, bob (ns b) secondary; bob pauses fetch, the link is cut, alice goes
/// on writing, bob takes over by force and writes; the link heals: both report the split,
/// alice (the loser) is invalidated and becomes equal to bob.
fn forced_failover_while_partitioned(rotate: Rotate) {
    let t0 = Instant::now();
    const SIZE: u64 = 64 * MIB;
    // Declared before the cluster: dropped (namespaces deleted) after the marsd processes.
    let net = NetnsPair::new();
    let c = Cluster::new_with(&["alice", "bob"], |i, n| n.in_netns(&net.ns[i], &net.ip[i]));
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let (da, db) = (c.device("a.img", SIZE), c.device("b.img", SIZE));
    a.ok(&["create-resource", "r0", &da]);
    a.wait_state("r0", "Primary", |m| m.role == "Primary");
    qemu_write(
        &a.nbd_uri("r0"),
        &[(0x11, 0, 8 * MIB), (0x12, 40 * MIB, 4 * MIB)],
    );
    b.ok(&["join-resource", "r0", &db]);
    b.wait_state_for("r0", "UpToDate", Duration::from_secs(120), |m| m.up_to_date);
    wait_compare_equal(&a.nbd_uri("r0"), &db, Duration::from_secs(30));

    if rotate == Rotate::OldPrimaryBeforeCut {
        a.ok(&["log-rotate", "r0"]);
        b.wait_uptodate("r0");
        eprintln!(
            "interop_hard: logs after log-rotate on alice: {:?}",
            a.status().resources[0].logs
        );
    }
    b.ok(&["pause-fetch", "r0"]);
    net.link(0, false);
    let t_cut = Instant::now();
    // alice, cut off, goes on writing: her tail never reaches bob.
    qemu_write(
        &a.nbd_uri("r0"),
        &[
            (0x21, 4 * MIB, 3 * MIB),
            (0x22, 16 * MIB, 2 * MIB),
            (0x23, 50 * MIB + 4096, MIB),
        ],
    );
    b.wait_unresponsive("r0", "alice", Duration::from_secs(90));
    eprintln!(
        "interop_hard: bob saw alice UnResponsive {:?} after the cut",
        t_cut.elapsed()
    );
    let dry = b.ok(&["primary", "--force", "--dry-run", "r0"]);
    eprintln!("--- marsadm primary --force --dry-run r0 on bob:\n{dry}");
    assert_eq!(
        b.replica("r0").unwrap().role,
        "Secondary",
        "the dry run changed something"
    );
    b.ok(&["primary", "--force", "r0"]);
    b.wait_state("r0", "Primary", |m| m.role == "Primary");
    if rotate == Rotate::NewPrimaryAfterForce {
        b.ok(&["log-rotate", "r0"]);
        eprintln!(
            "interop_hard: logs after log-rotate on bob: {:?}",
            b.status().resources[0].logs
        );
    }
    qemu_write(
        &b.nbd_uri("r0"),
        &[(0x31, 2 * MIB, 4 * MIB), (0x32, 30 * MIB, 2 * MIB)],
    );
    if rotate == Rotate::NewPrimaryAfterForce {
        // And a second log of bob's with data in it.
        b.ok(&["log-rotate", "r0"]);
        qemu_write(&b.nbd_uri("r0"), &[(0x33, 60 * MIB, MIB)]);
    }
    // alice has no NBD client any more (every qemu-io exited).
    a.wait_state("r0", "no NBD clients on alice", |m| m.clients == 0);

    net.link(0, true);
    let t_heal = Instant::now();
    for n in [a, b] {
        wait_until(
            Duration::from_secs(60),
            &format!("{} to report the split brain", n.name),
            || {
                split_brain_of(n, "r0")
                    .map(drop)
                    .ok_or_else(|| format!("none yet; view:\n{}", n.ok(&["view", "r0"])))
            },
        );
    }
    // Both sides' amounts reach both nodes (bob's logs via the metadata).
    for n in [a, b] {
        wait_until(
            Duration::from_secs(30),
            &format!("{} to name both sides of the split", n.name),
            || {
                let view = n.ok(&["view", "r0"]);
                if view.contains("alice holds") && view.contains("bob holds") {
                    Ok(())
                } else {
                    Err(view)
                }
            },
        );
        assert_eq!(n.ok(&["view-is-split-brain", "r0"]).trim(), "1");
        let view = n.ok(&["view", "r0"]);
        eprintln!(
            "--- marsadm view on {} during the split brain ({rotate:?}):\n{view}",
            n.name
        );
        assert!(view.contains("SPLIT BRAIN after log"), "{view}");
    }
    eprintln!(
        "interop_hard: split reported on both {:?} after the heal",
        t_heal.elapsed()
    );
    // The newer `primary` is bob's: alice, the loser, stops her export and replays nothing.
    a.wait_state("r0", "alice SplitBrain, not Primary", |m| {
        m.repl == "SplitBrain" && m.role != "Primary"
    });
    wait_until(
        Duration::from_secs(30),
        "alice's export to stop",
        || match a.status().resources[0].nbd_socket.clone() {
            None if !a.nbd_sock("r0").exists() => Ok(()),
            s => Err(format!(
                "{s:?}, socket exists: {}",
                a.nbd_sock("r0").exists()
            )),
        },
    );
    assert_eq!(b.replica("r0").unwrap().role, "Primary");

    let dry = a.ok(&["invalidate", "--dry-run", "r0"]);
    eprintln!("--- marsadm invalidate --dry-run r0 on alice:\n{dry}");
    a.ok(&["invalidate", "r0"]);
    a.wait_state_for("r0", "UpToDate", Duration::from_secs(120), |m| m.up_to_date);
    let differed = wait_compare_equal(&b.nbd_uri("r0"), &da, Duration::from_secs(30));
    for n in [a, b] {
        wait_until(
            Duration::from_secs(30),
            &format!("{} to report no split any more", n.name),
            || match split_brain_of(n, "r0") {
                None => Ok(()),
                Some(s) => Err(s),
            },
        );
        assert_eq!(n.ok(&["view-is-split-brain", "r0"]).trim(), "0");
    }
    eprintln!(
        "interop_hard: forced failover while partitioned ({rotate:?}): compare identical \
         (after {differed} differing runs); whole test {:?}",
        t0.elapsed()
    );
}

#[test]
fn forced_failover_while_partitioned_then_heal() {
    forced_failover_while_partitioned(Rotate::None);
}

#[test]
fn forced_failover_after_log_rotate_on_old_primary() {
    forced_failover_while_partitioned(Rotate::OldPrimaryBeforeCut);
}

#[test]
fn forced_failover_after_log_rotate_on_new_primary() {
    forced_failover_while_partitioned(Rotate::NewPrimaryAfterForce);
}

/// fio over the export `uri`: random 64 KiB writes over `size` bytes, `io_size` in all, with
/// crc32c verify headers, read back and verified at the end. Returns the terse line.
/// `verify_only` reruns the job (same seed) reading and verifying only.
fn fio_verify(uri: &str, size: u64, io_size: u64, seed: u64, verify_only: bool) -> String {
    let uri = format!("--uri={uri}");
    let size = format!("--size={size}");
    let io = format!("--io_size={io_size}");
    let seed = format!("--randseed={seed}");
    // `--thread`: the job runs in the process a timeout kills (a forked job would outlive it).
    let mut args = vec![
        "--thread",
        "--name=fill",
        "--ioengine=nbd",
        uri.as_str(),
        "--rw=randwrite",
        "--bs=64k",
        "--iodepth=8",
        size.as_str(),
        io.as_str(),
        seed.as_str(),
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        "--verify_state_save=0",
        "--minimal",
    ];
    if verify_only {
        args.push("--verify_only=1");
    }
    let out = tool_ok("fio", &args, Duration::from_secs(600));
    let line = out
        .lines()
        .find(|l| l.starts_with("3;"))
        .unwrap_or_else(|| panic!("fio {args:?}: no terse line in {out}"))
        .to_string();
    let f: Vec<&str> = line.split(';').collect();
    // `3;fio-3.x;name;groupid;error;read_kb;...`: no error, and the verify pass read back.
    assert_eq!(f[4], "0", "fio {args:?}: {line}");
    assert!(
        f[5].parse::<u64>().unwrap_or(0) > 0,
        "fio verified nothing: {line}"
    );
    line
}

#[test]
fn emergency_mode_on_a_full_tmpfs() {
    let t0 = Instant::now();
    const SIZE: u64 = 64 * MIB;
    const TMPFS: u64 = 48 * MIB;
    let tmpfs: Mutex<Option<Tmpfs>> = Mutex::new(None);
    let c = Cluster::new_with(&["alice", "bob"], |i, n| {
        if i == 0 {
            *tmpfs.lock().unwrap() = Some(Tmpfs::mount(&n.dir, "48m"));
        }
        n
    });
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let (da, db) = (c.device("a.img", SIZE), c.device("b.img", SIZE));
    a.ok(&["create-resource", "r0", &da]);
    a.wait_state("r0", "Primary", |m| m.role == "Primary");
    b.ok(&["join-resource", "r0", &db]);
    b.wait_state_for("r0", "UpToDate", Duration::from_secs(120), |m| m.up_to_date);
    // bob fetches nothing: alice keeps every log in her 48 MiB mars directory.
    b.ok(&["pause-fetch", "r0"]);

    // Three times the tmpfs size, in three fio runs (each writes a block at most once, so
    // that its verify pass checks the latest data of every block it wrote).
    let t = Instant::now();
    for seed in 1..=3 {
        let line = fio_verify(&a.nbd_uri("r0"), SIZE, TMPFS, seed, false);
        eprintln!(
            "interop_hard: fio run {seed}: {} MiB random 64 KiB writes, verified, through \
             alice ({} MiB tmpfs mars dir), {:?} so far: disk {}\n  {line}",
            TMPFS / MIB,
            TMPFS / MIB,
            t.elapsed(),
            a.replica("r0").unwrap().disk
        );
    }
    a.wait_state("r0", "EmergencyMode", |m| m.disk == "EmergencyMode");
    let df = tool_ok(
        "df",
        &["-k", a.dir.to_str().unwrap()],
        Duration::from_secs(10),
    );
    eprintln!(
        "--- marsadm view on alice in emergency mode:\n{}--- df:\n{df}",
        a.ok(&["view", "r0"])
    );

    b.ok(&["resume-fetch", "r0"]);
    b.wait_state_for("r0", "Orphan", Duration::from_secs(120), |m| {
        m.disk == "Orphan" && !m.up_to_date
    });
    let view = b.ok(&["view", "r0"]);
    eprintln!("--- marsadm view on bob in emergency mode:\n{view}");
    assert!(
        view.contains("Orphan") && view.contains("EmergencyMode"),
        "{view}"
    );
    b.refused(&["invalidate", "r0"], "emergency mode");

    // Recovery: more space, cron on alice until she logs again, invalidate on bob.
    let out = a.ok(&["cron"]);
    eprintln!("--- marsadm cron on alice, still full:\n{out}");
    tmpfs.lock().unwrap().as_ref().unwrap().remount("256m");
    let t = Instant::now();
    a.cron_until_logging("r0", Duration::from_secs(60));
    eprintln!(
        "interop_hard: alice left emergency mode {:?} after the remount",
        t.elapsed()
    );
    b.ok_within(
        &["invalidate", "r0"],
        Duration::from_secs(30),
        "bob's invalidate to be accepted",
    );
    b.wait_state_for("r0", "UpToDate", Duration::from_secs(120), |m| m.up_to_date);
    let differed = wait_compare_equal(&a.nbd_uri("r0"), &db, Duration::from_secs(30));
    // The last run's blocks still hold its data (nothing overwrote them).
    fio_verify(&a.nbd_uri("r0"), SIZE, TMPFS, 3, true);
    eprintln!(
        "--- marsadm view on bob after recovery:\n{}",
        b.ok(&["view", "r0"])
    );
    eprintln!(
        "interop_hard: emergency on a full tmpfs: compare identical (after {differed} \
         differing runs); whole test {:?}",
        t0.elapsed()
    );
}
