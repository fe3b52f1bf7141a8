//! Client/server bricks: reads of devices and logs, checksum-reads, growth following, a
//! recycled log not started yet, bundled connections, resubmission after cuts, timeouts.

mod remote_common;
use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::Output;
use mars_net::fault::{FaultPlan, FaultProxy};
use remote_common::*;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use xio::remote::*;

fn device_node(size: usize) -> (Arc<MemDisk>, mars_net::Node) {
    let disk = MemDisk::new("src", size, MemDiskMode::Threaded(2));
    brick_core::write_all(&*disk, 0, &pattern(1, size)).unwrap();
    let ex = Exports::new(None);
    ex.add_device("data", disk.clone());
    let node = ex.listen("127.0.0.1:0", net("server")).unwrap();
    (disk, node)
}

#[test]
fn reads_checksums_and_compare_reads_of_a_device() {
    let (disk, node) = device_node(4 << 20);
    let c = RemoteClient::start(
        "data@server",
        client_cfg(node.local_addr(), Target::Device("data".into())),
    );
    assert_eq!(c.info().unwrap().size, 4 << 20);
    let all = brick_core::read_all(&*c, 0, 4 << 20).unwrap();
    assert_eq!(all, disk.contents());
    let sums = c.checksums(0, 4 << 20, 1 << 20).unwrap();
    assert_eq!(sums.len(), 4);
    for (i, s) in sums.iter().enumerate() {
        assert_eq!(*s, chunk_sum(&all[i << 20..(i + 1) << 20]));
    }
    // Compare-read: same sum → no data; other sum → the data.
    assert_eq!(c.read_if_differs(1 << 20, 1 << 20, sums[1]).unwrap(), None);
    assert_eq!(
        c.read_if_differs(1 << 20, 1 << 20, [0; 16])
            .unwrap()
            .unwrap(),
        &all[1 << 20..2 << 20]
    );
    // Errors are clear and not fatal.
    let e = c.checksums(0, 8 << 20, 1 << 20).unwrap_err();
    assert!(e.to_string().contains("beyond the size"), "{e}");
    let mut r = brick_core::Aio::write(0, vec![1; 10]);
    r.len = 10;
    assert!(c.submit(r).is_err());
    assert_eq!(brick_core::read_all(&*c, 100, 10).unwrap(), &all[100..110]);
}

#[test]
fn unknown_export_and_bad_log_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ex = Exports::new(Some(dir.path().into()));
    let node = ex.listen("127.0.0.1:0", net("server")).unwrap();
    let c = RemoteClient::start(
        "x",
        client_cfg(node.local_addr(), Target::Device("nope".into())),
    );
    assert!(c
        .stat()
        .unwrap_err()
        .to_string()
        .contains("no device exported"));
    let c = RemoteClient::start(
        "y",
        client_cfg(node.local_addr(), Target::Log("../etc/passwd".into())),
    );
    assert!(c
        .stat()
        .unwrap_err()
        .to_string()
        .contains("invalid log name"));
}

#[test]
fn logs_in_a_subdirectory_are_served_and_other_names_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("resource-r0");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("log-000000001-alice"), b"first").unwrap();
    std::fs::write(dir.path().join(".hidden"), b"").unwrap();
    std::fs::write(sub.join("notes"), b"secret").unwrap();
    let node = Exports::new(Some(dir.path().into()))
        .listen("127.0.0.1:0", net("server"))
        .unwrap();
    let log = |name: &str| {
        RemoteClient::start(
            name,
            client_cfg(node.local_addr(), Target::Log(name.into())),
        )
    };
    let c = log("resource-r0/log-000000001-alice");
    assert_eq!(c.stat().unwrap(), (5, false));
    assert_eq!(c.read_at(0, 100, 0).unwrap().0, b"first");
    // A successor of another creator in the same subdirectory finishes it.
    std::fs::write(sub.join("log-000000002-bob"), started_header(2)).unwrap();
    assert_eq!(c.stat().unwrap(), (5, true));
    for bad in [
        "../x",
        "a/b/c",
        ".hidden/log-000000001-alice",
        "resource-r0/notes",
        "resource-r0/log-000000001",
        "resource-r0/",
    ] {
        match log(bad).stat().unwrap_err() {
            RemoteError::Server { message, errno } => {
                assert!(message.contains("invalid log name"), "{bad}: {message}");
                assert!(message.contains(&format!("{bad:?}")), "{bad}: {message}");
                assert_eq!(errno, 22, "{bad}: {message}");
            }
            e => panic!("{bad}: {e}"),
        }
    }
}

