//! Fault campaigns with counters (issue 17), real marsd processes on loopback, no root:
//! - R1: `kill -9` of the primary's marsd under verified write load with flushes;
//! - R3: secondary anytime consistency: replay paused at random checkpoints, the
//!   secondary's device compared with the primary's image at the same log position, rebuilt
//!   from the primary's log files;
//! - R5: forced failover and its resolution (split brain reported, `invalidate`, equal).
//!
//! Each prints `campaign RX: cycles=N violations=V data_lost_bytes=B time=T` and fails on
//! any violation. Quick profile by default; `MARS_LONG_TESTS=1` runs N ≥ 100 (R1), 50 (R3),
//! 20 (R5). R4 and R6 need network namespaces and tmpfs: `upstream_net.rs`.

mod common;
use common::logimage::image_at;
use common::*;
use mars_strategy::views::ReplayLink;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SIZE: u64 = 16 << 20;

/// Every write acknowledged before a completed flush reads back after the primary's
/// marsd was killed with `kill -9` in the middle of a stream of writes and flushes; the
/// secondary ends equal to what survived.
#[test]
fn campaign_r1_primary_kill9_under_flushed_load() {
    let n = profile(4, 100);
    let mut camp = Campaign::new("R1", Duration::from_secs(profile(300, 5400)));
    let mut c = Cluster::new(&["alice", "bob"]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    let model = Arc::new(Mutex::new(Model::new(SIZE, camp.seed)));
    let mut rng = Rng::new(camp.seed);
    for cycle in 0..n {
        let flush_every = 1 + rng.below(32);
        let w = Writer::start(c.nodes[0].nbd("r0"), model.clone(), flush_every, u64::MAX);
        w.wait_writes(&model, 30 + rng.below(300), Duration::from_secs(60));
        c.nodes[0].kill9();
        let end = w.stop();
        camp.writer_ended("writer", &end);
        assert!(
            end.error.is_some(),
            "cycle {cycle}: the writer did not notice the kill"
        );
        c.nodes[0].start();
        c.nodes[0].wait_state("r0", "Primary after restart", |m| m.role == "Primary");
        let mut nbd = c.nodes[0].nbd("r0");
        let img = read_export(&mut nbd, SIZE);
        nbd.disconnect().unwrap();
        let mut m = model.lock().unwrap();
        camp.check(
            &format!(
                "cycle {cycle}: alice after kill -9 ({} writes, {} flushes acknowledged, \
                 a flush every {flush_every})",
                end.writes, end.flushes
            ),
            m.check(&img),
        );
        m.settle(&img);
        drop(m);
        camp.cycle_done();
    }
    // Writes after the last restart: only writeback (at the clean stop below) puts them on
    // alice's device, the restarts put the earlier ones there by replaying the log.
    write_n(c.nodes[0].nbd("r0"), &model, 200, 25)
        .disconnect()
        .unwrap();
    let b = &c.nodes[1];
    b.wait_state_for("r0", "UpToDate", Duration::from_secs(120), |m| m.up_to_date);
    let m = model.lock().unwrap().clone();
    camp.check(
        "bob after the crashes",
        wait_model(&c.path("b.img"), &m, Duration::from_secs(30)),
    );
    // The primary's own data device: a clean stop writes everything back (the cycles are
    // shorter than marsd's writeback delay: this is where its writeback is checked).
    c.nodes[0].stop();
    camp.check(
        "alice's data device after a clean stop",
        wait_model(&c.path("a.img"), &m, Duration::from_secs(30)),
    );
    camp.finish();
}

/// Wait until `n`'s replay is paused and its published position has not moved for a second;
/// returns it.
fn paused_replay_position(n: &Node, res: &str) -> ReplayLink {
    let mut last: Option<(String, Instant)> = None;
    let mut link = None;
    wait_until(
        Duration::from_secs(60),
        "the replay position to stand still",
        || {
            let m = n.replica(res).ok_or("no replica")?;
            let r = m.replay.clone().ok_or("no replay link")?;
            if m.repl != "PausedReplay" {
                return Err(format!("{m:?}"));
            }
            match &last {
                Some((l, since)) if *l == r => {
                    if since.elapsed() >= Duration::from_secs(1) {
                        link = Some(ReplayLink::parse("replay", &r).map_err(|e| e.to_string())?);
                        return Ok(());
                    }
                }
                _ => last = Some((r.clone(), Instant::now())),
            }
            Err(format!("{r} (not stable for 1 s yet)"))
        },
    );
    link.unwrap()
}

/// At random checkpoints under a running writer, the secondary's device equals the primary's
/// image at the secondary's replay position (rebuilt from the primary's logs): a secondary is
/// consistent at any time, not only when it is up to date.
#[test]
fn campaign_r3_secondary_anytime_consistency() {
    let n = profile(4, 50);
    let mut camp = Campaign::new("R3", Duration::from_secs(profile(300, 3600)));
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    b.wait_uptodate("r0");
    let model = Arc::new(Mutex::new(Model::new(SIZE, camp.seed)));
    let mut rng = Rng::new(camp.seed ^ 3);
    let w = Writer::start(a.nbd("r0"), model.clone(), 16, u64::MAX);
    let logs = a.dir.join("resource-r0");
    let mut positions = Vec::new();
    for cycle in 0..n {
        w.wait_writes(&model, 20 + rng.below(400), Duration::from_secs(60));
        b.ok(&["pause-replay", "r0"]);
        let at = paused_replay_position(b, "r0");
        let dev = std::fs::read(c.path("b.img")).unwrap();
        match image_at(&logs, &at.log, at.pos, SIZE) {
            Err(e) => camp.violation(format!("cycle {cycle}: no reference image: {e}"), 0),
            Ok(want) => {
                let bad: Vec<usize> = (0..want.len() / BLOCK)
                    .filter(|&i| {
                        dev[i * BLOCK..(i + 1) * BLOCK] != want[i * BLOCK..(i + 1) * BLOCK]
                    })
                    .collect();
                if let Some(first) = bad.first() {
                    camp.violation(
                        format!(
                            "cycle {cycle}: bob's device differs from alice's image at {}:{} in \
                             {} blocks (first {first})",
                            at.log,
                            at.pos,
                            bad.len()
                        ),
                        (bad.len() * BLOCK) as u64,
                    );
                }
            }
        }
        positions.push(format!("{}:{}", at.log.seq, at.pos));
        b.ok(&["resume-replay", "r0"]);
        camp.cycle_done();
    }
    eprintln!("campaign R3: checkpoints at {positions:?}");
    let distinct: std::collections::BTreeSet<_> = positions.iter().collect();
    assert!(
        distinct.len() > 1 || n == 1,
        "every checkpoint was at the same position: the campaign checked nothing new"
    );
    let end = w.stop();
    camp.writer_ended("writer", &end);
    assert!(end.error.is_none(), "writer: {:?}", end.error);
    b.wait_uptodate("r0");
    let m = model.lock().unwrap().clone();
    camp.check(
        "bob at the end",
        wait_model(&c.path("b.img"), &m, Duration::from_secs(30)),
    );
    camp.finish();
}

fn split_reported(n: &Node) -> bool {
    n.status()
        .resources
        .first()
        .is_some_and(|r| r.split_brain.is_some())
}

/// How long the loser of a split is watched, fetch and replay allowed, before `invalidate`:
/// what it must not do (apply the winner's log past the fork) would happen within a second.
const LOSER_WATCH: Duration = Duration::from_secs(4);

/// Watch the loser of a split (`LOSER_WATCH`, bounded polls): its device must hold none of
/// the `winners` writes (block, generation) made after the fork, and it must keep reporting
/// the split. Returns what it found wrong.
fn loser_took_winners_writes(
    n: &Node,
    dev: &std::path::Path,
    winners: &[(u64, u64)],
) -> Option<String> {
    let deadline = Instant::now() + LOSER_WATCH;
    while Instant::now() < deadline {
        let img = std::fs::read(dev).unwrap_or_default();
        let taken: Vec<u64> = winners
            .iter()
            .filter(|(b, g)| {
                let at = *b as usize * BLOCK;
                img.get(at..at + BLOCK)
                    .is_some_and(|bytes| block_generation(*b, bytes) == Some(*g))
            })
            .map(|(b, _)| *b)
            .collect();
        if !taken.is_empty() {
            return Some(format!(
                "{} applied {} blocks the new primary wrote after the fork (first: block {}) \
                 before it was invalidated",
                n.name,
                taken.len(),
                taken[0]
            ));
        }
        if !split_reported(n) {
            return Some(format!("{} no longer reports the split brain", n.name));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

/// Forced failover and resolution, roles alternating: the secondary pauses fetch, the
/// primary writes a tail and dies, the secondary takes over by force (serving exactly what
/// it had) and writes; the old primary comes back: the split is reported on both and the
/// old primary applies nothing of the new primary's log until it is invalidated;
/// `invalidate` on the old primary makes it equal to the new one.
#[test]
fn campaign_r5_forced_failover_and_resolution() {
    let n = profile(2, 20);
    let mut camp = Campaign::new("R5", Duration::from_secs(profile(400, 3600)));
    let mut c = Cluster::new(&["alice", "bob"]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    let devs = [c.path("a.img"), c.path("b.img")];
    let mut model = Model::new(SIZE, camp.seed);
    let mut p = 0;
    for cycle in 0..n {
        let s = 1 - p;
        let (pn, sn) = (c.nodes[p].name.clone(), c.nodes[s].name.clone());
        c.nodes[s].ok(&["resume-fetch", "r0"]);
        let m = Mutex::new(model);
        write_n(c.nodes[p].nbd("r0"), &m, 200, 25)
            .disconnect()
            .unwrap();
        model = m.into_inner().unwrap();
        c.nodes[s].wait_state_for("r0", "UpToDate", Duration::from_secs(120), |m| m.up_to_date);
        camp.check(
            &format!("cycle {cycle}: {sn} before the failover"),
            wait_model(&devs[s], &model, Duration::from_secs(30)),
        );
        c.nodes[s].ok(&["pause-fetch", "r0"]);
        // The tail only the old primary gets: other blocks and bytes than the new primary
        // writes after the fork, so that a replica holding the wrong side shows.
        let tail = Mutex::new(model.diverge(cycle + 1));
        drop(write_n(c.nodes[p].nbd("r0"), &tail, 150, 25));
        c.nodes[p].kill9();
        c.nodes[s].wait_unresponsive("r0", &pn, Duration::from_secs(60));
        c.nodes[s].ok(&["primary", "--force", "r0"]);
        let mut nbd = c.nodes[s].nbd("r0");
        camp.check(
            &format!("cycle {cycle}: {sn} right after primary --force"),
            model.check_exact(&read_export(&mut nbd, SIZE)),
        );
        let before_fork = model.clone();
        let m = Mutex::new(model);
        write_n(nbd, &m, 150, 25).disconnect().unwrap();
        model = m.into_inner().unwrap();
        let winners = model.written_since(&before_fork);
        c.nodes[p].start();
        let t = Instant::now();
        let reported = |n: &Node| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !split_reported(n) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            split_reported(n)
        };
        for i in [p, s] {
            if !reported(&c.nodes[i]) {
                camp.violation(
                    format!(
                        "cycle {cycle}: {} never reported the split brain",
                        c.nodes[i].name
                    ),
                    0,
                );
            }
        }
        // Its fetch may still be paused from a cycle where it was the secondary.
        c.nodes[p].ok(&["resume-fetch", "r0"]);
        if let Some(v) = loser_took_winners_writes(&c.nodes[p], &devs[p], &winners) {
            camp.violation(format!("cycle {cycle}: {v}"), 0);
        }
        c.nodes[p].ok_within(
            &["invalidate", "r0"],
            Duration::from_secs(30),
            "invalidate on the old primary",
        );
        c.nodes[p].wait_state_for("r0", "UpToDate", Duration::from_secs(120), |m| m.up_to_date);
        camp.check(
            &format!("cycle {cycle}: {pn} after invalidate"),
            wait_model(&devs[p], &model, Duration::from_secs(30)),
        );
        eprintln!(
            "campaign R5 cycle {cycle}: {pn} -> {sn}, split reported and resolved in {:?}",
            t.elapsed()
        );
        camp.cycle_done();
        p = s;
    }
    camp.finish();
}
