//! The write path's benchmark through NBD: fio's nbd engine against our export (data file →
//! trans_logger → NBD, the log on the same disk) and against the peer that matches the IO mode
//! (BENCHMARKING.md), in the same run, with fio's own io_uring engine on a file as the ceiling:
//!
//! - **buffered**: ours with the page cache vs `nbdkit file`; ceiling fio `--direct=0`;
//! - **direct**: ours with `O_DIRECT` on the data file and the log vs
//!   `qemu-nbd --cache=none --aio=io_uring`; ceiling fio `--direct=1`;
//! - **hybrid** (not run by default): ours with the data file in the page cache and the log
//!   with `O_DIRECT` vs `nbdkit file`, as buffered.
//!
//! Workloads (issue 13): 4k randwrite QD32; the same with fsync=1 (an NBD FLUSH after every
//! write); 4k randread QD32; 1M sequential write QD8 of 6× the logger's memory budget
//! (1.5 GiB, wrapping around the region; the same amount for every side), so that the
//! writeback has to keep up, ended by a FLUSH that is timed (`--end_fsync=1`): without it
//! the buffered peer only fills the page cache of this 24 GiB machine and never writes a
//! byte to the disk during the job, while ours writes every byte to its log. Before each side's
//! sequential job our logger's writeback is drained and `sync` writes every dirty page out, so
//! that no job runs over the previous one's flushing. Each (workload, side) is
//! measured `NBD_BENCH_RUNS` times (default 3), the order of the sides reversed every other run.
//! Printed: min / median / max of the rate, the ratio of the medians against the goal, each
//! side as a fraction of the ceiling, and the medians of fio's completion latency
//! p50 / p99 / p99.9.
//!
//! `cargo bench -p mars-rs --bench nbd` (needs fio, nbdkit, qemu-nbd, dd). Knobs:
//! `NBD_BENCH_MODE` (`buffered`, `direct`, `hybrid`, comma-separated; default `buffered,direct`),
//! `NBD_BENCH_ONLY` (workload numbers, e.g. `1,2`), `NBD_BENCH_RUNTIME` (seconds per job,
//! default 5, plus 1 s ramp), `NBD_BENCH_RUNS`, `NBD_BENCH_DIR` (where the files go; default
//! `/work` if it exists, else the temp dir: not tmpfs), `NBD_BENCH_SIZE_GIB` (file size,
//! default 2; jobs use half), `NBD_BENCH_OURS` = `logger` (default) | `aio` (no logger: the
//! NBD layer's cost on the same file IO) | `mem` (MemDisk: the NBD layer alone),
//! `NBD_BENCH_PERF` (a directory: the first run of each workload on our side is recorded with
//! `perf record -g`; the data, the report and its top lines go there and to the output),
//! `NBD_BENCH_ROTATE_MIB` (the logger's rotation size, default 1024) and
//! `NBD_BENCH_LOG_SPARES` (its recycled log files, default 4; 0: every log file is new, so
//! every commit extends a file). Recycling helps once spares exist: with the default rotation
//! size a short job never rotates; use e.g. 64 so that the log directory reaches steady state
//! (files rotated, written back, deleted into spares, reused) within the first run.
//! The context switches of this process (ours runs in it) per IO are printed for every run,
//! and the CPU time per IO of ours and of the peer's process (medians): a figure the load of
//! the machine changes less than the rates (fio's own CPU is in neither).

// The binaries' allocator: see ARCHITECTURE.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/data_file.rs"]
#[allow(dead_code)]
mod data_file;
#[path = "support/env.rs"]
mod env;
#[path = "support/fio.rs"]
#[allow(dead_code)]
mod fio;
#[path = "support/profile.rs"]
mod profile;

use brick_core::Output;
use env::{env_or, have, load};
use fio::{fmt3, lat_medians, med, mmm, FioResult, Length, Peer, Target};
use profile::{context_switches, cpu_seconds, Recording};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xio::file::{Backend, FileOptions};
use xio::logger::{LoggerConfig, TransLogger};
use xio::nbd::{Export, NbdServer, ServerConfig};

struct Workload {
    id: usize,
    name: &'static str,
    args: &'static [&'static str],
    read: bool,
    mibs: bool,
    /// Goal of ours / peer (medians): buffered, direct.
    goal: [f64; 2],
}

