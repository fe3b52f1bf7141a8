//! `marsd` primary benchmark: does the primary wait for replication?
//!
//! Real `marsd` processes on loopback (temp mars dirs, fixed free ports), driven by `marsadm`,
//! measured through the primary's NBD export with fio's nbd engine:
//! - **alone**: a one-node cluster, the primary of a 1 GiB resource;
//! - **with secondary**: a two-node cluster, the primary of a 1 GiB resource and a secondary
//!   that joined, was UpToDate before each run, and fetches and replays during it;
//! - **nbdkit**: `nbdkit file` on a fallocated file of the same size (the buffered peer of
//!   BENCHMARKING.md), for context.
//!
//! The three are measured `MARS_BENCH_RUNS` times per row with the order of alone / with
//! secondary alternating between runs. Rows: 1 randwrite 4k QD32, 2 the same with fsync=1,
//! 3 write 1M sequential QD8 over the whole 1 GiB, 4 randread 4k QD32. Rates are min / median /
//! max of IOPS (MiB/s for row 3), latencies the medians of fio's clat p50 / p99 / p99.9; the
//! ratio is with / alone of the medians (goal ≥ 0.9×). The CPU time of each marsd and the
//! machine's idle share during the jobs tell waiting apart from sharing the 2 cores. For the write rows the secondary's lag when
//! fio ends (log bytes behind, in the primary's view and in its own) and the time from fio's
//! end until `marsadm wait-resource r0 is-uptodate` returns on the secondary are printed too.
//!
//! `cargo bench -p mars-rs --bench marsd` (needs fio and nbdkit; `fallocate`). The bench first
//! runs `$CARGO build --release -p mars-cli --bins` (the root package depends on mars-cli's
//! library only, so `cargo bench` does not build marsd/marsadm by itself; the nested build does
//! not block on cargo's lock, because cargo releases it before it runs the bench) and uses the
//! binaries next to the bench's own profile directory. `MARS_BENCH_BIN_DIR` skips the build and
//! takes the binaries from there.
//!
//! Knobs: `MARS_BENCH_SECS` (seconds per fio job, default 5, plus 1 s ramp),
//! `MARS_BENCH_RUNS` (default 3), `MARS_BENCH_ROW` (e.g. `1,3`; default all),
//! `MARS_BENCH_DIR` (where the temp dir goes; default the system temp dir),
//! `MARS_BENCH_DIRECT_IO` (`marsd --direct-io`: `on` puts the primaries' data devices and
//! logs behind `O_DIRECT`; default `auto`, i.e. buffered on these files),
//! `MARS_BENCH_LOG_DIRECT_IO` (`marsd --log-direct-io`: `on` puts only the logs behind
//! `O_DIRECT`; default `auto`: as the data devices),
//! `MARS_BENCH_NBDKIT` (runs of the nbdkit peer per row, default 1: context only, and it keeps
//! the default run under 4 minutes; 0 skips it), `MARS_BENCH_PAUSED=1` (one more side: the
//! two-node primary with the secondary's fetch paused, to tell waiting from sharing the CPUs),
//! `MARS_BENCH_SECONDARY=idle` (the secondary's marsd at idle CPU and IO priority: the nearest
//! this one machine comes to a secondary on a machine of its own), `MARS_BENCH_PERF` (a
//! directory: the primary's marsd is recorded with `perf record -g` during the first run with
//! the secondary of each row, and the top of the profile is printed).
#[path = "support/env.rs"]
mod env;
#[path = "support/fio.rs"]
#[allow(dead_code)]
mod fio;
#[path = "support/marsd_node.rs"]
mod marsd_node;
#[path = "support/profile.rs"]
mod profile;

use env::{env_or, have, load};
use fio::{fmt3, lat_medians, med, mmm, FioResult, Length, Peer, Target};
use marsd_node::{binaries, fallocate, Node, Priority};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SECRET: &str = "marsd bench cluster secret, long enough";
const SIZE: u64 = 1 << 30;
const RES: &str = "r0";

