//! Commits into a new log file vs a recycled one (issue 13; `xio/src/log/FORMAT.md`,
//! "Recycled log files"): the logger's log writer on `FsLogStore` files, every commit one
//! 4 KiB write record (one write + one `fdatasync`), buffered and `O_DIRECT` (format v2).
//! A new file grows with every commit, so each `fdatasync` also journals the size and extent
//! change; a recycled file is written over blocks it already had.
//!
//! Each run commits `RECYCLE_BENCH_COMMITS` (default 2000) records into a new file (a store
//! without spares: the file is deleted afterwards) and as many into a recycled one (a store
//! with one spare, warmed by one file of the same length), in alternating order,
//! `RECYCLE_BENCH_RUNS` times (default 5). Printed: min / median / max commits per second and
//! the load. Files go under `MARS_BENCH_DIR` (default `/work`, not tmpfs).
//!
//! `cargo bench -p mars-rs --bench recycle`.

#[path = "support/env.rs"]
mod env;
#[path = "support/fio.rs"]
#[allow(dead_code)]
mod fio;

use env::{env_or, load};
use fio::{fmt3, med, mmm};
use std::path::Path;
use std::time::Instant;
use xio::log::{FileHeader, LogWriter, RecordIn, RecordOp};
use xio::logger::{FsLogStore, LogStore};

/// Create log `seq` in `store`, commit `n` records of 4 KiB, one each; commits per second.
fn commits(store: &FsLogStore, seq: u64, direct: bool, n: u64) -> f64 {
    let out = store.create(seq).expect("creating a log file");
    let header = FileHeader::new(seq, "bench", "bench", if direct { 4096 } else { 0 });
    let mut w = LogWriter::create(&*out, store.describe(seq), header, false).expect("header");
    let data = vec![0x5au8; 4096];
    let t = Instant::now();
    for i in 0..n {
        let rec = RecordIn {
            op: RecordOp::Write,
            pos: i * 4096,
            len: 4096,
            data: &data,
            stamp: i,
            flags: 0,
            data_crc: None,
        };
        w.commit(&*out, &[rec]).expect("commit");
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let base = std::env::var("MARS_BENCH_DIR").unwrap_or_else(|_| "/work".into());
    let dir = tempfile::tempdir_in(&base).expect("creating the bench directory");
    let n = env_or("RECYCLE_BENCH_COMMITS", 2000);
    let runs = env_or("RECYCLE_BENCH_RUNS", 5).max(1);
    println!("\n## commits into a new vs a recycled log file ({n} commits of 4 KiB, {runs} runs, load {})\n", load());
    println!(
        "| mode | new file commits/s | recycled commits/s | recycled / new |\n|---|---|---|---|"
    );
    for direct in [false, true] {
        let store = |name: &str, spares: usize| {
            let d = dir.path().join(format!("{name}-{direct}"));
            FsLogStore::new(Path::new(&d), "bench")
                .expect("log directory")
                .with_direct(direct)
                .with_spares(spares)
        };
        let (new, rec) = (store("new", 0), store("rec", 1));
        commits(&rec, 1, direct, n);
        rec.remove(1).expect("keeping a spare");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for run in 0..runs {
            let seq = run + 2;
            for side in if run % 2 == 0 { [0, 1] } else { [1, 0] } {
                if side == 0 {
                    a.push(commits(&new, seq, direct, n));
                    new.remove(seq).expect("deleting");
                } else {
                    b.push(commits(&rec, seq, direct, n));
                    rec.remove(seq).expect("keeping a spare");
                }
            }
        }
        println!(
            "| {} | {} | {} | {:.2}× |",
            if direct {
                "O_DIRECT (v2)"
            } else {
                "buffered (v1)"
            },
            fmt3(mmm(a.clone()), 0),
            fmt3(mmm(b.clone()), 0),
            med(b.iter().copied()) / med(a.iter().copied())
        );
    }
    println!("\nload after: {}", load());
}
