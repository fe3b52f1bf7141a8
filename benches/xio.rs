//! Benchmark of the file backends against fio's io_uring engine on the same file, in the same
//! run (BENCHMARKING.md): 4 KiB random write at QD32 and 1 MiB sequential write at QD8, through
//! `aio` and `sio`, each as a ratio to fio; plus a 5-`Probe` pass-through chain over `aio`
//! against `aio` directly at 4 KiB QD32. Each pair runs `MARS_BENCH_RUNS` times (default 5),
//! alternating the order; the table shows min/median/max of the per-run ratios.
//!
//! Setup: a 2 GiB `fallocate`d file in a temporary directory under `MARS_BENCH_DIR` (default
//! `/work`, refused if it is a tmpfs); jobs address its first 1 GiB. IO is **buffered** in
//! fio (`--direct=0`) and in ours. Before every job `sync` and a cache drop of the file make each
//! one start without dirty or cached pages. Job length: `MARS_BENCH_SECS` (default 5).
//!
//! Our driver (`MARS_BENCH_DRIVER`): `hook` (default) resubmits each request from its completion
//! hook, re-armed in place (no copy), on the thread that completed it: for aio that is the
//! completion thread, whose resubmissions go to the kernel together with its next wait, like
//! fio's single reap-then-queue loop. `queue` uses a separate initiator thread with a
//! `CompletionQueue` that resubmits all ready completions inside one `FileBrick::batch` (one
//! extra thread hop per round).
//!
//! Besides throughput, every job's CPU time per operation is measured (`/proc/self/stat`: our
//! process including its io_uring workers; fio as a waited-for child): a figure that the shared
//! machine's load distorts much less than throughput.
//!
//! Run: `cargo bench -p mars-rs --bench xio`.
//!
//! # Where the time goes (perf, 2026-11-25, 2 shared vCPUs, ext4, kernel 6.18)
//! - (Before the single-issuer ring, aio reached only 0.53x of fio on a quiet machine: task-work
//!   IPIs to submitting threads, see `xio/src/aio/ring.rs`; now ~1.0x.)
//! - Buffered writes through io_uring (ours and fio alike) are punted to the kernel's io-wq
//!   worker, which serialises buffered writes to one inode: that worker's ext4 write path is
//!   ~55 % of the non-setup samples and bounds aio and fio equally (sio's 4 workers call
//!   `pwrite` in parallel and can exceed both). aio's own completion loop is ~0.2 %.
//! - Large folios left by sequential writes made each 4 KiB write walk a whole folio's buffer
//!   heads (`ext4_block_write_begin` at 38 %): hence the cache drop before every job.
//! - The 5-Probe chain: with the hook driver the completion thread does all chain work; of
//!   the run's non-setup samples ~11 % are brick-core code (`Input::submit` with its ArcSwap
//!   load and SeqCst in-flight count, `Probe` submit/complete, `Power` enter/leave, stats,
//!   hook `Arc` clones) and ~4 % `clock_gettime` (each Probe reads the clock twice per
//!   request: 10 reads per request for 5 probes). That is the measured +20-25 % CPU per
//!   request; the costs are in brick-core, not in aio.

// The binaries' allocator: see ARCHITECTURE.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use brick_core::bricks::Probe;
use brick_core::Completer;
use brick_core::{Aio, CompletionQueue, Output};
use parking_lot::{Condvar, Mutex};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xio::file::{self, Backend, FileBrick, FileOptions};

const REGION: u64 = 1 << 30;
const FILE_SIZE: u64 = 2 << 30;

#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    random: bool,
    bs: usize,
    qd: usize,
}