#[test]
fn log_reads_follow_growth_and_report_finished() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log-000000001-alice");
    std::fs::write(&path, b"first").unwrap();
    let ex = Exports::new(Some(dir.path().into()));
    let node = ex.listen("127.0.0.1:0", net("server")).unwrap();
    let c = RemoteClient::start(
        "log",
        client_cfg(node.local_addr(), Target::Log("log-000000001-alice".into())),
    );
    assert_eq!(c.stat().unwrap(), (5, false));
    let (d, size, fin) = c.read_at(0, 100, 0).unwrap();
    assert_eq!((d.as_slice(), size, fin), (&b"first"[..], 5, false));
    // A read at the end waits for growth: the log grows once the server has parked the read.
    let reader = {
        let c = c.clone();
        std::thread::spawn(move || c.read_at(5, 100, 20_000))
    };
    wait_for("the read to wait at the end of the log", || {
        assert!(!reader.is_finished(), "the read at the end did not wait");
        ex.waiting_reads() == 1
    });
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"second").unwrap();
    let (d, size, _) = reader.join().unwrap().unwrap();
    assert_eq!(ex.waiting_reads(), 0);
    assert_eq!(d, b"second");
    assert_eq!(size, 11);
    // The next log appears: this one is finished, and a read at its end returns at once.
    std::fs::write(dir.path().join("log-000000002-alice"), started_header(2)).unwrap();
    assert_eq!(c.read_at(11, 100, 1500).unwrap(), (vec![], 11, true));
}

/// A spare renamed into place has a zeroed header block in front of stale bytes until its
/// logger starts it. A server with no durable end for it (no logger in this process, or a
/// restart before the logger ran) serves none of it; a fetch gets nothing and reports no
/// corruption.
#[test]
fn a_log_whose_header_block_is_zero_is_served_as_empty_and_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let name = "log-000000001-alice";
    let mut stale = vec![0u8; 4096];
    stale.extend(pattern(3, 1 << 20));
    std::fs::write(dir.path().join(name), &stale).unwrap();
    let node = Exports::new(Some(dir.path().into()))
        .listen("127.0.0.1:0", net("server"))
        .unwrap();
    let c = RemoteClient::start(
        "log",
        client_cfg(node.local_addr(), Target::Log(name.into())),
    );
    assert_eq!(c.stat().unwrap(), (0, false));
    assert_eq!(c.read_at(0, 4096, 0).unwrap(), (vec![], 0, false));
    let dst = tempfile::tempdir().unwrap();
    let mut cfg = FetchConfig::new(dst.path().join(name), name);
    cfg.verify = Some(log_verifier(Some(1)));
    cfg.follow_wait_ms = 50;
    let f = LogFetch::new(c, cfg);
    let p = run_bounded(&f, Duration::from_millis(500)).unwrap();
    assert_eq!(
        (p.local, p.remote, p.finished, p.verified),
        (0, 0, false, 0)
    );
    assert_eq!(std::fs::metadata(dst.path().join(name)).unwrap().len(), 0);
}

/// A connection that saw a log finished keeps its end (its successor's `prev_end`) without
/// asking the directory again: the end is history, and listing a directory of hundreds of
/// logs twice per request slowed fetches down.
#[test]
fn a_connection_keeps_a_finished_logs_end() {
    let dir = tempfile::tempdir().unwrap();
    let name = "log-000000001-alice";
    std::fs::write(dir.path().join(name), started_header(1)).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join(name))
        .unwrap();
    f.write_all(&pattern(4, 9_488)).unwrap();
    let next = xio::log::FileHeader {
        prev_end: 6_000,
        ..xio::log::FileHeader::new(2, "r", "alice", 0)
    }
    .encode()
    .unwrap();
    let node = Exports::new(Some(dir.path().into()))
        .listen("127.0.0.1:0", net("server"))
        .unwrap();
    let mut cfg = client_cfg(node.local_addr(), Target::Log(name.into()));
    cfg.connections = 1;
    let c = RemoteClient::start("log", cfg);
    assert_eq!(c.stat().unwrap(), (10_000, false));
    std::fs::write(dir.path().join("log-000000002-alice"), next).unwrap();
    assert_eq!(c.stat().unwrap(), (6_000, true));
    // The successor goes (log-delete): the end stays.
    std::fs::remove_file(dir.path().join("log-000000002-alice")).unwrap();
    assert_eq!(c.stat().unwrap(), (6_000, true));
    assert_eq!(c.read_at(5_990, 100, 0).unwrap().0.len(), 10);
}

