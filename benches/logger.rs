//! Benchmark of the trans_logger against the io_uring file backend (`aio`) on the same data
//! file, in the same run (BENCHMARKING.md), each pair interleaved `MARS_BENCH_RUNS` times
//! (default 3), reported as min/median/max and as the ratio of medians:
//!
//! - (a) 4 KiB random writes, QD32, no flush: through the logger vs aio directly;
//! - (b) 4 KiB random writes, QD32, each followed by a FLUSH once acknowledged (fio --fsync=1);
//! - (c) 1 MiB sequential writes, QD8, over the 1 GiB region once (16 times the 64 MiB
//!   memory budget, so the logger's writeback must keep up); once as acknowledged throughput,
//!   once including a final FLUSH, i.e. until the data is durable on both sides (aio: on the
//!   data file; logger: in its log; its writeback of the last budget's worth is not timed);
//! - (d) replay of a log file onto the data file vs a sequential read of that log file
//!   (1 MiB reads, QD8, aio), for a log of 4 KiB random records, one of 1 MiB records and
//!   one of 4 KiB sequential records (which replay merges into 1 MiB requests),
//!   with and without the data-device flush that ends a replay; **warm** (the log is in the
//!   page cache, as right after it was written) and **cold** (the log file's pages are evicted
//!   with `posix_fadvise(DONTNEED)` before every peer read and every replay: both read from
//!   the disk).
//!
//! Each (a) row is followed by a **write-through** row: aio plus an append of the same bytes to
//! a log file on a thread of its own (`WriteThrough`: no index, checksum, headers or
//! deferral), the simplest design that keeps a log. Measured: it is slower than the logger
//! (0.43x vs 0.50x of aio buffered, 0.65x vs 1.13x with `O_DIRECT`): deferred, sorted writeback
//! at a deeper queue is what lets the logger pay for its log.
//!
//! The (a) and (b) rows marked `O_DIRECT` put the data file behind `O_DIRECT` (aio) on both
//! sides: random writes then cost what they cost the device instead of a page-cache copy. The
//! log file stays buffered.
//!
//! The logger runs with `LoggerConfig::default()` (256 MiB budget) except (c), which uses a
//! 64 MiB budget so that each run writes many times the budget. Each logger run starts on a
//! fresh log directory; its `close` (final writeback) is not timed. Files: a 2 GiB data file
//! in a temporary directory under `MARS_BENCH_DIR` (default `/work`, not tmpfs); jobs address
//! its first 1 GiB. IO is buffered. `sync` runs before every job. Job length: `MARS_BENCH_SECS`
//! (default 4). Page caches cannot be dropped globally here; (d) evicts the one log file for its
//! cold rows.
//!
//! Run: `cargo bench -p mars-rs --bench logger` (`MARS_BENCH_ONLY=a,b` selects workloads;
//! `MARS_BENCH_GROUP_WAIT_US` overrides the logger's group-commit wait; for (d),
//! `MARS_BENCH_D=cold` (any part of a row's name) selects rows, `MARS_BENCH_REPLAY_DEPTH` and
//! `MARS_BENCH_FLUSH_BEHIND_MIB` override the replay's depth and flush-behind interval).

// The binaries' allocator: see ARCHITECTURE.md, "Allocator".
#[path = "support/data_file.rs"]
mod data_file;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Stop after this many bytes (at the latest after the run time).
    total: Option<u64>,
}

/// A numeric knob from the environment, if set (a value that is not a number stops the bench).
fn knob(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
    )
}

