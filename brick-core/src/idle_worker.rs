//! [`IdleWorker`]: a thread that handles queued items in batches, started by the first item
//! and ended after a while without one, so that something idle (a resource nobody writes to)
//! costs no thread. Used for flushes and syncs that must not run on the submitter's thread.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

type Handler<T> = Arc<dyn Fn(Vec<T>) + Send + Sync>;
type Running<T> = Arc<Mutex<Option<(Sender<T>, JoinHandle<()>)>>>;

/// A worker thread on demand. Items are queued in order; the thread hands everything queued
/// so far to the handler at once (one flush can serve every flush queued before it started).
pub struct IdleWorker<T: Send + 'static> {
    name: String,
    idle: Duration,
    handler: Handler<T>,
    running: Running<T>,
}

impl<T: Send + 'static> IdleWorker<T> {
    /// A worker named `name` (the thread's name) that ends after `idle` without items.
    pub fn new(
        name: impl Into<String>,
        idle: Duration,
        handler: impl Fn(Vec<T>) + Send + Sync + 'static,
    ) -> IdleWorker<T> {
        IdleWorker {
            name: name.into(),
            idle,
            handler: Arc::new(handler),
            running: Arc::new(Mutex::new(None)),
        }
    }

    /// Queue `item`, starting the thread if it does not run. The item comes back if the thread
    /// cannot start (the caller then does the work itself).
    ///
    /// Queueing under the lock is what lets the thread end safely: it ends only after it saw
    /// its queue empty under the same lock and took itself out.
    pub fn submit(&self, item: T) -> Result<(), T> {
        let mut running = self.running.lock();
        if running.is_none() {
            let (tx, rx) = crossbeam_channel::unbounded::<T>();
            let (handler, slot, idle) = (self.handler.clone(), self.running.clone(), self.idle);
            match std::thread::Builder::new()
                .name(self.name.clone())
                .spawn(move || run(&rx, &*handler, &slot, idle))
            {
                Ok(t) => *running = Some((tx, t)),
                Err(_) => return Err(item),
            }
        }
        match &*running {
            Some((tx, _)) => tx.send(item).map_err(|e| e.0),
            None => Err(item),
        }
    }

    /// Whether the thread runs now.
    pub fn running(&self) -> bool {
        self.running.lock().is_some()
    }

    /// Handle what is queued, end the thread and wait for it (unless called on it: when the
    /// handler let go of the last owner of this worker).
    pub fn stop(&self) {
        let running = self.running.lock().take();
        if let Some((tx, t)) = running {
            drop(tx);
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl<T: Send + 'static> Drop for IdleWorker<T> {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run<T>(rx: &Receiver<T>, handler: &dyn Fn(Vec<T>), slot: &Running<T>, idle: Duration) {
    loop {
        let first = match rx.recv_timeout(idle) {
            Ok(item) => item,
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                let mut running = slot.lock();
                if rx.is_empty() {
                    // Dropping our own handle detaches this thread; the next item starts one.
                    *running = None;
                    return;
                }
                continue;
            }
        };
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        handler(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::Instant;

    #[test]
    fn the_thread_ends_when_idle_and_the_next_item_starts_it_again() {
        let seen = Arc::new(AtomicUsize::new(0));
        let s2 = seen.clone();
        let w = IdleWorker::new(
            "idle-test",
            Duration::from_millis(50),
            move |b: Vec<u32>| {
                s2.fetch_add(b.len(), SeqCst);
            },
        );
        assert!(!w.running());
        for round in 1..=2 {
            w.submit(1).unwrap();
            w.submit(2).unwrap();
            assert!(w.running());
            let deadline = Instant::now() + Duration::from_secs(10);
            while w.running() {
                assert!(Instant::now() < deadline, "the idle thread did not end");
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(seen.load(SeqCst), 2 * round, "every item handled");
        }
    }

    #[test]
    fn stop_handles_what_is_queued() {
        let seen = Arc::new(AtomicUsize::new(0));
        let s2 = seen.clone();
        let w = IdleWorker::new("idle-test", Duration::from_secs(60), move |b: Vec<u32>| {
            std::thread::sleep(Duration::from_millis(10));
            s2.fetch_add(b.len(), SeqCst);
        });
        for i in 0..20 {
            w.submit(i).unwrap();
        }
        w.stop();
        assert_eq!(seen.load(SeqCst), 20);
        assert!(!w.running());
    }
}
