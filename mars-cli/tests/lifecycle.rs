//! The normal life of a resource with real `marsd` processes driven by `marsadm`; data
//! written through the NBD export with our own client (no external tools), replicas
//! compared byte for byte.

mod common;
use common::*;
use mars_strategy::views::LogName;
use std::time::Duration;

const SIZE: u64 = 16 << 20;

#[test]
fn create_join_write_then_planned_handover_and_back() {
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let (da, db) = (c.device("a.img", SIZE), c.device("b.img", SIZE));
    a.ok(&["create-resource", "r0", &da]);
    a.wait_state("r0", "Primary", |m| m.role == "Primary");
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = a.nbd("r0");
    write_blocks(&mut nbd, &mut model, 1, 600, 50);
    // Join while the primary holds data: full sync, then fetch + replay.
    b.ok(&["join-resource", "r0", &db]);
    write_blocks(&mut nbd, &mut model, 2, 300, 50);
    b.wait_uptodate("r0");
    wait_equal(
        &c.path("b.img"),
        &model,
        "bob's device to equal the client's model",
    );

    // While alice still has a client, the handover is refused and says who is connected.
    // (bob decides from the metadata: wait until alice's open-count reached him)
    wait_until(
        std::time::Duration::from_secs(20),
        "bob to see alice's client",
        || match b.clients_of("r0", "alice") {
            Some(1) => Ok(()),
            n => Err(format!("{n:?}")),
        },
    );
    let err = b.refused(&["primary", "r0"], "NBD client");
    assert!(err.contains("alice"), "{err}");
    assert_eq!(b.replica("r0").unwrap().role, "Secondary");
    nbd.disconnect().unwrap();
    a.wait_state("r0", "no clients", |m| m.clients == 0);

    b.ok(&["primary", "r0"]);
    assert_eq!(b.replica("r0").unwrap().role, "Primary");
    a.wait_state("r0", "Secondary", |m| m.role == "Secondary");
    let mut nbd = b.nbd("r0");
    assert_eq!(
        read_export(&mut nbd, SIZE),
        model,
        "bob serves what alice had"
    );
    write_blocks(&mut nbd, &mut model, 3, 300, 50);
    nbd.disconnect().unwrap();
    a.wait_uptodate("r0");
    wait_equal(
        &c.path("a.img"),
        &model,
        "alice's device after the handover",
    );

    // And back, once alice knows that bob's client is gone (she decides from the metadata).
    wait_until(
        std::time::Duration::from_secs(20),
        "alice to see that bob has no client",
        || match a.clients_of("r0", "bob") {
            Some(0) => Ok(()),
            n => Err(format!("{n:?}")),
        },
    );
    a.ok(&["primary", "r0"]);
    let mut nbd = a.nbd("r0");
    assert_eq!(read_export(&mut nbd, SIZE), model);
    write_blocks(&mut nbd, &mut model, 4, 200, 50);
    nbd.disconnect().unwrap();
    b.wait_uptodate("r0");
    wait_equal(
        &c.path("b.img"),
        &model,
        "bob's device after the handover back",
    );
    // Every node tells the truth about every replica (bob's position reaches alice's view).
    wait_until(
        std::time::Duration::from_secs(20),
        "alice's view of both replicas",
        || {
            let view = a.ok(&["view", "r0"]);
            let both = view.contains("alice:   r0 [2/2] UpToDate Replicating DCASFR Primary alice")
                && view.contains("bob:     r0 [2/2] UpToDate Replaying dCASFR Secondary alice");
            if both {
                Ok(())
            } else {
                Err(view)
            }
        },
    );
}

/// A full sync leaves the secondary's data device in the page cache, in large folios; every
/// replayed 4 KiB write into one then walked the buffer heads of the whole folio (44 % of a
/// secondary's samples under random writes). marsd writes it out and drops it once the sync
/// is done.
#[test]
fn a_secondary_leaves_nothing_of_its_full_sync_in_the_page_cache() {
    let c = Cluster::new(&["alice", "bob"]);
    if cannot_drop_pages(c.root.path()) {
        eprintln!("skipped: this file system cannot drop cached pages (tmpfs: they are the file)");
        return;
    }
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    // alice's device holds data before the resource exists: the sync copies all of it.
    let da = c.device("a.img", SIZE);
    let data: Vec<u8> = (0..SIZE as usize).map(|i| (i % 241) as u8 + 1).collect();
    std::fs::write(&da, &data).unwrap();
    a.ok(&["create-resource", "r0", &da]);
    a.wait_state("r0", "Primary", |m| m.role == "Primary");
    b.ok(&["join-resource", "r0", &c.device("b.img", SIZE)]);
    b.wait_uptodate("r0");
    let f = std::fs::File::open(c.path("b.img")).unwrap();
    wait_until(
        Duration::from_secs(20),
        "bob's data device to leave the page cache after the sync",
        || match xio::file::cached_pages(&f).unwrap() {
            n if n <= 16 => Ok(()),
            n => Err(format!("{n} of {} pages cached", SIZE / 4096)),
        },
    );
    // Written out before it was dropped.
    wait_equal(&c.path("b.img"), &data, "bob's device to equal alice's");
}

