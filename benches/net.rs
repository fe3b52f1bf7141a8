//! Transport benchmark (issue 6), every figure against a peer measured in the same run
//! (BENCHMARKING.md), each pair `MARS_BENCH_RUNS` times (default 3), interleaved:
//!
//! (a) **log fetch over loopback** (our `LogFetch` through `RemoteClient`, 2 connections) vs a
//!     plain TCP copy of the same bytes (one socket, `std::io::copy`, file written and
//!     `fdatasync`ed) and vs `nbdkit file` + `nbdcopy --flush`. Goal ≥ 0.7× raw TCP throughput.
//! (b) **fast full sync of two identical images** vs `nbdcopy --flush` of the full image from
//!     `nbdkit file`, over a veth pair between two network namespaces capped with
//!     `tc tbf rate 1gbit`, and over loopback. Goal ≥ 3× faster over the capped link.
//! (c) **fast full sync where every chunk differs** (target rewritten with other data before
//!     each run, untimed), same links; compared with the nbdcopy times of (b) from the same run.
//!     Goal ≤ 1.2× the nbdcopy time.
//!
//! Images: `MARS_BENCH_SYNC_GIB` GiB (default 4) of pseudo-random data in a temporary directory
//! under `MARS_BENCH_DIR` (default `/work`); all files stay in the page cache (23 GiB RAM here),
//! for us and for the peers alike. Needs root (namespaces, tc) and nbdkit/nbdcopy; otherwise it
//! says so and exits.
//!
//! Run: `cargo bench -p mars-rs --bench net` (`MARS_BENCH_PARTS=a` or `bc` and
//! `MARS_BENCH_LINKS=veth` or `loopback` run a subset).
// `setns(2)` has no safe wrapper in our dependencies; it is a plain syscall on an fd we own.
#![allow(unsafe_code)]

// The binaries' allocator: see ARCHITECTURE.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/env.rs"]
mod env;

use mars_net::{ChannelKind, ClusterId, NetConfig, Secret};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xio::copy::{Copy, CopyConfig};
use xio::file::{self, Backend, FileOptions};
use xio::remote::{ClientConfig, Exports, FetchConfig, LogFetch, RemoteClient, Target};

fn net(name: &str) -> NetConfig {
    NetConfig::new(
        ClusterId([5; 16]),
        name,
        Secret::new("benchmark cluster secret").unwrap(),
    )
}

fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "ip {}", args.join(" "));
}

struct Pair {
    ns_a: String,
    ns_b: String,
    addr_a: Ipv4Addr,
}

impl Pair {
    fn new() -> Pair {
        let pid = std::process::id();
        let p = Pair {
            ns_a: format!("marsnet-bench-{pid}-a"),
            ns_b: format!("marsnet-bench-{pid}-b"),
            addr_a: Ipv4Addr::new(10, 199, (pid % 250) as u8, 1),
        };
        let (da, db) = (
            format!("mnb{}a", pid % 100_000),
            format!("mnb{}b", pid % 100_000),
        );
        ip(&["netns", "add", &p.ns_a]);
        ip(&["netns", "add", &p.ns_b]);
        ip(&["link", "add", &da, "type", "veth", "peer", "name", &db]);
        ip(&["link", "set", &da, "netns", &p.ns_a]);
        ip(&["link", "set", &db, "netns", &p.ns_b]);
        for (ns, dev, last) in [(&p.ns_a, &da, 1), (&p.ns_b, &db, 2)] {
            let addr = format!("10.199.{}.{last}/24", pid % 250);
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            let ok = Command::new("tc")
                .args([
                    "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", "1gbit",
                    "burst", "256kb", "latency", "50ms",
                ])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "tc tbf");
        }
        p
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Run `f` on a thread inside namespace `ns` (or here when `None`).
fn run_in<T: Send + 'static>(ns: Option<&str>, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = ns.map(|n| format!("/var/run/netns/{n}"));
    std::thread::spawn(move || {
        if let Some(path) = path {
            let fd = std::fs::File::open(&path).expect("namespace");
            // SAFETY: setns on a valid namespace fd we hold open; changes only this thread.
            let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        }
        f()
    })
    .join()
    .expect("bench thread")
}

fn in_ns(ns: Option<&str>, prog: &str) -> Command {
    match ns {
        Some(n) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", n, prog]);
            c
        }
        None => Command::new(prog),
    }
}

