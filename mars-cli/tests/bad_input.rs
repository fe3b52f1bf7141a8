//! Bad input gets a clear error (what is wrong, what to do), exit code 1, and changes
//! nothing: unknown resources, devices too small or already used, duplicate names, a wrong
//! cluster secret, an address where nothing listens, corrupt control requests, a second
//! marsd on the same directory, commands whose preconditions fail.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

const SIZE: u64 = 8 << 20;

fn keys(n: &Node, prefix: &str) -> String {
    n.ok(&["lowlevel-ls", prefix])
}

#[test]
fn refusals_name_the_problem_and_change_nothing() {
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let (da, db) = (c.device("a.img", SIZE), c.device("b.img", SIZE));
    let small = c.device("small.img", SIZE / 2);

    a.refused(&["join-resource", "r0", &db], "no resource r0");
    a.ok(&["create-resource", "r0", &da]);
    a.wait_state("r0", "Primary", |m| m.role == "Primary");
    let before = keys(a, "resources/");

    // A second create-resource with an existing name.
    let err = b.refused(&["create-resource", "r0", &db], "exists already");
    assert!(err.contains("alice"), "{err}");
    // A device already used by another resource of this node.
    a.refused(
        &["create-resource", "r1", &da],
        "already the data device of resource r0",
    );
    // A device smaller than the resource; a device that does not exist.
    b.refused(&["join-resource", "r0", &small], "less than the resource's");
    b.refused(
        &["join-resource", "r0", "/nonexistent/dev"],
        "cannot be used",
    );
    assert_eq!(
        keys(a, "resources/"),
        before,
        "refusals changed the resource directory"
    );
    assert!(
        keys(b, "resource-r0/data-bob").trim().is_empty(),
        "bob became a member"
    );
    assert!(b.replica("r0").is_none());

    // Preconditions of lifecycle commands name the command that fixes them.
    b.ok(&["join-resource", "r0", &db]);
    b.wait_uptodate("r0");
    b.refused(&["leave-resource", "r0"], "marsadm down r0");
    a.refused(&["leave-resource", "r0"], "hand over first");
    a.refused(&["delete-resource", "r0"], "still has members");
    b.refused(&["log-rotate", "r0"], "run log-rotate there");
    b.refused(&["view-role", "nope"], "no resource nope");
    // set-link of a key another node owns.
    b.refused(
        &["set-link", "resource-r0/replay-alice", "x"],
        "belongs to node alice",
    );

    // leave-resource after down works, and the replica is gone everywhere.
    b.ok(&["down", "r0"]);
    b.ok(&["leave-resource", "r0"]);
    wait_until(
        std::time::Duration::from_secs(10),
        "alice to see bob leave",
        || {
            let n = a.status().resources[0].replicas.len();
            if n == 1 {
                Ok(())
            } else {
                Err(format!("{n} replicas"))
            }
        },
    );
    // Usage errors exit with 2.
    let o = b.adm(&["create-resource"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn join_cluster_with_a_wrong_secret_or_to_nowhere_is_refused() {
    let c = Cluster::new(&["alice"]);
    let other = c.path("other-secret");
    std::fs::write(&other, "a completely different cluster secret").unwrap();
    let mut mallory = Node::new(c.root.path(), "mallory", &other);
    mallory.start();
    let err = mallory.refused(&["join-cluster", &c.nodes[0].addr()], "authentication");
    assert!(err.contains("secret"), "{err}");
    let nowhere = format!("127.0.0.1:{}", free_port());
    mallory.refused(&["join-cluster", &nowhere], "nothing answers there");
    mallory.refused(&["join-cluster", "not-an-address"], "HOST:PORT");
    let s = mallory.status();
    assert!(s.cluster.is_none(), "mallory joined something: {s:?}");
    assert!(keys(&c.nodes[0], "ips/")
        .lines()
        .all(|l| !l.contains("mallory")));
}

#[test]
fn corrupt_control_requests_get_an_error_and_the_daemon_keeps_running() {
    let c = Cluster::new(&["alice"]);
    let a = &c.nodes[0];
    let sock = a.dir.join("marsd.sock");
    for (bad, want) in [
        (&b"this is not json\n"[..], "not JSON"),
        (
            b"{\"version\":1,\"cmd\":\"format-disk\"}\n",
            "not a valid request",
        ),
        (b"{\"version\":7,\"cmd\":\"cron\"}\n", "version 7"),
        (b"{\"cmd\":\"cron\"}\n", "missing"),
        (b"{\"version\":1,\"cmd\":\"crea", "truncated"),
    ] {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(bad).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        let r: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(r["status"], "bad-request", "{line}");
        assert!(r["message"].as_str().unwrap().contains(want), "{line}");
    }
    // Oversized request: refused before it is buffered whole.
    let mut s = UnixStream::connect(&sock).unwrap();
    let big = vec![b'x'; (1 << 20) + 100];
    let _ = s.write_all(&big);
    let mut line = String::new();
    let _ = BufReader::new(&s).read_line(&mut line);
    assert!(line.contains("longer than"), "{line}");
    // Still serving.
    assert_eq!(a.status().node, "alice");
    a.ok(&["view"]);
}

#[test]
fn a_second_marsd_on_the_same_directory_refuses_to_start() {
    let c = Cluster::new(&["alice"]);
    let a = &c.nodes[0];
    let (code, err) = a.start_refused();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("another marsd already runs"), "{err}");
    assert_eq!(a.status().node, "alice", "the first one still runs");
}

#[test]
fn marsd_refuses_a_log_rotate_size_below_one_mib() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_marsd"))
        .args(["--mars-dir", dir.path().join("m").to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--node", "alice", "--log-rotate-size", "64K"])
        .args(["--secret-file", secret.to_str().unwrap()])
        .output()
        .expect("running marsd");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--log-rotate-size 65536 is too small"),
        "{err}"
    );
    assert!(
        !dir.path().join("m").exists(),
        "it refused before creating anything"
    );
}

#[test]
fn a_corrupt_log_record_is_reported_and_nothing_after_it_is_applied() {
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    b.wait_uptodate("r0");
    b.ok(&["pause-fetch", "r0"]);
    b.wait_state("r0", "PausedFetch", |m| m.repl == "PausedFetch");
    let before = std::fs::read(c.path("b.img")).unwrap();
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = a.nbd("r0");
    write_blocks(&mut nbd, &mut model, 9, 400, 50);
    // Flip one byte in the middle of alice's current log (inside some record).
    let log = std::fs::read_dir(a.dir.join("resource-r0"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("log-"))
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&log, &bytes).unwrap();
    b.ok(&["resume-fetch", "r0"]);
    b.wait_state("r0", "the corruption reported", |m| {
        m.msg
            .as_deref()
            .is_some_and(|x| x.contains("does not verify"))
    });
    let m = b.replica("r0").unwrap();
    let pos: u64 = m
        .replay
        .unwrap()
        .split(',')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        pos < at as u64,
        "bob replayed to {pos}, past the corrupt byte at {at}"
    );
    assert!(
        !m.up_to_date,
        "bob claims to be up to date past a corrupt record"
    );
    // What bob has is a prefix of the history: every block is either as before or as written.
    let now = std::fs::read(c.path("b.img")).unwrap();
    for (i, chunk) in now.chunks(4096).enumerate() {
        let r = i * 4096..(i + 1) * 4096;
        assert!(
            chunk == &before[r.clone()] || chunk == &model[r],
            "block {i} is neither old nor new"
        );
    }
    nbd.disconnect().unwrap();
}

#[test]
fn leave_cluster_is_refused_while_the_node_holds_data() {
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    b.wait_uptodate("r0");
    let err = b.refused(&["leave-cluster"], "still holds data");
    assert!(
        err.contains("r0") && err.contains("leave-resource"),
        "{err}"
    );
    b.ok(&["down", "r0"]);
    b.ok(&["leave-resource", "r0"]);
    b.ok(&["leave-cluster"]);
    wait_until(
        std::time::Duration::from_secs(10),
        "alice to forget bob",
        || {
            let ips = a.ok(&["lowlevel-ls", "ips/"]);
            if ips.contains("ip-bob") {
                Err(ips)
            } else {
                Ok(())
            }
        },
    );
}

#[test]
fn lifecycle_preconditions_are_refused_with_the_command_that_fixes_them() {
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let mut carol = Node::new(c.root.path(), "carol", &c.path("secret"));
    carol.start();
    // Outside a cluster.
    carol.refused(
        &["create-resource", "r0", &c.device("c.img", SIZE)],
        "marsadm create-cluster",
    );
    carol.refused(&["cron"], "not in a cluster");
    // Inside one already.
    a.refused(&["create-cluster"], "already in cluster");
    b.refused(&["join-cluster", &a.addr()], "marsadm leave-cluster");
    // Names and sizes.
    let da = c.device("a.img", SIZE);
    a.refused(&["create-resource", "all", &da], "reserved");
    a.refused(&["create-resource", "a/b", &da], "resource name");
    a.refused(
        &["create-resource", "r0", &da, "--size", "4096"],
        "too small",
    );
    a.refused(
        &["create-resource", "r0", &da, "--size", "12x"],
        "K, M, G or T",
    );
    c.replicate("r0", &["a2.img", "b.img"], SIZE);
    b.wait_uptodate("r0");
    b.refused(
        &["join-resource", "r0", &c.device("b2.img", SIZE)],
        "already a member",
    );
    // Queries and commands on what is not there.
    b.refused(&["view", "nope"], "marsadm view all");
    b.refused(&["get-link", "resources/nope"], "marsadm lowlevel-ls");
    a.ok(&["create-resource", "r1", &da]);
    wait_until(std::time::Duration::from_secs(10), "bob to know r1", || {
        b.adm(&["view", "r1"])
            .status
            .success()
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
    b.refused(&["pause-fetch", "r1"], "join-resource r1 DEV");
    b.refused(&["leave-resource", "r1"], "not a member");
    // A handover to a detached replica; delete-resource while attached.
    b.ok(&["down", "r0"]);
    b.refused(&["primary", "r0"], "marsadm up r0");
    b.ok(&["up", "r0"]);
    a.refused(&["delete-resource", "r1", "--dry-run"], "marsadm down r1");
    a.refused(
        &["migrate-resource", "r0", "--to", "bob", "--from", "bob"],
        "both",
    );
}
