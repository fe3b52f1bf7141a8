//! kill -9 test: a real child process writes through the logger (real files: io_uring data
//! file, log files) and is killed with SIGKILL at random moments, 10 times in each of three
//! modes (100 with `MARS_LONG_TESTS=1`): log format v1 buffered, v2 buffered, and v2 with
//! `O_DIRECT` on the log and on the data file. After each kill the parent recovers the log directory and
//! checks that the device equals the previous state plus a prefix of the child's writes that
//! includes every write acknowledged by a FUA write or a FLUSH (so nothing acknowledged is lost
//! and nothing is invented or torn).
//!
//! The child is this test binary itself, re-executed with `--exact child_writer` and
//! `MARS_LOGGER_CHILD=<dir>`; it appends the index of the newest write known durable to
//! `<dir>/acks` after each FUA write or flush completes.

use brick_core::{Aio, Flags, Op};
use rand::{Rng, SeedableRng};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xio::file::{Backend, FileOptions};
use xio::logger::{LoggerConfig, TransLogger};

const BLOCK: usize = 4096;
const BLOCKS: u64 = 256;

/// The modes: (name, log alignment (0: format v1), O_DIRECT on log and data).
const MODES: [(&str, u32, bool); 3] = [
    ("v1", 0, false),
    ("v2", 4096, false),
    ("v2-direct", 4096, true),
];

fn mode(name: &str) -> (u32, bool) {
    let (_, align, direct) = MODES.iter().find(|m| m.0 == name).expect("a known mode");
    (*align, *direct)
}

fn cfg(mode_name: &str) -> LoggerConfig {
    let (log_align, log_direct) = mode(mode_name);
    LoggerConfig {
        resource: "kill".into(),
        node: "n0".into(),
        mem_budget: 2 << 20,
        rotate_size: 256 << 10,
        writeback_delay: Duration::from_millis(20),
        log_align,
        log_direct,
        ..LoggerConfig::default()
    }
}

fn open(dir: &Path, mode_name: &str) -> Arc<TransLogger> {
    let opts = FileOptions {
        create_size: Some(BLOCKS * BLOCK as u64),
        direct: mode(mode_name).1,
        ..FileOptions::default()
    };
    let data = xio::file::open(dir.join("disk"), Backend::IoUring, &opts).unwrap();
    TransLogger::open(data, &dir.join("logs"), cfg(mode_name)).unwrap()
}

/// The child's write sequence in round `round`: (block, fua-or-flush-after) per index.
fn plan(round: u64, n: usize) -> Vec<(u64, u8)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(round);
    (0..n)
        .map(|_| (rng.gen_range(0..BLOCKS), rng.gen_range(0..16u8)))
        .collect()
}

fn content(round: u64, i: u64, block: u64) -> Vec<u8> {
    let mut d = vec![0u8; BLOCK];
    d[..8].copy_from_slice(&round.to_le_bytes());
    d[8..16].copy_from_slice(&i.to_le_bytes());
    d[16..24].copy_from_slice(&block.to_le_bytes());
    for (j, b) in d.iter_mut().enumerate().skip(24) {
        *b = (round.wrapping_mul(31) ^ i.wrapping_mul(7) ^ block ^ j as u64) as u8;
    }
    d
}

const PLAN_LEN: usize = 200_000;

#[test]
#[ignore = "child process of kill_9_never_loses_acknowledged_writes (MARS_LOGGER_CHILD set); nothing to check alone"]
fn child_writer() {
    let Ok(dir) = std::env::var("MARS_LOGGER_CHILD") else {
        return; // Only meaningful as the child of `kill_9_never_loses_acknowledged_writes`.
    };
    let dir = PathBuf::from(dir);
    let round: u64 = std::env::var("MARS_LOGGER_ROUND").unwrap().parse().unwrap();
    let logger = open(&dir, &std::env::var("MARS_LOGGER_MODE").unwrap());
    let mut acks = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("acks"))
        .unwrap();
    println!("READY");
    std::io::stdout().flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, (block, kind)) in plan(round, PLAN_LEN).into_iter().enumerate() {
        if Instant::now() > deadline {
            break;
        }
        let mut w = Aio::write(block * BLOCK as u64, content(round, i as u64, block));
        if kind == 0 {
            w.flags = Flags::FUA;
        }
        brick_core::run(&*logger, w).unwrap();
        if kind == 1 {
            brick_core::run(&*logger, Aio::new(Op::Flush, 0, 0)).unwrap();
        }
        if kind <= 1 {
            writeln!(acks, "{i}").unwrap();
        }
    }
    std::process::exit(0);
}

