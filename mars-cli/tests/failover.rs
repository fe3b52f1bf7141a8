//! Forced failover, split brain and its resolution with real processes: the primary dies
//! with a tail bob has not fetched (his fetch was paused), bob takes over by force and
//! writes, the old primary comes back: every node reports the fork with its position and
//! amounts; `invalidate` on the loser discards its tail and makes it equal to the winner.

mod common;
use common::*;
use std::time::Duration;

const SIZE: u64 = 16 << 20;

fn split_line(n: &Node) -> Option<String> {
    n.status()
        .resources
        .first()
        .and_then(|r| r.split_brain.clone())
}

#[test]
fn forced_failover_split_brain_and_invalidate() {
    let mut c = Cluster::new(&["alice", "bob"]);
    c.nodes[0].ok(&["create-resource", "r0", &c.device("a.img", SIZE)]);
    c.nodes[0].wait_state("r0", "Primary", |m| m.role == "Primary");
    c.nodes[1].ok(&["join-resource", "r0", &c.device("b.img", SIZE)]);
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = c.nodes[0].nbd("r0");
    write_blocks(&mut nbd, &mut model, 1, 500, 50);
    c.nodes[1].wait_uptodate("r0");
    wait_equal(&c.path("b.img"), &model, "bob before the failover");

    // A forced failover needs pause-fetch first, and an unreachable primary.
    c.nodes[1].refused(&["primary", "--force", "r0"], "pause-fetch");
    c.nodes[1].ok(&["pause-fetch", "r0"]);
    c.nodes[1].refused(&["primary", "--force", "r0"], "reachable");
    // alice writes a tail bob never gets, then dies.
    let mut lost = model.clone();
    write_blocks(&mut nbd, &mut lost, 2, 300, 50);
    drop(nbd);
    c.nodes[0].kill9();
    let b = &c.nodes[1];
    b.wait_unresponsive("r0", "alice", Duration::from_secs(20));
    let dry = b.ok(&["primary", "--force", "--dry-run", "r0"]);
    assert!(dry.contains("dry run") && dry.contains("lost"), "{dry}");
    assert_eq!(
        b.replica("r0").unwrap().role,
        "Secondary",
        "dry run changed something"
    );
    b.ok(&["primary", "--force", "r0"]);
    assert_eq!(b.replica("r0").unwrap().role, "Primary");
    let mut nbd = b.nbd("r0");
    assert_eq!(
        read_export(&mut nbd, SIZE),
        model,
        "bob serves what he had replayed"
    );
    let before_fork = model.clone();
    write_blocks(&mut nbd, &mut model, 3, 300, 50);
    nbd.disconnect().unwrap();

    // alice comes back: both report the fork, alice replays nothing of bob's.
    c.nodes[0].start();
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    for n in [a, b] {
        wait_until(
            Duration::from_secs(20),
            "the split brain to be reported",
            || {
                split_line(n)
                    .map(drop)
                    .ok_or_else(|| format!("{}: none yet", n.name))
            },
        );
        assert_eq!(n.ok(&["view-is-split-brain", "r0"]).trim(), "1");
        let view = n.ok(&["view", "r0"]);
        eprintln!(
            "--- marsadm view on {} during the split brain:\n{view}",
            n.name
        );
        assert!(
            view.contains("SPLIT BRAIN after log") && view.contains("alice holds"),
            "{view}"
        );
        assert!(view.contains("marsadm invalidate r0"), "{view}");
    }
    a.wait_state("r0", "reporting the fork", |m| {
        m.msg.as_deref().is_some_and(|x| x.contains("SPLIT BRAIN"))
    });
    // alice holds none of the blocks bob wrote after the fork.
    let a_img = std::fs::read(c.path("a.img")).unwrap();
    assert_eq!(a_img.len() as u64, SIZE);
    let blocks = |img: &[u8]| img.chunks(4096).map(<[u8]>::to_vec).collect::<Vec<_>>();
    let (then, now, alice) = (blocks(&before_fork), blocks(&model), blocks(&a_img));
    let taken = (0..now.len())
        .filter(|&i| now[i] != then[i] && alice[i] == now[i])
        .count();
    assert_eq!(taken, 0, "alice applied blocks bob wrote after the fork");

    // Resolution on the loser: what would go, then invalidate.
    let dry = a.ok(&["invalidate", "--dry-run", "r0"]);
    eprintln!("--- marsadm invalidate --dry-run r0 on alice:\n{dry}");
    assert!(
        dry.contains("bytes past the fork") && dry.contains("from bob"),
        "{dry}"
    );
    b.refused(&["invalidate", "r0"], "is the primary");
    a.ok(&["invalidate", "r0"]);
    a.wait_uptodate("r0");
    wait_equal(
        &c.path("a.img"),
        &model,
        "alice after invalidate: bob's data, without her lost tail",
    );
    for n in [a, b] {
        wait_until(
            Duration::from_secs(20),
            "no split brain any more",
            || match split_line(n) {
                None => Ok(()),
                Some(s) => Err(s),
            },
        );
        assert_eq!(n.ok(&["view-is-split-brain", "r0"]).trim(), "0");
    }
    // Replication goes on from bob to alice.
    let mut nbd = b.nbd("r0");
    write_blocks(&mut nbd, &mut model, 4, 200, 50);
    nbd.disconnect().unwrap();
    a.wait_uptodate("r0");
    wait_equal(&c.path("a.img"), &model, "alice replicates bob again");
}