struct Row {
    id: usize,
    name: &'static str,
    args: &'static [&'static str],
    read: bool,
    mibs: bool,
}

const ROWS: &[Row] = &[
    Row {
        id: 1,
        name: "randwrite 4k QD32",
        args: &["--rw=randwrite", "--bs=4k", "--iodepth=32"],
        read: false,
        mibs: false,
    },
    Row {
        id: 2,
        name: "randwrite 4k QD32 fsync=1",
        args: &["--rw=randwrite", "--bs=4k", "--iodepth=32", "--fsync=1"],
        read: false,
        mibs: false,
    },
    Row {
        id: 3,
        name: "write 1M seq QD8",
        args: &["--rw=write", "--bs=1M", "--iodepth=8"],
        read: false,
        mibs: true,
    },
    Row {
        id: 4,
        name: "randread 4k QD32",
        args: &["--rw=randread", "--bs=4k", "--iodepth=32"],
        read: true,
        mibs: false,
    },
];

/// `MARS_BENCH_SECONDARY=idle`: the secondary's marsd runs under `SCHED_IDLE` and the idle IO
/// class. Here both nodes share 2 cores and one disk; a real secondary is on a machine of its
/// own and takes no CPU or disk time from the primary. At idle priority it gets only what the
/// primary and fio leave, which is the closest this machine comes to that: what remains is the
/// primary's own cost of serving the fetch.
fn secondary_priority() -> Priority {
    match std::env::var("MARS_BENCH_SECONDARY").as_deref() {
        Ok("idle") => Priority::Idle,
        _ => Priority::Normal,
    }
}

/// Everything the bench started. Fields drop in order: processes first, the temp dir last.
struct Setup {
    solo: Node,
    prim: Node,
    sec: Node,
    nbdkit: Option<Peer>,
    _root: tempfile::TempDir,
}

impl Setup {
    fn new(bin: &Path, with_nbdkit: bool) -> Setup {
        let base = std::env::var("MARS_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir());
        let root = tempfile::tempdir_in(base).expect("creating the bench directory");
        let r = root.path();
        let secret = r.join("secret");
        std::fs::write(&secret, SECRET).unwrap();
        let dev = |name: &str| {
            let p = r.join(name);
            fallocate(&p, SIZE);
            p.display().to_string()
        };
        let t = Instant::now();
        // Primary alone: a one-node cluster.
        let solo = Node::start(r, bin, "solo", &secret);
        solo.ok(&["create-cluster"]);
        solo.ok(&["create-resource", RES, &dev("solo.img")]);
        // Primary with a secondary: a two-node cluster of its own.
        let prim = Node::start(r, bin, "alice", &secret);
        let sec = Node::start_with_priority(r, bin, "bob", &secret, secondary_priority());
        prim.ok(&["create-cluster"]);
        sec.ok(&["join-cluster", &prim.addr()]);
        prim.ok(&["create-resource", RES, &dev("alice.img")]);
        for n in [&solo, &prim] {
            n.wait_state(RES, "Primary", Duration::from_secs(60), |m| {
                m.role == "Primary"
            });
        }
        sec.ok(&["join-resource", RES, &dev("bob.img")]);
        sec.ok(&["wait-resource", RES, "is-uptodate"]);
        eprintln!(
            "marsd bench: clusters up, bob joined and UpToDate in {:?}",
            t.elapsed()
        );
        let nbdkit = with_nbdkit.then(|| {
            let img = dev("nbdkit.img");
            Peer::nbdkit(Path::new(&img), &r.join("nbdkit.sock"), RES)
        });
        Setup {
            solo,
            prim,
            sec,
            nbdkit,
            _root: root,
        }
    }

    /// Rotate and delete the logs nobody needs any more (the runs write GiBs of log).
    fn trim_logs(&self) {
        for n in [&self.solo, &self.prim, &self.sec] {
            let _ = n.adm(&["cron"]);
        }
    }
}

/// One fio result (rate, clat p50 / p99 / p99.9 in µs), the cores the primary's and the
/// secondary's marsd used during the job, and the machine's idle share.
#[derive(Clone, Copy, Default)]
struct Sample {
    fio: FioResult,
    cpu: [f64; 2],
    idle: f64,
}

/// utime + stime of a process in seconds (`/proc` counts in USER_HZ = 100).
fn proc_cpu(pid: u32) -> f64 {
    let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = st.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    (f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)) as f64 / 100.0
}

