//! Concurrency stress: several threads keep 32 requests each in flight on one brick, with a
//! queue depth smaller than the total (so `Busy` hand-backs happen and are resubmitted). Every
//! request must complete exactly once, without error, and every read must see the last
//! completed write of its slot. Bounded in count and time.

use brick_core::{Aio, CompletionQueue, Error, Op};
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xio::file::{self, Backend, FileBrick, FileOptions};

const THREADS: u64 = 4;
const QD: usize = 32;
const SLOT: usize = 8192;

fn requests_per_thread() -> u64 {
    if std::env::var_os("MARS_LONG_TESTS").is_some() {
        200_000
    } else {
        4_000
    }
}

fn pattern(tag: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (tag as usize * 31 + i) as u8).collect()
}

/// One submitter thread: returns (completions seen, busy hand-backs).
fn drive(f: Arc<FileBrick>, t: u64, total: u64) -> (u64, u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(t);
    let cq = CompletionQueue::new();
    let base = t * (QD * SLOT) as u64;
    // Per slot: the pattern tag of its last completed write (None: still zero).
    let mut model: Vec<Option<(u64, usize)>> = vec![None; QD];
    let mut free: Vec<usize> = (0..QD).collect();
    let mut seen = HashSet::new();
    let mut busy = 0;
    let mut issued = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while (issued < total || free.len() < QD) && Instant::now() < deadline {
        while issued < total && !free.is_empty() {
            let slot = free.pop().unwrap();
            let tag = (t << 40) | (issued << 8) | slot as u64;
            let pos = base + (slot * SLOT) as u64;
            let mut req = match rng.gen_range(0..10) {
                0..=4 => {
                    let len = rng.gen_range(1..=SLOT);
                    Aio::write(pos, pattern(tag, len))
                }
                5..=8 => Aio::read(pos, SLOT),
                _ => Aio::new(Op::Flush, 0, 0),
            };
            req.tag = tag;
            let mut req = Some(req);
            while let Some(r) = req.take() {
                match cq.submit(&*f, r) {
                    Ok(()) => {}
                    Err(rej) => {
                        assert!(matches!(rej.error, Error::Busy { .. }), "{:?}", rej.error);
                        busy += 1;
                        req = Some(rej.req);
                        // Let completions drain before retrying the very same request.
                        std::thread::yield_now();
                    }
                }
            }
            issued += 1;
        }
        let Some(c) = cq.recv_timeout(Duration::from_secs(30)) else {
            panic!("thread {t}: a request never completed");
        };
        assert!(c.error.is_none(), "thread {t}: {:?}", c.error);
        assert!(
            seen.insert(c.tag),
            "thread {t}: tag {:#x} completed twice",
            c.tag
        );
        let slot = (c.tag & 0xff) as usize;
        match c.op {
            Op::Write => model[slot] = Some((c.tag, c.len)),
            Op::Read => {
                let mut want = vec![0u8; SLOT];
                if let Some((tag, len)) = model[slot] {
                    // Earlier, longer writes left their tail behind: compare the prefix only.
                    want[..len].copy_from_slice(&pattern(tag, len));
                    assert_eq!(&c.data[..len], &want[..len], "thread {t} slot {slot}");
                } else {
                    assert_eq!(c.data, want, "thread {t} slot {slot}");
                }
            }
            _ => {}
        }
        free.push(slot);
    }
    assert_eq!(
        seen.len() as u64,
        total,
        "thread {t}: not every request completed"
    );
    assert!(
        cq.recv_timeout(Duration::from_millis(5)).is_none(),
        "extra completion"
    );
    (seen.len() as u64, busy)
}

fn stress(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let opts = FileOptions {
        create_size: Some(THREADS * (QD * SLOT) as u64),
        // Smaller than THREADS * QD: submitters meet back-pressure.
        queue_depth: 64,
        busy_wait: Duration::ZERO,
        ..FileOptions::default()
    };
    let f = file::open(dir.path().join("disk.img"), backend, &opts).unwrap();
    let total = requests_per_thread();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let f = f.clone();
            std::thread::spawn(move || drive(f, t, total))
        })
        .collect();
    let mut done = 0;
    let mut busy = 0;
    for h in handles {
        let (d, b) = h.join().unwrap();
        done += d;
        busy += b;
    }
    assert_eq!(done, THREADS * total);
    let stats = brick_core::Brick::stats(&*f);
    assert_eq!(stats.completed, THREADS * total, "{backend:?}");
    assert_eq!(stats.errors, 0);
    assert_eq!(f.inflight(), 0);
    eprintln!("{backend:?}: {done} requests, {busy} busy hand-backs");
}

#[test]
fn aio_stress_qd32_from_four_threads() {
    stress(Backend::IoUring);
}

#[test]
fn sio_stress_qd32_from_four_threads() {
    stress(Backend::Sync);
}
