//! The checksum brick's flush thread: flushes run beside the submitter (a flush is two
//! `fdatasync`s: the device's and the checksum file's), one flush serving every flush queued
//! before it started. It starts with the first flush and ends after [`IDLE`] without one, so
//! an idle device costs no thread (measured: one per resource of an idle node before).

use super::Core;
use brick_core::{Aio, Error};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// The flush thread and its queue, while it runs.
pub(super) type FlushThread = Mutex<Option<(Sender<Box<Aio>>, JoinHandle<()>)>>;

/// The flush thread ends after this long without a flush.
const IDLE: Duration = if cfg!(test) {
    Duration::from_millis(100)
} else {
    Duration::from_secs(10)
};

impl Core {
    /// Queue `req` for the flush thread, starting it if it does not run. The request comes back
    /// if the thread cannot start (the caller then flushes itself).
    ///
    /// Sending under the lock is what lets the thread end safely: it ends only after it saw its
    /// queue empty under the same lock, and took itself out of the slot.
    pub(super) fn queue_flush(&self, me: &Arc<Core>, req: Box<Aio>) -> Result<(), Box<Aio>> {
        let mut ft = self.flush_thread.lock();
        if ft.is_none() {
            let (tx, rx) = crossbeam_channel::unbounded::<Box<Aio>>();
            let weak = Arc::downgrade(me);
            match std::thread::Builder::new()
                .name("csum-flush".into())
                .spawn(move || run(&weak, &rx))
            {
                Ok(t) => *ft = Some((tx, t)),
                Err(_) => return Err(req),
            }
        }
        match &*ft {
            Some((tx, _)) => tx.send(req).map_err(|e| e.0),
            None => Err(req),
        }
    }
}

/// The thread: holds only a weak reference, so it ends when the brick is dropped.
fn run(weak: &Weak<Core>, rx: &Receiver<Box<Aio>>) {
    loop {
        let first = match rx.recv_timeout(IDLE) {
            Ok(req) => req,
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                let Some(core) = weak.upgrade() else { return };
                let mut ft = core.flush_thread.lock();
                if rx.is_empty() {
                    // Dropping our own handle detaches this thread; the next flush starts one.
                    *ft = None;
                    return;
                }
                continue;
            }
        };
        // One flush serves every flush queued so far: each was submitted before it started,
        // so it covers what each of them must cover.
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        match weak.upgrade() {
            Some(core) => {
                let r = core.flush(false);
                for req in batch {
                    core.finish_flush(req, r.clone());
                }
            }
            None => {
                for req in batch {
                    req.finish(Err(Error::Invalid("checksum brick dropped")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::CsumDisk;
    use brick_core::bricks::{MemDisk, MemDiskMode};
    use brick_core::{Aio, Op};
    use std::time::{Duration, Instant};

    fn running(d: &CsumDisk) -> bool {
        d.core().flush_thread.lock().is_some()
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
                assert!(Instant::now() < deadline, "the idle flush thread did not end");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        assert_eq!(brick_core::read_all(&*d, 0, 4096).unwrap(), vec![2u8; 4096]);
        assert_eq!(d.status().known, 1);
    }
}