fn make_image(path: &Path, size: u64, seed: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for k in 0..size >> 20 {
        let mut x = (seed ^ k).wrapping_mul(0x9e3779b97f4a7c15) | 1;
        for c in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    f.sync_all().unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Nbdkit(Child);
impl Drop for Nbdkit {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nbdkit(ns: Option<&str>, addr: Ipv4Addr, port: u16, img: &Path) -> Nbdkit {
    let child = in_ns(ns, "nbdkit")
        .args([
            "-f",
            "-r",
            "-p",
            &port.to_string(),
            "-i",
            &addr.to_string(),
            "file",
        ])
        .arg(format!("file={}", img.display()))
        .stdout(Stdio::null())
        .spawn()
        .expect("nbdkit");
    std::thread::sleep(Duration::from_millis(500));
    Nbdkit(child)
}

fn nbdcopy(ns: Option<&str>, addr: Ipv4Addr, port: u16, dst: &Path) -> Duration {
    let t = Instant::now();
    let ok = in_ns(ns, "nbdcopy")
        .arg("--flush")
        .arg(format!("nbd://{addr}:{port}"))
        .arg(dst)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "nbdcopy failed");
    t.elapsed()
}

fn our_sync(ns: Option<&str>, server: SocketAddr, dst: &Path) -> (Duration, u64) {
    let dst = dst.to_path_buf();
    let ns_owned = ns.map(str::to_string);
    run_in(ns_owned.as_deref(), move || {
        let mut cc = ClientConfig::new(
            net("b"),
            server,
            ChannelKind::Sync,
            Target::Device("data".into()),
        );
        cc.connections = 4;
        let client = RemoteClient::start("data", cc);
        let b = file::open(&dst, Backend::Sync, &FileOptions::default()).unwrap();
        let mut cfg = CopyConfig::new();
        cfg.chunk = 1 << 20;
        cfg.window = 16;
        let t = Instant::now();
        let p = Copy::new("sync", client, b, cfg).run().unwrap();
        assert!(p.complete);
        (t.elapsed(), p.transferred)
    })
}

fn our_fetch(server: SocketAddr, name: &str, dst: &Path) -> Duration {
    let _ = std::fs::remove_file(dst);
    let mut cc = ClientConfig::new(
        net("b"),
        server,
        ChannelKind::Fetch,
        Target::Log(name.into()),
    );
    cc.connections = 2;
    let client = RemoteClient::start("log", cc);
    let mut cfg = FetchConfig::new(dst, name);
    cfg.chunk = 1 << 20;
    cfg.window = 8;
    let t = Instant::now();
    let p = LogFetch::new(client, cfg).run().unwrap();
    assert!(p.finished);
    t.elapsed()
}

fn raw_tcp_copy(src: &Path, dst: &Path) -> Duration {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let src = src.to_path_buf();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut f = std::fs::File::open(src).unwrap();
        std::io::copy(&mut f, &mut s).unwrap();
    });
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    let mut f = std::fs::File::create(dst).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        f.write_all(&buf[..n]).unwrap();
    }
    f.sync_data().unwrap();
    let d = t.elapsed();
    server.join().unwrap();
    d
}

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn row(what: &str, ours: &mut [f64], peer: &mut [f64], peer_name: &str, unit: &str) {
    let (a, b, c) = stats(ours);
    let (d, e, f) = stats(peer);
    println!(
        "| {what} | {a:.2} / {b:.2} / {c:.2} {unit} | {peer_name}: {d:.2} / {e:.2} / {f:.2} {unit} | {:.2}× |",
        if unit == "s" { e / b } else { b / e }
    );
}

