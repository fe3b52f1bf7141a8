//! Corruption and truncation of log files.
//!
//! - 256 random bit flips in a file of several batches: a flip before the last batch is reported
//!   as corruption (naming file and offset); a flip inside the last batch ends the valid prefix
//!   as a torn tail at the start of the damaged record. Never is a damaged record returned.
//! - Truncation at every offset inside the last record gives a torn tail at its start.
//! - Recovery through `TransLogger::open_store` refuses a corrupt log and applies nothing.

use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::Output;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use xio::fault::MemLogStore;
use xio::log::{
    Expect, FileHeader, LogError, LogWriter, Record, RecordIn, RecordOp, ScanEnd, Scanner,
};
use xio::logger::{LoggerConfig, LoggerError, TransLogger};

struct File {
    bytes: Vec<u8>,
    records: Vec<Record>,
    last_batch_start: u64,
}

fn build(seed: u64, compress: bool) -> File {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let disk = MemDisk::new("f", 4 << 20, MemDiskMode::Inline);
    let header = FileHeader {
        seq: 1,
        nonce: 77,
        created: 5,
        resource: "r".into(),
        node: "n".into(),
        align: 0,
        prev_end: 0,
    };
    let mut w = LogWriter::create(&*disk, "f", header, compress).unwrap();
    let mut last_batch_start = 0;
    for _ in 0..5 {
        let datas: Vec<Vec<u8>> = (0..rng.gen_range(1..5))
            .map(|_| {
                let len = rng.gen_range(1..9) * 512;
                let fill: u8 = rng.gen();
                (0..len)
                    .map(|i: usize| if i.is_multiple_of(7) { rng.gen() } else { fill })
                    .collect()
            })
            .collect();
        let recs: Vec<RecordIn<'_>> = datas
            .iter()
            .map(|d| RecordIn {
                op: RecordOp::Write,
                pos: rng.gen_range(0..1000) * 512,
                len: d.len() as u32,
                data: d,
                stamp: 1,
                flags: 0,
                data_crc: None,
            })
            .collect();
        last_batch_start = w.pos().offset;
        w.write_batch(&*disk, &recs).unwrap();
    }
    let len = w.pos().offset as usize;
    let bytes = brick_core::read_all(&*disk, 0, len).unwrap();
    let (records, end) = scan(&bytes).unwrap();
    assert_eq!(end, ScanEnd::Clean { end: len as u64 });
    File {
        bytes,
        records,
        last_batch_start,
    }
}

fn scan(bytes: &[u8]) -> xio::log::Result<(Vec<Record>, ScanEnd)> {
    let d = MemDisk::new("f", bytes.len().max(1), MemDiskMode::Inline);
    brick_core::write_all(&*d, 0, bytes).unwrap();
    Scanner::open(d, "log-f", bytes.len() as u64, &Expect::default())?.read_all()
}

#[test]
fn bit_flips_are_corruption_or_torn_tail_never_applied() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let (mut corrupt, mut torn) = (0, 0);
    for case in 0..256u64 {
        let f = build(case % 8, case.is_multiple_of(2));
        let off = rng.gen_range(0..f.bytes.len());
        let mut b = f.bytes.clone();
        b[off] ^= 1 << rng.gen_range(0..8);
        match scan(&b) {
            Err(LogError::Corruption { file, offset, .. }) => {
                assert_eq!(file, "log-f");
                assert!(
                    offset <= off as u64,
                    "case {case}: damage reported after the flip"
                );
                corrupt += 1;
            }
            Err(e) => panic!("case {case}: unexpected error {e}"),
            Ok((recs, end)) => {
                assert!((off as u64) >= f.last_batch_start, "case {case}: flip at {off} before the last batch ({}) must be corruption, got {end:?}", f.last_batch_start);
                let ScanEnd::TornTail { end, .. } = end else {
                    panic!("case {case}: flip at {off} went unnoticed");
                };
                let damaged = f.records.iter().position(|r| r.end > off as u64).unwrap();
                assert_eq!(end, f.records[damaged].offset, "case {case}");
                assert_eq!(
                    recs,
                    f.records[..damaged].to_vec(),
                    "case {case}: only the prefix is returned"
                );
                torn += 1;
            }
        }
    }
    eprintln!("bit flips: {corrupt} corruption, {torn} torn tail");
    assert!(corrupt > 100 && torn > 10, "both verdicts are exercised");
}

#[test]
fn truncation_inside_the_last_record_is_a_torn_tail() {
    for compress in [false, true] {
        let f = build(3, compress);
        let last = f.records.last().unwrap();
        for cut in last.offset..last.end {
            let (recs, end) = scan(&f.bytes[..cut as usize]).unwrap();
            assert!(
                matches!(end, ScanEnd::TornTail { end, .. } if end == last.offset),
                "cut {cut}: {end:?}"
            );
            assert_eq!(recs, f.records[..f.records.len() - 1].to_vec());
        }
        // Also when the rest of the file reads as zeroes instead of being absent.
        let mut z = f.bytes[..(last.offset + 10) as usize].to_vec();
        z.resize(f.bytes.len() + 4096, 0);
        let (_, end) = scan(&z).unwrap();
        assert!(matches!(end, ScanEnd::TornTail { end, .. } if end == last.offset));
    }
}

#[test]
fn recovery_refuses_a_corrupt_log_and_applies_nothing() {
    // Both formats: v1 (records from offset 512) and v2 (aligned, records from 4096).
    for (log_align, first) in [(0, 512u64), (4096, 4096)] {
        refuses_a_corrupt_log(log_align, first);
    }
}

fn refuses_a_corrupt_log(log_align: u32, first: u64) {
    let store = MemLogStore::new(1 << 20);
    let data = MemDisk::new("data", 1 << 20, MemDiskMode::Inline);
    let cfg = LoggerConfig {
        resource: "r".into(),
        writeback_delay: std::time::Duration::from_secs(3600),
        log_align,
        ..LoggerConfig::default()
    };
    let logger =
        TransLogger::open_store(data.clone(), Arc::new(store.clone()), cfg.clone()).unwrap();
    for i in 0..4u64 {
        brick_core::write_all(&*logger, i * 4096, &[i as u8 + 1; 4096]).unwrap();
        brick_core::run(&*logger, brick_core::Aio::new(brick_core::Op::Flush, 0, 0)).unwrap();
    }
    logger.kill();
    // Flip a byte in the first record's payload (a synced batch followed by later ones).
    let raw = store.raw(1).unwrap();
    let mut b = brick_core::read_all(&*raw, first + 100, 1).unwrap();
    b[0] ^= 0x40;
    brick_core::write_all(&*raw, first + 100, &b).unwrap();
    let err = TransLogger::open_store(data.clone(), Arc::new(store.reboot()), cfg)
        .err()
        .expect("refused");
    assert!(
        matches!(
            err,
            LoggerError::Log(LogError::Corruption { offset, .. }) if offset == first
        ),
        "{err}"
    );
    // On the data path (a request's error) it stays structured: file and offset.
    match err.to_brick("r/logger") {
        brick_core::Error::Corrupt { file, offset, .. } => {
            assert_eq!(offset, first);
            assert!(file.contains("log-000000001"), "{file}");
        }
        other => panic!("a corrupt record became {other:?}"),
    }
    assert_eq!(data.contents(), vec![0u8; 1 << 20], "nothing was applied");
    let _ = data.info();
}
