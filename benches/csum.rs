//! Cost of block checksums (`xio::csum`), as ratios with checksums on vs off measured in the
//! same run (BENCHMARKING.md), each pair interleaved `MARS_BENCH_RUNS` times (default 3,
//! alternating which side goes first), reported as min/median/max of the per-run ratios:
//!
//! - **logger randwrite 4k QD32**: the primary's write path, aio → [CsumDisk] → trans_logger,
//!   for `MARS_BENCH_SECS` (default 5) with the default 256 MiB budget, plus the final
//!   writeback of everything (close) in the time: checksums are computed and persisted on
//!   writeback, so the whole cost is in the figure;
//! - **logger randwrite 4k QD32 fsync=1**: each write followed by a FLUSH;
//! - **brick randwrite 4k QD32 + flush/256**: CsumDisk over aio vs aio alone (the brick's own
//!   cost: a hash per block, the intent bitmap, persisting the table at each flush);
//! - **brick randread 4k QD32 (verified)**: verified reads vs plain reads of a region whose
//!   checksums are all known (page cache warm on both sides).
//!
//! A first, discarded logger job warms the machine up (the first job after provisioning the
//! file measured up to 2x slower, whichever side it was). Files: a 2 GiB data file (its first 256 MiB provisioned with `O_DIRECT`) in a temporary
//! directory under `MARS_BENCH_DIR` (default `/work`, not tmpfs). IO is buffered.
//! Run: `cargo bench -p mars-rs --bench csum` (`MARS_BENCH_ROW=logger`: the rows whose name
//! contains it).

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
use xio::csum::CsumDisk;
use xio::file::FileBrick;
use xio::logger::{LoggerConfig, TransLogger};

