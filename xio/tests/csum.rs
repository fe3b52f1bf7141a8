//! Per-block checksums (`xio::csum`): verified reads fail exactly the damaged blocks, scrub
//! finds exactly them, a damaged checksum file is reported as such and never judges data,
//! and neither crashes nor racing writes produce false alarms.

use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::{Aio, Error, Op, Output};
use rand::{Rng, SeedableRng};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use xio::csum::{format, CsumDisk, ScrubChunk, SCRUB_CHUNK};
use xio::fault::{CrashMode, FaultDisk};

const BLOCK: usize = 4096;

fn block(tag: u8, i: u64) -> Vec<u8> {
    let mut d = vec![tag; BLOCK];
    d[..8].copy_from_slice(&i.to_le_bytes());
    d
}

fn flush(out: &dyn Output) {
    brick_core::run(out, Aio::new(Op::Flush, 0, 0)).unwrap();
}

/// Scrub the whole device; the sum of the chunks.
fn scrub(d: &CsumDisk, relearn: bool) -> ScrubChunk {
    let size = d.info().unwrap().size;
    let mut all = ScrubChunk::default();
    let mut pos = 0;
    while pos < size {
        let c = d.scrub_chunk(pos, relearn).unwrap();
        all.bad.extend(c.bad);
        all.csum_file_errors += c.csum_file_errors;
        all.learned += c.learned;
        all.skipped += c.skipped;
        all.relearned_pages += c.relearned_pages;
        pos += SCRUB_CHUNK;
    }
    all
}

/// Flip one bit of block `b` behind the checksum brick's back.
fn flip(inner: &dyn Output, b: u64, bit: usize) {
    let mut d = brick_core::read_all(inner, b * BLOCK as u64, BLOCK).unwrap();
    d[bit / 8] ^= 1 << (bit % 8);
    brick_core::write_all(inner, b * BLOCK as u64, &d).unwrap();
}

fn csum_path(dir: &Path) -> std::path::PathBuf {
    dir.join("data.csum")
}

#[test]
fn a_read_of_a_damaged_block_fails_other_reads_succeed_and_scrub_finds_exactly_them() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = 3000u64; // three table pages
    let inner = MemDisk::new("data", blocks as usize * BLOCK, MemDiskMode::Threaded(2));
    let d = CsumDisk::open(inner.clone(), "data", &csum_path(dir.path()), true).unwrap();
    for b in 0..blocks {
        brick_core::write_all(&*d, b * BLOCK as u64, &block(1, b)).unwrap();
    }
    flush(&*d);
    assert_eq!(d.status().known, blocks);
    let damaged = [7u64, 1022, 1023, 2999];
    for (i, &b) in damaged.iter().enumerate() {
        flip(&*inner, b, 100 + i * 977);
    }
    for b in 0..blocks {
        let r = brick_core::read_all(&*d, b * BLOCK as u64, BLOCK);
        if damaged.contains(&b) {
            match r {
                Err(Error::Checksum { pos, len, .. }) => {
                    assert_eq!((pos, len), (b * BLOCK as u64, BLOCK as u64))
                }
                other => panic!("block {b}: expected a checksum error, got {other:?}"),
            }
        } else {
            assert_eq!(r.unwrap(), block(1, b), "block {b}");
        }
    }
    // A read spanning a damaged block fails; its neighbours alone do not.
    assert!(brick_core::read_all(&*d, 6 * BLOCK as u64, 3 * BLOCK).is_err());
    assert!(brick_core::read_all(&*d, 8 * BLOCK as u64, 3 * BLOCK).is_ok());
    let st = d.status();
    assert_eq!(st.read_mismatches, damaged.len() as u64 + 1);
    assert!(
        st.alerts.last().unwrap().contains("scrub"),
        "{:?}",
        st.alerts
    );
    let s = scrub(&d, false);
    assert_eq!(
        s.bad,
        damaged.to_vec(),
        "scrub finds exactly the damaged blocks"
    );
    assert_eq!((s.csum_file_errors, s.learned), (0, 0));
    // Rewriting a damaged block repairs it.
    brick_core::write_all(&*d, 7 * BLOCK as u64, &block(2, 7)).unwrap();
    assert_eq!(
        brick_core::read_all(&*d, 7 * BLOCK as u64, BLOCK).unwrap(),
        block(2, 7)
    );
    // With verified reads off, the damaged data is served as it is.
    d.set_verify_reads(false);
    assert!(brick_core::read_all(&*d, 1022 * BLOCK as u64, BLOCK).is_ok());
}

