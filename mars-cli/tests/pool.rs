//! Several resources and nodes: k > 2 replicas, different primaries, log rotation and
//! deletion that respects a member with fetch paused, and the seed's data migration
//! (join on a new node, leave on an old one, under write load).

mod common;
use common::*;
use std::time::Duration;

const SIZE: u64 = 16 << 20;

fn logs_of(n: &Node, res: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(n.dir.join(format!("resource-{res}")))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.starts_with("log-"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn three_nodes_two_resources_log_delete_keeps_what_a_paused_member_needs() {
    let c = Cluster::new(&["alice", "bob", "carol"]);
    let (a, b, k) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    a.ok(&["create-resource", "r0", &c.device("a0.img", SIZE)]);
    b.ok(&["create-resource", "r1", &c.device("b1.img", SIZE)]);
    a.wait_state("r0", "Primary", |m| m.role == "Primary");
    b.wait_state("r1", "Primary", |m| m.role == "Primary");
    b.ok(&["join-resource", "r0", &c.device("b0.img", SIZE)]);
    k.ok(&["join-resource", "r0", &c.device("k0.img", SIZE)]);
    a.ok(&["join-resource", "r1", &c.device("a1.img", SIZE)]);
    k.ok(&["join-resource", "r1", &c.device("k1.img", SIZE)]);
    for n in [b, k] {
        n.wait_uptodate("r0");
    }
    for n in [a, k] {
        n.wait_uptodate("r1");
    }
    let mut m0 = vec![0u8; SIZE as usize];
    let mut m1 = vec![0u8; SIZE as usize];
    let (mut n0, mut n1) = (a.nbd("r0"), b.nbd("r1"));
    k.ok(&["pause-fetch", "r0"]);
    k.wait_state("r0", "PausedFetch", |m| m.repl == "PausedFetch");
    let carol_at = k.replica("r0").unwrap().replay.unwrap();
    let carol_log = carol_at.split(',').next().unwrap().to_string();
    for round in 0..4u64 {
        write_blocks(&mut n0, &mut m0, 10 + round, 300, 50);
        write_blocks(&mut n1, &mut m1, 20 + round, 200, 50);
        a.ok(&["log-rotate", "r0"]);
        b.ok(&["cron"]);
    }
    b.wait_uptodate("r0");
    a.wait_uptodate("r1");
    k.wait_uptodate("r1");
    a.ok(&["log-delete", "r0"]);
    b.ok(&["log-delete", "r1"]);
    // r1's logs go below what every member of r1 needs (all are up to date). Once
    // alice deleted her copies, her rounds have also applied r0's log-delete.
    for n in [b, a] {
        wait_until(Duration::from_secs(20), "old r1 logs to go", || {
            let l = logs_of(n, "r1");
            if l.len() <= 2 {
                Ok(())
            } else {
                Err(format!("{}: {l:?}", n.name))
            }
        });
    }
    // Nothing carol (fetch paused) still needs is deleted: her log is still on alice.
    let on_alice = logs_of(a, "r0");
    assert!(
        on_alice.contains(&carol_log),
        "alice deleted {carol_log} that carol needs: {on_alice:?}"
    );
    assert!(
        on_alice.len() >= 5,
        "alice deleted r0 logs although carol needs them: {on_alice:?}"
    );
    k.ok(&["resume-fetch", "r0"]);
    k.wait_uptodate("r0");
    n0.disconnect().unwrap();
    n1.disconnect().unwrap();
    for (f, m) in [
        ("b0.img", &m0),
        ("k0.img", &m0),
        ("a1.img", &m1),
        ("k1.img", &m1),
    ] {
        wait_equal(&c.path(f), m, f);
    }
    // Now that carol caught up, log-delete removes r0's old logs on every member.
    a.ok(&["log-delete", "r0"]);
    for n in [a, b, k] {
        wait_until(Duration::from_secs(20), "old r0 logs to go", || {
            let l = logs_of(n, "r0");
            if l.len() <= 2 && !l.contains(&carol_log) {
                Ok(())
            } else {
                Err(format!("{}: {l:?}", n.name))
            }
        });
    }
}

#[test]
fn migrate_by_join_and_leave_under_write_load() {
    let c = Cluster::new(&["alice", "bob", "carol"]);
    let (a, b, k) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    b.wait_uptodate("r0");
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = a.nbd("r0");
    write_blocks(&mut nbd, &mut model, 5, 500, 50);
    // The load keeps going while carol joins and bob leaves.
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        let mut seed = 1000;
        while stop_rx.try_recv().is_err() {
            write_blocks(&mut nbd, &mut model, seed, 100, 25);
            seed += 1;
        }
        (nbd, model)
    });
    k.ok(&["join-resource", "r0", &c.device("k.img", SIZE)]);
    k.wait_state("r0", "consistent", |m| m.consistent);
    b.ok(&["down", "r0"]);
    b.ok(&["leave-resource", "r0"]);
    stop_tx.send(()).unwrap();
    let (nbd, model) = writer.join().unwrap();
    nbd.disconnect().unwrap();
    k.wait_uptodate("r0");
    wait_equal(
        &c.path("k.img"),
        &model,
        "carol's device after the migration",
    );
    assert!(
        !b.dir.join("resource-r0").exists(),
        "bob kept r0's logs after leaving"
    );
    let s = a.status();
    let hosts: Vec<&str> = s.resources[0]
        .replicas
        .iter()
        .map(|m| m.host.as_str())
        .collect();
    assert_eq!(hosts, ["alice", "carol"]);
}