#[test]
fn bundled_connections_resubmit_after_cuts() {
    let (disk, node) = device_node(8 << 20);
    let proxy = FaultProxy::start(node.local_addr(), FaultPlan::default()).unwrap();
    let c = RemoteClient::start(
        "data",
        client_cfg(proxy.addr(), Target::Device("data".into())),
    );
    let want = disk.contents();
    wait_for("3 connected links", || c.connected_links() == 3);
    // Many reads in flight while the links are cut again and again.
    let cq = brick_core::CompletionQueue::new();
    let n = 256;
    for i in 0..n {
        let pos = (i * 32768) as u64 % (8 << 20);
        let mut r = brick_core::Aio::read(pos, 32768);
        r.tag = pos;
        cq.submit(&*c, r).unwrap();
        if i % 40 == 20 {
            proxy.cut_all();
        }
    }
    for _ in 0..n {
        let mut r = cq
            .recv_timeout(Duration::from_secs(20))
            .expect("completion");
        assert!(r.error.take().is_none(), "{:?}", r.error);
        let pos = r.tag as usize;
        assert_eq!(&r.data[..], &want[pos..pos + 32768]);
    }
    assert!(c.reconnects() >= 1);
    assert!(proxy.accepted() > 3);
}

#[test]
fn no_progress_gives_a_clear_timeout_and_recovery_afterwards() {
    let (_disk, node) = device_node(1 << 20);
    let proxy = FaultProxy::start(node.local_addr(), FaultPlan::default()).unwrap();
    let mut cfg = client_cfg(proxy.addr(), Target::Device("data".into()));
    cfg.timeout = Duration::from_millis(500);
    let c = RemoteClient::start("data", cfg);
    assert!(c.stat().is_ok());
    proxy.set_down(true);
    // The timeout error (not a hang, not another error) is the proof; no wall-clock assert.
    let e = brick_core::read_all(&*c, 0, 4096).unwrap_err();
    assert!(matches!(e, brick_core::Error::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("no progress"), "{e}");
    proxy.set_down(false);
    wait_for("a read to succeed after the link is back", || {
        brick_core::read_all(&*c, 0, 4096).is_ok_and(|d| d.len() == 4096)
    });
}

#[test]
fn many_clients_time_out_with_one_watchdog_thread() {
    let (_disk, node) = device_node(1 << 20);
    let proxy = FaultProxy::start(node.local_addr(), FaultPlan::default()).unwrap();
    let clients: Vec<_> = (0..5)
        .map(|_| {
            let mut cfg = client_cfg(proxy.addr(), Target::Device("data".into()));
            cfg.timeout = Duration::from_millis(300);
            RemoteClient::start("data", cfg)
        })
        .collect();
    for c in &clients {
        assert!(c.stat().is_ok());
    }
    let watchdogs = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim() == "remote-watchdog")
        })
        .count();
    assert_eq!(
        watchdogs, 1,
        "one watchdog thread for every client of the process"
    );
    proxy.set_down(true);
    for c in &clients {
        let e = c.stat().unwrap_err();
        assert!(matches!(e, RemoteError::Timeout { .. }), "{e}");
    }
}

#[test]
fn wrong_secret_client_never_connects_and_times_out() {
    let (_disk, node) = device_node(1 << 20);
    let mut cfg = client_cfg(node.local_addr(), Target::Device("data".into()));
    cfg.net.secret = mars_net::Secret::new("not the cluster secret, sorry").unwrap();
    cfg.timeout = Duration::from_millis(300);
    let c = RemoteClient::start("data", cfg);
    let e = c.stat().unwrap_err();
    assert!(matches!(e, RemoteError::Timeout { .. }), "{e}");
    assert_eq!(c.connected_links(), 0);
    assert!(node.stats().refused >= 1);
}