const WORKLOADS: &[Workload] = &[
    Workload {
        id: 1,
        name: "randwrite 4k QD32",
        args: &["--rw=randwrite", "--bs=4k", "--iodepth=32"],
        read: false,
        mibs: false,
        goal: [1.0, 1.5],
    },
    Workload {
        id: 2,
        name: "randwrite 4k QD32 fsync=1",
        args: &["--rw=randwrite", "--bs=4k", "--iodepth=32", "--fsync=1"],
        read: false,
        mibs: false,
        goal: [2.0, 2.0],
    },
    Workload {
        id: 3,
        name: "randread 4k QD32",
        args: &["--rw=randread", "--bs=4k", "--iodepth=32"],
        read: true,
        mibs: false,
        goal: [1.0, 1.2],
    },
    Workload {
        id: 4,
        name: "write 1M seq QD8",
        args: &["--rw=write", "--bs=1M", "--iodepth=8", "--end_fsync=1"],
        read: false,
        mibs: true,
        goal: [0.5, 0.8],
    },
];

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Buffered,
    Direct,
    /// The data file in the page cache (as `buffered`), the log with `O_DIRECT` (as `direct`):
    /// compared with the buffered peer.
    Hybrid,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Buffered => "buffered",
            Mode::Direct => "direct",
            Mode::Hybrid => "hybrid",
        }
    }
    fn peer(self) -> &'static str {
        match self {
            Mode::Buffered | Mode::Hybrid => "nbdkit file",
            Mode::Direct => "qemu-nbd cache=none aio=io_uring",
        }
    }
    /// Whether the data file (and so the peer and the ceiling) use `O_DIRECT`.
    fn direct(self) -> bool {
        self == Mode::Direct
    }
    fn log_direct(self) -> bool {
        self != Mode::Buffered
    }
    /// Which of a workload's goals applies: the buffered or the direct one.
    fn goal(self) -> usize {
        usize::from(self.direct())
    }
}

/// The sequential job writes this many times the logger's (default) memory budget.
const SEQ_BUDGETS: u64 = 6;

/// The bytes of the sequential job: the same for every side.
fn seq_bytes() -> u64 {
    SEQ_BUDGETS * LoggerConfig::default().mem_budget
}

const SIDES: [&str; 3] = ["ours", "peer", "ceiling"];

/// Our export of `img` in `mode`, served on `sock`.
struct Ours {
    server: NbdServer,
    logger: Option<Arc<TransLogger>>,
    uri: String,
}

