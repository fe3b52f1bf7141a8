//! Real marsd processes driven by marsadm, with data written and checked by external tools
//! (qemu-io, qemu-img, fio over the NBD export) and, for link cuts, two network namespaces
//! joined by a shaped veth pair. Needs root and the tools: `--features interop`.
#![cfg(feature = "interop")]

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// Wait until `n` sees `host` with `want` NBD clients for `res`.
fn wait_clients(n: &Node, res: &str, host: &str, want: u64) {
    wait_until(
        Duration::from_secs(20),
        &format!("{} to see {want} client(s) on {host}", n.name),
        || match n.clients_of(res, host) {
            Some(c) if c == want => Ok(()),
            c => Err(format!("{c:?}")),
        },
    );
}

#[test]
fn join_while_primary_holds_1gib_then_write() {
    let t0 = Instant::now();
    const SIZE: u64 = 1 << 30;
    const PIECE: u64 = 64 * MIB;
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let (da, db) = (c.device("a.img", SIZE), c.device("b.img", SIZE));
    a.ok(&["create-resource", "r0", &da]);
    a.wait_state("r0", "Primary", |m| m.role == "Primary");
    let uri = a.nbd_uri("r0");

    // 1 GiB in 16 pieces of 64 MiB, each with its own pattern.
    let t = Instant::now();
    let pieces: Vec<(u8, u64, u64)> = (0..SIZE / PIECE)
        .map(|i| (0x10 + i as u8 * 0x0d, i * PIECE, PIECE))
        .collect();
    qemu_write(&uri, &pieces);
    eprintln!("interop: wrote 1 GiB with qemu-io in {:?}", t.elapsed());

    // Join: a full sync of 1 GiB while the primary keeps writing.
    let t_join = Instant::now();
    b.ok(&["join-resource", "r0", &db]);
    b.wait_state_for("r0", "sync started", Duration::from_secs(60), |m| {
        m.syncstatus > 0 || m.up_to_date
    });
    let before = b.replica("r0").unwrap().syncstatus;
    // Overwrites ahead of and behind the sync position, some not 64 MiB aligned.
    qemu_write(
        &uri,
        &[
            (0xa1, 0, PIECE),
            (0xa2, 512 * MIB, PIECE),
            (0xa3, SIZE - PIECE, PIECE),
            (0xa4, 300_000 * 1024, 5 * MIB),
            (0xa5, 777 * MIB + 4096, 3 * MIB),
        ],
    );
    let after = b.replica("r0").unwrap();
    eprintln!(
        "interop: second writes while bob syncs: syncstatus {before} -> {} of {SIZE}",
        after.syncstatus
    );
    b.wait_state_for("r0", "UpToDate", Duration::from_secs(600), |m| m.up_to_date);
    let join = t_join.elapsed();
    let differed = wait_compare_equal(&uri, &db, Duration::from_secs(30));
    eprintln!(
        "interop: join (full sync of 1 GiB + 137 MiB written meanwhile) took {join:?}; \
         compare identical (after {differed} differing runs); whole test {:?}",
        t0.elapsed()
    );
}

/// fio over the export `uri`: 64 MiB of random 4 KiB writes (queue depth 16) spread over the
/// 256 MiB device, with crc32c verify headers, then read back and verified; `verify_only`
/// reruns the same job (same seed) reading and verifying only.
fn fio(uri: &str, seed: u64, verify_only: bool) -> String {
    let uri = format!("--uri={uri}");
    let seed = format!("--randseed={seed}");
    // `--thread`: the job runs in the process `tool_ok` kills on a timeout (a forked job
    // process would outlive it).
    let mut args = vec![
        "--thread",
        "--name=load",
        "--ioengine=nbd",
        uri.as_str(),
        "--rw=randwrite",
        "--bs=4k",
        "--iodepth=16",
        "--size=256M",
        "--io_size=64M",
        seed.as_str(),
        "--verify=crc32c",
        "--verify_fatal=1",
        "--verify_state_save=0",
        "--minimal",
    ];
    if verify_only {
        args.push("--verify_only=1");
    }
    let out = tool_ok("fio", &args, Duration::from_secs(300));
    // The terse line: `3;fio-3.x;load;groupid;error;read_kb;...`; the verify pass reads
    // back all 64 MiB (in both modes).
    let line = out
        .lines()
        .find(|l| l.starts_with("3;"))
        .unwrap_or_else(|| panic!("fio {args:?}: no terse line in {out}"));
    let f: Vec<&str> = line.split(';').collect();
    assert_eq!((f[4], f[5]), ("0", "65536"), "fio {args:?}: {line}");
    out
}

