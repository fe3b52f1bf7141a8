//! Upstream MARS's `test_suite/mars/test_cases/` scenarios, ported one by one (issue 17).
//! Those written here need no root; the ones with network namespaces, tmpfs or fio are in
//! `upstream_net.rs` (`--features interop`). Where a scenario already had a test it is
//! not written twice; this table says which test covers which upstream scenario:
//!
//! | upstream scenario | test |
//! |---|---|
//! | `admin/switch2primary` (planned handover, refused while the old one is in use) | `lifecycle::create_join_write_then_planned_handover_and_back`, `interop::handover_after_fio_load_and_back` |
//! | `admin/switch2primary_force/…` (forced failover, split brain, resolution) | `failover::forced_failover_split_brain_and_invalidate`, `failover::two_logs_with_one_sequence_number_are_detected_and_resolved`, `interop_hard::forced_failover_while_partitioned_then_heal`, campaign R5 (`campaigns.rs`) |
//! | `…/logrot_orig_prim`, `logrot_spl_brain_orig_{prim,secon}` (forced failover around a log rotation) | `interop_hard::forced_failover_after_log_rotate_on_old_primary`, `interop_hard::forced_failover_after_log_rotate_on_new_primary` |
//! | `admin/logrotate`, `admin/logdelete` | `pool::three_nodes_two_resources_log_delete_keeps_what_a_paused_member_needs` |
//! | `admin/datadev_full` (the secondary's, and the primary's data device full) | `upstream_net::datadev_full`, `upstream_net::datadev_full_primary` |
//! | `hardcore/mars_dir_full/…` (emergency mode) | `emergency::emergency_mode_keeps_io_going_and_invalidate_recovers`, `interop_hard::emergency_mode_on_a_full_tmpfs`, campaign R6 (`upstream_net.rs`) |
//! | `admin/resizing/grow` | `lifecycle::resize_grows_online_and_the_tail_replicates` |
//! | `admin/multiresource`, `admin/three_nodes` | `pool::three_nodes_two_resources_log_delete_keeps_what_a_paused_member_needs` |
//! | `admin/replay_fetch/{fetch,replay}` | `upstream::replay_fetch` (here), `lifecycle::switches_and_the_commands_scripts_use` |
//! | `stabil/net_failure/connection_cut` (during sync and fetch) | `interop::link_cut_during_sync_and_fetch_resume`, campaign R4 (`upstream_net.rs`) |
//! | `stabil/crash/crash_primary` | `lifecycle::primary_kill9_during_flushed_writes_loses_nothing`, campaign R1 (`campaigns.rs`) |
//! | `hardcore/destroy_secondary_logfile` | `upstream::destroy_secondary_logfile` (here) |
//! | crucible `dsc` random restarts under load | `upstream::dsc_random_restarts_under_load` (here) |
//! | secondary anytime consistency (`contrib/docu/tests.txt`) | campaign R3 (`campaigns.rs`) |

mod common;
use common::*;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SIZE: u64 = 16 << 20;

/// The log files of `res` in `n`'s mars directory with their lengths, by name.
fn local_logs(n: &Node, res: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(n.dir.join(format!("resource-{res}")))
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            name.starts_with("log-")
                .then(|| (name, e.metadata().map_or(0, |m| m.len())))
        })
        .collect();
    v.sort();
    v
}

/// Wait until `b` holds a copy of every log of `a` with the same length.
fn wait_fetched(a: &Node, b: &Node, res: &str) {
    wait_until(
        Duration::from_secs(60),
        &format!("{} to fetch all of {}'s logs", b.name, a.name),
        || {
            let (theirs, mine) = (local_logs(a, res), local_logs(b, res));
            if theirs.iter().all(|l| mine.contains(l)) {
                Ok(())
            } else {
                Err(format!(
                    "{} has {theirs:?}, {} has {mine:?}",
                    a.name, b.name
                ))
            }
        },
    );
}

/// `admin/replay_fetch`: `pause-fetch` stops the transfer of new log data (the local copy does
/// not grow while the primary writes), `resume-fetch` catches up; `pause-replay` keeps
/// fetched data off the device, `resume-replay` applies it; the replica ends equal.
#[test]
fn replay_fetch() {
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    b.wait_uptodate("r0");
    let model = Mutex::new(Model::new(SIZE, 17));

    b.ok(&["pause-fetch", "r0"]);
    b.wait_state("r0", "PausedFetch", |m| m.repl == "PausedFetch");
    let before = local_logs(b, "r0");
    let nbd = write_n(a.nbd("r0"), &model, 300, 25);
    let grown = local_logs(a, "r0");
    assert_ne!(
        grown, before,
        "alice's log did not grow: the test checks nothing"
    );
    // Watch for two seconds: bob's copy must not grow (a bounded observation, not a wait).
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            local_logs(b, "r0"),
            before,
            "bob fetched while fetch was paused"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!b.replica("r0").unwrap().up_to_date);
    b.ok(&["resume-fetch", "r0"]);
    wait_fetched(a, b, "r0");
    b.wait_uptodate("r0");
    let m = model.lock().unwrap().clone();
    wait_model(&c.path("b.img"), &m, Duration::from_secs(30)).unwrap();

    b.ok(&["pause-replay", "r0"]);
    b.wait_state("r0", "PausedReplay", |m| m.repl == "PausedReplay");
    let dev = std::fs::read(c.path("b.img")).unwrap();
    let nbd = write_n(nbd, &model, 300, 25);
    wait_fetched(a, b, "r0");
    assert_eq!(
        std::fs::read(c.path("b.img")).unwrap(),
        dev,
        "bob replayed while replay was paused"
    );
    b.ok(&["resume-replay", "r0"]);
    b.wait_uptodate("r0");
    let m = model.lock().unwrap().clone();
    wait_model(&c.path("b.img"), &m, Duration::from_secs(30)).unwrap();
    nbd.disconnect().unwrap();
}