/// Whether this file system keeps a file's pages after they were dropped (tmpfs: its page
/// cache is the file), probed with a small file.
fn cannot_drop_pages(dir: &std::path::Path) -> bool {
    let opts = xio::file::FileOptions {
        create_size: Some(64 << 10),
        ..xio::file::FileOptions::default()
    };
    let probe = dir.join("page-cache-probe");
    let f = xio::file::open(&probe, xio::file::Backend::Sync, &opts).unwrap();
    brick_core::write_all(&*f, 0, &[7u8; 64 << 10]).unwrap();
    f.drop_page_cache().unwrap();
    let left = xio::file::cached_pages(&std::fs::File::open(&probe).unwrap()).unwrap();
    let _ = std::fs::remove_file(&probe);
    left > 0
}

#[test]
fn primary_kill9_during_flushed_writes_loses_nothing() {
    let mut c = Cluster::new(&["alice", "bob"]);
    let (da, db) = (c.device("a.img", SIZE), c.device("b.img", SIZE));
    c.nodes[0].ok(&["create-resource", "r0", &da]);
    c.nodes[0].wait_state("r0", "Primary", |m| m.role == "Primary");
    c.nodes[1].ok(&["join-resource", "r0", &db]);
    let mut model = vec![0u8; SIZE as usize];
    for cycle in 0..10u64 {
        let mut nbd = c.nodes[0].nbd("r0");
        // Everything acknowledged before a flush must survive; write_blocks ends with one.
        write_blocks(&mut nbd, &mut model, 100 + cycle, 200, 40);
        // Unflushed writes after the last flush may or may not survive: leave none.
        c.nodes[0].kill9();
        c.nodes[0].start();
        c.nodes[0].wait_state("r0", "Primary after restart", |m| m.role == "Primary");
        let mut nbd = c.nodes[0].nbd("r0");
        let got = read_export(&mut nbd, SIZE);
        let bad = got.iter().zip(&model).position(|(x, y)| x != y);
        assert_eq!(
            bad, None,
            "cycle {cycle}: a flushed write was lost at byte {bad:?}"
        );
        nbd.disconnect().unwrap();
    }
    let b = &c.nodes[1];
    b.wait_uptodate("r0");
    wait_equal(&c.path("b.img"), &model, "bob after 10 primary crashes");
}

/// `(log, position)` from marsd's lines `<marker><log> <word>... <position>`, the position
/// being the `nth` word after the log name, in order.
fn logged_positions(text: &str, marker: &str, nth: usize) -> Vec<(LogName, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l[l.find(marker)? + marker.len()..].split_whitespace();
            let log = LogName::parse(w.next()?).ok()?;
            Some((log, w.nth(nth)?.parse().ok()?))
        })
        .collect()
}

/// `(log, from)` of each replay step started (`replay step: <log> from <from> to <to>`).
fn replay_steps(text: &str) -> Vec<(LogName, u64)> {
    logged_positions(text, "replay step: ", 1)
}

/// `(log, to)` of each replay step completed (`replayed <log> up to <to> (...)`).
fn replayed(text: &str) -> Vec<(LogName, u64)> {
    logged_positions(text, "replayed ", 2)
}