const RANDWRITE: Workload = Workload {
    name: "randwrite 4k QD32",
    random: true,
    bs: 4096,
    qd: 32,
};
const SEQWRITE: Workload = Workload {
    name: "write 1M QD8",
    random: false,
    bs: 1 << 20,
    qd: 8,
};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Operations per second of one fio job.
fn fio(path: &Path, w: Workload, secs: u64) -> f64 {
    let out = Command::new("fio")
        .args([
            "--name=peer",
            &format!("--filename={}", path.display()),
            "--ioengine=io_uring",
            &format!("--rw={}", if w.random { "randwrite" } else { "write" }),
            &format!("--bs={}", w.bs),
            &format!("--iodepth={}", w.qd),
            &format!("--size={REGION}"),
            "--time_based",
            &format!("--runtime={secs}"),
            "--direct=0",
            // We drop the file's cache before every job ourselves; fio's own invalidation
            // would also run again on every pass over the region (forcing writeback).
            "--invalidate=0",
            "--norandommap",
            "--randrepeat=0",
            "--output-format=json",
        ])
        .output()
        .expect("running fio (apt-get install fio)");
    assert!(
        out.status.success(),
        "fio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    fio_write_iops(&text).unwrap_or_else(|| panic!("cannot find write iops in fio output:\n{text}"))
}

/// `jobs[0].write.iops` from fio's JSON (parsed from the first `{`; no JSON crate needed for
/// one number).
fn fio_write_iops(text: &str) -> Option<f64> {
    let json = &text[text.find('{')?..];
    let jobs = &json[json.find("\"jobs\"")?..];
    // The `"write"` key whose value is an object (`"rw" : "write"` is not it).
    let mut at = 0;
    let write = loop {
        let i = at + jobs[at..].find("\"write\"")?;
        let rest = jobs[i + 7..].trim_start();
        if let Some(obj) = rest.strip_prefix(':') {
            if obj.trim_start().starts_with('{') {
                break &jobs[i..];
            }
        }
        at = i + 7;
    };
    let iops = &write[write.find("\"iops\"")?..];
    let num = iops[iops.find(':')? + 1..].trim_start();
    let end = num
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '+' || c == '-'))
        .unwrap_or(num.len());
    num[..end].parse().ok()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU seconds used so far by this process (all threads, io_uring workers included) and by
/// its waited-for children (fio), from `/proc/self/stat`.
fn cpu_times(tick: f64) -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // Fields 14..17 (utime, stime, cutime, cstime); `rest` starts at field 3.
    let get = |field: usize| f.get(field - 3).copied().unwrap_or(0.0) / tick;
    (get(14) + get(15), get(16) + get(17))
}