/// `hardcore/destroy_secondary_logfile`: bytes in the middle of a log file the secondary
/// already fetched (and verified) are overwritten; its replay detects the damage, nothing
/// after it is applied, the log is fetched again and the replica ends equal.
#[test]
fn destroy_secondary_logfile() {
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    b.wait_uptodate("r0");
    let model = Mutex::new(Model::new(SIZE, 23));
    b.ok(&["pause-replay", "r0"]);
    b.wait_state("r0", "PausedReplay", |m| m.repl == "PausedReplay");
    write_n(a.nbd("r0"), &model, 400, 25).disconnect().unwrap();
    wait_fetched(a, b, "r0");
    let (name, len) = local_logs(b, "r0").pop().unwrap();
    let path: PathBuf = b.dir.join("resource-r0").join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    for x in &mut bytes[at..at + 512] {
        *x ^= 0xa5;
    }
    std::fs::write(&path, &bytes).unwrap();
    eprintln!(
        "destroy_secondary_logfile: overwrote 512 bytes at {at} of bob's {name} ({len} bytes)"
    );
    b.ok(&["resume-replay", "r0"]);
    b.wait_state_for("r0", "UpToDate", Duration::from_secs(120), |m| m.up_to_date);
    let m = model.lock().unwrap().clone();
    wait_model(&c.path("b.img"), &m, Duration::from_secs(30)).unwrap();
    let log = b.log_text();
    assert!(
        log.contains("do not verify") || log.contains("corrupt"),
        "bob never reported the damage: was it detected at all?\n{}",
        b.log_tail()
    );
    // The damaged copy was replaced: bob's log file equals alice's again.
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(a.dir.join("resource-r0").join(&name)).unwrap(),
        "bob's copy of {name} is still damaged"
    );
}

/// crucible `dsc` style: a verifying writer runs on the primary while random nodes of three
/// are restarted (kill -9 or SIGTERM; the primary by kill -9, then what it acknowledged
/// before a flush is checked and the writer starts again); at the end every replica equals
/// what the writer wrote.
#[test]
fn dsc_random_restarts_under_load() {
    let n = profile(6, 40);
    let mut camp = Campaign::new("dsc", Duration::from_secs(profile(300, 3600)));
    let mut c = Cluster::new(&["alice", "bob", "carol"]);
    c.replicate("r0", &["a.img", "b.img", "c.img"], SIZE);
    let model = Arc::new(Mutex::new(Model::new(SIZE, camp.seed)));
    let mut rng = Rng::new(camp.seed ^ 5);
    let mut w = Writer::start(c.nodes[0].nbd("r0"), model.clone(), 20, u64::MAX);
    for cycle in 0..n {
        w.wait_writes(&model, 50 + rng.below(300), Duration::from_secs(60));
        let victim = rng.below(3) as usize;
        let how = if victim == 0 || rng.below(2) == 0 {
            "kill -9"
        } else {
            "SIGTERM"
        };
        eprintln!("dsc cycle {cycle}: {how} {}", c.nodes[victim].name);
        if victim == 0 {
            c.nodes[0].kill9();
            let end = w.stop();
            camp.writer_ended("writer", &end);
            assert!(end.error.is_some(), "the writer did not notice the kill");
            c.nodes[0].start();
            c.nodes[0].wait_state("r0", "Primary after restart", |m| m.role == "Primary");
            let mut nbd = c.nodes[0].nbd("r0");
            let img = read_export(&mut nbd, SIZE);
            let mut m = model.lock().unwrap();
            camp.check(
                &format!("cycle {cycle}: alice after kill -9"),
                m.check(&img),
            );
            m.settle(&img);
            drop(m);
            w = Writer::start(nbd, model.clone(), 20, u64::MAX);
        } else {
            if how == "kill -9" {
                c.nodes[victim].kill9();
            } else {
                c.nodes[victim].stop();
            }
            c.nodes[victim].start();
        }
        camp.cycle_done();
    }
    let end = w.stop();
    camp.writer_ended("writer", &end);
    assert!(end.error.is_none(), "writer: {:?}", end.error);
    let m = model.lock().unwrap().clone();
    for (i, dev) in ["b.img", "c.img"].iter().enumerate() {
        c.nodes[i + 1].wait_state_for("r0", "UpToDate", Duration::from_secs(120), |m| m.up_to_date);
        camp.check(
            &format!("{} at the end", c.nodes[i + 1].name),
            wait_model(&c.path(dev), &m, Duration::from_secs(30)),
        );
    }
    camp.finish();
}