/// bob is killed with -9 in the middle of replaying (steps completed, fetched data left);
/// after the restart his first replay step starts at or after a position that was
/// persisted before the kill (not at the start of the log again), and not past what he had
/// fetched; the steps after the restart make his device equal.
#[test]
fn secondary_kill9_during_replay_resumes_from_its_position() {
    let mut c = Cluster::new(&["alice", "bob"]);
    let (da, db) = (c.device("a.img", SIZE), c.device("b.img", SIZE));
    c.nodes[0].ok(&["create-resource", "r0", &da]);
    c.nodes[0].wait_state("r0", "Primary", |m| m.role == "Primary");
    c.nodes[1].ok(&["join-resource", "r0", &db]);
    c.nodes[1].wait_uptodate("r0");
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = c.nodes[0].nbd("r0");
    let logs = c.nodes[1].dir.join("resource-r0");
    for round in 0..3u64 {
        let mark = c.nodes[1].log_text().len();
        // Writes in three parts, a completed replay step after each of the first two, so
        // that bob is killed with steps behind him and data left to replay.
        let mut done = Vec::new();
        for part in 0..3u64 {
            write_blocks(&mut nbd, &mut model, 7 + round * 3 + part, 500, 100);
            if part == 2 {
                break;
            }
            wait_until(
                Duration::from_secs(60),
                "bob to complete a replay step",
                || {
                    let steps = replayed(&c.nodes[1].log_text()[mark..]);
                    if steps.len() > done.len() {
                        done = steps;
                        Ok(())
                    } else {
                        Err(format!("{steps:?}"))
                    }
                },
            );
        }
        // The link of the first of the last two steps is committed: the second was polled
        // in a later round of marsd, after the first one's round committed.
        done = replayed(&c.nodes[1].log_text()[mark..]);
        c.nodes[1].kill9();
        let persisted = done[done.len() - 2].clone();
        let fetched =
            |l: &LogName| std::fs::metadata(logs.join(l.to_string())).map_or(0, |m| m.len());
        let copies: Vec<(LogName, u64)> =
            done.iter().map(|(l, _)| (l.clone(), fetched(l))).collect();
        write_blocks(&mut nbd, &mut model, 70 + round, 300, 100);
        let mark = c.nodes[1].log_text().len();
        c.nodes[1].start();
        let mut first = None;
        wait_until(
            Duration::from_secs(60),
            "bob's first replay step after the restart",
            || {
                first = replay_steps(&c.nodes[1].log_text()[mark..])
                    .into_iter()
                    .next();
                first
                    .as_ref()
                    .map(drop)
                    .ok_or_else(|| c.nodes[1].log_tail())
            },
        );
        let (log, from) = first.unwrap();
        assert!(
            (log.seq, from) >= (persisted.0.seq, persisted.1),
            "round {round}: bob's replay restarted at {log}:{from}, before the position \
             {}:{} he had persisted before the kill",
            persisted.0,
            persisted.1
        );
        let had = copies
            .iter()
            .find(|(l, _)| *l == log)
            .map_or(0, |(_, n)| *n);
        assert!(
            log.seq > persisted.0.seq || from <= had,
            "round {round}: bob's replay restarted at {log}:{from}, past the {had} bytes he \
             had fetched of it"
        );
        eprintln!(
            "round {round}: persisted {}:{}, restarted at {log}:{from}",
            persisted.0, persisted.1
        );
    }
    c.nodes[1].wait_uptodate("r0");
    wait_equal(
        &c.path("b.img"),
        &model,
        "bob after 3 crashes during replay",
    );
}

#[test]
fn resize_grows_online_and_the_tail_replicates() {
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = a.nbd("r0");
    write_blocks(&mut nbd, &mut model, 41, 300, 50);
    b.wait_uptodate("r0");
    // bob's device is still 16 MiB: a larger size is refused, naming him.
    let err = a.refused(&["resize", "r0", "32M"], "member bob");
    assert!(err.contains("grow that device first"), "{err}");
    b.refused(&["resize", "r0", "32M"], "run resize there");
    std::fs::OpenOptions::new()
        .write(true)
        .open(c.path("b.img"))
        .unwrap()
        .set_len(2 * SIZE)
        .unwrap();
    // Under load: the old client keeps writing while the resource grows.
    write_blocks(&mut nbd, &mut model, 42, 100, 50);
    a.ok_within(
        &["resize", "r0", "32M"],
        std::time::Duration::from_secs(20),
        "resize to be accepted",
    );
    write_blocks(&mut nbd, &mut model, 43, 100, 50);
    nbd.disconnect().unwrap();
    model.resize(2 * SIZE as usize, 0);
    // A new client sees the new size and writes near the new end.
    let mut nbd = a.nbd("r0");
    for (i, off) in [2 * SIZE - 4096, 2 * SIZE - 65536, SIZE]
        .into_iter()
        .enumerate()
    {
        let block = vec![0xa0 + i as u8; 4096];
        model[off as usize..off as usize + 4096].copy_from_slice(&block);
        assert_eq!(
            nbd.write(off, &block).unwrap(),
            0,
            "write at {off} beyond the old end"
        );
    }
    assert_eq!(nbd.flush().unwrap(), 0);
    assert_eq!(read_export(&mut nbd, 2 * SIZE), model);
    nbd.disconnect().unwrap();
    b.wait_uptodate("r0");
    wait_equal(&c.path("b.img"), &model, "bob's grown device");
    assert_eq!(a.status().resources[0].size, 2 * SIZE);
}