#[test]
fn a_damaged_checksum_page_is_a_checksum_file_error_and_never_judges_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = csum_path(dir.path());
    let blocks = 2046u64; // two table pages
    let inner = MemDisk::new("data", blocks as usize * BLOCK, MemDiskMode::Inline);
    {
        let d = CsumDisk::open(inner.clone(), "data", &path, true).unwrap();
        for b in 0..blocks {
            brick_core::write_all(&*d, b * BLOCK as u64, &block(3, b)).unwrap();
        }
        d.close().unwrap();
    }
    // Flip a bit in the second table page of the checksum file.
    let hdr = format::Header {
        device_size: blocks * BLOCK as u64,
        region: format::REGION,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let off = hdr.table_page_offset(1) + 40;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, off).unwrap();
    f.write_all_at(&[b[0] ^ 4], off).unwrap();
    // And damage a data block on that page, and one on the healthy page.
    flip(&*inner, 1500, 9);
    flip(&*inner, 20, 9);
    let d = CsumDisk::open(inner.clone(), "data", &path, true).unwrap();
    assert_eq!(d.status().bad_table_pages, 1);
    // Blocks of the damaged page are not judged: their reads succeed.
    assert!(brick_core::read_all(&*d, 1500 * BLOCK as u64, BLOCK).is_ok());
    assert!(brick_core::read_all(&*d, 20 * BLOCK as u64, BLOCK).is_err());
    let s = scrub(&d, false);
    assert_eq!(s.bad, vec![20], "only the healthy page judges data");
    assert_eq!(s.csum_file_errors, 1023);
    // Relearning rebuilds the page from the data (the data is not touched).
    let before = inner.contents();
    let s = scrub(&d, true);
    assert_eq!((s.relearned_pages, s.bad.clone()), (1, vec![20]));
    assert_eq!(
        inner.contents(),
        before,
        "data never repaired from checksums"
    );
    d.persist().unwrap();
    drop(d);
    let d = CsumDisk::open(inner, "data", &path, true).unwrap();
    assert_eq!(d.status().bad_table_pages, 0);
    assert_eq!(scrub(&d, false).csum_file_errors, 0);
}