#[test]
fn handover_after_fio_load_and_back() {
    let t0 = Instant::now();
    const SIZE: u64 = 256 * MIB;
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let (da, db) = (c.device("a.img", SIZE), c.device("b.img", SIZE));
    a.ok(&["create-resource", "r0", &da]);
    a.wait_state("r0", "Primary", |m| m.role == "Primary");
    b.ok(&["join-resource", "r0", &db]);
    b.wait_uptodate("r0");

    let t = Instant::now();
    fio(&a.nbd_uri("r0"), 1, false);
    eprintln!(
        "interop: fio randwrite 64 MiB on alice + verify: {:?}",
        t.elapsed()
    );

    // Handover to bob (no client left on alice, and bob knows it).
    wait_clients(b, "r0", "alice", 0);
    let t = Instant::now();
    b.ok(&["primary", "r0"]);
    eprintln!("interop: handover to bob: {:?}", t.elapsed());
    assert_eq!(b.replica("r0").unwrap().role, "Primary");
    a.wait_state("r0", "Secondary", |m| m.role == "Secondary");
    fio(&b.nbd_uri("r0"), 1, true);
    a.wait_uptodate("r0");
    wait_compare_equal(&b.nbd_uri("r0"), &da, Duration::from_secs(30));

    // Write again on bob, and back to alice.
    fio(&b.nbd_uri("r0"), 2, false);
    wait_clients(a, "r0", "bob", 0);
    a.ok(&["primary", "r0"]);
    assert_eq!(a.replica("r0").unwrap().role, "Primary");
    b.wait_state("r0", "Secondary", |m| m.role == "Secondary");
    fio(&a.nbd_uri("r0"), 2, true);
    b.wait_uptodate("r0");
    wait_compare_equal(&a.nbd_uri("r0"), &db, Duration::from_secs(30));

    // A qemu-io holding a connection open on alice (until its stdin closes): the handover
    // to bob is refused, naming alice and the NBD client. (First the count of the compare's
    // connection must be gone everywhere, or bob could see that one.)
    a.wait_state("r0", "no clients", |m| m.clients == 0);
    wait_clients(b, "r0", "alice", 0);
    let mut holder = ChildGuard(Some(
        Command::new("qemu-io")
            .args(["-f", "raw", &a.nbd_uri("r0")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning qemu-io"),
    ));
    a.wait_state("r0", "qemu-io connected", |m| m.clients == 1);
    wait_clients(b, "r0", "alice", 1);
    let o = b.adm(&["primary", "r0"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let diag = || {
        format!(
            "marsadm primary r0 on bob: {} stdout {:?} stderr {err:?}\n--- view on alice ---\n{}\
             --- view on bob ---\n{}--- alice log ---\n{}\n--- bob log ---\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            a.ok(&["view", "r0"]),
            b.ok(&["view", "r0"]),
            a.log_tail(),
            b.log_tail()
        )
    };
    assert_eq!(o.status.code(), Some(1), "should be refused: {}", diag());
    assert!(
        err.contains("NBD client") && err.contains("alice"),
        "{}",
        diag()
    );
    let (rb, ra) = (b.replica("r0").unwrap().role, a.replica("r0").unwrap().role);
    assert_eq!(
        (rb.as_str(), ra.as_str()),
        ("Secondary", "Primary"),
        "roles after the refusal: {}",
        diag()
    );
    holder.close_and_wait(Duration::from_secs(20));
    a.wait_state("r0", "no clients", |m| m.clients == 0);
    wait_compare_equal(&a.nbd_uri("r0"), &db, Duration::from_secs(30));
    eprintln!("interop: handover test took {:?}", t0.elapsed());
}

#[test]
fn link_cut_during_sync_and_fetch_resume() {
    let t0 = Instant::now();
    const SIZE: u64 = 512 * MIB;
    // Declared before the cluster: dropped (namespaces deleted) after the marsd processes.
    let net = NetnsPair::new();
    net.shape("200mbit");
    let c = Cluster::new_with(&["alice", "bob"], |i, n| n.in_netns(&net.ns[i], &net.ip[i]));
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let (da, db) = (c.device("a.img", SIZE), c.device("b.img", SIZE));
    a.ok(&["create-resource", "r0", &da]);
    a.wait_state("r0", "Primary", |m| m.role == "Primary");
    let uri = a.nbd_uri("r0");
    let pieces: Vec<(u8, u64, u64)> = (0..4)
        .map(|i| (0x31 + i as u8, i * 64 * MIB * 2, 64 * MIB))
        .collect();
    qemu_write(&uri, &pieces);

    // The full sync, cut in the middle.
    let t_sync = Instant::now();
    b.ok(&["join-resource", "r0", &db]);
    b.wait_state_for("r0", "sync at 10..90%", Duration::from_secs(120), |m| {
        m.syncstatus >= SIZE / 10 && m.syncstatus <= SIZE / 10 * 9
    });
    net.link(0, false);
    let at_cut = b.replica("r0").unwrap().syncstatus;
    // The cut is observed: bob loses his connection to alice.
    b.wait_unresponsive("r0", "alice", Duration::from_secs(30));
    // In-flight data lands within a moment; then nothing moves while the link is down.
    let settle = Instant::now();
    let mut seen = at_cut;
    while settle.elapsed() < Duration::from_millis(500) {
        seen = b.replica("r0").unwrap().syncstatus;
        std::thread::sleep(Duration::from_millis(50));
    }
    let stalled = seen;
    while settle.elapsed() < Duration::from_secs(2) {
        let m = b.replica("r0").unwrap();
        assert_eq!(
            m.syncstatus, stalled,
            "syncstatus moved while the link was down: {m:?}"
        );
        assert!(!m.up_to_date, "UpToDate while the link is down: {m:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    net.link(0, true);
    eprintln!(
        "interop: link cut at syncstatus {at_cut} ({}%), stalled at {stalled}",
        at_cut * 100 / SIZE
    );
    // The sync resumes from where it was, never from the start, and completes.
    let mut lowest = u64::MAX;
    wait_until(
        Duration::from_secs(300),
        "bob's sync to resume and complete",
        || {
            let m = b.replica("r0").unwrap();
            lowest = lowest.min(m.syncstatus);
            assert!(
                m.syncstatus >= at_cut,
                "the sync went back after the link came back: {} < {at_cut} ({m:?})\n\
                 --- bob ---\n{}",
                m.syncstatus,
                b.log_tail()
            );
            if m.up_to_date {
                Ok(())
            } else {
                Err(format!("{m:?}"))
            }
        },
    );
    let sync = t_sync.elapsed();
    wait_compare_equal(&uri, &db, Duration::from_secs(30));
    eprintln!(
        "interop: sync of {} MiB (256 MiB written) over 200mbit with a 2 s cut at {}%: {sync:?} \
         (lowest syncstatus after the cut {lowest})",
        SIZE / MIB,
        at_cut * 100 / SIZE
    );

    // Fetch: 64 MiB more, the link cut while bob fetches, more writes while it is down.
    let t_fetch = Instant::now();
    qemu_write(&uri, &[(0x71, 100 * MIB, 64 * MIB)]);
    b.wait_state("r0", "behind the primary", |m| !m.up_to_date);
    net.link(1, false);
    let lag_at_cut = b.replica("r0").unwrap();
    qemu_write(
        &uri,
        &[(0x72, 200 * MIB, 16 * MIB), (0x73, 480 * MIB, 16 * MIB)],
    );
    // The cut is observed: bob loses his connection to alice.
    b.wait_unresponsive("r0", "alice", Duration::from_secs(30));
    let cut = Instant::now();
    while cut.elapsed() < Duration::from_secs(2) {
        let m = b.replica("r0").unwrap();
        assert!(!m.up_to_date, "UpToDate while the link is down: {m:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    net.link(1, true);
    b.wait_state_for(
        "r0",
        "UpToDate after the cut",
        Duration::from_secs(300),
        |m| m.up_to_date,
    );
    let differed = wait_compare_equal(&uri, &db, Duration::from_secs(30));
    eprintln!(
        "interop: fetch of 96 MiB with a 2 s cut (bob at the cut: {lag_at_cut:?}): {:?}, \
         compare identical (after {differed} differing runs); whole test {:?}",
        t_fetch.elapsed(),
        t0.elapsed()
    );
}
