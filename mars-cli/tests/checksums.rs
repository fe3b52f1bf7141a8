//! Block checksums end to end (real marsd processes, marsadm, our NBD client): damage done
//! behind marsd's back is found by `scrub` exactly and repaired with `--repair`; a read of a
//! damaged block on the primary fails with EIO while the others succeed; a damaged checksum
//! file is reported as such, never used to judge data, and rebuilt by `--repair`; kill -9
//! during writeback and replay leaves checksums that agree with the data.

mod common;
use common::*;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

const SIZE: u64 = 16 << 20;
const BLOCK: u64 = 4096;
const EIO: u32 = 5;

/// Flip one bit in block `b` of the file `path`, behind marsd's back.
fn flip(path: &Path, b: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8; 1];
    let at = b * BLOCK + 1234;
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_all_at(&[byte[0] ^ 0x20], at).unwrap();
    f.sync_data().unwrap();
}

/// Run `marsadm CMD r0 --rate 0 ARGS`: its exit code and output (stdout, then stderr).
fn adm_out(n: &Node, cmd: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec![cmd, "r0", "--rate", "0"];
    all.extend_from_slice(args);
    let o = n.adm(&all);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), out)
}

/// Run `marsadm CMD` expecting exit code `code`; its output.
fn adm_expect(n: &Node, cmd: &str, args: &[&str], code: i32) -> String {
    let (got, out) = adm_out(n, cmd, args);
    assert_eq!(got, Some(code), "marsadm {cmd} {args:?}:\n{out}");
    out
}

fn scrub(n: &Node, args: &[&str], code: i32) -> String {
    adm_expect(n, "scrub", args, code)
}

