//! Recycled log files on a real directory (`FsLogStore`, `log/FORMAT.md` "Recycled log
//! files"): deleted logs become spares and later logs are written into them (same inodes);
//! the logger ends each file with an end-of-file record, the next header records that end, and
//! a restart reads everything back without taking stale bytes for records or damage.

use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::{Aio, Op, Output};
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xio::log::{Expect, FileHeader, LogName, ScanEnd, Scanner, HEADER_LEN};
use xio::logger::{LoggerConfig, TransLogger};

const SIZE: usize = 1 << 20;

fn cfg(align: u32) -> LoggerConfig {
    LoggerConfig {
        resource: "rec".into(),
        node: "n0".into(),
        log_align: align,
        rotate_size: 64 << 10,
        writeback_delay: Duration::from_millis(1),
        data_flush_interval: Duration::from_millis(5),
        commit_interval: Duration::from_millis(5),
        log_spares: 2,
        ..LoggerConfig::default()
    }
}

/// Log files and spares in `dir`: (name, inode).
fn entries(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        // A file the logger deletes or renames meanwhile is left out.
        .filter_map(|e| {
            Some((
                e.file_name().to_str()?.to_string(),
                e.metadata().ok()?.ino(),
            ))
        })
        .collect();
    v.sort();
    v
}

/// How the file at `path` ends: the scan's end and whether it met an end-of-file record.
fn scan_end(path: &Path) -> (ScanEnd, bool) {
    let f = xio::file::open(path, xio::file::Backend::Sync, &Default::default()).unwrap();
    let len = std::fs::metadata(path).unwrap().len();
    let mut s = Scanner::open(f, path.display().to_string(), len, &Expect::default()).unwrap();
    while s.next_raw().unwrap().is_some() {}
    (s.end().unwrap().clone(), s.closed())
}

fn write(l: &TransLogger, model: &mut [u8], i: u64) {
    let block = (i * 7919 % (SIZE as u64 / 4096)) * 4096;
    let mut req = Aio::new(Op::Write, block, 4096);
    req.data = vec![(i % 251) as u8 + 1; 4096];
    model[block as usize..block as usize + 4096].copy_from_slice(&req.data);
    brick_core::run(l, req).unwrap();
}

#[test]
fn deleted_logs_become_later_logs_and_a_restart_reads_only_valid_bytes() {
    for align in [0, 4096] {
        recycles(align);
    }
}

fn recycles(align: u32) {
    let dir = tempfile::tempdir().unwrap();
    let data: Arc<dyn Output> = MemDisk::new("data", SIZE, MemDiskMode::Inline);
    let mut model = vec![0u8; SIZE];
    let l = TransLogger::open(data.clone(), dir.path(), cfg(align)).unwrap();
    // Write and rotate until a log file has the inode a spare had before.
    let mut spare_inodes = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    let reused = loop {
        assert!(
            Instant::now() < deadline,
            "align {align}: no log reused a spare: {:?}",
            entries(dir.path())
        );
        for _ in 0..8 {
            write(&l, &mut model, i);
            i += 1;
        }
        brick_core::run(&*l, Aio::new(Op::Flush, 0, 0)).unwrap();
        if i % 64 == 0 {
            l.rotate();
        }
        let now = entries(dir.path());
        spare_inodes.extend(
            now.iter()
                .filter(|(n, _)| n.starts_with("spare-"))
                .map(|e| e.1),
        );
        if let Some(e) = now
            .iter()
            .find(|(n, ino)| n.starts_with("log-") && spare_inodes.contains(ino))
        {
            break e.0.clone();
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(
        entries(dir.path())
            .iter()
            .filter(|(n, _)| n.starts_with("spare-"))
            .count()
            <= 2,
        "at most log_spares spares"
    );
    // Write into the recycled file, over its stale bytes, then close: the file ends with its
    // end-of-file record even though stale bytes follow.
    for _ in 0..5 {
        write(&l, &mut model, i);
        i += 1;
    }
    l.close().unwrap();
    let last = entries(dir.path())
        .into_iter()
        .rfind(|(n, _)| n.starts_with("log-"))
        .unwrap()
        .0;
    let last_path = dir.path().join(&last);
    let (end, closed) = scan_end(&last_path);
    assert!(
        closed && matches!(end, ScanEnd::Clean { .. }),
        "align {align}: {last}: {end:?}"
    );
    if last == reused {
        assert!(
            std::fs::metadata(&last_path).unwrap().len() > end.end(),
            "the recycled file is longer than its records (stale bytes follow)"
        );
    }
    // A restart replays nothing wrong and starts the next file, whose header records the end.
    let data2: Arc<dyn Output> = MemDisk::new("data2", SIZE, MemDiskMode::Inline);
    brick_core::write_all(&*data2, 0, &brick_core::read_all(&*data, 0, SIZE).unwrap()).unwrap();
    let l2 = TransLogger::open(data2, dir.path(), cfg(align)).unwrap();
    assert!(
        brick_core::read_all(&*l2, 0, SIZE).unwrap() == model,
        "align {align}: device differs"
    );
    let seq = LogName::parse(&last).unwrap().seq;
    let next = entries(dir.path())
        .into_iter()
        .find(|(n, _)| LogName::parse(n).is_ok_and(|n| n.seq == seq + 1))
        .unwrap()
        .0;
    let mut hb = vec![0u8; HEADER_LEN];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open(dir.path().join(next)).unwrap(),
        &mut hb,
        0,
    )
    .unwrap();
    assert_eq!(
        FileHeader::decode(&hb).unwrap().end_of(seq),
        Some(end.end())
    );
    l2.close().unwrap();
}
