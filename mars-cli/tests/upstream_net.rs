//! Upstream scenarios and fault campaigns that need root: network namespaces joined by a
//! shaped veth pair, tmpfs file systems that really fill up (`--features interop`; the map
//! of upstream scenarios to tests is in `upstream.rs`).
//! - `datadev_full`: the secondary's data device file system is full;
//! - `datadev_full_primary`: the primary's data device file system is full;
//! - campaign R4: link cuts during fetch and during sync;
//! - campaign R6: log space exhaustion under load, recovery by `cron` and `invalidate`.
#![cfg(feature = "interop")]

mod common;
use common::*;
use mars_cli::view::ReplicaStatus;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// `admin/datadev_full`: the file system of the secondary's data device file fills up
/// (ENOSPC) while it replays: the replay stops with an error that says so, the primary goes
/// on, nothing is applied wrongly; once there is space again replay resumes by itself and
/// the replica ends equal.
#[test]
fn datadev_full() {
    const SIZE: u64 = 16 * MIB;
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    // bob's device: a sparse 16 MiB file on a 6 MiB tmpfs.
    let fs = Tmpfs::mount(&c.path("bobdev/fs"), "6m");
    let db = c.path("bobdev/fs/b.img");
    std::fs::File::create(&db).unwrap().set_len(SIZE).unwrap();
    a.ok(&["create-resource", "r0", &c.device("a.img", SIZE)]);
    a.wait_state("r0", "Primary", |m| m.role == "Primary");
    b.ok(&["join-resource", "r0", db.to_str().unwrap()]);
    b.wait_uptodate("r0");
    let model = Mutex::new(Model::new(SIZE, 31));
    // ~2500 distinct blocks of 4 KiB: more than 6 MiB.
    let nbd = write_n(a.nbd("r0"), &model, 4000, 50);
    b.wait_state_for(
        "r0",
        "replay to stop on ENOSPC",
        Duration::from_secs(60),
        |m| {
            m.msg
                .as_deref()
                .is_some_and(|x| x.contains("replay") && x.to_lowercase().contains("no space left"))
        },
    );
    let m = b.replica("r0").unwrap();
    eprintln!("datadev_full: bob says {:?}", m.msg);
    assert!(!m.up_to_date, "UpToDate with a full device: {m:?}");
    // The primary goes on.
    let nbd = write_n(nbd, &model, 200, 50);
    assert_eq!(a.replica("r0").unwrap().disk, "UpToDate");
    fs.remount("64m");
    b.wait_state_for(
        "r0",
        "UpToDate after the remount",
        Duration::from_secs(120),
        |m| m.up_to_date,
    );
    let m = model.lock().unwrap().clone();
    wait_model(&db, &m, Duration::from_secs(30)).unwrap();
    nbd.disconnect().unwrap();
}

/// Wait (bounded: the metrics are rendered every few seconds) until alice's
/// `mars_resource_data_device_full` of r0 is `want`.
fn wait_metric(addr: &str, want: f64) {
    let name = "mars_resource_data_device_full";
    wait_until(Duration::from_secs(30), name, || {
        match value(&scrape(addr), name, &[("resource", "r0")]) {
            Some(v) if v == want => Ok(()),
            v => Err(format!("{v:?}, want {want}")),
        }
    });
}

/// `admin/datadev_full` on the primary: the file system of the primary's data device fills
/// up (ENOSPC on writeback) under verified writes. Nothing acknowledged is lost: the export
/// keeps accepting writes and returns every one (from the logger's memory), the secondary
/// replicates them, `view` says DataDeviceFull with what to do and the metric says so too;
/// once there is space again writeback catches up without a restart and the data device
/// holds every write.
#[test]
fn datadev_full_primary() {
    const SIZE: u64 = 16 * MIB;
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let c = Cluster::new_with(&["alice", "bob"], |i, mut n| {
        if i == 0 {
            n.extra = vec!["--metrics-listen".into(), metrics.clone()];
        }
        n
    });
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    // alice's device: a sparse 16 MiB file on a 6 MiB tmpfs.
    let fs = Tmpfs::mount(&c.path("alicedev/fs"), "6m");
    let da = c.path("alicedev/fs/a.img");
    std::fs::File::create(&da).unwrap().set_len(SIZE).unwrap();
    a.ok(&["create-resource", "r0", da.to_str().unwrap()]);
    a.wait_state("r0", "Primary", |m| m.role == "Primary");
    b.ok(&["join-resource", "r0", &c.device("b.img", SIZE)]);
    b.wait_uptodate("r0");
    let full = |m: &ReplicaStatus| {
        m.msg
            .as_deref()
            .is_some_and(|x| x.starts_with("DataDeviceFull"))
    };
    let model = Mutex::new(Model::new(SIZE, 37));
    // ~3000 distinct blocks of 4 KiB: more than 6 MiB. Each write is read back at once.
    let nbd = write_n(a.nbd("r0"), &model, 4000, 50);
    a.wait_state_for("r0", "DataDeviceFull", Duration::from_secs(60), full);
    let m = a.replica("r0").unwrap();
    eprintln!("datadev_full_primary: alice says {:?}", m.msg);
    assert!(m.msg.as_deref().unwrap().contains("free space"), "{m:?}");
    wait_metric(&metrics, 1.0);
    // The export goes on and serves every acknowledged write; bob has them too.
    let mut nbd = write_n(nbd, &model, 200, 50);
    assert!(
        full(&a.replica("r0").unwrap()),
        "the device got space by itself?"
    );
    let want = model.lock().unwrap().clone();
    want.check_exact(&read_export(&mut nbd, SIZE)).unwrap();
    b.wait_uptodate("r0");
    wait_model(&c.path("b.img"), &want, Duration::from_secs(30)).unwrap();
    // Space again: writeback catches up without a restart.
    fs.remount("64m");
    a.wait_state_for(
        "r0",
        "writeback to catch up",
        Duration::from_secs(120),
        |m| !full(m),
    );
    wait_model(&da, &want, Duration::from_secs(60)).unwrap();
    wait_metric(&metrics, 0.0);
    nbd.disconnect().unwrap();
}

