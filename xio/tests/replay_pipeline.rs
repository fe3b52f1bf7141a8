//! Replay through the scan-thread pipeline (`xio/src/logger/replay.rs`) equals applying the
//! records one by one, in log order, to a model device.
//!
//! - Proptest: random logs of several files and batches, with writes (some lz4-compressed),
//!   discards and write-zeroes that overlap, abut (so that merging kicks in) or are scattered;
//!   replayed from a random record boundary to a random `until` onto a threaded `MemDisk`
//!   (completions in any order) that already holds the state before `from`. The device must
//!   equal the model, the report must count exactly the records in the range, and progress
//!   positions must be non-decreasing and end at the reported position.
//! - Corruption in the middle of the log (a flipped payload byte in an early batch): replay
//!   fails naming the file and the record's offset, and the device holds exactly the records
//!   before the bad one (nothing after it, everything before it).
//! - Records larger than the scanner's read window and records straddling window ends.
//!
//! `MARS_LONG_TESTS=1` runs more proptest cases.

use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::Output;
use proptest::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use xio::fault::MemLogStore;
use xio::log::record::FLAG_NO_HOLE;
use xio::log::{FileHeader, LogError, LogPos, LogWriter, RecordIn, RecordOp, HEADER_LEN};
use xio::logger::{replay_store, LogStore, LoggerError, ReplayOptions};

const DEV: usize = 64 << 10;
const SECTOR: u64 = 512;

/// One record as generated.
#[derive(Debug, Clone)]
struct Rec {
    op: RecordOp,
    pos: u64,
    len: usize,
    data: Vec<u8>,
    flags: u8,
}

impl Rec {
    /// The record to append (stamp 1).
    fn as_in(&self) -> RecordIn<'_> {
        RecordIn {
            op: self.op,
            pos: self.pos,
            len: self.len as u32,
            data: &self.data,
            stamp: 1,
            flags: self.flags,
            data_crc: None,
        }
    }
}

/// A record as written: its position in the log.
#[derive(Debug, Clone)]
struct Placed {
    rec: Rec,
    at: LogPos,
    end: LogPos,
}

/// Big records (payloads read directly, some lz4, overlapping and adjacent ones) replay to
/// the same device as in-order application.
#[test]
fn big_records_equal_in_order_application() {
    for seed in 1..=12u64 {
        let files = gen_files(seed * 104_729, 2, 3, 6, BIG);
        let store = MemLogStore::new(24 << 20);
        let placed = write_log(&store, &files, seed % 2 == 0);
        let mut want = vec![0u8; BIG.dev];
        for p in &placed {
            apply(&mut want, &p.rec);
        }
        let dev = device(&vec![0u8; BIG.dev], MemDiskMode::Threaded(3));
        let opts = ReplayOptions {
            read_window: if seed % 3 == 0 { 8 << 20 } else { 64 << 10 },
            ..ReplayOptions::default()
        };
        let r = replay_store(&*dev, &store, LogPos::new(1, 0), opts).unwrap();
        assert_eq!(r.records, placed.len() as u64, "seed {seed}");
        assert!(contents(&dev) == want, "seed {seed}: device differs");
    }
}

fn apply(model: &mut [u8], r: &Rec) {
    let range = r.pos as usize..r.pos as usize + r.len;
    match r.op {
        RecordOp::Write => model[range].copy_from_slice(&r.data),
        RecordOp::Discard | RecordOp::WriteZeroes => model[range].fill(0),
        RecordOp::Commit | RecordOp::End => {}
    }
}

/// The header of log file `seq` of the test resource.
fn header(seq: u64, nonce: u64) -> FileHeader {
    FileHeader {
        seq,
        nonce,
        created: 1,
        resource: "replay".into(),
        node: "n".into(),
        align: 0,
        prev_end: 0,
    }
}

