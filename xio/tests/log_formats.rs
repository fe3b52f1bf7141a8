//! Both log formats on real files: a directory of format v1 logs (written by a logger set to
//! v1) is fetched and verified by the log server path, opens and replays under a logger that
//! writes v2 (and O_DIRECT), which continues in v2 files beside the v1 ones; the mixed
//! directory replays again. And a store opened with `direct` writes through `O_DIRECT`.

mod remote_common;
use brick_core::{Aio, Op, Output};
use remote_common::*;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use xio::file::{self, Backend, FileOptions};
use xio::logger::{FsLogStore, LogStore, LoggerConfig, TransLogger};
use xio::remote::*;

const BLOCK: usize = 4096;
const BLOCKS: usize = 64;

fn cfg(log_align: u32, log_direct: bool) -> LoggerConfig {
    LoggerConfig {
        resource: "compat".into(),
        node: "alice".into(),
        keep_logs: true,
        // Nothing reaches the data device before the kill: only replay can restore it.
        writeback_delay: Duration::from_secs(3600),
        data_flush_interval: Duration::from_secs(3600),
        log_align,
        log_direct,
        ..LoggerConfig::default()
    }
}

fn data_file(path: &Path) -> Arc<dyn Output> {
    let opts = FileOptions {
        create_size: Some((BLOCKS * BLOCK) as u64),
        threads: 2,
        ..FileOptions::default()
    };
    file::open(path, Backend::Sync, &opts).unwrap()
}

/// Write `n` blocks from `first` with contents `pattern(tag + i)`, then flush (durable).
fn write_blocks(out: &dyn Output, model: &mut [u8], first: usize, n: usize, tag: u64) {
    for i in 0..n {
        let b = (first + i) % BLOCKS;
        let d = pattern(tag + i as u64, BLOCK);
        model[b * BLOCK..(b + 1) * BLOCK].copy_from_slice(&d);
        brick_core::run(out, Aio::write((b * BLOCK) as u64, d)).unwrap();
    }
    brick_core::run(out, Aio::new(Op::Flush, 0, 0)).unwrap();
}

/// The format version of each log file in `dir`, by sequence number.
fn versions(dir: &Path) -> Vec<(u64, u8)> {
    let store = FsLogStore::new(dir, "alice").unwrap();
    let names = store.logs().unwrap();
    names
        .iter()
        .map(|n| {
            let b = std::fs::read(dir.join(n.to_string())).unwrap();
            (n.seq, b.get(8).copied().unwrap_or(0))
        })
        .collect()
}

#[test]
fn a_v1_directory_is_fetched_replayed_and_continued_in_v2() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    let mut model = vec![0u8; BLOCKS * BLOCK];
    // 1. A logger that writes v1; killed before any writeback.
    let logger =
        TransLogger::open(data_file(&tmp.path().join("a.img")), &logs, cfg(0, false)).unwrap();
    write_blocks(&*logger, &mut model, 0, 40, 100);
    logger.rotate();
    write_blocks(&*logger, &mut model, 20, 30, 200);
    logger.kill();
    drop(logger);
    let v = versions(&logs);
    assert!(v.len() >= 2 && v.iter().all(|&(_, ver)| ver == 1), "{v:?}");

    // 2. The log server serves the v1 files and the fetch verifies every record (the files
    //    that are finished: the last one could still grow, a fetch would follow it).
    let node = Exports::new(Some(logs.clone()))
        .listen("127.0.0.1:0", net("p"))
        .unwrap();
    let fetched = tmp.path().join("fetched");
    std::fs::create_dir_all(&fetched).unwrap();
    let store = FsLogStore::new(&logs, "alice").unwrap();
    let names = store.logs().unwrap();
    for name in &names[..names.len() - 1] {
        let name = name.to_string();
        let client = RemoteClient::start(
            "log",
            client_cfg(node.local_addr(), Target::Log(name.clone())),
        );
        let mut fc = FetchConfig::new(fetched.join(&name), &name);
        fc.verify = Some(log_verifier(None));
        let f = LogFetch::new(client, fc);
        let p = run_bounded(&f, Duration::from_secs(60)).unwrap();
        let want = std::fs::read(logs.join(&name)).unwrap();
        assert_eq!(
            (p.local, p.verified),
            (want.len() as u64, want.len() as u64)
        );
        assert!(std::fs::read(fetched.join(&name)).unwrap() == want);
    }

    // 3. A logger with O_DIRECT log files (which implies v2) opens the v1 directory: replay
    //    restores the device, and it continues in a v2 file.
    let logger =
        TransLogger::open(data_file(&tmp.path().join("a.img")), &logs, cfg(0, true)).unwrap();
    let got = brick_core::read_all(&*logger, 0, model.len()).unwrap();
    assert!(got == model, "the v1 logs replay");
    write_blocks(&*logger, &mut model, 50, 30, 300);
    logger.kill();
    drop(logger);
    let v = versions(&logs);
    assert_eq!(v.last().unwrap().1, 2, "new files are v2: {v:?}");
    assert!(v.iter().any(|&(_, ver)| ver == 1), "{v:?}");

    // 4. Without the state file (nothing known to be written back) the mixed directory
    //    replays from its first file, v1 then v2, onto an empty device.
    std::fs::remove_file(logs.join("state")).unwrap();
    let logger = TransLogger::open(
        data_file(&tmp.path().join("c.img")),
        &logs,
        cfg(4096, false),
    )
    .unwrap();
    let got = brick_core::read_all(&*logger, 0, model.len()).unwrap();
    assert!(got == model, "the mixed directory replays completely");
    logger.close().unwrap();
}

#[test]
fn a_direct_store_writes_with_o_direct() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FsLogStore::new(tmp.path(), "alice")
        .unwrap()
        .with_direct(true);
    let out = store.create(1).unwrap();
    // O_DIRECT refuses an unaligned write; the page cache would take it.
    let err = brick_core::run(&*out, Aio::write(0, vec![1u8; 100])).unwrap_err();
    assert!(err.to_string().contains("O_DIRECT"), "{err}");
    brick_core::run(&*out, Aio::write(0, vec![1u8; 4096])).unwrap();
    let buffered = FsLogStore::new(tmp.path(), "alice").unwrap();
    let out = buffered.create(2).unwrap();
    brick_core::run(&*out, Aio::write(0, vec![1u8; 100])).unwrap();
    // Reading is always buffered (readers read at any offset).
    let (r, len) = store.open(1).unwrap();
    assert_eq!(len, 4096);
    assert_eq!(brick_core::read_all(&*r, 1, 10).unwrap(), vec![1u8; 10]);
}
