//! The log thread writes its batches with gather writes: the records' payloads go to the log
//! output from the clients' buffers (`Output::write_gather`, `pwritev` on a real log file),
//! never as one copied batch buffer through `submit`; the log reads back complete. Writeback
//! does the same on a data device with a gather write: a run of adjacent writes goes out from
//! the payloads, not copied into a merge buffer.

use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::{Aio, Flags, Info, Op, Output, Rejected, Result};
use std::io::IoSlice;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use xio::log::{Expect, Scanner};
use xio::logger::{LoggerConfig, TransLogger};

const BLOCK: usize = 4096;
const WRITES: usize = 64;

/// An output that counts how it is written to, over a `MemDisk`.
struct Counting {
    inner: Arc<MemDisk>,
    gathers: AtomicUsize,
    most_pieces: AtomicUsize,
    plain_writes: AtomicUsize,
}

impl Output for Counting {
    fn info(&self) -> Result<Info> {
        self.inner.info()
    }
    fn prepare(&self, req: &mut Aio) -> Result<()> {
        self.inner.prepare(req)
    }
    fn submit(&self, req: Box<Aio>) -> std::result::Result<(), Rejected> {
        if req.op == Op::Write {
            self.plain_writes.fetch_add(1, SeqCst);
        }
        self.inner.submit(req)
    }
    fn write_gather(&self, pos: u64, bufs: &[IoSlice<'_>]) -> Option<Result<()>> {
        self.gathers.fetch_add(1, SeqCst);
        self.most_pieces.fetch_max(bufs.len(), SeqCst);
        Some(brick_core::write_gather(&*self.inner, pos, bufs))
    }
}

fn counting(name: &str, size: usize) -> Arc<Counting> {
    Arc::new(Counting {
        inner: MemDisk::new(name, size, MemDiskMode::Inline),
        gathers: AtomicUsize::new(0),
        most_pieces: AtomicUsize::new(0),
        plain_writes: AtomicUsize::new(0),
    })
}

#[test]
fn the_log_thread_writes_payloads_from_the_clients_buffers() {
    let log = counting("log", 4 << 20);
    let data = MemDisk::new("data", WRITES * BLOCK, MemDiskMode::Inline);
    let cfg = LoggerConfig {
        resource: "gather".into(),
        node: "n0".into(),
        ..LoggerConfig::default()
    };
    let logger = TransLogger::new(data, log.clone(), 1, cfg).unwrap();
    // Queued together (no FUA until the last): batches of several records.
    let cq = brick_core::CompletionQueue::new();
    for i in 0..WRITES {
        let mut w = Aio::write((i * BLOCK) as u64, vec![i as u8 + 1; BLOCK]);
        if i + 1 == WRITES {
            w.flags = Flags::FUA;
        }
        cq.submit(&*logger, w).unwrap();
    }
    for _ in 0..WRITES {
        assert!(cq.recv().error.is_none());
    }
    let end = logger.status().durable_end;
    logger.close().unwrap();
    assert_eq!(
        log.plain_writes.load(SeqCst),
        0,
        "no write went through submit"
    );
    assert!(log.gathers.load(SeqCst) >= 2, "the header and the batches");
    assert!(
        log.most_pieces.load(SeqCst) >= 3,
        "a record's payload is a piece of its own (got at most {} pieces)",
        log.most_pieces.load(SeqCst)
    );
    let scan = Scanner::open(log.inner.clone(), "log", end.offset, &Expect::default()).unwrap();
    let (recs, _) = scan.read_all().unwrap();
    assert_eq!(recs.len(), WRITES, "every write is in the log");
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.data, vec![i as u8 + 1; BLOCK], "record {i}");
    }
}

#[test]
fn writeback_writes_runs_of_adjacent_writes_from_the_payloads() {
    let log = MemDisk::new("log", 4 << 20, MemDiskMode::Inline);
    let data = counting("data", (WRITES + 2) * BLOCK);
    let cfg = LoggerConfig {
        resource: "gather".into(),
        node: "n0".into(),
        ..LoggerConfig::default()
    };
    let logger = TransLogger::new(data.clone(), log, 1, cfg).unwrap();
    // Blocks 0..WRITES back to back, and one apart (a run of its own).
    let apart = (WRITES + 1) * BLOCK;
    let mut want = vec![0u8; (WRITES + 2) * BLOCK];
    for (i, pos) in (0..WRITES).map(|i| i * BLOCK).chain([apart]).enumerate() {
        let fill = i as u8 + 1;
        brick_core::write_all(&*logger, pos as u64, &vec![fill; BLOCK]).unwrap();
        want[pos..pos + BLOCK].fill(fill);
    }
    logger.close().unwrap();
    assert_eq!(
        data.plain_writes.load(SeqCst),
        0,
        "no write went through submit"
    );
    assert_eq!(
        data.most_pieces.load(SeqCst),
        WRITES,
        "the adjacent writes are one run, a piece per payload"
    );
    assert!(brick_core::read_all(&*data.inner, 0, want.len()).unwrap() == want);
}