/// Write `files` (each a list of batches) into a fresh store; returns where each record went.
fn write_log(store: &MemLogStore, files: &[Vec<Vec<Rec>>], compress: bool) -> Vec<Placed> {
    let mut placed = Vec::new();
    for (i, batches) in files.iter().enumerate() {
        let seq = i as u64 + 1;
        let out = store.create(seq).unwrap();
        let mut w = LogWriter::create(
            &*out,
            store.describe(seq),
            header(seq, 1000 + seq),
            compress,
        )
        .unwrap();
        for batch in batches {
            let ins: Vec<RecordIn<'_>> = batch.iter().map(Rec::as_in).collect();
            w.write_batch(&*out, &ins).unwrap();
        }
    }
    // Where each record landed: scan the files (the scanner is tested on its own elsewhere).
    let mut flat = files.iter().flat_map(|f| f.iter().flatten());
    for seq in store.list().unwrap() {
        let (out, len) = store.open(seq).unwrap();
        let s =
            xio::log::Scanner::open(out, store.describe(seq), len, &Default::default()).unwrap();
        let (recs, _) = s.read_all().unwrap();
        for r in recs {
            if r.header.op == RecordOp::Commit {
                continue;
            }
            placed.push(Placed {
                rec: flat.next().unwrap().clone(),
                at: LogPos::new(seq, r.offset),
                end: LogPos::new(seq, r.end),
            });
        }
    }
    assert!(flat.next().is_none());
    placed
}

/// Passes requests to `inner`, counting flushes.
struct Counting {
    inner: Arc<MemDisk>,
    flushes: AtomicU64,
}

impl Counting {
    fn new(inner: Arc<MemDisk>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            flushes: AtomicU64::new(0),
        })
    }
}

impl Output for Counting {
    fn info(&self) -> brick_core::Result<brick_core::Info> {
        self.inner.info()
    }

    fn submit(&self, req: Box<brick_core::Aio>) -> Result<(), brick_core::Rejected> {
        if req.op == brick_core::Op::Flush {
            self.flushes.fetch_add(1, SeqCst);
        }
        self.inner.submit(req)
    }
}

fn device(model: &[u8], mode: MemDiskMode) -> Arc<MemDisk> {
    let d = MemDisk::new("data", model.len(), mode);
    brick_core::write_all(&*d, 0, model).unwrap();
    d
}

fn contents(d: &MemDisk) -> Vec<u8> {
    brick_core::read_all(d, 0, d.info().unwrap().size as usize).unwrap()
}

/// Record sizes and device size of a generated log.
#[derive(Clone, Copy)]
struct Shape {
    max_sectors: u64,
    dev: usize,
}

const SMALL: Shape = Shape {
    max_sectors: 16,
    dev: DEV,
};

/// Records of up to 1 MiB (larger than `replay::DIRECT_MIN`, so that their payloads are read
/// straight into request buffers) on a 6 MiB device.
const BIG: Shape = Shape {
    max_sectors: 2048,
    dev: 6 << 20,
};