/// The logger's configuration for a case with memory budget `budget`, with the knobs'
/// overrides (see the module docs).
fn logger_config(budget: u64) -> LoggerConfig {
    let mut cfg = LoggerConfig {
        mem_budget: budget,
        ..LoggerConfig::default()
    };
    if let Some(ms) = knob("MARS_BENCH_WRITEBACK_DELAY_MS") {
        cfg.writeback_delay = Duration::from_millis(ms);
    }
    if let Some(ms) = knob("MARS_BENCH_COMMIT_MS") {
        cfg.commit_interval = Duration::from_millis(ms);
    }
    if let Some(ms) = knob("MARS_BENCH_DATA_FLUSH_MS") {
        cfg.data_flush_interval = Duration::from_millis(ms);
    }
    if let Some(kib) = knob("MARS_BENCH_WB_ROUND_KIB") {
        cfg.writeback_round = (kib as usize) << 10;
    }
    if let Some(mib) = knob("MARS_BENCH_COMMIT_MIB") {
        cfg.commit_bytes = mib << 20;
    }
    if let Some(n) = knob("MARS_BENCH_WB_DEPTH") {
        cfg.writeback_depth = n as usize;
    }
    if let Some(mib) = knob("MARS_BENCH_BUDGET_MIB") {
        cfg.mem_budget = mib << 20;
    }
    if let Some(us) = knob("MARS_BENCH_GROUP_WAIT_US") {
        cfg.group_wait = Duration::from_micros(us);
    }
    cfg
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

/// Drive `out` with `w` for `secs` (or until `w.total` bytes); returns writes per second (a
/// write+flush pair counts once). With `durable`, a final FLUSH is sent and its time counts:
/// aio then has the data on disk, the logger has it durable in its log.
fn drive(out: &dyn Output, w: Workload, secs: u64, durable: bool) -> f64 {
    let cq = CompletionQueue::new();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let blocks = REGION / w.bs as u64;
    let mut issued = 0u64;
    let next_pos = |rng: &mut Rng, issued: &mut u64| {
        let b = if w.random {
            rng.next() % blocks
        } else {
            *issued % blocks
        };
        *issued += 1;
        b * w.bs as u64
    };
    let fill = |req: &mut Aio| {
        req.data.clear();
        req.data.resize(w.bs, 0x5a);
    };
    for _ in 0..w.qd {
        let mut r = Aio::write(next_pos(&mut rng, &mut issued), Vec::new());
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
        if r.op == Op::Write && w.flush_each {
            r.op = Op::Flush;
            r.len = 0;
            r.data.clear();
            cq.submit(out, r).expect("submit");
            inflight += 1;
            continue;
        }
        done += 1;
        let more = w.total.is_none_or(|t| issued * (w.bs as u64) < t);
        if more && Instant::now() < deadline {
            r.op = Op::Write;
            r.pos = next_pos(&mut rng, &mut issued);
            r.len = w.bs;
            fill(&mut r);
            cq.submit(out, r).expect("submit");
            inflight += 1;
        }
    }
    if durable {
        brick_core::run(out, Aio::new(Op::Flush, 0, 0)).expect("final flush");
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn sync_all() {
    let _ = Command::new("sync").status();
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn fmt3((a, b, c): (f64, f64, f64), unit: f64) -> String {
    format!("{:.0} / {:.0} / {:.0}", a / unit, b / unit, c / unit)
}

/// Writes per second through the logger (see [`drive`] for `durable`). Its `close` (final
/// writeback to the data device) is not timed.
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
    let r = drive(&*logger, w, secs, durable);
    if std::env::var_os("MARS_BENCH_VERBOSE").is_some() {
        let st = logger.status();
        let b = st.batches.max(1);
        eprintln!(
            "  logger: {} batches, {:.1} records/batch, {:.0} us log IO per batch, peak budget {} MiB, {} writeback rounds",
            st.batches,
            st.records_logged as f64 / b as f64,
            st.log_io_time.as_micros() as f64 / b as f64,
            st.mem_peak >> 20,
            st.writeback_rounds
        );
    }
    logger.close().expect("closing the logger");
    r
}

/// Write-through logging, the simplest design that keeps a log: each write goes to the data
/// file (aio, as the peer does), and its bytes are also appended to a log file by a thread of
/// its own (1 MiB writes through an inline `file` brick, which starts their writeback at once, and an
/// `fdatasync` every 16 MiB, as the logger's log thread does). No index, no checksum, no record
/// headers, no deferral and no ordering.
struct WriteThrough {
    data: Arc<FileBrick>,
    chunk: parking_lot::Mutex<Vec<u8>>,
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
}

const WT_CHUNK: usize = 1 << 20;

impl brick_core::Output for WriteThrough {
    fn info(&self) -> brick_core::Result<brick_core::Info> {
        self.data.info()
    }
    fn submit(&self, req: Box<Aio>) -> Result<(), brick_core::Rejected> {
        if req.op == Op::Write {
            let mut chunk = self.chunk.lock();
            chunk.extend_from_slice(&req.data);
            if chunk.len() >= WT_CHUNK {
                let full = std::mem::replace(&mut *chunk, Vec::with_capacity(2 * WT_CHUNK));
                self.tx.send(full).expect("the log thread stopped");
            }
        }
        self.data.submit(req)
    }
}

/// Writes per second through [`WriteThrough`] (its log file lives in `dir`).
fn write_through_run(data: &Arc<FileBrick>, dir: &Path, w: Workload, secs: u64) -> f64 {
    let path = dir.join("write-through.log");
    let opts = xio::file::FileOptions {
        name: Some("write-through-log".into()),
        create_size: Some(0),
        growable: true,
        threads: 0,
        start_writeback: true,
        ..xio::file::FileOptions::default()
    };
    let log = xio::file::open(&path, xio::file::Backend::Sync, &opts)
        .expect("creating the write-through log");
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    let appender = std::thread::spawn(move || {
        let (mut pos, mut unsynced) = (0u64, 0usize);
        for chunk in rx {
            let len = chunk.len();
            brick_core::run(&*log, Aio::write(pos, chunk)).expect("log append");
            pos += len as u64;
            unsynced += len;
            if unsynced >= 16 << 20 {
                brick_core::run(&*log, Aio::new(Op::Flush, 0, 0)).expect("log sync");
                unsynced = 0;
            }
        }
    });
    let wt = WriteThrough {
        data: data.clone(),
        chunk: parking_lot::Mutex::new(Vec::with_capacity(2 * WT_CHUNK)),
        tx,
    };
    let r = drive(&wt, w, secs, false);
    drop(wt);
    appender.join().expect("the log thread panicked");
    let _ = std::fs::remove_file(&path);
    r
}

/// Writes per second on aio directly (see [`drive`] for `durable`).
fn peer_run(data: &Arc<FileBrick>, w: Workload, secs: u64, durable: bool) -> f64 {
    drive(&**data, w, secs, durable)
}

/// Write a log file of `total` bytes of `bs`-sized records into a fresh `dir`; returns its length.
fn make_log(dir: &Path, bs: usize, total: u64, random: bool) -> u64 {
    let _ = std::fs::remove_dir_all(dir);
    let store = FsLogStore::new(dir, "n").unwrap();
    let out = store.create(1).unwrap();
    let header = FileHeader {
        seq: 1,
        nonce: 7,
        created: 1,
        resource: "bench".into(),
        node: "n".into(),
        align: 0,
        prev_end: 0,
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
                    data_crc: None,
                }
            })
            .collect();
        w.write_batch(&*out, &recs).unwrap();
        written += (per_batch * bs) as u64;
    }
    w.pos().offset
}

