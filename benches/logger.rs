//! Benchmark of the trans_logger against the io_uring file backend (`aio`) on the same data
//! file, in the same run (BENCHMARKING.md), each pair interleaved `MARS_BENCH_RUNS` times
//! (default 3), reported as min/median/max and as the ratio of medians:
//!
//! - (a) 4 KiB random writes, QD32, no flush: through the logger vs aio directly;
//! - (b) 4 KiB random writes, QD32, each followed by a FLUSH once acknowledged (fio --fsync=1);
//! - (c) 1 MiB sequential writes, QD8, sustained for many times the memory budget; once as
//!   acknowledged throughput, once including the final `close` (logger) or `fdatasync` (aio),
//!   i.e. until the data is durable on both sides;
//! - (d) replay of a log file onto the data file vs a sequential read of that log file
//!   (1 MiB reads, QD8, aio), for a log of 4 KiB random records and one of 1 MiB records,
//!   with and without the data-device flush that ends a replay.
//!
//! The logger runs with `LoggerConfig::default()` (256 MiB budget) except (c), which uses a
//! 64 MiB budget so that each run writes many times the budget. Each logger run starts on a
//! fresh log directory; its `close` (final writeback) is not timed. Files: a 2 GiB data file
//! in a temporary directory under `MARS_BENCH_DIR` (default `/work`, not tmpfs); jobs address
//! its first 1 GiB. IO is buffered. `sync` runs before every job. Job length: `MARS_BENCH_SECS`
//! (default 4). Page caches cannot be dropped here, so (d) reads a log that is in the cache.
//!
//! Run: `cargo bench -p mars-rs --bench logger` (`MARS_BENCH_ONLY=a,b` selects workloads;
//! `MARS_BENCH_GROUP_WAIT_US` overrides the logger's group-commit wait).

use brick_core::{Aio, CompletionQueue, Op, Output};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xio::file::{self, Backend, FileBrick, FileOptions};
use xio::log::{FileHeader, LogPos, LogWriter, RecordIn, RecordOp};
use xio::logger::{replay_store, FsLogStore, LogStore, LoggerConfig, ReplayOptions, TransLogger};

const REGION: u64 = 1 << 30;
const FILE_SIZE: u64 = 2 << 30;

