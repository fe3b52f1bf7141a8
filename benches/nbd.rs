//! NBD export benchmark: fio's nbd engine against our export (aio → trans_logger → NBD, the log
//! on the same disk as the data file) and against `nbdkit file` on a raw file of the same size,
//! in the same run, each pair measured `NBD_BENCH_RUNS` times (default 3) with the order
//! alternating. Prints min/median/max and the ratio of the medians against the goals of the
//! NBD issue.
//!
//! `cargo bench -p mars-rs --bench nbd` (needs fio and nbdkit). Knobs: `NBD_BENCH_RUNTIME`
//! (seconds per job, default 6), `NBD_BENCH_RUNS`, `NBD_BENCH_DIR` (where the files go;
//! default the system temp dir), `NBD_BENCH_SIZE_GIB` (file size, default 2; fio uses half),
//! `NBD_BENCH_OURS` = `logger` (default) | `aio` (no logger: isolates the NBD layer's cost on
//! the same file IO as nbdkit) | `mem` (MemDisk: the NBD layer alone).
// The binaries' allocator: see ARCHITECTURE.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use brick_core::Output;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xio::file::{Backend, FileOptions};
use xio::logger::{LoggerConfig, TransLogger};
use xio::nbd::{Export, NbdServer, ServerConfig};

struct Workload {
    name: &'static str,
    args: &'static [&'static str],
    metric: Metric,
    goal: f64,
}

#[derive(Clone, Copy)]
enum Metric {
    WriteIops,
    ReadIops,
    WriteMibs,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "randwrite 4k QD32",
        args: &["--rw=randwrite", "--bs=4k", "--iodepth=32"],
        metric: Metric::WriteIops,
        goal: 1.0,
    },
    Workload {
        name: "randwrite 4k QD32 fsync=1",
        args: &["--rw=randwrite", "--bs=4k", "--iodepth=32", "--fsync=1"],
        metric: Metric::WriteIops,
        goal: 1.5,
    },
    Workload {
        name: "randread 4k QD32",
        args: &["--rw=randread", "--bs=4k", "--iodepth=32"],
        metric: Metric::ReadIops,
        goal: 0.9,
    },
    Workload {
        name: "write 1M seq QD8",
        args: &["--rw=write", "--bs=1M", "--iodepth=8"],
        metric: Metric::WriteMibs,
        goal: 0.5,
    },
];

struct Nbdkit(Child);