fn clock_tick() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// One job's result: operations per second and CPU microseconds per operation.
#[derive(Clone, Copy)]
struct Job {
    ops_per_s: f64,
    cpu_us_per_op: f64,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Which initiator drives our bricks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Driver {
    /// Completion hooks resubmit (on the completing thread): fio's single reap-and-queue loop.
    Hook,
    /// A separate thread collects completions through a `CompletionQueue` and resubmits.
    Queue,
}

/// Operations per second and operation count of `driver` through `top` (terminal: `file`).
fn ours(
    driver: Driver,
    file: &FileBrick,
    top: &Arc<dyn Output>,
    w: Workload,
    secs: u64,
) -> (f64, u64) {
    match driver {
        Driver::Hook => ours_hook(top, w, secs),
        Driver::Queue => ours_queue(file, &**top, w, secs),
    }
}

/// Position of the `i`-th request of `w` (random: a hash of `i`; sequential: `i`).
fn position(w: Workload, i: u64) -> u64 {
    let blocks = REGION / w.bs as u64;
    let b = if w.random {
        let mut r = Rng(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        r.next() % blocks
    } else {
        i % blocks
    };
    b * w.bs as u64
}

/// The hook driver: each completion resubmits its request until the deadline.
struct Resubmit {
    me: std::sync::Weak<Resubmit>,
    top: Arc<dyn Output>,
    w: Workload,
    deadline: Instant,
    next: AtomicU64,
    ops: AtomicU64,
    inflight: AtomicUsize,
    idle: (Mutex<()>, Condvar),
}

impl Completer for Resubmit {
    fn complete(&self, mut req: Box<Aio>) {
        assert!(req.error.is_none(), "{:?}", req.error);
        self.ops.fetch_add(1, Relaxed);
        if Instant::now() < self.deadline {
            req.pos = position(self.w, self.next.fetch_add(1, Relaxed));
            req.push_hook(self.me.upgrade().expect("alive while requests are"));
            if let Err(rej) = self.top.submit(req) {
                panic!("resubmit refused: {:?}", rej.error);
            }
        } else if self.inflight.fetch_sub(1, Relaxed) == 1 {
            let _g = self.idle.0.lock();
            self.idle.1.notify_all();
        }
    }
}

fn ours_hook(top: &Arc<dyn Output>, w: Workload, secs: u64) -> (f64, u64) {
    let start = Instant::now();
    let r = Arc::new_cyclic(|me| Resubmit {
        me: me.clone(),
        top: top.clone(),
        w,
        deadline: start + Duration::from_secs(secs),
        next: AtomicU64::new(w.qd as u64),
        ops: AtomicU64::new(0),
        inflight: AtomicUsize::new(w.qd),
        idle: (Mutex::new(()), Condvar::new()),
    });
    let payload = vec![0x5a; w.bs];
    for i in 0..w.qd {
        let mut req = Aio::write(position(w, i as u64), payload.clone());
        req.push_hook(r.clone());
        top.submit(req).expect("queue depth below the brick's");
    }
    let mut g = r.idle.0.lock();
    while r.inflight.load(Relaxed) > 0 {
        r.idle.1.wait_for(&mut g, Duration::from_millis(50));
    }
    drop(g);
    let ops = r.ops.load(Relaxed);
    (ops as f64 / start.elapsed().as_secs_f64(), ops)
}

/// The queue driver: one thread waits for completions, takes all that are ready and
/// resubmits them inside one `FileBrick::batch` (one `io_uring_enter` per round).
fn ours_queue(file: &FileBrick, top: &dyn Output, w: Workload, secs: u64) -> (f64, u64) {
    let cq = CompletionQueue::new();
    let mut i = 0u64;
    let mut next_pos = move || {
        i += 1;
        position(w, i)
    };
    let payload = vec![0x5a; w.bs];
    for _ in 0..w.qd {
        cq.submit(top, Aio::write(next_pos(), payload.clone()))
            .expect("queue depth below the brick's");
    }
    let mut ready: Vec<Box<Aio>> = Vec::with_capacity(w.qd);
    let mut inflight = w.qd;
    let mut ops = 0u64;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut stopping = false;
    while inflight > 0 {
        ready.push(cq.recv());
        while let Some(r) = cq.try_recv() {
            ready.push(r);
        }
        for r in &ready {
            assert!(r.error.is_none(), "{:?}", r.error);
        }
        ops += ready.len() as u64;
        inflight -= ready.len();
        if !stopping && Instant::now() >= deadline {
            stopping = true;
        }
        if stopping {
            ready.clear();
            continue;
        }
        inflight += ready.len();
        file.batch(|| {
            for mut r in ready.drain(..) {
                r.pos = next_pos();
                cq.submit(top, r).expect("resubmit below the queue depth");
            }
        });
    }
    (ops as f64 / start.elapsed().as_secs_f64(), ops)
}

/// Start a job from a clean state: no dirty pages (`sync`) and none of the file cached
/// (`dd iflag=nocache count=0` = `posix_fadvise(DONTNEED)` on the whole file, fio's
/// `invalidate=1`). Without it, the large folios left by earlier sequential writes make every
/// 4 KiB write walk a whole folio's buffer heads in `ext4_block_write_begin` (seen in `perf`).
fn reset_cache(path: &Path) {
    let _ = Command::new("sync").status();
    let _ = Command::new("dd")
        .arg(format!("if={}", path.display()))
        .args(["iflag=nocache", "count=0", "status=none"])
        .status();
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn fmt3((a, b, c): (f64, f64, f64)) -> String {
    format!("{a:.2} / {b:.2} / {c:.2}")
}

fn main() {
    let secs = env_u64("MARS_BENCH_SECS", 5);
    let runs = env_u64("MARS_BENCH_RUNS", 5) as usize;
    let base = std::env::var("MARS_BENCH_DIR").unwrap_or_else(|_| "/work".into());
    let fstype = Command::new("stat")
        .args(["-f", "-c", "%T", &base])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(
        fstype != "tmpfs",
        "{base} is a tmpfs: set MARS_BENCH_DIR to a directory on a disk"
    );
    let dir = tempfile::Builder::new()
        .prefix("xio-bench")
        .tempdir_in(&base)
        .expect("temp dir under MARS_BENCH_DIR");
    let path = dir.path().join("bench.img");
    let ok = Command::new("fallocate")
        .args(["-l", &FILE_SIZE.to_string()])
        .arg(&path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "fallocate -l {FILE_SIZE} {} failed", path.display());
    println!(
        "xio bench: {} ({fstype}), 2 GiB fallocated file, 1 GiB region, buffered IO, {secs} s per job, {runs} runs",
        path.display()
    );
    println!("Load average at the start: {}", loadavg());

    // Precondition: write the region once, so that no job pays for converting fallocated
    // (unwritten) extents and all of them overwrite allocated blocks.
    let ok = Command::new("dd")
        .args([
            "if=/dev/zero",
            "bs=1M",
            "count=1024",
            "conv=notrunc,fdatasync",
            "status=none",
        ])
        .arg(format!("of={}", path.display()))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "preconditioning {} with dd failed", path.display());

    let opts = FileOptions {
        queue_depth: 64,
        ..FileOptions::default()
    };
    let aio = file::open(&path, Backend::IoUring, &opts).expect("open aio");
    let sio = file::open(&path, Backend::Sync, &opts).expect("open sio");
    let (aio_out, sio_out): (Arc<dyn Output>, Arc<dyn Output>) = (aio.clone(), sio.clone());
    let driver = match std::env::var("MARS_BENCH_DRIVER").as_deref() {
        Ok("queue") => Driver::Queue,
        Ok("hook") | Err(_) => Driver::Hook,
        Ok(other) => panic!("MARS_BENCH_DRIVER={other}: use hook or queue"),
    };
    println!(
        "Driver: {}",
        if driver == Driver::Hook {
            "completion hooks resubmit (MARS_BENCH_DRIVER=hook)"
        } else {
            "a thread with a CompletionQueue resubmits in batches (MARS_BENCH_DRIVER=queue)"
        }
    );
    // The 5-Probe pass-through chain over aio.
    let mut chain: Arc<dyn Output> = aio.clone();
    for i in 0..5 {
        chain = Probe::new(format!("probe{i}"), chain);
    }

    // Profiling aid: `MARS_BENCH_ONLY=aio|sio|chain` runs just that randwrite job and exits.
    if let Ok(only) = std::env::var("MARS_BENCH_ONLY") {
        let (file, top): (&FileBrick, &Arc<dyn Output>) = match only.as_str() {
            "aio" => (&aio, &aio_out),
            "sio" => (&sio, &sio_out),
            "chain" => (&aio, &chain),
            other => panic!("MARS_BENCH_ONLY={other}: use aio, sio or chain"),
        };
        reset_cache(&path);
        let (ops, _) = ours(driver, file, top, RANDWRITE, secs);
        println!("{only} {}: {ops:.0} ops/s", RANDWRITE.name);
        return;
    }

    println!();
    println!(
        "| workload | fio io_uring (median) | aio / fio min/med/max | sio / fio min/med/max | CPU per op aio / fio, sio / fio (medians) |"
    );
    println!("|---|---|---|---|---|");
    let mut chain_ratio = Vec::new();
    let mut chain_direct = Vec::new();
    let mut chain_cpu = Vec::new();
    let tick = clock_tick();
    for w in [RANDWRITE, SEQWRITE] {
        let (mut fio_v, mut aio_r, mut sio_r) = (Vec::new(), Vec::new(), Vec::new());
        let (mut aio_cpu, mut sio_cpu) = (Vec::new(), Vec::new());
        for run in 0..runs {
            // Alternate the order so that drifting load does not favour one side.
            let measure = |who: &str| -> Job {
                reset_cache(&path);
                let (own0, kids0) = cpu_times(tick);
                let (ops_per_s, ops) = match who {
                    "fio" => {
                        let iops = fio(&path, w, secs);
                        (iops, (iops * secs as f64) as u64)
                    }
                    "aio" => ours(driver, &aio, &aio_out, w, secs),
                    "sio" => ours(driver, &sio, &sio_out, w, secs),
                    _ => ours(driver, &aio, &chain, w, secs),
                };
                let (own1, kids1) = cpu_times(tick);
                let cpu = if who == "fio" {
                    kids1 - kids0
                } else {
                    own1 - own0
                };
                Job {
                    ops_per_s,
                    cpu_us_per_op: cpu * 1e6 / ops.max(1) as f64,
                }
            };
            let order: &[&str] = if run % 2 == 0 {
                &["fio", "aio", "sio"]
            } else {
                &["sio", "aio", "fio"]
            };
            let mut got = std::collections::HashMap::new();
            for who in order {
                got.insert(*who, measure(who));
            }
            let (peer, a, s) = (got["fio"], got["aio"], got["sio"]);
            eprintln!(
                "  {}: fio {:.0} aio {:.0} sio {:.0} ops/s; CPU/op fio {:.1} aio {:.1} sio {:.1} us",
                w.name,
                peer.ops_per_s,
                a.ops_per_s,
                s.ops_per_s,
                peer.cpu_us_per_op,
                a.cpu_us_per_op,
                s.cpu_us_per_op
            );
            if w.random {
                // The chain against a direct run measured right next to it.
                let (d, c) = if run % 2 == 0 {
                    let d = measure("aio");
                    (d, measure("chain"))
                } else {
                    let c = measure("chain");
                    (measure("aio"), c)
                };
                eprintln!(
                    "  {}: 5-probe chain over aio {:.0} ops/s ({:.1} us CPU/op), direct {:.0} ({:.1} us)",
                    w.name, c.ops_per_s, c.cpu_us_per_op, d.ops_per_s, d.cpu_us_per_op
                );
                chain_ratio.push(c.ops_per_s / d.ops_per_s);
                chain_cpu.push(c.cpu_us_per_op / d.cpu_us_per_op);
                chain_direct.push(d.ops_per_s);
            }
            fio_v.push(peer.ops_per_s);
            aio_r.push(a.ops_per_s / peer.ops_per_s);
            sio_r.push(s.ops_per_s / peer.ops_per_s);
            aio_cpu.push(a.cpu_us_per_op / peer.cpu_us_per_op);
            sio_cpu.push(s.cpu_us_per_op / peer.cpu_us_per_op);
        }
        let unit = |ops: f64| {
            if w.bs >= 1 << 20 {
                format!("{:.2} GiB/s", ops * w.bs as f64 / (1u64 << 30) as f64)
            } else {
                format!("{:.0}k IOPS", ops / 1000.0)
            }
        };
        println!(
            "| {} | {} | {} | {} | {:.2}, {:.2} |",
            w.name,
            unit(stats(fio_v).1),
            fmt3(stats(aio_r)),
            fmt3(stats(sio_r)),
            stats(aio_cpu).1,
            stats(sio_cpu).1
        );
    }
    println!();
    println!("| 5-Probe chain over aio, randwrite 4k QD32 | aio direct (median) | chain / direct min/med/max | CPU per op chain / direct min/med/max |");
    println!("|---|---|---|---|");
    println!(
        "| overhead = 1 - ratio | {:.0}k IOPS | {} | {} |",
        stats(chain_direct).1 / 1000.0,
        fmt3(stats(chain_ratio)),
        fmt3(stats(chain_cpu))
    );
    println!();
    println!("Goals: aio >= 0.9x fio; chain >= 0.9x direct (<= 10% overhead).");
    println!("Load average at the end (2 CPUs are shared): {}", loadavg());
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_fio_json() {
        let text = "fio: connected\n{\"jobs\" : [ { \"job options\" : { \"rw\" : \"write\" }, \"read\" : { \"iops\" : 1.0 }, \"write\" : { \"io_bytes\" : 5, \"iops\" : 12345.678901 } } ] }";
        assert_eq!(super::fio_write_iops(text), Some(12345.678901));
    }
}