/// (idle + iowait, total) jiffies of all CPUs.
fn machine_cpu() -> (u64, u64) {
    let st = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = st
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (idle, v.iter().take(8).sum())
}

/// Run fio against `uri` while watching the CPU time of the marsd processes `pids`.
fn fio(uri: &str, row: &Row, secs: u64, pids: [u32; 2]) -> Sample {
    let cpu0 = pids.map(proc_cpu);
    let m0 = machine_cpu();
    let t = Instant::now();
    let fio = fio::run(
        &Target::Nbd(uri),
        SIZE,
        Length::Secs(secs),
        row.args,
        row.read,
        row.mibs,
    );
    let wall = t.elapsed().as_secs_f64();
    let m1 = machine_cpu();
    let cpu1 = pids.map(proc_cpu);
    let cores = |i: usize| {
        if pids[i] == 0 {
            0.0
        } else {
            (cpu1[i] - cpu0[i]) / wall
        }
    };
    Sample {
        fio,
        cpu: [cores(0), cores(1)],
        idle: (m1.0 - m0.0) as f64 / (m1.1 - m0.1).max(1) as f64,
    }
}

fn parse_link(l: &str) -> Option<(u64, String, u64)> {
    let mut parts = l.split(',');
    let log = parts.next()?.to_string();
    let pos = parts.next()?.parse().ok()?;
    let seq = log.strip_prefix("log-")?.split('-').next()?.parse().ok()?;
    Some((seq, log, pos))
}

/// Log bytes between the secondary's replay link and the primary's, both as `view` (on the
/// node `on`) sees them; across log files, the sizes of the primary's log files in between.
fn lag_bytes(on: &Node, prim: &Node) -> Option<u64> {
    let (p, s) = (on.replica_of(RES, &prim.name)?, on.replica_of(RES, "bob")?);
    let (ps, pl, pp) = parse_link(p.replay.as_deref()?)?;
    let (ss, sl, sp) = parse_link(s.replay.as_deref()?)?;
    if pl == sl {
        return Some(pp.saturating_sub(sp));
    }
    let dir = prim.dir.join(format!("resource-{RES}"));
    let mut between = 0;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((seq, _, _)) = parse_link(&format!("{name},0,0")) {
            if (ss..ps).contains(&seq) {
                between += e.metadata().map_or(0, |m| m.len());
            }
        }
    }
    Some((between + pp).saturating_sub(sp))
}

/// What the secondary did after a run with it: lag (MiB) when fio ended, in the primary's view
/// and in its own, and the seconds from fio's end until it was UpToDate.
#[derive(Clone, Copy, Default)]
struct Catchup {
    lag_prim: f64,
    lag_sec: f64,
    secs: f64,
}