const REGION: u64 = 256 << 20;
const FILE_SIZE: u64 = 2 << 30;
const BS: usize = 4096;
const QD: usize = 32;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `op` at QD32 on random 4 KiB blocks of the region for `secs`; a FLUSH after every write
/// (`flush_each`) or after every `flush_every` writes; returns operations per second.
fn drive(out: &dyn Output, op: Op, secs: u64, flush_each: bool, flush_every: u64) -> f64 {
    let cq = CompletionQueue::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % (REGION / BS as u64)) * BS as u64
    };
    let arm = |r: &mut Aio, pos: u64| {
        r.op = op;
        r.pos = pos;
        r.len = BS;
        r.data.clear();
        if op == Op::Write {
            r.data.resize(BS, (pos >> 12) as u8);
        }
    };
    for _ in 0..QD {
        let mut r = Aio::new(op, 0, BS);
        arm(&mut r, next());
        cq.submit(out, r).expect("submit");
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let (mut done, mut inflight) = (0u64, QD);
    while inflight > 0 {
        let mut r = cq.recv();
        inflight -= 1;
        if let Some(e) = &r.error {
            panic!("benchmark IO failed: {e}");
        }
        let was = r.op;
        if was == Op::Write {
            done += 1;
            if flush_each || (flush_every > 0 && done.is_multiple_of(flush_every)) {
                r.op = Op::Flush;
                r.len = 0;
                r.data.clear();
                cq.submit(out, r).expect("submit");
                inflight += 1;
                continue;
            }
        } else if was == Op::Read {
            done += 1;
        }
        if Instant::now() < deadline {
            arm(&mut r, next());
            cq.submit(out, r).expect("submit");
            inflight += 1;
        }
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// The data device with checksums (a fresh checksum file) or without.
fn device(data: &Arc<FileBrick>, csum: &Path, on: bool) -> Arc<dyn Output> {
    if !on {
        return data.clone();
    }
    let _ = std::fs::remove_file(csum);
    CsumDisk::open(data.clone(), "bench", csum, true).expect("opening checksums")
}

/// Writes per second through a logger over `dev`, its final writeback included.
fn logger_run(dev: Arc<dyn Output>, logs: &Path, secs: u64, flush_each: bool) -> f64 {
    let _ = std::fs::remove_dir_all(logs);
    let cfg = LoggerConfig {
        resource: "bench".into(),
        node: "n0".into(),
        ..LoggerConfig::default()
    };
    let logger = TransLogger::open(dev, logs, cfg).expect("opening the logger");
    let t = Instant::now();
    let rate = drive(&*logger, Op::Write, secs, flush_each, 0);
    let ops = rate * secs as f64;
    logger.close().expect("closing the logger");
    ops / t.elapsed().as_secs_f64()
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn main() {
    let base = std::env::var("MARS_BENCH_DIR").unwrap_or_else(|_| "/work".into());
    let dir = tempfile::tempdir_in(&base).expect("a temporary directory for the bench");
    let secs = env_u64("MARS_BENCH_SECS", 5);
    let runs = env_u64("MARS_BENCH_RUNS", 3).max(1);
    let data = data_file::open_data(&dir.path().join("data.img"), REGION, FILE_SIZE);
    let csum = dir.path().join("data.csum");
    let logs = dir.path().join("logs");
    type Job<'a> = Box<dyn Fn(bool) -> f64 + 'a>;
    let rows: Vec<(&str, &str, Job)> = vec![
        (
            "logger randwrite 4k QD32 (incl. writeback)",
            "writes/s",
            Box::new(|on| logger_run(device(&data, &csum, on), &logs, secs, false)),
        ),
        (
            "logger randwrite 4k QD32 fsync=1",
            "writes/s",
            Box::new(|on| logger_run(device(&data, &csum, on), &logs, secs, true)),
        ),
        (
            "brick randwrite 4k QD32 + flush/256",
            "writes/s",
            Box::new(|on| drive(&*device(&data, &csum, on), Op::Write, secs, false, 256)),
        ),
        (
            "brick randread 4k QD32 (verified)",
            "reads/s",
            Box::new(|on| {
                let dev = device(&data, &csum, on);
                // Every block written once through the device: all checksums known, and the
                // region in the page cache for both sides.
                let mut pos = 0;
                while pos < REGION {
                    brick_core::write_all(&*dev, pos, &vec![(pos >> 20) as u8; 1 << 20])
                        .expect("filling the region");
                    pos += 1 << 20;
                }
                brick_core::run(&*dev, Aio::new(Op::Flush, 0, 0)).expect("flush");
                drive(&*dev, Op::Read, secs, false, 0)
            }),
        ),
    ];
    println!(
        "checksums on vs off, {runs} runs of {secs} s each, ratio = on / off (min / median / max)"
    );
    println!(
        "{:<44} {:>28} {:>28} {:>22}",
        "workload", "on", "off", "ratio"
    );
    // The first job after provisioning measured up to 2x slower whichever side it was
    // (page cache and ext4 state): one discarded warm-up job.
    let warm = logger_run(device(&data, &csum, false), &logs, secs, false);
    println!("(warm-up job: {warm:.0} writes/s, not counted)");
    let only = std::env::var("MARS_BENCH_ROW").unwrap_or_default();
    for (name, unit, job) in rows.iter().filter(|(n, _, _)| n.contains(only.as_str())) {
        let (mut on, mut off, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            let _ = Command::new("sync").status();
            let (a, b) = if run % 2 == 0 {
                let a = job(true);
                (a, job(false))
            } else {
                let b = job(false);
                (job(true), b)
            };
            on.push(a);
            off.push(b);
            ratio.push(a / b);
        }
        let f = |(a, b, c): (f64, f64, f64)| format!("{a:.0} / {b:.0} / {c:.0} {unit}");
        let (r0, r1, r2) = stats(ratio);
        println!(
            "{name:<44} {:>28} {:>28} {:>22}",
            f(stats(on)),
            f(stats(off)),
            format!("{r0:.2} / {r1:.2} / {r2:.2}x")
        );
    }
}