#[test]
fn two_logs_with_one_sequence_number_are_detected_and_resolved() {
    let mut c = Cluster::new(&["alice", "bob"]);
    c.nodes[0].ok(&["create-resource", "r0", &c.device("a.img", SIZE)]);
    c.nodes[0].wait_state("r0", "Primary", |m| m.role == "Primary");
    c.nodes[1].ok(&["join-resource", "r0", &c.device("b.img", SIZE)]);
    let mut base = vec![0u8; SIZE as usize];
    let mut nbd = c.nodes[0].nbd("r0");
    write_blocks(&mut nbd, &mut base, 5, 300, 50);
    drop(nbd);
    c.nodes[1].wait_uptodate("r0");
    // bob takes over by force while alice is down, writes, and dies.
    c.nodes[1].ok(&["pause-fetch", "r0"]);
    c.nodes[0].kill9();
    c.nodes[1].wait_unresponsive("r0", "alice", Duration::from_secs(20));
    c.nodes[1].ok(&["primary", "--force", "r0"]);
    let mut bobs = base.clone();
    let mut nbd = c.nodes[1].nbd("r0");
    write_blocks(&mut nbd, &mut bobs, 6, 200, 50);
    drop(nbd);
    c.nodes[1].kill9();
    // alice comes back alone and is forced too: she writes her own next log.
    c.nodes[0].start();
    c.nodes[0].ok(&["pause-fetch", "r0"]);
    c.nodes[0].wait_unresponsive("r0", "bob", Duration::from_secs(20));
    c.nodes[0].ok(&["primary", "--force", "r0"]);
    let mut alices = base.clone();
    let mut nbd = c.nodes[0].nbd("r0");
    write_blocks(&mut nbd, &mut alices, 7, 200, 50);
    nbd.disconnect().unwrap();
    c.nodes[1].start();
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    // Both have a log with the same sequence number: every node reports the fork.
    wait_until(
        Duration::from_secs(20),
        "two logs of one number in the metadata",
        || {
            let logs = a.status().resources[0].logs.clone();
            let seqs: Vec<&str> = logs.iter().map(|l| &l[..13]).collect();
            let mut d = seqs.clone();
            d.dedup();
            if d.len() < seqs.len() {
                Ok(())
            } else {
                Err(format!("{logs:?}"))
            }
        },
    );
    for n in [a, b] {
        wait_until(Duration::from_secs(20), "the fork reported", || {
            match n.ok(&["view-is-split-brain", "r0"]).trim() {
                "1" => Ok(()),
                x => Err(x.to_string()),
            }
        });
    }
    // bob (no longer designated, no clients) stops and is on the losing side: he replays
    // nothing of alice's.
    b.wait_state("r0", "SplitBrain", |m| m.repl == "SplitBrain");
    let bob_dev = std::fs::read(c.path("b.img")).unwrap();
    assert!(
        bob_dev != alices,
        "bob replayed alice's branch:\n{}\n{}",
        b.ok(&["view", "r0"]),
        b.log_tail()
    );
    b.ok(&["resume-fetch", "r0"]);
    b.ok(&["invalidate", "r0"]);
    b.wait_uptodate("r0");
    wait_equal(
        &c.path("b.img"),
        &alices,
        "bob after invalidate equals alice",
    );
    wait_until(Duration::from_secs(20), "no fork any more", || {
        match a.ok(&["view-is-split-brain", "r0"]).trim() {
            "0" => Ok(()),
            x => Err(x.to_string()),
        }
    });
}
