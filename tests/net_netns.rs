//! Transport and remote bricks across two network namespaces joined by a veth pair (root
//! needed; run by `.ci/run`): log fetch and a 1 GiB full sync under ≥ 10 random link cuts,
//! `tc tbf` caps and the limiter, and authentication across the link.
#![cfg(feature = "interop")]

mod net_support;

use brick_core::{Limiter, Rates};
use mars_net::{ChannelKind, ClusterId, NetConfig, Secret};
use net_support::NetPair;
use rand::Rng;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xio::copy::{Copy, CopyConfig, CopyProgress};
use xio::file::{self, Backend, FileOptions};
use xio::remote::{chunk_sum, ClientConfig, Exports, FetchConfig, LogFetch, RemoteClient, Target};

fn net(name: &str) -> NetConfig {
    let mut c = NetConfig::new(
        ClusterId([9; 16]),
        name,
        Secret::new("netns test cluster secret!").unwrap(),
    );
    c.keepalive = Duration::from_millis(200);
    c.dead_after = Duration::from_secs(1);
    c.io_timeout = Duration::from_secs(1);
    c.handshake_timeout = Duration::from_secs(1);
    c
}

fn client_cfg(peer: SocketAddr, target: Target, timeout: Duration) -> ClientConfig {
    let kind = match target {
        Target::Device(_) => ChannelKind::Sync,
        Target::Log(_) => ChannelKind::Fetch,
    };
    let mut c = ClientConfig::new(net("secondary"), peer, kind, target);
    c.connections = 2;
    c.timeout = timeout;
    c.backoff_initial = Duration::from_millis(10);
    c.backoff_max = Duration::from_millis(200);
    c
}

/// Start a server in namespace a exporting `log_dir` and optionally a device.
fn serve(
    pair: &NetPair,
    log_dir: Option<PathBuf>,
    device: Option<PathBuf>,
) -> (mars_net::Node, SocketAddr) {
    let addr = SocketAddr::from((pair.addr_a, 0));
    let node = NetPair::run_in(&pair.ns_a, move || {
        let ex = Exports::new(log_dir);
        if let Some(d) = device {
            let opts = FileOptions {
                read_only: true,
                ..FileOptions::default()
            };
            ex.add_device("data", file::open(d, Backend::Sync, &opts).unwrap());
        }
        ex.listen(addr, net("primary")).unwrap()
    })
    .join()
    .unwrap();
    let a = node.local_addr();
    (node, a)
}