#[derive(Clone, Copy)]
struct Workload {
    random: bool,
    bs: usize,
    qd: usize,
    flush_each: bool,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Drive `out` with `w` for `secs`; returns writes per second (a write+flush pair counts once).
fn drive(out: &dyn Output, w: Workload, secs: u64) -> f64 {
    let cq = CompletionQueue::new();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let blocks = REGION / w.bs as u64;
    let mut seq = 0u64;
    let mut next_pos = |rng: &mut Rng| {
        let b = if w.random {
            rng.next() % blocks
        } else {
            seq % blocks
        };
        seq += 1;
        b * w.bs as u64
    };
    let fill = |req: &mut Aio| {
        req.data.clear();
        req.data.resize(w.bs, 0x5a);
    };
    for _ in 0..w.qd {
        let mut r = Aio::write(next_pos(&mut rng), Vec::new());
        r.len = w.bs;
        fill(&mut r);
        cq.submit(out, r).expect("submit");
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let (mut done, mut inflight) = (0u64, w.qd);
    while inflight > 0 {
        let mut r = cq.recv();
        inflight -= 1;
        if let Some(e) = &r.error {
            panic!("benchmark IO failed: {e}");
        }
        let finished_write = match r.op {
            Op::Write if w.flush_each => {
                r.op = Op::Flush;
                r.len = 0;
                r.data.clear();
                cq.submit(out, r).expect("submit");
                inflight += 1;
                continue;
            }
            _ => true,
        };
        if finished_write {
            done += 1;
        }
        if Instant::now() < deadline {
            r.op = Op::Write;
            r.pos = next_pos(&mut rng);
            r.len = w.bs;
            fill(&mut r);
            cq.submit(out, r).expect("submit");
            inflight += 1;
        }
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn sync_all() {
    let _ = Command::new("sync").status();
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn fmt3((a, b, c): (f64, f64, f64), unit: f64) -> String {
    format!("{:.0} / {:.0} / {:.0}", a / unit, b / unit, c / unit)
}

fn open_data(path: &Path) -> Arc<FileBrick> {
    let opts = FileOptions {
        create_size: Some(FILE_SIZE),
        ..FileOptions::default()
    };
    file::open(path, Backend::IoUring, &opts).expect("opening the data file")
}

/// Writes per second through the logger; with `durable`, the time of the final `close`
/// (log commit, writeback, data flush) counts too.
fn logger_run(
    data: &Arc<FileBrick>,
    logs: &Path,
    cfg: LoggerConfig,
    w: Workload,
    secs: u64,
    durable: bool,
) -> f64 {
    let _ = std::fs::remove_dir_all(logs);
    let logger = TransLogger::open(data.clone(), logs, cfg).expect("opening the logger");
    let start = Instant::now();
    let r = drive(&*logger, w, secs);
    let ops = r * start.elapsed().as_secs_f64();
    logger.close().expect("closing the logger");
    if durable {
        ops / start.elapsed().as_secs_f64()
    } else {
        r
    }
}

/// Writes per second on aio directly; with `durable`, a final flush counts too.
fn peer_run(data: &Arc<FileBrick>, w: Workload, secs: u64, durable: bool) -> f64 {
    let start = Instant::now();
    let r = drive(&**data, w, secs);
    if !durable {
        return r;
    }
    let ops = r * start.elapsed().as_secs_f64();
    brick_core::run(&**data, Aio::new(Op::Flush, 0, 0)).expect("flush");
    ops / start.elapsed().as_secs_f64()
}

/// Write a log file of `total` bytes of `bs`-sized records into a fresh `dir`; returns its length.
fn make_log(dir: &Path, bs: usize, total: u64, random: bool) -> u64 {
    let _ = std::fs::remove_dir_all(dir);
    let store = FsLogStore::new(dir).unwrap();
    let out = store.create(1).unwrap();
    let header = FileHeader {
        seq: 1,
        nonce: 7,
        created: 1,
        resource: "bench".into(),
        node: "n".into(),
    };
    let mut w = LogWriter::create(&*out, store.describe(1), header, false).unwrap();
    let data = vec![0x77u8; bs];
    let mut rng = Rng(99);
    let per_batch = ((1usize << 20) / bs).max(1);
    let mut written = 0u64;
    let mut k = 0u64;
    while written < total {
        let recs: Vec<RecordIn<'_>> = (0..per_batch)
            .map(|_| {
                let blocks = REGION / bs as u64;
                let b = if random {
                    rng.next() % blocks
                } else {
                    k % blocks
                };
                k += 1;
                RecordIn {
                    op: RecordOp::Write,
                    pos: b * bs as u64,
                    len: bs as u32,
                    data: &data,
                    stamp: 1,
                    flags: 0,
                }
            })
            .collect();
        w.write_batch(&*out, &recs).unwrap();
        written += (per_batch * bs) as u64;
    }
    w.pos().offset
}

fn seq_read(path: &Path, len: u64) -> f64 {
    let opts = FileOptions::default();
    let f = file::open(path, Backend::IoUring, &opts).unwrap();
    let start = Instant::now();
    let cq = CompletionQueue::new();
    let bs = 1u64 << 20;
    let (mut pos, mut inflight) = (0u64, 0);
    while pos < len || inflight > 0 {
        while inflight < 8 && pos < len {
            let n = bs.min(len - pos);
            cq.submit(&*f, Aio::read(pos, n as usize)).unwrap();
            pos += n;
            inflight += 1;
        }
        let r = cq.recv();
        assert!(r.error.is_none());
        inflight -= 1;
    }
    len as f64 / start.elapsed().as_secs_f64()
}

fn replay_run(data: &Arc<FileBrick>, logs: &Path, len: u64, flush: bool) -> f64 {
    let store = FsLogStore::new(logs).unwrap();
    let start = Instant::now();
    let opts = ReplayOptions {
        flush,
        ..ReplayOptions::default()
    };
    let r = replay_store(&**data, &store, LogPos::new(1, 0), opts).unwrap();
    assert!(r.records > 0);
    len as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let base = std::env::var("MARS_BENCH_DIR").unwrap_or_else(|_| "/work".into());
    let dir = tempfile::tempdir_in(&base).expect("creating the bench directory");
    let runs = env_u64("MARS_BENCH_RUNS", 3).max(1) as usize;
    let secs = env_u64("MARS_BENCH_SECS", 4);
    let data_path = dir.path().join("data.img");
    let logs = dir.path().join("logs");
    let data = open_data(&data_path);
    println!(
        "trans_logger vs aio on {} ({runs} runs x {secs} s, min / median / max)\n",
        dir.path().display()
    );

    let mut rows = Vec::new();
    let cases: [(&str, Workload, u64, &str, bool); 4] = [
        (
            "(a) randwrite 4k QD32, no flush",
            Workload {
                random: true,
                bs: 4096,
                qd: 32,
                flush_each: false,
            },
            256 << 20,
            "kIOPS",
            false,
        ),
        (
            "(b) randwrite 4k QD32, flush each",
            Workload {
                random: true,
                bs: 4096,
                qd: 32,
                flush_each: true,
            },
            256 << 20,
            "kIOPS",
            false,
        ),
        (
            "(c) write 1M QD8 (budget 64 MiB)",
            Workload {
                random: false,
                bs: 1 << 20,
                qd: 8,
                flush_each: false,
            },
            64 << 20,
            "MiB/s",
            false,
        ),
        (
            "(c) write 1M QD8, incl. final close/flush",
            Workload {
                random: false,
                bs: 1 << 20,
                qd: 8,
                flush_each: false,
            },
            64 << 20,
            "MiB/s",
            true,
        ),
    ];
    let only = std::env::var("MARS_BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| {
        only.is_empty() || only.split(',').any(|o| name.starts_with(&format!("({o})")))
    };
    for (name, w, budget, unit, durable) in cases {
        if !wanted(name) {
            continue;
        }
        let (mut peer, mut ours) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            sync_all();
            peer.push(peer_run(&data, w, secs, durable));
            sync_all();
            let mut cfg = LoggerConfig {
                mem_budget: budget,
                ..LoggerConfig::default()
            };
            if let Ok(ms) = std::env::var("MARS_BENCH_WRITEBACK_DELAY_MS") {
                cfg.writeback_delay = Duration::from_millis(ms.parse().expect("milliseconds"));
            }
            if let Ok(ms) = std::env::var("MARS_BENCH_COMMIT_MS") {
                cfg.commit_interval = Duration::from_millis(ms.parse().expect("milliseconds"));
            }
            if let Ok(us) = std::env::var("MARS_BENCH_GROUP_WAIT_US") {
                cfg.group_wait = Duration::from_micros(us.parse().expect("microseconds"));
            }
            ours.push(logger_run(&data, &logs, cfg, w, secs, durable));
        }
        let m = if w.bs == 4096 {
            1e3
        } else {
            (1 << 20) as f64 / w.bs as f64
        };
        let (p, o) = (stats(peer), stats(ours));
        rows.push((name.to_string(), unit, fmt3(o, m), fmt3(p, m), o.1 / p.1));
    }

    for (name, bs, total, random, flush) in [
        (
            "(d) replay 4k random records, no final flush",
            4096usize,
            512u64 << 20,
            true,
            false,
        ),
        (
            "(d) replay 4k random records + final flush",
            4096usize,
            512u64 << 20,
            true,
            true,
        ),
        (
            "(d) replay 1M records, no final flush",
            1 << 20,
            1 << 30,
            false,
            false,
        ),
        (
            "(d) replay 1M records + final flush",
            1 << 20,
            1 << 30,
            false,
            true,
        ),
    ] {
        if !wanted(name) {
            continue;
        }
        let len = make_log(&logs, bs, total, random);
        let log_file = logs.join(xio::log::file_name(1));
        let (mut peer, mut ours) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            sync_all();
            peer.push(seq_read(&log_file, len));
            sync_all();
            ours.push(replay_run(&data, &logs, len, flush));
        }
        let mib = (1 << 20) as f64;
        let (p, o) = (stats(peer), stats(ours));
        rows.push((
            name.to_string(),
            "MiB/s",
            fmt3(o, mib),
            fmt3(p, mib),
            o.1 / p.1,
        ));
    }

    println!("| workload | unit | logger (ours) | peer | ratio (median) |");
    println!("|---|---|---|---|---|");
    for (name, unit, o, p, ratio) in rows {
        let peer = if name.starts_with("(d)") {
            "seq read of the log (aio)"
        } else {
            "aio direct"
        };
        println!("| {name} | {unit} | {o} | {peer}: {p} | {ratio:.2}x |");
    }
}