#[test]
fn after_a_crash_checksums_agree_with_the_data_and_damage_is_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = csum_path(dir.path());
    let blocks = 4096u64; // 16 MiB: four intent regions
    let medium = MemDisk::new("medium", blocks as usize * BLOCK, MemDiskMode::Inline);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let cycles = if std::env::var("MARS_LONG_TESTS").is_ok_and(|v| v == "1") {
        200
    } else {
        20
    };
    for cycle in 0..cycles {
        let data = FaultDisk::new("data", medium.clone());
        let d = CsumDisk::open(data.clone(), "data", &path, true).unwrap();
        for i in 0..rng.gen_range(1..200u64) {
            let b = rng.gen_range(0..blocks);
            let mut w = block(cycle as u8, i);
            if rng.gen_bool(0.1) {
                // A partial-block write: that block's checksum becomes unknown.
                w.truncate(512);
            }
            brick_core::write_all(&*d, b * BLOCK as u64, &w).unwrap();
            if rng.gen_bool(0.05) {
                flush(&*d);
            }
        }
        let mode = [CrashMode::DropAll, CrashMode::KeepAll, CrashMode::Tear][cycle % 3];
        data.crash(rng.gen(), mode);
        // kill -9: no close, no flush of the checksum file.
        d.kill();
        drop(d);
        let d = CsumDisk::open(data.reboot(), "data", &path, true).unwrap();
        let s = scrub(&d, false);
        assert_eq!(
            s.bad,
            Vec::<u64>::new(),
            "cycle {cycle} ({mode:?}): false alarm after a crash"
        );
        drop(d);
    }
    // The scrub above is not blind: damage done to blocks with known checksums is found.
    let d = CsumDisk::open(medium.clone(), "data", &path, true).unwrap();
    let known = [3u64, 1500, 4095];
    for &b in &known {
        brick_core::write_all(&*d, b * BLOCK as u64, &block(9, b)).unwrap();
    }
    d.close().unwrap();
    drop(d);
    for &b in &known {
        flip(&*medium, b, 77);
    }
    let d = CsumDisk::open(medium, "data", &path, true).unwrap();
    assert_eq!(scrub(&d, false).bad, known.to_vec());
}

/// A device that applies requests in submission order but completes each batch of them in
/// reverse order (a batch closes every millisecond): completions race with later writes.
struct Reorder {
    medium: Arc<MemDisk>,
    batch: parking_lot::Mutex<Vec<Box<Aio>>>,
}

impl Reorder {
    fn new(medium: Arc<MemDisk>) -> Arc<Reorder> {
        let r = Arc::new(Reorder {
            medium,
            batch: parking_lot::Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&r);
        std::thread::spawn(move || {
            while let Some(r) = weak.upgrade() {
                let batch = std::mem::take(&mut *r.batch.lock());
                drop(r);
                for req in batch.into_iter().rev() {
                    req.finish(Ok(()));
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        r
    }
}

impl Output for Reorder {
    fn info(&self) -> brick_core::Result<brick_core::Info> {
        self.medium.info()
    }
    fn submit(&self, mut req: Box<Aio>) -> Result<(), brick_core::Rejected> {
        let mut batch = self.batch.lock();
        // Applied now, in order (under the batch lock); completed later, out of order.
        let r = match req.op {
            Op::Write => brick_core::write_all(&*self.medium, req.pos, &req.data),
            Op::Read => brick_core::read_all(&*self.medium, req.pos, req.len).map(|d| req.data = d),
            _ => brick_core::run(&*self.medium, Aio::new(req.op, req.pos, req.len)).map(|_| ()),
        };
        if let Err(e) = r {
            drop(batch);
            req.finish(Err(e));
            return Ok(());
        }
        batch.push(req);
        Ok(())
    }
}

#[test]
fn racing_overlapping_writes_never_cause_false_alarms() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = 16u64;
    let medium = MemDisk::new("data", blocks as usize * BLOCK, MemDiskMode::Inline);
    let d: Arc<CsumDisk> =
        CsumDisk::open(Reorder::new(medium), "data", &csum_path(dir.path()), true).unwrap();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let d = d.clone();
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(t));
                for i in 0..500u64 {
                    let b = rng.gen_range(0..blocks - 4);
                    let n = rng.gen_range(1..4usize);
                    let data: Vec<u8> = (0..n).flat_map(|k| block(t, i + k as u64)).collect();
                    brick_core::write_all(&*d, b * BLOCK as u64, &data).unwrap();
                    // Reads racing with the writes: never a checksum error.
                    let r =
                        brick_core::read_all(&*d, rng.gen_range(0..blocks) * BLOCK as u64, BLOCK);
                    assert!(r.is_ok(), "{r:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    flush(&*d);
    let s = scrub(&d, false);
    assert_eq!(s.bad, Vec::<u64>::new());
    for b in 0..blocks {
        brick_core::read_all(&*d, b * BLOCK as u64, BLOCK).unwrap();
    }
}