#[test]
fn migrate_resource_of_a_primary_interrupted_and_run_again() {
    let c = Cluster::new(&["alice", "bob", "carol"]);
    let (a, b, k) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = a.nbd("r0");
    write_blocks(&mut nbd, &mut model, 31, 800, 50);
    b.wait_uptodate("r0");
    b.refused(
        &["migrate-resource", "r0", "--to", "nobody"],
        "no node nobody",
    );
    // Start the migration from bob's marsadm and interrupt it while carol syncs.
    let mut adm = std::process::Command::new(env!("CARGO_BIN_EXE_marsadm"))
        .args([
            "--mars-dir",
            b.dir.to_str().unwrap(),
            "migrate-resource",
            "r0",
            "--to",
            "carol",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    k.wait_state("r0", "joined", |_| true);
    adm.kill().unwrap();
    adm.wait().unwrap();
    let view = b.ok(&["view", "r0"]);
    assert!(view.contains("migrating: to=carol from=alice"), "{view}");
    // The handover waits for alice's client; the rerun reports that while it waits.
    write_blocks(&mut nbd, &mut model, 32, 200, 50);
    k.wait_uptodate("r0");
    assert_eq!(
        a.replica("r0").unwrap().role,
        "Primary",
        "handed over under a connected client"
    );
    nbd.disconnect().unwrap();
    b.ok(&["migrate-resource", "r0", "--to", "carol"]);
    assert_eq!(k.replica("r0").unwrap().role, "Primary");
    assert!(a.replica("r0").is_none(), "alice is still a member");
    assert!(!b.ok(&["view", "r0"]).contains("migrating"));
    let mut nbd = k.nbd("r0");
    assert_eq!(
        read_export(&mut nbd, SIZE),
        model,
        "carol serves everything alice had"
    );
    write_blocks(&mut nbd, &mut model, 33, 200, 50);
    nbd.disconnect().unwrap();
    b.wait_uptodate("r0");
    wait_equal(&c.path("b.img"), &model, "bob follows carol");
    wait_equal(
        &k.dir.join("data/r0.img"),
        &model,
        "carol's device (made by the migration)",
    );
}

#[test]
fn migrate_resource_to_a_node_without_space_is_refused_before_anything_starts() {
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    // A sparse 8 TiB resource is more than bob's mars directory can hold.
    let huge = 1u64 << 43;
    a.ok(&["create-resource", "r0", &c.device("a.img", huge)]);
    a.wait_state("r0", "Primary", |m| m.role == "Primary");
    wait_until(
        Duration::from_secs(20),
        "bob's free space to be published",
        || {
            let v = a.ok(&["lowlevel-ls", "actual-bob/rest-space"]);
            if v.trim().is_empty() {
                Err(v)
            } else {
                Ok(())
            }
        },
    );
    let err = a.refused(
        &["migrate-resource", "r0", "--to", "bob"],
        "bytes free in its mars directory",
    );
    assert!(
        err.contains(&huge.to_string()) && err.contains("--dev"),
        "{err}"
    );
    assert!(b.replica("r0").is_none(), "bob joined anyway");
    assert!(
        !a.ok(&["view", "r0"]).contains("migrating"),
        "a migration was recorded"
    );
}

/// Inode and length of each file of `res`'s log directory on `n` whose name starts with
/// `prefix`.
fn files_of(n: &Node, res: &str, prefix: &str) -> Vec<(String, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut v: Vec<(String, u64, u64)> = std::fs::read_dir(n.dir.join(format!("resource-{res}")))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.to_string();
                    let m = e.metadata().ok()?;
                    name.starts_with(prefix).then(|| (name, m.ino(), m.len()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Issue 13: a primary keeps its deleted log files as spares and writes its later logs into
/// them (same inodes, stale bytes of the earlier life after the records); the secondary
/// fetches only the valid bytes of each, replays them and ends equal.
#[test]
fn a_primary_recycles_deleted_logs_and_the_secondary_fetches_only_their_valid_bytes() {
    let port = free_port();
    let c = Cluster::new_with(&["alice", "bob"], |i, mut n| {
        if i == 0 {
            n.extra = vec!["--metrics-listen".into(), format!("127.0.0.1:{port}")];
        }
        n
    });
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    b.wait_uptodate("r0");
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = a.nbd("r0");
    // Large logs first: the spares they leave are longer than the later logs written into them.
    for round in 0..4u64 {
        write_blocks(&mut nbd, &mut model, 30 + round, 400, 100);
        a.ok(&["log-rotate", "r0"]);
    }
    b.wait_uptodate("r0");
    a.ok(&["log-delete", "r0"]);
    wait_until(Duration::from_secs(20), "alice to keep spares", || {
        let s = files_of(a, "r0", "spare-");
        if s.len() >= 2 {
            Ok(())
        } else {
            Err(format!("spares {s:?}, logs {:?}", logs_of(a, "r0")))
        }
    });
    let spares = files_of(a, "r0", "spare-");
    for round in 0..3u64 {
        write_blocks(&mut nbd, &mut model, 40 + round, 20, 10);
        a.ok(&["log-rotate", "r0"]);
    }
    b.wait_uptodate("r0");
    nbd.disconnect().unwrap();
    wait_equal(&c.path("b.img"), &model, "bob's device after recycled logs");
    let logs = files_of(a, "r0", "log-");
    let reused: Vec<_> = logs
        .iter()
        .filter(|(_, ino, _)| spares.iter().any(|(_, s, _)| s == ino))
        .collect();
    assert!(
        !reused.is_empty(),
        "no log of alice reuses a spare: logs {logs:?}, spares {spares:?}"
    );
    // A finished recycled log: bob's copy holds its valid bytes only (alice's file is longer).
    let last = logs.last().map(|l| l.0.clone());
    let finished = reused.iter().find(|l| Some(&l.0) != last.as_ref());
    let (name, _, len) = finished.unwrap_or_else(|| panic!("no finished recycled log: {logs:?}"));
    wait_until(
        Duration::from_secs(20),
        "bob to fetch the recycled log",
        || {
            let copy = files_of(b, "r0", name);
            match copy.first() {
                Some((_, _, l)) if l < len => Ok(()),
                other => Err(format!(
                    "alice's {name} is {len} bytes, bob's copy {other:?}"
                )),
            }
        },
    );
    // Alice's metrics count the valid bytes of her logs, as a scan finds them: the log being
    // written (recycled, longer than its records) up to the logger's durable end.
    let (current, _, current_len) = logs.last().expect("alice has logs");
    let dir = a.dir.join("resource-r0");
    let valid = |name: &str| {
        let log = xio::log::LogName::parse(name).unwrap();
        xio::replica::verified_prefix(&dir.join(name), &log)
    };
    assert!(
        valid(current) < *current_len,
        "alice's current log {current} ({current_len} bytes) is not a recycled one: {logs:?}"
    );
    let addr = format!("127.0.0.1:{port}");
    wait_until(
        Duration::from_secs(20),
        "alice's metrics to count her logs' valid bytes",
        || {
            let want: u64 = files_of(a, "r0", "log-").iter().map(|l| valid(&l.0)).sum();
            match value(&scrape(&addr), "mars_log_bytes", &[("resource", "r0")]) {
                Some(got) if got == want as f64 => Ok(()),
                got => Err(format!("mars_log_bytes {got:?}, valid bytes {want}")),
            }
        },
    );
}

/// A primary whose logger rotates several times between two strategy rounds (1 MiB log files,
/// 1 MiB sequential writes: a rotation every write) announces every log it passed through;
/// the secondary fetches and replays all of them and ends equal. Before, only the log being
/// written at each round got its `log-` key: the logs in between were never fetched, and the
/// secondary's replay stopped at the first of them ("the log has a gap").
#[test]
fn a_secondary_gets_every_log_when_the_primary_rotates_several_times_per_round() {
    let c = Cluster::new_with(&["alice", "bob"], |i, mut n| {
        if i == 0 {
            n.extra = vec!["--log-rotate-size".into(), "1M".into()];
        }
        n
    });
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    b.wait_uptodate("r0");
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = a.nbd("r0");
    let chunk = 1usize << 20;
    for pass in 0..3u8 {
        for (i, block) in model.chunks_mut(chunk).enumerate() {
            block.fill(pass.wrapping_mul(31).wrapping_add(i as u8) | 1);
            assert_eq!(nbd.write((i * chunk) as u64, block).unwrap(), 0);
        }
    }
    assert_eq!(nbd.flush().unwrap(), 0);
    let logs = logs_of(a, "r0");
    assert!(
        logs.len() >= 20,
        "alice should have rotated every 1 or 2 MiB: {logs:?}"
    );
    b.wait_uptodate("r0");
    nbd.disconnect().unwrap();
    wait_equal(
        &c.path("b.img"),
        &model,
        "bob's device after many small logs",
    );
}

/// Issue 13's idle-resource goal: a replicated primary that is idle costs its logger's three
/// threads and one connection thread per fetching secondary, nothing more. Its data device's
/// io_uring completion thread never starts (writeback, NBD reads, the full sync's reads served
/// to the secondary and recovery are all driven; the flusher flushes inline), and a log fetch
/// uses one connection.
#[test]
fn an_idle_replicated_primary_has_one_fetch_connection_and_no_completion_thread_per_resource() {
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    // Bob's metadata connection to alice has its thread there too.
    wait_until(
        Duration::from_secs(20),
        "bob's metadata connection",
        || match a.threads_named("mars-net-conn-") {
            0 => Err("none yet".into()),
            _ => Ok(()),
        },
    );
    let base = a.threads_named("mars-net-conn-");
    let res = ["r0", "r1", "r2"];
    for r in res {
        c.replicate(r, &[&format!("a-{r}.img"), &format!("b-{r}.img")], SIZE);
    }
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = a.nbd("r0");
    write_blocks(&mut nbd, &mut model, 50, 200, 50);
    assert!(read_export(&mut nbd, SIZE) == model);
    nbd.disconnect().unwrap();
    for r in res {
        b.wait_uptodate(r);
    }
    wait_until(
        Duration::from_secs(20),
        "one fetch connection per resource on alice",
        || match a.threads_named("mars-net-conn-").saturating_sub(base) {
            3 => Ok(()),
            n => Err(format!(
                "{n} connection threads besides {base} for metadata"
            )),
        },
    );
    assert_eq!(a.threads_named("logger-"), 9, "three per primary");
    assert_eq!(
        a.threads_named("xio-aio-"),
        0,
        "no io_uring completion thread on an idle primary"
    );
}
