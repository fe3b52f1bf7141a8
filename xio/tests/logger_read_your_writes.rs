//! Read-your-writes across threads: a write is readable from the logger as soon as it is
//! acknowledged (it is in the index before its completion runs), whoever reads it. Many
//! writers; the completion of each write hands it to a reader thread, which reads the block
//! back while the writer's completion waits for the answer, so that a write acknowledged
//! before its index insert would be read stale every time, not by chance.

use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::{Aio, Completer, Flags, Output};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xio::fault::MemLogStore;
use xio::logger::{LoggerConfig, TransLogger};

const BLOCK: usize = 4096;
const WRITERS: u64 = 4;
const BLOCKS_PER_WRITER: u64 = 32;
const WRITES_PER_WRITER: u64 = 300;
const READERS: usize = 2;
/// Every wait in this test is bounded by this (a hang is a failure with a message).
const LIMIT: Duration = Duration::from_secs(20);

/// Block `b`'s bytes for write number `generation`: the generation at the start, `b` after.
fn bytes(b: u64, generation: u64) -> Vec<u8> {
    let mut v = vec![(b % 251) as u8; BLOCK];
    v[..8].copy_from_slice(&generation.to_le_bytes());
    v
}

/// A read-back request: block, the generation just acknowledged, where to answer.
type Check = (u64, u64, Sender<()>);

/// The initiator's completion hook: before the writer learns of the acknowledgement, a
/// reader thread must have read the block back.
struct ReadBack {
    checks: Sender<Check>,
    block: u64,
    generation: u64,
    done: Sender<Box<Aio>>,
}

impl Completer for ReadBack {
    fn complete(&self, req: Box<Aio>) {
        if req.error.is_none() {
            let (tx, rx) = bounded(1);
            self.checks
                .send((self.block, self.generation, tx))
                .expect("readers are running");
            rx.recv_timeout(LIMIT)
                .expect("a reader answers within the limit");
        }
        self.done.send(req).expect("the writer waits");
    }
}

#[derive(Default)]
struct Found {
    checked: AtomicU64,
    stale: AtomicU64,
    first: Mutex<Option<String>>,
}

fn reader(logger: Arc<dyn Output>, checks: Receiver<Check>, found: Arc<Found>) {
    while let Ok((b, g, answer)) = checks.recv_timeout(LIMIT) {
        let got = brick_core::read_all(&*logger, b * BLOCK as u64, BLOCK).expect("read");
        if got != bytes(b, g) {
            found.stale.fetch_add(1, Ordering::Relaxed);
            let read = u64::from_le_bytes(got[..8].try_into().unwrap());
            found.first.lock().unwrap().get_or_insert_with(|| {
                format!("block {b}: acknowledged write {g}, read back write {read}")
            });
        }
        found.checked.fetch_add(1, Ordering::Relaxed);
        let _ = answer.send(());
    }
}

/// Writer `w` owns the blocks `w, w + WRITERS, ...`; one write in flight at a time, every
/// fifth with FUA (completed by the log thread instead of the submitting one).
fn writer(logger: Arc<dyn Output>, w: u64, checks: Sender<Check>) {
    let mut generation = vec![0u64; BLOCKS_PER_WRITER as usize];
    let (done_tx, done_rx) = bounded(1);
    for n in 0..WRITES_PER_WRITER {
        let i = (n * 7 + w) % BLOCKS_PER_WRITER;
        let b = i * WRITERS + w;
        generation[i as usize] += 1;
        let g = generation[i as usize];
        let mut req = Aio::write(b * BLOCK as u64, bytes(b, g));
        if n % 5 == 4 {
            req.flags = Flags::FUA;
        }
        req.push_hook(Arc::new(ReadBack {
            checks: checks.clone(),
            block: b,
            generation: g,
            done: done_tx.clone(),
        }));
        if logger.submit(req).is_err() {
            panic!("writer {w}: write {n} rejected");
        }
        let req = done_rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("writer {w}: write {n} not acknowledged in time"));
        assert!(req.error.is_none(), "writer {w}: {:?}", req.error);
    }
}

#[test]
fn acknowledged_write_is_read_back_at_once_by_another_thread() {
    let data = MemDisk::new("data", 1 << 20, MemDiskMode::Inline);
    let cfg = LoggerConfig {
        resource: "r0".into(),
        node: "n0".into(),
        mem_budget: 4 << 20,
        rotate_size: 256 << 10,
        // Writeback runs during the test: reads find versions in the index and on the device.
        writeback_delay: Duration::from_millis(1),
        ..LoggerConfig::default()
    };
    let store = MemLogStore::new(16 << 20);
    let logger: Arc<dyn Output> =
        TransLogger::open_store(data, Arc::new(store), cfg).expect("logger");
    let (checks_tx, checks_rx) = crossbeam_channel::unbounded::<Check>();
    let found = Arc::new(Found::default());
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (l, rx, f) = (logger.clone(), checks_rx.clone(), found.clone());
            std::thread::spawn(move || reader(l, rx, f))
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (l, tx) = (logger.clone(), checks_tx.clone());
            std::thread::spawn(move || writer(l, w, tx))
        })
        .collect();
    for t in writers {
        t.join().expect("writer");
    }
    drop(checks_tx);
    for t in readers {
        t.join().expect("reader");
    }
    assert_eq!(
        found.checked.load(Ordering::Relaxed),
        WRITERS * WRITES_PER_WRITER,
        "every acknowledged write was read back"
    );
    assert_eq!(
        found.stale.load(Ordering::Relaxed),
        0,
        "reads right after an acknowledgement returned older data; first: {:?}",
        found.first.lock().unwrap()
    );
}
