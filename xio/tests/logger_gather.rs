//! The log thread writes its batches with gather writes: the records' payloads go to the log
//! output from the clients' buffers (`Output::write_gather`, `pwritev` on a real log file),
//! never as one copied batch buffer through `submit`; the log reads back complete.

use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::{Aio, Flags, Info, Op, Output, Rejected, Result};
use std::io::IoSlice;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use xio::log::{Expect, Scanner};
use xio::logger::{LoggerConfig, TransLogger};

const BLOCK: usize = 4096;
const WRITES: usize = 64;

/// A log output that counts how it is written to, over a `MemDisk`.
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

#[test]
fn the_log_thread_writes_payloads_from_the_clients_buffers() {
    let log = Arc::new(Counting {
        inner: MemDisk::new("log", 4 << 20, MemDiskMode::Inline),
        gathers: AtomicUsize::new(0),
        most_pieces: AtomicUsize::new(0),
        plain_writes: AtomicUsize::new(0),
    });
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
