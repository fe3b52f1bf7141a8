//! Log fetch: a growing log is fetched to the end, resumes from the local size after cuts and
//! after a restart, verifies incrementally, and refuses a local copy longer than the remote.

mod remote_common;
use mars_net::fault::{FaultPlan, FaultProxy};
use remote_common::*;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use xio::remote::*;

/// Appends pseudo-random blocks to `path` until `total` bytes, then creates the successor log
/// (which finishes this one).
fn grow(
    dir: &Path,
    total: usize,
    step: usize,
    pause: Duration,
) -> std::thread::JoinHandle<Vec<u8>> {
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let data = pattern(11, total);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("log-000000001-alice"))
            .unwrap();
        let mut off = 0;
        while off < total {
            let n = step.min(total - off);
            f.write_all(&data[off..off + n]).unwrap();
            off += n;
            std::thread::sleep(pause);
        }
        std::fs::write(dir.join("log-000000002-alice"), started_header(2)).unwrap();
        data
    })
}

fn setup() -> (tempfile::TempDir, tempfile::TempDir, mars_net::Node) {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("log-000000001-alice"), b"").unwrap();
    let node = Exports::new(Some(src.path().into()))
        .listen("127.0.0.1:0", net("primary"))
        .unwrap();
    (src, dst, node)
}

#[test]
fn fetches_a_growing_log_to_its_end() {
    let (src, dst, node) = setup();
    let grower = grow(src.path(), 6 << 20, 100_000, Duration::from_millis(2));
    let client = RemoteClient::start(
        "log",
        client_cfg(node.local_addr(), Target::Log("log-000000001-alice".into())),
    );
    let mut cfg = FetchConfig::new(
        dst.path().join("log-000000001-alice"),
        "log-000000001-alice",
    );
    cfg.chunk = 256 << 10;
    cfg.follow_wait_ms = 100;
    let f = LogFetch::new(client, cfg);
    let p = run_bounded(&f, Duration::from_secs(60)).unwrap();
    let data = grower.join().unwrap();
    assert!(p.finished);
    assert_eq!(p.local, data.len() as u64);
    assert_eq!(
        std::fs::read(dst.path().join("log-000000001-alice")).unwrap(),
        data
    );
}

#[test]
fn resumes_from_the_local_size_after_cuts_and_restarts() {
    let (src, dst, node) = setup();
    let grower = grow(src.path(), 8 << 20, 200_000, Duration::from_millis(3));
    let proxy = Arc::new(FaultProxy::start(node.local_addr(), FaultPlan::default()).unwrap());
    let mut ccfg = client_cfg(proxy.addr(), Target::Log("log-000000001-alice".into()));
    ccfg.timeout = Duration::from_millis(300);
    let local = dst.path().join("log-000000001-alice");
    // A first, partial fetch that is stopped.
    {
        let client = RemoteClient::start("log", ccfg.clone());
        let f = LogFetch::new(client, FetchConfig::new(&local, "log-000000001-alice"));
        let f2 = f.clone();
        let h = std::thread::spawn(move || f2.run());
        wait_for("the first fetched bytes", || f.progress().local > 0);
        f.stop();
        h.join().unwrap().unwrap();
    }
    let first = std::fs::metadata(&local).unwrap().len();
    assert!(first > 0);
    // The next fetch starts there; the link goes down repeatedly, sometimes long enough for
    // the client's timeout to fire.
    let client = RemoteClient::start("log", ccfg);
    let mut cfg = FetchConfig::new(&local, "log-000000001-alice");
    cfg.chunk = 128 << 10;
    cfg.follow_wait_ms = 50;
    let f = LogFetch::new(client.clone(), cfg);
    let done = Arc::new(AtomicBool::new(false));
    // Each cut comes after the fetch made progress and lasts until the client lost its links;
    // every third outage outlasts the client's timeout (the hold is the stimulus, not a wait).
    let cutter = {
        let (proxy, done, f, client) = (proxy.clone(), done.clone(), f.clone(), client.clone());
        std::thread::spawn(move || {
            let mut cuts = 0;
            while !done.load(Ordering::Acquire) && cuts < 12 {
                let seen = f.progress().local;
                wait_for("progress", || {
                    f.progress().local > seen || done.load(Ordering::Acquire)
                });
                proxy.set_down(true);
                wait_for("the client to lose its links", || {
                    client.connected_links() == 0 || done.load(Ordering::Acquire)
                });
                std::thread::sleep(Duration::from_millis(if cuts % 3 == 0 { 450 } else { 30 }));
                proxy.set_down(false);
                cuts += 1;
            }
            cuts
        })
    };
    let p = run_bounded(&f, Duration::from_secs(60)).unwrap();
    done.store(true, Ordering::Release);
    let cuts = cutter.join().unwrap();
    let data = grower.join().unwrap();
    assert!(cuts >= 1);
    assert!(client.reconnects() >= 1, "no cut reached the client");
    assert!(p.finished);
    assert!(p.local > first);
    assert_eq!(std::fs::read(&local).unwrap(), data);
}