fn catch_up(s: &Setup, fio_end: Instant) -> Catchup {
    let mib = |l: Option<u64>| l.map_or(f64::NAN, |l| l as f64 / (1 << 20) as f64);
    let lag_prim = mib(lag_bytes(&s.prim, &s.prim));
    let lag_sec = mib(lag_bytes(&s.sec, &s.prim));
    s.sec.ok(&["wait-resource", RES, "is-uptodate"]);
    Catchup {
        lag_prim,
        lag_sec,
        secs: fio_end.elapsed().as_secs_f64(),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Alone,
    With,
    Paused,
    Nbdkit,
}

struct RowResult {
    row: &'static Row,
    alone: Vec<Sample>,
    with: Vec<Sample>,
    paused: Vec<Sample>,
    peer: Vec<Sample>,
    catchup: Vec<Catchup>,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches` probes
    }
    for tool in ["fio", "fallocate"] {
        if !have(tool) {
            eprintln!("marsd bench: `{tool}` is not installed; skipping");
            return;
        }
    }
    let mut nbdkit_runs = env_or("MARS_BENCH_NBDKIT", 1) as usize;
    if nbdkit_runs > 0 && !have("nbdkit") {
        eprintln!("marsd bench: `nbdkit` is not installed; no peer column");
        nbdkit_runs = 0;
    }
    let paused = env_or("MARS_BENCH_PAUSED", 0) != 0;
    let secs = env_or("MARS_BENCH_SECS", 5);
    let runs = (env_or("MARS_BENCH_RUNS", 3) as usize).max(1);
    let pick: Vec<usize> = std::env::var("MARS_BENCH_ROW")
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_default();
    let rows: Vec<&'static Row> = ROWS
        .iter()
        .filter(|r| pick.is_empty() || pick.contains(&r.id))
        .collect();

    let t0 = Instant::now();
    let bin = binaries();
    let s = Setup::new(&bin, nbdkit_runs > 0);
    println!(
        "marsd bench: 1 GiB resource, {secs} s per job (+1 s ramp), {runs} runs ({nbdkit_runs} of nbdkit), marsd pids solo {} alice {} bob {} (priority {:?}), load {}",
        s.solo.pid(),
        s.prim.pid(),
        s.sec.pid(),
        secondary_priority(),
        load()
    );
    let (solo_uri, prim_uri) = (s.solo.nbd_uri(RES), s.prim.nbd_uri(RES));
    let mut results = Vec::new();
    for row in rows {
        let mut r = RowResult {
            row,
            alone: Vec::new(),
            with: Vec::new(),
            paused: Vec::new(),
            peer: Vec::new(),
            catchup: Vec::new(),
        };
        for run in 0..runs {
            let mut sides = vec![Side::Alone, Side::With];
            if paused {
                sides.push(Side::Paused);
            }
            if run < nbdkit_runs {
                sides.push(Side::Nbdkit);
            }
            // Alternate the order so that neither side always runs first (on a quieter disk).
            if run % 2 == 1 {
                sides.reverse();
            }
            let mut last = None;
            for side in sides {
                match side {
                    Side::Alone => r.alone.push(fio(&solo_uri, row, secs, [s.solo.pid(), 0])),
                    Side::With => {
                        let pids = [s.prim.pid(), s.sec.pid()];
                        let perf = (run == 0)
                            .then(|| std::env::var("MARS_BENCH_PERF").ok())
                            .flatten()
                            .and_then(|d| {
                                let data = Path::new(&d).join(format!("primary-{}.data", row.id));
                                profile::Recording::start(s.prim.pid(), &data)
                            });
                        r.with.push(fio(&prim_uri, row, secs, pids));
                        if let Some(p) = perf {
                            eprintln!(
                                "  perf, primary with secondary, {}:\n{}",
                                row.name,
                                p.finish()
                            );
                        }
                        if !row.read {
                            let c = catch_up(&s, Instant::now());
                            r.catchup.push(c);
                            last = Some(c);
                        }
                    }
                    Side::Paused => {
                        s.sec.ok(&["pause-fetch", RES]);
                        let pids = [s.prim.pid(), s.sec.pid()];
                        r.paused.push(fio(&prim_uri, row, secs, pids));
                        s.sec.ok(&["resume-fetch", RES]);
                        s.sec.ok(&["wait-resource", RES, "is-uptodate"]);
                    }
                    Side::Nbdkit => {
                        let uri = &s.nbdkit.as_ref().expect("nbdkit runs").uri;
                        r.peer.push(fio(uri, row, secs, [0, 0]))
                    }
                }
            }
            let c = last.unwrap_or_default();
            eprintln!(
                "  {} run {run}: alone {:.0} with secondary {:.0}{}{}; lag {:.1} MiB, UpToDate {:.2} s after fio (load {})",
                row.name,
                r.alone[run].fio.rate,
                r.with[run].fio.rate,
                r.paused
                    .get(run)
                    .map_or(String::new(), |p| format!(" fetch paused {:.0}", p.fio.rate)),
                r.peer
                    .get(run)
                    .map_or(String::new(), |p| format!(" nbdkit {:.0}", p.fio.rate)),
                c.lag_prim,
                c.secs,
                load()
            );
            s.trim_logs();
        }
        results.push(r);
    }

    let rate = |v: &[Sample]| mmm(v.iter().map(|s| s.fio.rate).collect());
    println!();
    println!(
        "| # | workload | unit | alone min / med / max | with secondary min / med / max | ratio with/alone (med) | ≥ 0.9× |{} nbdkit file ({nbdkit_runs} run) |",
        if paused { " fetch paused min / med / max | ratio paused/alone |" } else { "" }
    );
    println!(
        "|---|---|---|---|---|---|---|{}---|",
        if paused { "---|---|" } else { "" }
    );
    for r in &results {
        let (a, w) = (rate(&r.alone), rate(&r.with));
        let ratio = w[1] / a[1];
        let p = rate(&r.paused);
        println!(
            "| {} | {} | {} | {} | {} | {:.2}× | {} |{} {} |",
            r.row.id,
            r.row.name,
            if r.row.mibs { "MiB/s" } else { "IOPS" },
            fmt3(a, 0),
            fmt3(w, 0),
            ratio,
            if ratio >= 0.9 { "yes" } else { "no" },
            if paused {
                format!(" {} | {:.2}× |", fmt3(p, 0), p[1] / a[1])
            } else {
                String::new()
            },
            if r.peer.is_empty() {
                "-".to_string()
            } else {
                format!("{:.0}", med(r.peer.iter().map(|s| s.fio.rate)))
            }
        );
    }
    println!();
    println!("clat p50 / p99 / p99.9 in µs (medians of the runs):");
    println!();
    println!(
        "| # | workload | alone | with secondary |{} nbdkit file |",
        if paused { " fetch paused |" } else { "" }
    );
    println!("|---|---|---|---|{}---|", if paused { "---|" } else { "" });
    for r in &results {
        println!(
            "| {} | {} | {} | {} |{} {} |",
            r.row.id,
            r.row.name,
            lat_medians(r.alone.iter().map(|s| &s.fio)),
            lat_medians(r.with.iter().map(|s| &s.fio)),
            if paused {
                format!(" {} |", lat_medians(r.paused.iter().map(|s| &s.fio)))
            } else {
                String::new()
            },
            lat_medians(r.peer.iter().map(|s| &s.fio))
        );
    }
    println!();
    println!(
        "CPU during the jobs (cores used, medians; 2 = the whole machine here) and machine idle:"
    );
    println!();
    println!(
        "| # | workload | alone: marsd | idle | with: primary marsd | secondary marsd | idle |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &results {
        let c = |v: &[Sample], i: usize| med(v.iter().map(|s| s.cpu[i]));
        let idle = |v: &[Sample]| med(v.iter().map(|s| s.idle)) * 100.0;
        println!(
            "| {} | {} | {:.2} | {:.0}% | {:.2} | {:.2} | {:.0}% |",
            r.row.id,
            r.row.name,
            c(&r.alone, 0),
            idle(&r.alone),
            c(&r.with, 0),
            c(&r.with, 1),
            idle(&r.with)
        );
    }
    if results.iter().any(|r| !r.catchup.is_empty()) {
        println!();
        println!("secondary after the runs with it, min / med / max:");
        println!();
        println!("| # | workload | lag at fio's end, primary's view (MiB) | lag, secondary's view (MiB) | fio end → UpToDate (s) |");
        println!("|---|---|---|---|---|");
        for r in results.iter().filter(|r| !r.catchup.is_empty()) {
            let c = |f: fn(&Catchup) -> f64| mmm(r.catchup.iter().map(f).collect());
            println!(
                "| {} | {} | {} | {} | {} |",
                r.row.id,
                r.row.name,
                fmt3(c(|c| c.lag_prim), 1),
                fmt3(c(|c| c.lag_sec), 1),
                fmt3(c(|c| c.secs), 2)
            );
        }
    }
    println!();
    println!("marsd bench: took {:?}, load {}", t0.elapsed(), load());
    drop(s);
}