/// A random record: after `prev`, half of the time it continues it on the device.
fn gen_rec(seed: &mut u64, prev: Option<&Rec>, shape: Shape) -> Rec {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let sectors = (next() % shape.max_sectors + 1) as usize;
    let len = sectors * SECTOR as usize;
    let max_start = (shape.dev - len) as u64 / SECTOR;
    let pos = match prev {
        Some(p) if next() % 2 == 0 && p.pos + p.len as u64 + len as u64 <= shape.dev as u64 => {
            p.pos + p.len as u64
        }
        _ => (next() % (max_start + 1)) * SECTOR,
    };
    let kind = next() % 10;
    let (op, flags) = match kind {
        0 => (RecordOp::Discard, 0),
        1 => (RecordOp::WriteZeroes, 0),
        2 => (RecordOp::WriteZeroes, FLAG_NO_HOLE),
        _ => (RecordOp::Write, 0),
    };
    let data = if op == RecordOp::Write {
        let fill = next() as u8;
        let noisy = next() % 2 == 0; // noisy payloads stay uncompressed
        (0..len)
            .map(|i| {
                if noisy || i % 97 == 0 {
                    next() as u8
                } else {
                    fill
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    Rec {
        op,
        pos,
        len,
        data,
        flags,
    }
}

fn gen_files(
    seed: u64,
    files: usize,
    batches: usize,
    per_batch: usize,
    shape: Shape,
) -> Vec<Vec<Vec<Rec>>> {
    let mut s = seed | 1;
    let mut prev: Option<Rec> = None;
    (0..files)
        .map(|_| {
            (0..batches)
                .map(|_| {
                    (0..per_batch)
                        .map(|_| {
                            let r = gen_rec(&mut s, prev.as_ref(), shape);
                            prev = Some(r.clone());
                            r
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

fn cases() -> u32 {
    if std::env::var_os("MARS_LONG_TESTS").is_some() {
        1000
    } else {
        128
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn replay_equals_in_order_application(
        seed in any::<u64>(),
        nfiles in 1usize..4,
        batches in 1usize..5,
        per_batch in 1usize..24,
        compress in any::<bool>(),
        from_frac in 0.0f64..1.0,
        until_frac in 0.0f64..1.2,
        depth in 1usize..80,
        window_log2 in 9u32..18,
        flush in any::<bool>(),
        flush_behind in prop::sample::select(vec![0usize, 4096, 65536]),
    ) {
        let files = gen_files(seed, nfiles, batches, per_batch, SMALL);
        let store = MemLogStore::new(1 << 20);
        let placed = write_log(&store, &files, compress);
        let n = placed.len();
        let from_i = ((n as f64 * from_frac) as usize).min(n - 1);
        let until_i = ((n as f64 * until_frac) as usize).max(from_i);
        let from = placed[from_i].at;
        let until = placed.get(until_i).map(|p| p.at);

        let mut before = vec![0u8; DEV];
        for p in &placed[..from_i] {
            apply(&mut before, &p.rec);
        }
        let mut want = before.clone();
        let applied = &placed[from_i..until_i.min(n)];
        for p in applied {
            apply(&mut want, &p.rec);
        }

        let dev = Counting::new(device(&before, MemDiskMode::Threaded(3)));
        let mut seen: Vec<(LogPos, u64)> = Vec::new();
        let mut cb = |pos: LogPos, recs: u64| seen.push((pos, recs));
        let opts = ReplayOptions {
            resource: Some("replay".into()),
            until,
            depth,
            progress: Some(&mut cb),
            flush,
            read_window: 1 << window_log2,
            flush_behind,
        };
        let report = replay_store(&*dev, &store, from, opts).unwrap();
        prop_assert_eq!(report.records, applied.len() as u64);
        prop_assert_eq!(
            report.bytes,
            applied.iter().map(|p| p.rec.len as u64).sum::<u64>()
        );
        if let Some(last) = applied.last() {
            // Past the last record applied; with `until` possibly at the start of the next
            // file (replay entered it, then stopped), never past `until`.
            match until {
                None => prop_assert_eq!(report.reached, last.end),
                Some(u) => prop_assert!(last.end <= report.reached && report.reached <= u),
            }
        }
        prop_assert!(contents(&dev.inner) == want, "device differs from in-order application");
        // The final flush, plus one started behind the writes every `flush_behind` bytes (at
        // most one in flight, so at least one when there was that much to apply).
        let flushes = dev.flushes.load(SeqCst);
        if !flush {
            prop_assert_eq!(flushes, 0);
        } else if flush_behind > 0 && report.bytes >= flush_behind as u64 {
            prop_assert!(flushes >= 2, "{} flushes", flushes);
        } else {
            prop_assert_eq!(flushes, 1);
        }
        prop_assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        if let Some(&(pos, recs)) = seen.last() {
            prop_assert_eq!(recs, report.records);
            prop_assert!(pos <= report.reached);
        }
        if until.is_none() {
            prop_assert_eq!(seen.last().map(|s| s.0), Some(report.reached));
        }
    }
}

/// Flip one payload byte of a write record in an early batch: replay reports corruption at
/// that record, and the device holds exactly the records before it.
#[test]
fn corruption_applies_exactly_the_prefix() {
    corruption_case(SMALL, 2, 4, 12, 40, 1 << 20, 4096);
}

/// The same with records read straight into request buffers (a 64 KiB read window, so that
/// most payloads are outside it).
#[test]
fn corruption_of_big_records_applies_exactly_the_prefix() {
    corruption_case(BIG, 2, 3, 5, 12, 24 << 20, 64 << 10);
}

fn corruption_case(
    shape: Shape,
    nfiles: usize,
    batches: usize,
    per_batch: usize,
    seeds: u64,
    capacity: usize,
    window: usize,
) {
    let dev_len = shape.dev;
    for seed in 1..=seeds {
        let files = gen_files(seed * 7919, nfiles, batches, per_batch, shape);
        let store = MemLogStore::new(capacity);
        let placed = write_log(&store, &files, false);
        // A write record of the first file outside its last batch (so it is corruption, not
        // a torn tail): the first file's records all come before the second file's.
        let in_first: Vec<usize> = (0..placed.len())
            .filter(|&i| placed[i].at.seq == 1 && placed[i].rec.op == RecordOp::Write)
            .collect();
        let bad = in_first[(seed as usize) % (in_first.len() / 2).max(1)];
        let p = &placed[bad];
        let raw = store.raw(1).unwrap();
        let at = p.at.offset + 64 + (seed % p.rec.len as u64);
        let mut b = brick_core::read_all(&*raw, at, 1).unwrap();
        b[0] ^= 0x40;
        brick_core::write_all(&*raw, at, &b).unwrap();

        let mut want = vec![0u8; dev_len];
        for q in &placed[..bad] {
            apply(&mut want, &q.rec);
        }
        let dev = device(&vec![0u8; dev_len], MemDiskMode::Threaded(3));
        let opts = ReplayOptions {
            read_window: window,
            ..ReplayOptions::default()
        };
        let err = replay_store(&*dev, &store, LogPos::new(1, 0), opts)
            .expect_err("a flipped payload byte must fail the replay");
        match err {
            LoggerError::Log(LogError::Corruption { file, offset, .. }) => {
                assert_eq!(file, store.describe(1), "seed {seed}");
                assert_eq!(offset, p.at.offset, "seed {seed}");
            }
            other => panic!("seed {seed}: expected corruption, got {other}"),
        }
        assert!(
            contents(&dev) == want,
            "seed {seed}: device is not exactly the prefix before the bad record"
        );
    }
}

/// Records larger than the scanner's window (8 MiB) and many records straddling window ends,
/// with a contiguous run that merging joins: the result equals in-order application.
#[test]
fn large_and_straddling_records() {
    const BIG_DEV: usize = 24 << 20;
    let store = MemLogStore::new(40 << 20);
    let out = store.create(1).unwrap();
    let mut w = LogWriter::create(&*out, store.describe(1), header(1, 5), false).unwrap();
    let mut model = vec![0u8; BIG_DEV];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut recs = Vec::new();
    // 9 MiB + 512 (larger than the window), then odd-sized runs: contiguous and overlapping.
    let mut sizes = vec![(9 << 20) + 512];
    sizes.extend((0..24).map(|i| (300 + 37 * i) * 1024 + 512));
    let mut pos = 0u64;
    for (i, len) in sizes.into_iter().enumerate() {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if pos as usize + len > BIG_DEV {
            pos = (i as u64 * 3 * SECTOR) % (1 << 20);
        }
        let r = Rec {
            op: RecordOp::Write,
            pos,
            len,
            data,
            flags: 0,
        };
        apply(&mut model, &r);
        recs.push(r);
        pos += len as u64 - if i % 5 == 4 { 4096 } else { 0 };
    }
    for chunk in recs.chunks(3) {
        let ins: Vec<RecordIn<'_>> = chunk.iter().map(Rec::as_in).collect();
        w.write_batch(&*out, &ins).unwrap();
    }
    let dev = device(&vec![0u8; BIG_DEV], MemDiskMode::Threaded(3));
    let r = replay_store(
        &*dev,
        &store,
        LogPos::new(1, HEADER_LEN as u64),
        ReplayOptions::default(),
    )
    .unwrap();
    assert_eq!(r.records, recs.len() as u64);
    assert!(
        contents(&dev) == model,
        "device differs from in-order application"
    );
}

/// A record whose checksums are right but whose lz4 payload does not decompress is corruption
/// (naming file and offset), and nothing of it is applied.
#[test]
fn undecodable_lz4_payload_is_corruption() {
    use xio::log::record::{FLAG_BATCH_END, FLAG_LZ4};
    use xio::log::RecordHeader;
    let store = MemLogStore::new(1 << 20);
    let out = store.create(1).unwrap();
    let mut w = LogWriter::create(&*out, store.describe(1), header(1, 42), false).unwrap();
    let good = vec![7u8; 4096];
    let rec = RecordIn {
        op: RecordOp::Write,
        pos: 0,
        len: 4096,
        data: &good,
        stamp: 1,
        flags: 0,
        data_crc: None,
    };
    w.write_batch(&*out, &[rec, rec]).unwrap();
    let at = w.pos().offset;
    let h = RecordHeader {
        op: RecordOp::Write,
        flags: FLAG_LZ4 | FLAG_BATCH_END,
        stored_len: 16,
        data_len: 4096,
        nonce: 42,
        rec_seq: 3,
        batch: 2,
        stamp: 1,
        pos: 8192,
    };
    let payload = [0xffu8; 16];
    let hb = h.encode();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&hb), &payload);
    let mut bytes = hb.to_vec();
    bytes.extend_from_slice(&payload);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes.extend_from_slice(b"CERM");
    brick_core::write_all(&*store.raw(1).unwrap(), at, &bytes).unwrap();

    let dev = device(&vec![0u8; DEV], MemDiskMode::Inline);
    let err = replay_store(&*dev, &store, LogPos::new(1, 0), ReplayOptions::default())
        .expect_err("an undecodable payload must fail the replay");
    match err {
        LoggerError::Log(LogError::Corruption { file, offset, .. }) => {
            assert_eq!(file, store.describe(1));
            assert_eq!(offset, at);
        }
        other => panic!("expected corruption, got {other}"),
    }
    let mut want = vec![0u8; DEV];
    want[..4096].fill(7);
    assert!(contents(&dev) == want, "only the good batch is applied");
}

/// Replay onto a real file through the io_uring backend (which writes `MAY_BLOCK` requests on
/// the replaying thread): the file ends as in-order application.
#[test]
fn replay_onto_an_aio_file_equals_in_order_application() {
    use xio::file::{self, Backend, FileOptions};
    let dir = tempfile::tempdir().unwrap();
    for seed in 1..=4u64 {
        let files = gen_files(seed * 31, 2, 3, 20, SMALL);
        let store = MemLogStore::new(1 << 20);
        let placed = write_log(&store, &files, seed % 2 == 0);
        let mut want = vec![0u8; DEV];
        for p in &placed {
            apply(&mut want, &p.rec);
        }
        let opts = FileOptions {
            create_size: Some(DEV as u64),
            ..FileOptions::default()
        };
        let path = dir.path().join(format!("data-{seed}"));
        let data = file::open(&path, Backend::IoUring, &opts).unwrap();
        let r = replay_store(&*data, &store, LogPos::new(1, 0), ReplayOptions::default()).unwrap();
        assert_eq!(r.records, placed.len() as u64);
        let got = brick_core::read_all(&*data, 0, DEV).unwrap();
        assert!(
            got == want,
            "seed {seed}: file differs from in-order application"
        );
    }
}