#[test]
fn verifier_runs_incrementally_and_stops_on_damage() {
    let (src, dst, node) = setup();
    std::fs::write(src.path().join("log-000000001-alice"), pattern(2, 3 << 20)).unwrap();
    std::fs::write(src.path().join("log-000000002-alice"), started_header(2)).unwrap();
    let client = RemoteClient::start(
        "log",
        client_cfg(node.local_addr(), Target::Log("log-000000001-alice".into())),
    );
    let mut cfg = FetchConfig::new(dst.path().join("a"), "log-000000001-alice");
    cfg.chunk = 1 << 20;
    let calls = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let c2 = calls.clone();
    // A toy record format: every 4096-byte block is a record; the one at 2 MiB is "bad".
    cfg.verify = Some(Arc::new(move |_p: &Path, from: u64, local: u64| {
        c2.lock().push((from, local));
        if local > 2 << 20 {
            return Err("bad record at 2 MiB".into());
        }
        Ok(local / 4096 * 4096)
    }));
    let f = LogFetch::new(client.clone(), cfg.clone());
    let e = f.run().unwrap_err();
    assert!(e.to_string().contains("bad record"), "{e}");
    assert!(matches!(e, RemoteError::Verify { .. }));
    // Called as data arrived, each time from where the previous call left off.
    let calls = calls.lock().clone();
    assert!(!calls.is_empty());
    for w in calls.windows(2) {
        assert_eq!(w[1].0, w[0].1 / 4096 * 4096, "{calls:?}");
        assert!(w[1].1 > w[0].1, "{calls:?}");
    }
    assert!(f.progress().verified <= 2 << 20);
    // Without the failing verifier the same fetch completes from where it is.
    cfg.verify = None;
    let p = LogFetch::new(client, cfg).run().unwrap();
    assert_eq!(p.local, 3 << 20);
}

#[test]
fn a_local_copy_longer_than_the_remote_is_refused() {
    let (src, dst, node) = setup();
    std::fs::write(src.path().join("log-000000001-alice"), b"short").unwrap();
    std::fs::write(dst.path().join("log-000000001-alice"), b"much longer local").unwrap();
    let client = RemoteClient::start(
        "log",
        client_cfg(node.local_addr(), Target::Log("log-000000001-alice".into())),
    );
    let f = LogFetch::new(
        client,
        FetchConfig::new(
            dst.path().join("log-000000001-alice"),
            "log-000000001-alice",
        ),
    );
    let e = f.run().unwrap_err();
    assert!(e.to_string().contains("longer than the remote"), "{e}");
    assert_eq!(
        std::fs::read(dst.path().join("log-000000001-alice")).unwrap(),
        b"much longer local"
    );
}