impl Drop for Nbdkit {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fallocate(path: &Path, size: u64) {
    let st = Command::new("fallocate")
        .args(["-l", &size.to_string()])
        .arg(path)
        .status()
        .expect("running fallocate");
    assert!(st.success(), "fallocate {} failed", path.display());
}

/// Run one fio job against `uri`; returns the metric.
fn fio(uri: &str, w: &Workload, region: u64, runtime: u64) -> f64 {
    let out = Command::new("fio")
        .args([
            "--name=bench",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            &format!("--size={region}"),
            "--time_based",
            &format!("--runtime={runtime}"),
            "--ramp_time=1",
            "--output-format=terse",
            "--terse-version=3",
        ])
        .args(w.args)
        .output()
        .expect("running fio");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fio failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // fio's nbd engine prints "fio: connected to NBD server" before the terse line.
    let line = text
        .lines()
        .find(|l| l.starts_with("3;"))
        .unwrap_or_else(|| panic!("no terse output from fio: {text}"));
    let f: Vec<&str> = line.split(';').collect();
    let num = |i: usize| f[i].parse::<f64>().unwrap_or(0.0);
    match w.metric {
        Metric::ReadIops => num(7),
        Metric::WriteIops => num(48),
        Metric::WriteMibs => num(47) / 1024.0,
    }
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches` probes
    }
    for tool in ["fio", "nbdkit", "fallocate"] {
        if Command::new("which")
            .arg(tool)
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            eprintln!("nbd bench: `{tool}` is not installed; skipping");
            return;
        }
    }
    let runs = env_or("NBD_BENCH_RUNS", 3) as usize;
    let runtime = env_or("NBD_BENCH_RUNTIME", 6);
    let size = env_or("NBD_BENCH_SIZE_GIB", 2) << 30;
    let region = size / 2;
    let base = std::env::var("NBD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let dir = tempfile::tempdir_in(base).expect("creating the bench directory");
    let ours_img = dir.path().join("ours.img");
    let peer_img = dir.path().join("peer.img");
    fallocate(&ours_img, size);
    fallocate(&peer_img, size);

    // Ours: aio → trans_logger (log directory on the same disk) → NBD.
    let mode = std::env::var("NBD_BENCH_OURS").unwrap_or_else(|_| "logger".into());
    let mut logger = None;
    let out: Arc<dyn Output> = match mode.as_str() {
        "mem" => brick_core::bricks::MemDisk::new(
            "mem",
            size as usize,
            brick_core::bricks::MemDiskMode::Threaded(2),
        ),
        "aio" => xio::file::open(&ours_img, Backend::IoUring, &FileOptions::default())
            .expect("opening the data file"),
        _ => {
            let data = xio::file::open(&ours_img, Backend::IoUring, &FileOptions::default())
                .expect("opening the data file");
            let cfg = LoggerConfig {
                resource: "bench".into(),
                ..LoggerConfig::default()
            };
            let l =
                TransLogger::open(data, &dir.path().join("logs"), cfg).expect("opening the logger");
            logger = Some(l.clone());
            l
        }
    };
    let server = NbdServer::new(ServerConfig::default());
    server
        .add_export(Export::new("bench", out).unwrap().multi_conn(true))
        .unwrap();
    let ours_sock = dir.path().join("ours.sock");
    server.listen_unix(&ours_sock).unwrap();
    let ours_uri = format!("nbd+unix:///bench?socket={}", ours_sock.display());

    let peer_sock = dir.path().join("peer.sock");
    let _nbdkit = Nbdkit(
        Command::new("nbdkit")
            .args(["-f", "-U"])
            .arg(&peer_sock)
            .args(["-e", "bench", "file"])
            .arg(format!("file={}", peer_img.display()))
            .stdout(Stdio::null())
            .spawn()
            .expect("starting nbdkit"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !peer_sock.exists() {
        assert!(
            Instant::now() < deadline,
            "nbdkit did not create its socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let peer_uri = format!("nbd+unix:///bench?socket={}", peer_sock.display());

    println!(
        "nbd bench: ours = {mode}, {} GiB files, {} GiB region, {runtime} s per job, {runs} runs, load {}",
        size >> 30,
        region >> 30,
        load()
    );
    let mut rows = Vec::new();
    for w in WORKLOADS {
        let (mut ours, mut peer) = (Vec::new(), Vec::new());
        for run in 0..runs {
            // Alternate the order so that neither side always runs on a warmer cache.
            if run % 2 == 0 {
                ours.push(fio(&ours_uri, w, region, runtime));
                peer.push(fio(&peer_uri, w, region, runtime));
            } else {
                peer.push(fio(&peer_uri, w, region, runtime));
                ours.push(fio(&ours_uri, w, region, runtime));
            }
            eprintln!(
                "  {} run {run}: ours {:.0} nbdkit {:.0} (load {})",
                w.name,
                ours[run],
                peer[run],
                load()
            );
        }
        rows.push((w, stats(ours), stats(peer)));
    }
    let unit = |m: Metric| match m {
        Metric::WriteMibs => "MiB/s",
        _ => "IOPS",
    };
    println!();
    println!("| workload | unit | ours min / median / max | nbdkit file min / median / max | ratio (medians) | goal | met |");
    println!("|---|---|---|---|---|---|---|");
    for (w, o, p) in rows {
        let ratio = o.1 / p.1;
        println!(
            "| {} | {} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} | {:.2}× | ≥ {:.1}× | {} |",
            w.name,
            unit(w.metric),
            o.0,
            o.1,
            o.2,
            p.0,
            p.1,
            p.2,
            ratio,
            w.goal,
            if ratio >= w.goal { "yes" } else { "no" }
        );
    }
    server.shutdown(Duration::from_secs(30));
    if let Some(l) = logger {
        println!("logger: {:?}", l.status());
        let _ = l.close();
    }
}