/// Drop the page-cache pages of the file at `path` after a `sync`, so that the next read comes
/// from the disk. Caches cannot be dropped globally here; `dd iflag=nocache count=0` is
/// `posix_fadvise(DONTNEED)` on the whole file (as in benches/xio.rs), which evicts its clean
/// pages.
fn evict(path: &Path) {
    sync_all();
    let status = Command::new("dd")
        .arg(format!("if={}", path.display()))
        .args(["iflag=nocache", "count=0", "status=none"])
        .status()
        .expect("running dd to evict the log file from the page cache");
    assert!(status.success(), "dd iflag=nocache failed");
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
    let store = FsLogStore::new(logs, "n").unwrap();
    let start = Instant::now();
    let mut opts = ReplayOptions {
        flush,
        ..ReplayOptions::default()
    };
    if let Some(mib) = knob("MARS_BENCH_FLUSH_BEHIND_MIB") {
        opts.flush_behind = (mib as usize) << 20;
    }
    if let Some(d) = knob("MARS_BENCH_REPLAY_DEPTH") {
        opts.depth = d as usize;
    }
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
    let data = data_file::open_data(&data_path, REGION, FILE_SIZE);
    let direct_data = file::open(
        &data_path,
        Backend::IoUring,
        &FileOptions {
            direct: true,
            ..FileOptions::default()
        },
    )
    .expect("opening the data file with O_DIRECT");
    println!(
        "trans_logger vs aio on {} ({runs} runs x {secs} s, min / median / max)\n",
        dir.path().display()
    );

    let mut rows = Vec::new();
    let random4k = Workload {
        random: true,
        bs: 4096,
        qd: 32,
        flush_each: false,
        total: None,
    };
    let random4k_flush = Workload {
        flush_each: true,
        ..random4k
    };
    // (c) writes the 1 GiB region once (16x the budget): wrapping around would let aio's page
    // cache absorb rewrites that the logger must log.
    let seq1m = Workload {
        random: false,
        bs: 1 << 20,
        qd: 8,
        flush_each: false,
        total: Some(REGION),
    };
    // The last field: the data file through O_DIRECT (aio) on both sides: the IO a production data device sees, with no page cache to absorb random
    // writes.
    let cases: [(&str, Workload, u64, &str, bool, bool); 6] = [
        (
            "(a) randwrite 4k QD32, no flush",
            random4k,
            256 << 20,
            "kIOPS",
            false,
            false,
        ),
        (
            "(b) randwrite 4k QD32, flush each",
            random4k_flush,
            256 << 20,
            "kIOPS",
            false,
            false,
        ),
        (
            "(c) write 1 GiB seq 1M QD8, budget 64 MiB, acknowledged",
            seq1m,
            64 << 20,
            "MiB/s",
            false,
            false,
        ),
        (
            "(c) write 1 GiB seq 1M QD8, budget 64 MiB, + final flush (durable)",
            seq1m,
            64 << 20,
            "MiB/s",
            true,
            false,
        ),
        (
            "(a) randwrite 4k QD32, no flush, data file O_DIRECT",
            random4k,
            256 << 20,
            "kIOPS",
            false,
            true,
        ),
        (
            "(b) randwrite 4k QD32, flush each, data file O_DIRECT",
            random4k_flush,
            256 << 20,
            "kIOPS",
            false,
            true,
        ),
    ];
    let only = std::env::var("MARS_BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| {
        only.is_empty() || only.split(',').any(|o| name.starts_with(&format!("({o})")))
    };
    for (name, w, budget, unit, durable, direct) in cases {
        // MARS_BENCH_ROW=O_DIRECT (any part of a row's name) runs only the rows naming it.
        if !wanted(name)
            || std::env::var("MARS_BENCH_ROW").is_ok_and(|f| !name.contains(f.as_str()))
        {
            continue;
        }
        let (mut peer, mut ours, mut through) = (Vec::new(), Vec::new(), Vec::new());
        // (a) also measures write-through logging (see `WriteThrough`), unless profiling.
        let with_through =
            name.starts_with("(a)") && std::env::var_os("MARS_BENCH_NO_PEER").is_none();
        let data = if direct {
            direct_data.clone()
        } else {
            data.clone()
        };
        for _ in 0..runs {
            sync_all();
            // MARS_BENCH_NO_PEER=1: profile the logger alone (no ratio is printed then).
            if std::env::var_os("MARS_BENCH_NO_PEER").is_none() {
                peer.push(peer_run(&data, w, secs, durable));
            } else {
                peer.push(f64::NAN);
            }
            sync_all();
            let cfg = logger_config(budget);
            ours.push(logger_run(&data, &logs, cfg, w, secs, durable));
            if with_through {
                sync_all();
                through.push(write_through_run(&data, dir.path(), w, secs));
            }
        }
        let m = if w.bs == 4096 {
            1e3
        } else {
            (1 << 20) as f64 / w.bs as f64
        };
        let (p, o) = (stats(peer), stats(ours));
        rows.push((name.to_string(), unit, fmt3(o, m), fmt3(p, m), o.1 / p.1));
        if with_through {
            let f = stats(through);
            rows.push((
                format!("{name}: write-through logging (aio + the same bytes appended to a log)"),
                unit,
                fmt3(f, m),
                fmt3(p, m),
                f.1 / p.1,
            ));
        }
    }

    // (d): each log is made once; warm rows read it from the page cache, cold rows evict it
    // before every peer read and every replay, so both read it from the disk.
    for (name, bs, total, random) in [
        (
            "(d) replay 4k random records",
            4096usize,
            512u64 << 20,
            true,
        ),
        ("(d) replay 1M records", 1 << 20, 1 << 30, false),
        // Adjacent small records: replay merges them into 1 MiB requests.
        (
            "(d) replay 4k sequential records",
            4096usize,
            512u64 << 20,
            false,
        ),
    ] {
        if !wanted(name) {
            continue;
        }
        let len = make_log(&logs, bs, total, random);
        let log_file = logs.join(xio::log::LogName::new(1, "n").to_string());
        for (flush, cold) in [(false, false), (true, false), (false, true), (true, true)] {
            let row = format!(
                "{name}, {}, {}",
                if flush {
                    "+ final flush"
                } else {
                    "no final flush"
                },
                if cold {
                    "cold (log read from disk)"
                } else {
                    "warm (log in page cache)"
                }
            );
            // MARS_BENCH_D=warm (or cold, flush, ...) runs only the (d) rows naming it.
            if std::env::var("MARS_BENCH_D").is_ok_and(|f| !row.contains(f.as_str())) {
                continue;
            }
            let (mut peer, mut ours) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                sync_all();
                if cold {
                    evict(&log_file);
                }
                peer.push(seq_read(&log_file, len));
                sync_all();
                if cold {
                    evict(&log_file);
                }
                ours.push(replay_run(&data, &logs, len, flush));
            }
            let mib = (1 << 20) as f64;
            let (p, o) = (stats(peer), stats(ours));
            rows.push((row, "MiB/s", fmt3(o, mib), fmt3(p, mib), o.1 / p.1));
        }
    }

    println!("| workload | unit | logger (ours) | peer | ratio (median) |");
    println!("|---|---|---|---|---|");
    for (name, unit, o, p, ratio) in rows {
        let peer = if name.starts_with("(d)") {
            "seq read of the log (aio)"
        } else if name.contains("O_DIRECT") {
            "aio O_DIRECT, no logger"
        } else {
            "aio, no logger"
        };
        println!("| {name} | {unit} | {o} | {peer}: {p} | {ratio:.2}x |");
    }
}