fn main() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let tools = ["nbdkit", "nbdcopy", "ip", "tc"]
        .iter()
        .all(|t| env::have(t));
    if !root || !tools {
        println!("net bench skipped: needs root and nbdkit, nbdcopy, ip, tc");
        return;
    }
    let runs = env::env_or("MARS_BENCH_RUNS", 3) as usize;
    let gib: u64 = std::env::var("MARS_BENCH_SYNC_GIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let base = std::env::var("MARS_BENCH_DIR").unwrap_or_else(|_| "/work".into());
    let dir = tempfile::tempdir_in(&base).unwrap();
    let d = |n: &str| -> PathBuf { dir.path().join(n) };
    let size = gib << 30;
    let mib = |bytes: u64, t: Duration| bytes as f64 / (1 << 20) as f64 / t.as_secs_f64();

    let parts = std::env::var("MARS_BENCH_PARTS").unwrap_or_else(|_| "abc".into());
    println!("\n## mars-net benchmark ({runs} runs each, min / median / max; ratio = ours vs peer median)\n");
    println!("| workload | ours | peer | ratio |\n|---|---|---|---|");

    // (a) log fetch over loopback.
    if parts.contains('a') {
        let logs = d("logs");
        std::fs::create_dir(&logs).unwrap();
        let log_size = 1u64 << 30;
        make_image(&logs.join("log-000000001-alice"), log_size, 1);
        std::fs::write(logs.join("log-000000002-alice"), successor_header()).unwrap();
        let ex = Exports::new(Some(logs.clone()));
        let node = ex.listen("127.0.0.1:0", net("a")).unwrap();
        let port = free_port();
        let kit = nbdkit(
            None,
            Ipv4Addr::LOCALHOST,
            port,
            &logs.join("log-000000001-alice"),
        );
        let (mut ours, mut raw, mut nbd) = (vec![], vec![], vec![]);
        for _ in 0..runs {
            ours.push(mib(
                log_size,
                our_fetch(node.local_addr(), "log-000000001-alice", &d("fetched")),
            ));
            raw.push(mib(
                log_size,
                raw_tcp_copy(&logs.join("log-000000001-alice"), &d("rawcopy")),
            ));
            nbd.push(mib(
                log_size,
                nbdcopy(None, Ipv4Addr::LOCALHOST, port, &d("nbdcopied")),
            ));
        }
        drop(kit);
        drop(node);
        for f in ["fetched", "rawcopy", "nbdcopied"] {
            let _ = std::fs::remove_file(d(f));
        }
        let mut ours2 = ours.clone();
        row(
            "(a) log fetch 1 GiB, loopback, MiB/s",
            &mut ours,
            &mut raw,
            "raw TCP copy",
            "MiB/s",
        );
        row(
            "(a) log fetch 1 GiB, loopback, MiB/s",
            &mut ours2,
            &mut nbd,
            "nbdkit+nbdcopy",
            "MiB/s",
        );
        let _ = std::fs::remove_dir_all(&logs);
    }
    if !parts.contains('b') && !parts.contains('c') {
        return;
    }

    // (b) and (c): images.
    let (src, same, diff, scratch) = (d("src.img"), d("same.img"), d("diff.img"), d("scratch.img"));
    make_image(&src, size, 2);
    std::fs::copy(&src, &same).unwrap();
    let pair = Pair::new();
    for (label, ns_a, ns_b, addr) in [
        (
            "veth 1 Gbit/s tbf",
            Some(pair.ns_a.clone()),
            Some(pair.ns_b.clone()),
            pair.addr_a,
        ),
        ("loopback", None, None, Ipv4Addr::LOCALHOST),
    ] {
        let links = std::env::var("MARS_BENCH_LINKS").unwrap_or_else(|_| "veth,loopback".into());
        if !links.contains(label.split(' ').next().unwrap_or(label)) {
            continue;
        }
        let src2 = src.clone();
        let node = run_in(ns_a.as_deref(), move || {
            let ex = Exports::new(None);
            let opts = FileOptions {
                read_only: true,
                ..FileOptions::default()
            };
            ex.add_device("data", file::open(&src2, Backend::Sync, &opts).unwrap());
            ex.listen(SocketAddr::from((addr, 0)), net("a")).unwrap()
        });
        let server = node.local_addr();
        let port = free_port();
        let kit = nbdkit(ns_a.as_deref(), addr, port, &src);
        let (mut same_t, mut diff_t, mut nbd_t) = (vec![], vec![], vec![]);
        for run in 0..runs {
            let (t, moved) = our_sync(ns_b.as_deref(), server, &same);
            assert_eq!(moved, 0, "identical images transferred data");
            same_t.push(t.as_secs_f64());
            make_image(&diff, size, 100 + run as u64);
            let (t, moved) = our_sync(ns_b.as_deref(), server, &diff);
            assert_eq!(moved, size);
            diff_t.push(t.as_secs_f64());
            let _ = std::fs::remove_file(&scratch);
            nbd_t.push(nbdcopy(ns_b.as_deref(), addr, port, &scratch).as_secs_f64());
        }
        drop(kit);
        drop(node);
        let mut nbd2 = nbd_t.clone();
        row(
            &format!("(b) fast sync, identical {gib} GiB, {label}, s"),
            &mut same_t,
            &mut nbd_t,
            "nbdcopy full",
            "s",
        );
        row(
            &format!("(c) fast sync, all chunks differ {gib} GiB, {label}, s"),
            &mut diff_t,
            &mut nbd2,
            "nbdcopy full",
            "s",
        );
    }
    println!("\nratio > 1: ours faster (times: peer/ours; throughput: ours/peer).");
}

/// The header of log 2, as the logger writes it when it switches to that file: it finishes
/// log 1 for the log server (`prev_end` 0: log 1 ends at its length).
fn successor_header() -> [u8; 512] {
    xio::log::FileHeader::new(2, "r", "alice", 0)
        .encode()
        .unwrap()
}