fn last_ack(dir: &Path) -> Option<usize> {
    let f = std::fs::File::open(dir.join("acks")).ok()?;
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.trim().parse::<usize>().ok())
        .last()
}

/// Find K >= durable + 1 such that the device equals `base` plus writes 0..K of the plan.
fn check_prefix(
    dev: &[u8],
    base: &[u8],
    round: u64,
    plan: &[(u64, u8)],
    durable: Option<usize>,
) -> Result<usize, String> {
    let mut lo = durable.map_or(0, |d| d + 1);
    let mut hi = plan.len();
    let mut writes: Vec<Vec<usize>> = vec![Vec::new(); BLOCKS as usize];
    for (i, (b, _)) in plan.iter().enumerate() {
        writes[*b as usize].push(i);
    }
    for b in 0..BLOCKS as usize {
        let got = &dev[b * BLOCK..(b + 1) * BLOCK];
        let ws = &writes[b];
        if got == &base[b * BLOCK..(b + 1) * BLOCK]
            && ws
                .first()
                .is_none_or(|&f| got != content(round, f as u64, b as u64).as_slice())
        {
            // Unchanged: K is at most the first write to this block.
            hi = hi.min(ws.first().copied().unwrap_or(usize::MAX));
            continue;
        }
        let i = u64::from_le_bytes(got[8..16].try_into().unwrap()) as usize;
        if got != content(round, i as u64, b as u64).as_slice() || !ws.contains(&i) {
            return Err(format!(
                "block {b} holds data that was never written there (torn or invented)"
            ));
        }
        lo = lo.max(i + 1);
        let next = ws.iter().copied().find(|&j| j > i).unwrap_or(usize::MAX);
        hi = hi.min(next);
    }
    if lo <= hi {
        Ok(lo)
    } else {
        Err(format!(
            "no prefix fits: needs at least {lo} writes (durable: {durable:?}) but at most {hi}"
        ))
    }
}

#[test]
fn kill_9_never_loses_acknowledged_writes() {
    for (name, _, _) in MODES {
        kill_9_rounds(name);
    }
}

fn kill_9_rounds(mode_name: &str) {
    let kills = if std::env::var("MARS_LONG_TESTS").is_ok_and(|v| v == "1") {
        100
    } else {
        10
    };
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x9);
    let mut base = vec![0u8; BLOCKS as usize * BLOCK];
    let mut applied_total = 0;
    for round in 1..=kills as u64 {
        let _ = std::fs::remove_file(dir.path().join("acks"));
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MARS_LOGGER_CHILD", dir.path())
            .env("MARS_LOGGER_ROUND", round.to_string())
            .env("MARS_LOGGER_MODE", mode_name)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        struct Reap(std::process::Child);
        impl Drop for Reap {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut child = Reap(child);
        let mut line = String::new();
        while out.read_line(&mut line).unwrap() > 0 && !line.contains("READY") {
            line.clear();
        }
        assert!(
            line.contains("READY"),
            "round {round}: the child did not start"
        );
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..300)));
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        let durable = last_ack(dir.path());
        let logger = open(dir.path(), mode_name);
        let dev = brick_core::read_all(&*logger, 0, base.len()).unwrap();
        let plan = plan(round, PLAN_LEN);
        let k = check_prefix(&dev, &base, round, &plan, durable)
            .unwrap_or_else(|e| panic!("{mode_name}, round {round}: {e}"));
        applied_total += k;
        logger.close().unwrap();
        drop(logger);
        base = dev;
    }
    eprintln!("{mode_name}: {kills} kills, {applied_total} writes recovered");
    assert!(
        applied_total > kills * 10,
        "the child wrote too little to test anything"
    );
}