#[test]
fn scrub_finds_exactly_the_damaged_blocks_and_repair_fixes_them() {
    let mut c = Cluster::new(&["alice", "bob"]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = c.nodes[0].nbd("r0");
    // Every block written once, so that every checksum is known.
    for b in 0..SIZE / BLOCK {
        let block = vec![(b % 251) as u8 | 1; BLOCK as usize];
        model[(b * BLOCK) as usize..((b + 1) * BLOCK) as usize].copy_from_slice(&block);
        assert_eq!(nbd.write(b * BLOCK, &block).unwrap(), 0);
    }
    assert_eq!(nbd.flush().unwrap(), 0);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    b.wait_uptodate("r0");
    wait_equal(&c.path("b.img"), &model, "bob before the damage");
    let out = scrub(b, &[], 0);
    assert!(out.contains("0 damaged block(s)"), "{out}");

    // Damage three blocks of bob's device.
    let damaged = [5u64, 1500, 4095];
    for &blk in &damaged {
        flip(&c.path("b.img"), blk);
    }
    let out = scrub(b, &[], 1);
    let offsets: Vec<String> = damaged.iter().map(|b| (b * BLOCK).to_string()).collect();
    assert!(
        out.contains(&format!(
            "3 damaged block(s) at byte offsets {}",
            offsets.join(", ")
        )),
        "scrub names exactly the damaged blocks:\n{out}"
    );
    assert!(out.contains("--repair"), "{out}");
    // Every node sees the finding.
    wait_until(Duration::from_secs(20), "alice to see bob's scrub", || {
        let v = a.ok(&["view", "r0"]);
        if v.contains("3 damaged block(s), 0 checksum-file error(s)") {
            Ok(())
        } else {
            Err(v)
        }
    });

    let out = scrub(b, &["--repair"], 0);
    assert!(out.contains("re-synced from the primary"), "{out}");
    b.wait_state_for(
        "r0",
        "UpToDate after the repair",
        Duration::from_secs(60),
        |m| m.up_to_date,
    );
    wait_equal(&c.path("b.img"), &model, "bob after the repair");
    let out = scrub(b, &[], 0);
    assert!(out.contains("0 damaged block(s)"), "{out}");
    let v = b.ok(&["view", "r0"]);
    assert!(
        v.contains("last scrub:") && v.contains("0 differences"),
        "{v}"
    );
    nbd.disconnect().unwrap();
    let _ = &mut c;
}

#[test]
fn a_read_of_a_damaged_block_fails_with_eio_and_other_reads_succeed() {
    let mut c = Cluster::new(&["alice"]);
    c.nodes[0].ok(&["create-resource", "r0", &c.device("a.img", SIZE)]);
    c.nodes[0].wait_state("r0", "Primary", |m| m.role == "Primary");
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = c.nodes[0].nbd("r0");
    write_blocks(&mut nbd, &mut model, 11, 400, 100);
    let blk = (0..SIZE / BLOCK)
        .find(|b| model[(b * BLOCK) as usize] != 0)
        .unwrap();
    nbd.disconnect().unwrap();
    // A clean stop writes everything back; the damage happens while marsd is down.
    c.nodes[0].stop();
    flip(&c.path("a.img"), blk);
    let metrics = format!("127.0.0.1:{}", free_port());
    c.nodes[0].extra = vec!["--metrics-listen".into(), metrics.clone()];
    c.nodes[0].start();
    let a = &c.nodes[0];
    a.wait_state("r0", "Primary after restart", |m| m.role == "Primary");
    let mut nbd = a.nbd("r0");
    assert_eq!(nbd.read(blk * BLOCK, BLOCK as u32).unwrap(), Err(EIO));
    // The neighbours and everything else read fine, on the same connection.
    for other in [blk.saturating_sub(1), blk + 1, SIZE / BLOCK - 1] {
        if other != blk {
            let got = nbd.read(other * BLOCK, BLOCK as u32).unwrap().unwrap();
            assert_eq!(
                got,
                model[(other * BLOCK) as usize..((other + 1) * BLOCK) as usize]
            );
        }
    }
    wait_until(Duration::from_secs(20), "the alert in view", || {
        let v = a.ok(&["view", "r0"]);
        if v.contains("CHECKSUM: 1 read(s) failed") && v.contains("checksum mismatch") {
            Ok(())
        } else {
            Err(v)
        }
    });
    // And a metric for alerting.
    wait_until(
        Duration::from_secs(20),
        "the read error in the metrics",
        || {
            let m = scrape(&metrics);
            let l = [("resource", "r0"), ("node", "alice")];
            match value(&m, "mars_checksum_read_errors_total", &l) {
                Some(1.0) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
    // Switched off per resource: the damaged data is served as it is.
    a.ok(&["set-link", "resource-r0/verify-reads", "0"]);
    wait_until(Duration::from_secs(20), "verified reads off", || match nbd
        .read(blk * BLOCK, BLOCK as u32)
        .unwrap()
    {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("errno {e}")),
    });
    nbd.disconnect().unwrap();
}

#[test]
fn a_damaged_checksum_file_is_reported_and_rebuilt_never_trusted() {
    let mut c = Cluster::new(&["alice", "bob"]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = c.nodes[0].nbd("r0");
    write_blocks(&mut nbd, &mut model, 21, 600, 100);
    nbd.disconnect().unwrap();
    c.nodes[1].wait_uptodate("r0");
    wait_equal(&c.path("b.img"), &model, "bob");
    // With bob stopped: a bit flips in his checksum file (table page 2) and in one data
    // block covered by that page.
    c.nodes[1].stop();
    let csum = c.nodes[1].dir.join("checksums").join("r0.csum");
    // Header page, one bitmap page, then table pages of 1023 blocks each.
    flip(&csum, 2 + 2);
    flip(&c.path("b.img"), 2 * 1023 + 7);
    c.nodes[1].start();
    let b = &c.nodes[1];
    b.wait_uptodate("r0");
    let out = scrub(b, &[], 0);
    assert!(
        out.contains("0 damaged block(s)") && out.contains("1023 checksum-file error(s)"),
        "the data under a damaged checksum page is not judged:\n{out}"
    );
    let out = scrub(b, &["--repair"], 0);
    assert!(out.contains("0 damaged block(s)"), "{out}");
    let out = scrub(b, &[], 0);
    assert!(
        out.contains("0 damaged block(s)") && out.contains("0 checksum-file error(s)"),
        "rebuilt:\n{out}"
    );
}

#[test]
fn kill9_during_writeback_and_replay_leaves_checksums_that_agree_with_the_data() {
    let mut c = Cluster::new(&["alice", "bob"]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    let mut model = vec![0u8; SIZE as usize];
    for cycle in 0..4u64 {
        let mut nbd = c.nodes[0].nbd("r0");
        write_blocks(&mut nbd, &mut model, 40 + cycle, 300, 30);
        drop(nbd);
        // The primary dies with writeback under way, the secondary during replay.
        c.nodes[0].kill9();
        c.nodes[1].kill9();
        c.nodes[1].start();
        c.nodes[0].start();
        c.nodes[0].wait_state("r0", "Primary after restart", |m| m.role == "Primary");
    }
    c.nodes[1].wait_uptodate("r0");
    wait_equal(&c.path("b.img"), &model, "bob after the crashes");
    for n in &c.nodes {
        let out = scrub(n, &[], 0);
        assert!(
            out.contains("0 damaged block(s)") && out.contains("0 checksum-file error(s)"),
            "{}: {out}",
            n.name
        );
    }
}

#[test]
fn verify_finds_a_divergence_on_one_replica_online_and_repair_resyncs_it() {
    let mut c = Cluster::new(&["alice", "bob", "carol"]);
    c.replicate("r0", &["a.img", "b.img", "c.img"], SIZE);
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = c.nodes[0].nbd("r0");
    for b in 0..SIZE / BLOCK {
        let block = vec![(b % 249) as u8 | 1; BLOCK as usize];
        model[(b * BLOCK) as usize..((b + 1) * BLOCK) as usize].copy_from_slice(&block);
        assert_eq!(nbd.write(b * BLOCK, &block).unwrap(), 0);
    }
    assert_eq!(nbd.flush().unwrap(), 0);
    for n in &c.nodes[1..] {
        n.wait_uptodate("r0");
    }
    // Online: the resource is written while verify runs; no false differences.
    let verify = |n: &Node, args: &[&str], code: i32| adm_expect(n, "verify", args, code);
    // The primary's recent writes are left out until written back: wait until a verify
    // judges (nearly) every block of both secondaries.
    let compared = |out: &str, host: &str| -> u64 {
        out.lines()
            .find(|l| l.starts_with(&format!("r0 {host}:")))
            .and_then(|l| l.split("; ").nth(1))
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    wait_until(
        Duration::from_secs(60),
        "a verify that judges the blocks",
        || {
            let out = verify(&c.nodes[1], &[], 0);
            if compared(&out, "bob") > 4000 && compared(&out, "carol") > 4000 {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    let out = std::thread::scope(|sc| {
        let v = sc.spawn(|| verify(&c.nodes[1], &[], 0));
        write_blocks(&mut nbd, &mut model, 77, 400, 50);
        v.join().unwrap()
    });
    assert!(
        out.contains("r0 bob: 0 differing block(s)")
            && out.contains("r0 carol: 0 differing block(s)"),
        "{out}"
    );

    // A divergence on carol: two blocks differ, and her checksums agree with her data (as
    // after a crash whose write landed only there: the intent bits make her relearn them).
    for n in &c.nodes[1..] {
        n.wait_uptodate("r0");
    }
    c.nodes[2].stop();
    let img = std::fs::OpenOptions::new()
        .write(true)
        .open(c.path("c.img"))
        .unwrap();
    img.write_all_at(&vec![0xee; 2 * BLOCK as usize], 10 * BLOCK)
        .unwrap();
    let csum = c.nodes[2].dir.join("checksums").join("r0.csum");
    let bitmap = xio::csum::format::encode_bitmap_page((0..4).map(|_| true));
    let f = std::fs::OpenOptions::new().write(true).open(&csum).unwrap();
    f.write_all_at(&bitmap, 4096).unwrap();
    c.nodes[2].start();
    c.nodes[2].wait_uptodate("r0");
    let mut out = String::new();
    wait_until(
        Duration::from_secs(60),
        "a verify that judges carol's blocks",
        || {
            out = adm_out(&c.nodes[0], "verify", &[]).1;
            if compared(&out, "carol") > 3000 {
                Ok(())
            } else {
                Err(out.clone())
            }
        },
    );
    assert!(
        out.contains("r0 carol: 2 differing block(s) at bytes 40960+8192")
            && out.contains("r0 bob: 0 differing block(s)"),
        "{out}"
    );
    assert!(out.contains("--repair"), "{out}");
    wait_until(
        Duration::from_secs(20),
        "bob's view of carol's verify",
        || {
            let v = c.nodes[1].ok(&["view", "r0"]);
            if v.contains("last verify:") && v.contains("2 differing block(s)") {
                Ok(())
            } else {
                Err(v)
            }
        },
    );
    let out = verify(&c.nodes[2], &["--repair"], 0);
    assert!(out.contains("re-sync"), "{out}");
    c.nodes[2].wait_state_for("r0", "carol re-synced", Duration::from_secs(60), |m| {
        m.up_to_date
    });
    wait_equal(&c.path("c.img"), &model, "carol after the repair");
    let out = verify(&c.nodes[0], &[], 0);
    assert!(out.contains("r0 carol: 0 differing block(s)"), "{out}");
    nbd.disconnect().unwrap();
}