fn block(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn sums_of(path: &Path) -> Vec<[u8; 16]> {
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut out = Vec::new();
    loop {
        let mut got = 0;
        while got < buf.len() {
            let n = f.read(&mut buf[got..]).unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        if got == 0 {
            return out;
        }
        out.push(chunk_sum(&buf[..got]));
    }
}

/// Longer than `dead_after` (1 s) plus a keepalive tick: a cut this long must break the
/// client's connections, and the client must notice (a reconnect).
const LONG_CUT: std::ops::Range<u64> = 2000..2500;

/// Cut the link `n` times at random moments (up 80..400 ms) while `busy`: two short cuts
/// (30..800 ms, which the connections may ride out) then one long one ([`LONG_CUT`]). After each
/// long cut, wait (bounded) until `noticed` (the client's reconnect count) went up: a cut that
/// the client never noticed fails the test. Returns the cuts made and the long ones noticed.
fn cut_randomly(
    pair: &NetPair,
    n: usize,
    busy: impl Fn() -> bool,
    noticed: impl Fn() -> u64,
    mut between: impl FnMut(usize),
) -> (usize, usize) {
    let mut rng = rand::thread_rng();
    let (mut cuts, mut long_noticed) = (0, 0);
    while cuts < n && busy() {
        std::thread::sleep(Duration::from_millis(rng.gen_range(80..400)));
        let long = cuts % 3 == 2;
        let down = rng.gen_range(if long { LONG_CUT } else { 30..800 });
        let before = noticed();
        pair.link(false);
        std::thread::sleep(Duration::from_millis(down));
        pair.link(true);
        cuts += 1;
        if long {
            let t = Instant::now();
            while noticed() == before && busy() {
                assert!(
                    t.elapsed() < Duration::from_secs(30),
                    "cut {cuts} ({down} ms, longer than dead_after) was never noticed by the client"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            if noticed() > before {
                long_noticed += 1;
            }
        }
        between(cuts);
    }
    (cuts, long_noticed)
}

#[test]
fn log_fetch_survives_random_link_cuts() {
    let pair = NetPair::new();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let name = "log-000000001-alice";
    std::fs::write(src.path().join(name), b"").unwrap();
    let (_node, addr) = serve(&pair, Some(src.path().into()), None);
    // The log grows until the cutter is done, then its successor finishes it.
    let growing = Arc::new(AtomicBool::new(true));
    let grower = {
        let (dir, growing) = (src.path().to_path_buf(), growing.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.join(name))
                .unwrap();
            let mut written = Vec::new();
            let mut i = 0u64;
            while growing.load(Ordering::Acquire) || i < 50 {
                let b = block(i, (32 << 10) | ((i as usize * 97) % 4096));
                f.write_all(&b).unwrap();
                written.extend_from_slice(&b);
                i += 1;
                std::thread::sleep(Duration::from_millis(4));
            }
            std::fs::write(dir.join("log-000000002-alice"), successor_header()).unwrap();
            written
        })
    };
    let local = dst.path().join(name);
    let (ftx, frx) = crossbeam_channel::bounded(1);
    let fetcher = {
        let local = local.clone();
        NetPair::run_in(&pair.ns_b, move || {
            let client = RemoteClient::start(
                "log@primary",
                client_cfg(addr, Target::Log(name.into()), Duration::from_secs(1)),
            );
            let mut cfg = FetchConfig::new(&local, name);
            cfg.chunk = 256 << 10;
            cfg.follow_wait_ms = 200;
            let f = LogFetch::new(client.clone(), cfg);
            ftx.send((f.clone(), client.clone())).unwrap();
            let p = f.run();
            (p, client.reconnects())
        })
    };
    let (f, client) = frx.recv().unwrap();
    let mut last_local = 0;
    let mut resumed = 0;
    let (cuts, long_noticed) = cut_randomly(
        &pair,
        12,
        || true,
        || client.reconnects(),
        |_| {
            // After each heal the fetch continues from the local size: it never goes back.
            let t = Instant::now();
            let before = f.progress().local;
            assert!(before >= last_local);
            while f.progress().local == before && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert!(f.progress().local > before, "no progress after the heal");
            last_local = f.progress().local;
            resumed += 1;
        },
    );
    growing.store(false, Ordering::Release);
    let written = grower.join().unwrap();
    // Bounded: a fetch that never sees the end is stopped and then fails the asserts.
    let t = Instant::now();
    while !fetcher.is_finished() && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    f.stop();
    let (p, reconnects) = fetcher.join().unwrap();
    let p = p.unwrap();
    assert!(cuts >= 10 && resumed >= 10, "only {cuts} cuts");
    assert_eq!(long_noticed, cuts / 3, "every long cut is noticed");
    assert!(p.finished);
    assert!(reconnects >= long_noticed as u64, "{reconnects} reconnects");
    let got = std::fs::read(&local).unwrap();
    assert_eq!(got.len(), written.len());
    assert!(got == written, "fetched log differs from the source");
    eprintln!(
        "log fetch: {} bytes, {cuts} cuts ({long_noticed} long, all noticed), {} restarts, {reconnects} reconnects",
        got.len(),
        p.restarts
    );
}

/// A copy run in namespace b: the copy (for stop/progress), its client (reconnects) and the
/// thread that ends with its result and the client's reconnect count.
type CopyRun = (
    Arc<Copy>,
    Arc<RemoteClient>,
    std::thread::JoinHandle<(xio::copy::Result<CopyProgress>, u64)>,
);

/// Start one copy run inside namespace b.
fn start_copy(
    pair: &NetPair,
    addr: SocketAddr,
    dst: PathBuf,
    restart: PathBuf,
    limiter: Option<Arc<Limiter>>,
) -> CopyRun {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let h = NetPair::run_in(&pair.ns_b, move || {
        let client = RemoteClient::start(
            "data@primary",
            client_cfg(addr, Target::Device("data".into()), Duration::from_secs(1)),
        );
        let b = file::open(&dst, Backend::Sync, &FileOptions::default()).unwrap();
        let mut cfg = CopyConfig::new();
        cfg.chunk = 1 << 20;
        cfg.window = 8;
        cfg.restart_file = Some(restart);
        cfg.persist_every = Duration::from_millis(100);
        cfg.limiter = limiter;
        let copy = Copy::new("sync", client.clone(), b, cfg);
        tx.send((copy.clone(), client.clone())).unwrap();
        let r = copy.run();
        (r, client.reconnects())
    });
    let (copy, client) = rx.recv().unwrap();
    (copy, client, h)
}

fn make_image(path: &Path, size: u64, seed: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    for k in 0..size >> 20 {
        f.write_all(&block(seed ^ k, 1 << 20)).unwrap();
    }
}

#[test]
fn full_sync_of_1gib_survives_cuts_and_resumes_from_the_restart_position() {
    let pair = NetPair::new();
    pair.tbf("1gbit");
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, restart) = (
        dir.path().join("src.img"),
        dir.path().join("dst.img"),
        dir.path().join("restart"),
    );
    const SIZE: u64 = 1 << 30;
    make_image(&src, SIZE, 77);
    std::fs::File::create(&dst).unwrap().set_len(SIZE).unwrap();
    let (_node, addr) = serve(&pair, None, Some(src.clone()));
    let mut runs: Vec<CopyProgress> = Vec::new();
    let (mut total_cuts, mut long_noticed, mut reconnects) = (0, 0, 0);
    // Three runs: the first two are stopped after some cuts (a restart of the secondary).
    for run in 0..3 {
        let (copy, client, h) = start_copy(&pair, addr, dst.clone(), restart.clone(), None);
        let busy = || !copy.progress().complete && !h.is_finished();
        let want = if run < 2 { 4 } else { 12 - total_cuts.min(8) };
        let (cuts, long) = cut_randomly(&pair, want, busy, || client.reconnects(), |_| {});
        total_cuts += cuts;
        long_noticed += long;
        if run < 2 {
            copy.stop();
        }
        let (r, n) = h.join().unwrap();
        reconnects += n;
        let p = r.unwrap();
        if let Some(prev) = runs.last() {
            assert_eq!(
                p.resumed_from, prev.restart_pos,
                "run {run} did not resume from the restart position"
            );
            assert!(p.resumed_from > 0);
        }
        runs.push(p);
        if p.complete {
            break;
        }
    }
    let last = runs.last().unwrap();
    assert!(last.complete, "{runs:?}");
    assert!(total_cuts >= 10, "only {total_cuts} cuts: {runs:?}");
    assert!(long_noticed >= 2, "only {long_noticed} long cuts noticed");
    assert!(reconnects >= long_noticed as u64, "{reconnects} reconnects");
    assert!(runs.len() >= 2, "{runs:?}");
    // Transfers add up to one pass (plus at most the in-flight window per interrupted run).
    let moved: u64 = runs.iter().map(|p| p.transferred + p.skipped).sum();
    assert!(
        moved <= SIZE + runs.len() as u64 * (8 << 20),
        "moved {moved}: restarted from zero?"
    );
    assert!(sums_of(&src) == sums_of(&dst), "the synced image differs");
    eprintln!("full sync: {total_cuts} cuts ({long_noticed} long, noticed), {reconnects} reconnects, runs {runs:?}");
}

#[test]
fn tbf_cap_and_limiter_are_respected_without_spurious_timeouts() {
    let pair = NetPair::new();
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    const SIZE: u64 = 32 << 20;
    make_image(&src, SIZE, 5);
    let (_node, addr) = serve(&pair, Some(dir.path().into()), Some(src.clone()));

    // tc tbf at 100 Mbit/s: 32 MiB need ≥ 2.7 s; nothing times out (timeout 1 s, no cuts).
    pair.tbf("100mbit");
    std::fs::File::create(&dst).unwrap().set_len(SIZE).unwrap();
    let t = Instant::now();
    let (_c, _client, h) = start_copy(&pair, addr, dst.clone(), dir.path().join("r1"), None);
    let (r, reconnects) = h.join().unwrap();
    let took = t.elapsed();
    assert!(r.unwrap().complete);
    assert_eq!(reconnects, 0, "spurious reconnects under the cap");
    let floor = Duration::from_secs_f64(SIZE as f64 * 8.0 / 100e6 * 0.9);
    assert!(
        took >= floor,
        "copy took {took:?}, the cap allows no less than {floor:?}"
    );
    assert!(sums_of(&src) == sums_of(&dst));

    // The limiter at 8 MiB/s on an uncapped link: 32 MiB need ≥ ~4 s.
    pair.tbf("10gbit");
    std::fs::File::create(&dst).unwrap().set_len(0).unwrap();
    std::fs::File::create(&dst).unwrap().set_len(SIZE).unwrap();
    let lim = Limiter::new(Rates {
        ops_per_sec: 0,
        bytes_per_sec: 8 << 20,
    });
    let t = Instant::now();
    let (_c, _client, h) = start_copy(&pair, addr, dst.clone(), dir.path().join("r2"), Some(lim));
    let (r, reconnects) = h.join().unwrap();
    let took = t.elapsed();
    assert!(r.unwrap().complete);
    assert_eq!(reconnects, 0);
    assert!(
        took >= Duration::from_millis(3600),
        "limited copy took only {took:?}"
    );
    assert!(sums_of(&src) == sums_of(&dst));

    // Log fetch under the cap: no restarts.
    pair.tbf("100mbit");
    std::fs::copy(&src, dir.path().join("log-000000001-alice")).unwrap();
    std::fs::write(dir.path().join("log-000000002-alice"), successor_header()).unwrap();
    let local = dir.path().join("fetched");
    let l2 = local.clone();
    let h = NetPair::run_in(&pair.ns_b, move || {
        let client = RemoteClient::start(
            "log",
            client_cfg(
                addr,
                Target::Log("log-000000001-alice".into()),
                Duration::from_secs(1),
            ),
        );
        LogFetch::new(client, FetchConfig::new(&l2, "log-000000001-alice")).run()
    });
    let p = h.join().unwrap().unwrap();
    assert_eq!(p.restarts, 0);
    assert!(sums_of(&src) == sums_of(&local));
}

#[test]
fn authentication_across_namespaces() {
    let pair = NetPair::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("log-000000001-alice"), b"hello").unwrap();
    let (node, addr) = serve(&pair, Some(dir.path().into()), None);
    let results = NetPair::run_in(&pair.ns_b, move || {
        let good = mars_net::connect(addr, &net("secondary"), ChannelKind::Fetch)
            .map(|c| c.peer().node.clone());
        let mut bad = net("intruder");
        bad.secret = Secret::new("a guessed secret, not the one").unwrap();
        let wrong = mars_net::connect(addr, &bad, ChannelKind::Fetch)
            .err()
            .map(|e| e.to_string());
        let mut other = net("stranger");
        other.cluster = ClusterId([1; 16]);
        let cluster = mars_net::connect(addr, &other, ChannelKind::Fetch)
            .err()
            .map(|e| e.to_string());
        (good, wrong, cluster)
    })
    .join()
    .unwrap();
    assert_eq!(results.0.unwrap(), "primary");
    assert!(results.1.unwrap().contains("secrets differ"));
    assert!(results.2.unwrap().contains("cluster uuid"));
    let t = Instant::now();
    while node.stats().refused < 2 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(node.stats().refused, 2, "{:?}", node.recent_refusals());
}

/// The header of log 2, as the logger writes it when it switches to that file: it finishes
/// log 1 for the log server (`prev_end` 0: log 1 ends at its length).
fn successor_header() -> [u8; 512] {
    xio::log::FileHeader::new(2, "r", "alice", 0)
        .encode()
        .unwrap()
}
