//! The checksum brick's flush thread: flushes run beside the submitter (a flush is two
//! `fdatasync`s: the device's and the checksum file's). It starts with the first flush and
//! ends after [`IDLE`] without one, so an idle device costs no thread (measured: one per
//! resource of an idle node before).

use super::Core;
use brick_core::{Aio, IdleWorker};
use std::sync::Arc;
use std::time::Duration;

/// The flush thread: queued flushes with the core they flush.
pub(super) type FlushThread = IdleWorker<(Box<Aio>, Arc<Core>)>;

/// The flush thread ends after this long without a flush.
const IDLE: Duration = if cfg!(test) {
    Duration::from_millis(100)
} else {
    Duration::from_secs(10)
};

/// A flush thread (not started yet). One flush serves every flush queued so far: each was
/// submitted before it started, so it covers what each of them must cover.
pub(super) fn flush_thread() -> FlushThread {
    IdleWorker::new("csum-flush", IDLE, |batch: Vec<(Box<Aio>, Arc<Core>)>| {
        let Some(core) = batch.first().map(|(_, c)| c.clone()) else {
            return;
        };
        let r = core.flush(false);
        for (req, _) in batch {
            core.finish_flush(req, r.clone());
        }
    })
}

impl Core {
    /// Queue `req` for the flush thread. The request comes back if the thread cannot start
    /// (the caller then flushes itself).
    pub(super) fn queue_flush(&self, me: &Arc<Core>, req: Box<Aio>) -> Result<(), Box<Aio>> {
        self.flush_thread
            .submit((req, me.clone()))
            .map_err(|(req, _)| req)
    }
}

#[cfg(test)]
mod tests {
    use super::super::CsumDisk;
    use brick_core::bricks::{MemDisk, MemDiskMode};
    use brick_core::{Aio, Op};
    use std::time::{Duration, Instant};

    fn running(d: &CsumDisk) -> bool {
        d.core().flush_thread.running()
    }

    #[test]
    fn the_flush_thread_ends_when_idle_and_the_next_flush_starts_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let inner = MemDisk::new("data", 1 << 20, MemDiskMode::Threaded(1));
        let d = CsumDisk::open(inner, "data", &dir.path().join("csum"), true).unwrap();
        assert!(!running(&d), "started before the first flush");
        for round in 0..2u8 {
            brick_core::write_all(&*d, 0, &[round + 1; 4096]).unwrap();
            brick_core::run(&*d, Aio::new(Op::Flush, 0, 0)).unwrap();
            assert!(running(&d), "no flush thread after a flush (round {round})");
            let deadline = Instant::now() + Duration::from_secs(10);
            while running(&d) {
                assert!(
                    Instant::now() < deadline,
                    "the idle flush thread did not end"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        assert_eq!(brick_core::read_all(&*d, 0, 4096).unwrap(), vec![2u8; 4096]);
        assert_eq!(d.status().known, 1);
    }
}