/// The bytes of `n`'s local copies of `res`'s logs.
fn fetched_bytes(n: &Node, res: &str) -> u64 {
    std::fs::read_dir(n.dir.join(format!("resource-{res}")))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("log-"))
                .map(|e| e.metadata().map_or(0, |m| m.len()))
                .sum()
        })
        .unwrap_or(0)
}

/// Hold the link down for `cut` and check that the cut is real: after 1.5 s for what was
/// already received and the next status round, `progress` does not move any more. Returns `Err` when it moved.
fn cut_link(
    net: &NetnsPair,
    side: usize,
    cut: Duration,
    progress: impl Fn() -> u64,
) -> Result<(), String> {
    net.link(side, false);
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stalled = progress();
    let mut moved = None;
    while t.elapsed() < cut {
        let p = progress();
        if p != stalled {
            moved = Some(p);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    net.link(side, true);
    match moved {
        None => Ok(()),
        Some(p) => Err(format!(
            "progress moved from {stalled} to {p} while the link was down"
        )),
    }
}

/// R4: link cuts (either end of the veth pair, 2.5-5.5 s) alternately during a full sync (bob
/// leaves and joins again with a garbage device) and during fetch under a running writer;
/// each cut is checked to stop the transfer; after the heal the sync resumes where it was,
/// and bob ends equal to what the writer wrote.
#[test]
fn campaign_r4_link_cuts_during_fetch_and_sync() {
    const SIZE: u64 = 64 * MIB;
    let n = profile(2, 20);
    let mut camp = Campaign::new("R4", Duration::from_secs(profile(600, 5400)));
    let net = NetnsPair::new();
    net.shape("50mbit");
    let c = Cluster::new_with(&["alice", "bob"], |i, n| n.in_netns(&net.ns[i], &net.ip[i]));
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let db = c.device("b.img", SIZE);
    a.ok(&["create-resource", "r0", &c.device("a.img", SIZE)]);
    a.wait_state("r0", "Primary", |m| m.role == "Primary");
    let model = Arc::new(Mutex::new(Model::new(SIZE, camp.seed)));
    let nbd = write_n(a.nbd("r0"), &model, 2000, 100);
    b.ok(&["join-resource", "r0", &db]);
    b.wait_state_for("r0", "UpToDate", Duration::from_secs(300), |m| m.up_to_date);
    let mut rng = Rng::new(camp.seed ^ 4);
    let mut nbd = Some(nbd);
    for cycle in 0..n {
        let side = rng.below(2) as usize;
        let cut = Duration::from_millis(2500 + rng.below(3000));
        if cycle % 2 == 0 {
            // During a full sync: bob leaves, his device becomes garbage, he joins again.
            b.ok(&["down", "r0"]);
            b.ok(&["leave-resource", "r0"]);
            std::fs::write(&db, vec![0xee; SIZE as usize]).unwrap();
            b.ok_within(
                &["join-resource", "r0", &db],
                Duration::from_secs(30),
                "join again",
            );
            b.wait_state_for("r0", "sync at 10%", Duration::from_secs(120), |m| {
                m.syncstatus >= SIZE / 10 || m.up_to_date
            });
            let at_cut = b.replica("r0").unwrap().syncstatus;
            if at_cut >= SIZE / 10 * 9 {
                eprintln!("R4 cycle {cycle}: the sync was nearly done ({at_cut}): cut anyway");
            }
            let sync = || b.replica("r0").map_or(0, |m| m.syncstatus);
            if let Err(e) = cut_link(&net, side, cut, sync) {
                if at_cut < SIZE / 10 * 9 {
                    camp.violation(format!("cycle {cycle}: sync cut at {at_cut}: {e}"), 0);
                }
            }
            let mut went_back = None;
            wait_until(Duration::from_secs(300), "the sync to complete", || {
                let m = b.replica("r0").ok_or("no replica")?;
                if m.syncstatus < at_cut && went_back.is_none() {
                    went_back = Some(m.syncstatus);
                }
                if m.up_to_date {
                    Ok(())
                } else {
                    Err(format!("{m:?}"))
                }
            });
            if let Some(p) = went_back {
                camp.violation(
                    format!("cycle {cycle}: the sync went back from {at_cut} to {p}"),
                    0,
                );
            }
            eprintln!("R4 cycle {cycle}: sync cut at {at_cut} on side {side} for {cut:?}");
        } else {
            // During fetch, under a running writer.
            // At most ~32 MiB: some seconds of fetch over the shaped link.
            let w = Writer::start(nbd.take().unwrap(), model.clone(), 50, 8000);
            w.wait_writes(&model, 200, Duration::from_secs(60));
            let fetched = || fetched_bytes(b, "r0");
            if let Err(e) = cut_link(&net, side, cut, fetched) {
                camp.violation(format!("cycle {cycle}: fetch cut: {e}"), 0);
            }
            w.wait_writes(&model, 100, Duration::from_secs(60));
            let end = w.stop();
            camp.writer_ended("writer", &end);
            if let Some(e) = &end.error {
                camp.violation(format!("cycle {cycle}: the writer failed: {e}"), 0);
            }
            nbd = end.client;
            eprintln!(
                "R4 cycle {cycle}: fetch cut on side {side} for {cut:?} ({} writes)",
                end.writes
            );
        }
        b.wait_state_for("r0", "UpToDate", Duration::from_secs(300), |m| m.up_to_date);
        let m = model.lock().unwrap().clone();
        camp.check(
            &format!("cycle {cycle}: bob after the cut"),
            wait_model(Path::new(&db), &m, Duration::from_secs(30)),
        );
        camp.cycle_done();
        if nbd.is_none() {
            nbd = Some(a.nbd("r0"));
        }
    }
    camp.finish();
}

/// R6: log space exhaustion under load. Per cycle a fresh pair, alice's mars directory on a
/// 32 MiB tmpfs, bob's fetch paused: a writer fills it until alice is in emergency mode;
/// every write goes on and reads back; then more space, `cron` on alice (logging resumes,
/// the export keeps its client), `invalidate` on bob (Orphan), bob ends equal.
#[test]
fn campaign_r6_log_space_exhaustion_under_load() {
    const SIZE: u64 = 16 * MIB;
    let n = profile(1, 5);
    let mut camp = Campaign::new("R6", Duration::from_secs(profile(300, 1800)));
    for cycle in 0..n {
        let tmpfs: Mutex<Option<Tmpfs>> = Mutex::new(None);
        let c = Cluster::new_with(&["alice", "bob"], |i, n| {
            if i == 0 {
                *tmpfs.lock().unwrap() = Some(Tmpfs::mount(&n.dir, "32m"));
            }
            n
        });
        let (a, b) = (&c.nodes[0], &c.nodes[1]);
        c.replicate("r0", &["a.img", "b.img"], SIZE);
        b.wait_uptodate("r0");
        b.ok(&["pause-fetch", "r0"]);
        let model = Arc::new(Mutex::new(Model::new(SIZE, camp.seed + cycle as u64)));
        let w = Writer::start(a.nbd("r0"), model.clone(), 64, 40_000);
        a.wait_state_for("r0", "EmergencyMode", Duration::from_secs(120), |m| {
            m.disk == "EmergencyMode"
        });
        // Load goes on in emergency mode.
        w.wait_writes(&model, 500, Duration::from_secs(60));
        let end = w.stop();
        camp.writer_ended("writer", &end);
        if let Some(e) = &end.error {
            camp.violation(
                format!("cycle {cycle}: a write failed in emergency mode: {e}"),
                0,
            );
        }
        let mut nbd = end.client.unwrap_or_else(|| a.nbd("r0"));
        let m = model.lock().unwrap().clone();
        camp.check(
            &format!("cycle {cycle}: alice's export in emergency mode"),
            m.check_exact(&read_export(&mut nbd, SIZE)),
        );
        b.ok(&["resume-fetch", "r0"]);
        b.wait_state_for("r0", "Orphan", Duration::from_secs(120), |m| {
            m.disk == "Orphan"
        });
        tmpfs.lock().unwrap().as_ref().unwrap().remount("256m");
        a.cron_until_logging("r0", Duration::from_secs(60));
        // The same connection logs again.
        let nbd = write_n(nbd, &model, 300, 50);
        b.ok_within(
            &["invalidate", "r0"],
            Duration::from_secs(30),
            "invalidate on bob",
        );
        b.wait_state_for("r0", "UpToDate", Duration::from_secs(120), |m| m.up_to_date);
        let m = model.lock().unwrap().clone();
        camp.check(
            &format!("cycle {cycle}: bob after invalidate"),
            wait_model(&c.path("b.img"), &m, Duration::from_secs(30)),
        );
        nbd.disconnect().unwrap();
        camp.cycle_done();
        drop(c);
    }
    camp.finish();
}