impl Ours {
    /// Before a sequential job: our logger has written everything back and the kernel has
    /// written every dirty page out, so that no side's job starts with the previous job's
    /// GiBs still being flushed under it (seen: nbdkit at 477-2053 MiB/s from one run to the
    /// next with the same file, ours at 408-1425, depending on what ran before).
    fn settle(&self) {
        if let Some(l) = &self.logger {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while l.status().versions > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        let _ = std::process::Command::new("sync").status();
    }

    fn start(kind: &str, mode: Mode, img: &Path, dir: &Path, size: u64) -> Ours {
        let opts = FileOptions {
            direct: mode.direct(),
            ..FileOptions::default()
        };
        let open = || xio::file::open(img, Backend::IoUring, &opts).expect("opening the data file");
        let mut logger = None;
        let out: Arc<dyn Output> = match kind {
            "mem" => brick_core::bricks::MemDisk::new(
                "mem",
                size as usize,
                brick_core::bricks::MemDiskMode::Threaded(2),
            ),
            "aio" => open(),
            _ => {
                let d = LoggerConfig::default();
                let cfg = LoggerConfig {
                    resource: "bench".into(),
                    // Direct: the log files too (format v2, 4 KiB aligned writes).
                    log_direct: mode.log_direct(),
                    rotate_size: env_or("NBD_BENCH_ROTATE_MIB", d.rotate_size >> 20) << 20,
                    log_spares: env_or("NBD_BENCH_LOG_SPARES", d.log_spares as u64) as usize,
                    ..d
                };
                let logs = dir.join(format!("logs-{}", mode.name()));
                let l = TransLogger::open(open(), &logs, cfg).expect("opening the logger");
                logger = Some(l.clone());
                l
            }
        };
        let server = NbdServer::new(ServerConfig::default());
        server
            .add_export(Export::new("bench", out).unwrap().multi_conn(true))
            .unwrap();
        let sock = dir.join(format!("ours-{}.sock", mode.name()));
        server.listen_unix(&sock).unwrap();
        Ours {
            server,
            logger,
            uri: format!("nbd+unix:///bench?socket={}", sock.display()),
        }
    }

    fn stop(self) {
        self.server.shutdown(Duration::from_secs(30));
        if let Some(l) = self.logger {
            println!("logger: {}", l.status());
            l.close().expect("closing the logger");
        }
    }
}

/// The results of one workload in one mode: per side, one result per run; our context
/// switches per IO in each run, and the profile of our first run (`NBD_BENCH_PERF`).
struct Row {
    w: &'static Workload,
    res: [Vec<FioResult>; 3],
    switches: Vec<f64>,
    /// CPU time per IO in µs, per run: ours, the peer.
    cpu: [Vec<f64>; 2],
    profile: Option<String>,
}

/// The IOs of a job that ran at `rate` (the ramp second included, as in the switch count).
fn ios(w: &Workload, rate: f64, secs: u64) -> f64 {
    if w.mibs {
        (seq_bytes() >> 20) as f64 // 1 MiB blocks
    } else {
        rate * (secs + 1) as f64
    }
}

fn measure(mode: Mode, kind: &str, dir: &Path, size: u64, runs: usize, secs: u64) -> Vec<Row> {
    let region = size / 2;
    let (ours_img, peer_img) = (dir.join("ours.img"), dir.join("peer.img"));
    for img in [&ours_img, &peer_img] {
        let _ = std::fs::remove_file(img);
        data_file::provision(img, region);
        std::fs::OpenOptions::new()
            .write(true)
            .open(img)
            .and_then(|f| f.set_len(size))
            .expect("sizing the image");
    }
    let ours = Ours::start(kind, mode, &ours_img, dir, size);
    let peer_sock = dir.join(format!("peer-{}.sock", mode.name()));
    let peer = match mode {
        Mode::Buffered | Mode::Hybrid => Peer::nbdkit(&peer_img, &peer_sock, "bench"),
        Mode::Direct => Peer::qemu_nbd_direct(&peer_img, &peer_sock, "bench"),
    };
    let only: Vec<usize> = std::env::var("NBD_BENCH_ONLY")
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_default();
    let mut rows = Vec::new();
    for w in WORKLOADS
        .iter()
        .filter(|w| only.is_empty() || only.contains(&w.id))
    {
        let mut res: [Vec<FioResult>; 3] = Default::default();
        let (mut switches, mut profile) = (Vec::new(), None);
        let mut cpu: [Vec<f64>; 2] = Default::default();
        let me = std::process::id();
        for run in 0..runs {
            let mut order = [0, 1, 2];
            if run % 2 == 1 {
                order.reverse();
            }
            for side in order {
                let target = match side {
                    0 => Target::Nbd(&ours.uri),
                    1 => Target::Nbd(&peer.uri),
                    _ => Target::File {
                        path: &peer_img,
                        direct: mode.direct(),
                    },
                };
                let len = if w.mibs {
                    Length::Bytes(seq_bytes())
                } else {
                    Length::Secs(secs)
                };
                let perf = (side == 0 && run == 0)
                    .then(|| std::env::var("NBD_BENCH_PERF").ok())
                    .flatten()
                    .and_then(|d| {
                        let data = Path::new(&d).join(format!("{}-{}.data", mode.name(), w.id));
                        Recording::start(me, &data)
                    });
                if w.mibs {
                    ours.settle();
                }
                let cs = context_switches(me);
                let pid = [me, peer.pid()].get(side).copied();
                let cpu0 = pid.map(cpu_seconds);
                let r = fio::run(&target, region, len, w.args, w.read, w.mibs);
                let n_ios = ios(w, r.rate, secs).max(1.0);
                if let (Some(pid), Some(cpu0)) = (pid, cpu0) {
                    cpu[side].push((cpu_seconds(pid) - cpu0) * 1e6 / n_ios);
                }
                if side == 0 {
                    let n = (context_switches(me) - cs) as f64;
                    switches.push(n / n_ios);
                }
                if let Some(p) = perf {
                    let top = p.finish();
                    eprintln!("  perf, ours, {} {}:\n{top}", mode.name(), w.name);
                    profile = Some(top);
                }
                res[side].push(r);
            }
            eprintln!(
                "  {} {} run {run}: ours {:.0} peer {:.0} ceiling {:.0} (load {})",
                mode.name(),
                w.name,
                res[0][run].rate,
                res[1][run].rate,
                res[2][run].rate,
                load()
            );
        }
        rows.push(Row {
            w,
            res,
            switches,
            cpu,
            profile,
        });
    }
    drop(peer);
    ours.stop();
    rows
}

fn print(mode: Mode, kind: &str, rows: &[Row]) {
    let m = mode.goal();
    println!();
    println!(
        "### {}: ours ({kind}) vs {} (ceiling: fio io_uring direct={} on the file)",
        mode.name(),
        mode.peer(),
        u8::from(mode.direct())
    );
    println!();
    println!("| # | workload | unit | ours min / med / max | peer min / med / max | ceiling med | ours / peer | goal | met | ours / ceiling | peer / ceiling | ours: switches / IO | CPU µs / IO: ours, peer |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let rate = |i: usize| mmm(r.res[i].iter().map(|s| s.rate).collect());
        let (o, p, c) = (rate(0), rate(1), rate(2));
        let ratio = o[1] / p[1];
        let goal = r.w.goal[m];
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.2}× | ≥ {:.1}× | {} | {:.2} | {:.2} | {:.2} | {:.1}, {:.1} |",
            r.w.id,
            r.w.name,
            if r.w.mibs { "MiB/s" } else { "IOPS" },
            fmt3(o, 0),
            fmt3(p, 0),
            c[1],
            ratio,
            goal,
            if ratio >= goal { "yes" } else { "no" },
            o[1] / c[1],
            p[1] / c[1],
            med(r.switches.iter().copied()),
            med(r.cpu[0].iter().copied()),
            med(r.cpu[1].iter().copied()),
        );
    }
    println!();
    println!("clat p50 / p99 / p99.9 in µs (medians of the runs):");
    println!();
    println!("| # | workload | {} |", SIDES.join(" | "));
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.w.id,
            r.w.name,
            lat_medians(r.res[0].iter()),
            lat_medians(r.res[1].iter()),
            lat_medians(r.res[2].iter())
        );
    }
    for r in rows {
        if let Some(p) = &r.profile {
            println!();
            println!(
                "perf, ours, {} (self time by thread and symbol, ≥ 1.5%):",
                r.w.name
            );
            println!();
            println!("```\n{p}\n```");
        }
    }
    if rows.iter().any(|r| r.w.mibs) {
        println!();
        println!(
            "sequential: {} MiB per job = {SEQ_BUDGETS}× the logger's memory budget of {} MiB",
            seq_bytes() >> 20,
            LoggerConfig::default().mem_budget >> 20
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches` probes
    }
    let modes: Vec<Mode> = std::env::var("NBD_BENCH_MODE")
        .unwrap_or_else(|_| "buffered,direct".into())
        .split(',')
        .map(|m| match m.trim() {
            "buffered" => Mode::Buffered,
            "direct" => Mode::Direct,
            "hybrid" => Mode::Hybrid,
            other => panic!("NBD_BENCH_MODE: unknown mode {other:?} (buffered, direct, hybrid)"),
        })
        .collect();
    let mut tools = vec!["fio", "dd"];
    if modes.contains(&Mode::Buffered) || modes.contains(&Mode::Hybrid) {
        tools.push("nbdkit");
    }
    if modes.contains(&Mode::Direct) {
        tools.push("qemu-nbd");
    }
    if let Some(t) = tools.iter().find(|t| !have(t)) {
        eprintln!("nbd bench: `{t}` is not installed; skipping");
        return;
    }
    let runs = (env_or("NBD_BENCH_RUNS", 3) as usize).max(1);
    let secs = env_or("NBD_BENCH_RUNTIME", 5);
    let size = env_or("NBD_BENCH_SIZE_GIB", 2) << 30;
    let base = std::env::var("NBD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let work = PathBuf::from("/work");
            if work.is_dir() {
                work
            } else {
                std::env::temp_dir()
            }
        });
    let kind = std::env::var("NBD_BENCH_OURS").unwrap_or_else(|_| "logger".into());
    let dir = tempfile::tempdir_in(base).expect("creating the bench directory");
    let t0 = Instant::now();
    println!(
        "nbd bench: ours = {kind}, {} GiB files, {} GiB region, {secs} s per job (+1 s ramp), {runs} runs, load {}",
        size >> 30,
        size >> 31,
        load()
    );
    for mode in modes {
        let rows = measure(mode, &kind, dir.path(), size, runs, secs);
        print(mode, &kind, &rows);
    }
    println!();
    println!("nbd bench: took {:?}, load {}", t0.elapsed(), load());
}