#[test]
fn nbd_listen_exports_the_primary_on_tcp_under_the_resource_name() {
    let mut c = Cluster::new(&["alice", "bob"]);
    let port = free_port();
    c.nodes[0].kill9();
    c.nodes[0].extra = vec!["--nbd-listen".into(), format!("127.0.0.1:{port}")];
    c.nodes[0].start();
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    let mut model = vec![0u8; SIZE as usize];
    let mut tcp = {
        let mut last = None;
        let mut client = None;
        for _ in 0..100 {
            match xio::nbd::client::Client::tcp(("127.0.0.1", port), "r0", true) {
                Ok(cl) => {
                    client = Some(cl);
                    break;
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        client.unwrap_or_else(|| panic!("no TCP export: {last:?}"))
    };
    write_blocks(&mut tcp, &mut model, 61, 300, 50);
    // A TCP client counts as an NBD client of the primary too.
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    a.wait_state("r0", "one client", |m| m.clients == 1);
    tcp.disconnect().unwrap();
    b.wait_uptodate("r0");
    wait_equal(&c.path("b.img"), &model, "bob after TCP writes");
}

#[test]
fn switches_and_the_commands_scripts_use() {
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    b.ok(&["wait-cluster"]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    b.wait_uptodate("r0");
    assert_eq!(b.ok(&["view-diskstate", "r0"]).trim(), "UpToDate");
    assert_eq!(b.ok(&["view-replstate", "r0"]).trim(), "Replaying");
    assert_eq!(b.ok(&["view-flags", "r0"]).trim(), "dCASFR");
    assert_eq!(b.ok(&["view-role", "r0"]).trim(), "Secondary");
    assert_eq!(b.ok(&["view-primarynode", "r0"]).trim(), "alice");
    assert_eq!(b.ok(&["--json", "view-role", "r0"]).trim(), "\"Secondary\"");
    let json: serde_json::Value = serde_json::from_str(&b.ok(&["--json", "view"])).unwrap();
    assert_eq!(json["resources"][0]["replicas"][0]["host"], "bob");
    // pause-replay: fetched data waits; resume-replay: it is applied.
    b.ok(&["pause-replay", "r0"]);
    b.wait_state("r0", "PausedReplay", |m| {
        m.repl == "PausedReplay" && m.flags == "dCASF-"
    });
    let before = std::fs::read(c.path("b.img")).unwrap();
    let mut model = before.clone();
    let mut nbd = a.nbd("r0");
    write_blocks(&mut nbd, &mut model, 71, 200, 50);
    wait_until(
        std::time::Duration::from_secs(20),
        "bob to fetch (but not replay)",
        || match b.replica("r0") {
            Some(m) if m.lag.is_some_and(|l| l > 0) => Ok(()),
            m => Err(format!("{m:?}")),
        },
    );
    assert!(
        std::fs::read(c.path("b.img")).unwrap() == before,
        "replayed while paused"
    );
    b.ok(&["resume-replay", "r0"]);
    b.wait_uptodate("r0");
    wait_equal(&c.path("b.img"), &model, "bob after resume-replay");
    // secondary on the primary: no designated primary; the export stays while the client is on.
    a.ok(&["secondary", "r0"]);
    assert_eq!(a.ok(&["view-primarynode", "r0"]).trim(), "(none)");
    a.wait_state("r0", "RemainsPrimary", |m| m.role == "RemainsPrimary");
    nbd.disconnect().unwrap();
    a.wait_state("r0", "no longer primary", |m| {
        m.role != "RemainsPrimary" && m.role != "Primary"
    });
    a.ok(&["primary", "r0"]);
    // detach and attach.
    b.ok(&["detach", "r0"]);
    b.wait_state("r0", "Detached", |m| m.disk == "Detached");
    b.ok(&["attach", "r0"]);
    b.wait_uptodate("r0");
}
