//! [`SyncFile`]: the thread-pool brick (or, with `threads: 0`, the inline brick: every
//! request runs on the submitting thread).

use crate::file::core::{Admit, FileCore};
use crate::file::{FileKind, FileOptions};
use brick_core::{Aio, Brick, Error, Info, Output, PowerState, Rejected, Result, StatsSnapshot};
use crossbeam_channel::{Receiver, Sender};
use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

thread_local! {
    /// The core whose worker this thread is (0: none), so that a completion hook resubmitting
    /// to the same brick never blocks waiting for a queue slot that only workers can free.
    static WORKER_OF: Cell<usize> = const { Cell::new(0) };
}

static INSTANCE: AtomicUsize = AtomicUsize::new(0);

type Job = (Box<Aio>, Instant);

/// A file or block device served by a thread pool (`pread`/`pwrite`).
///
/// Worker threads are named `xio-sio-<n>` (`n` unique per instance); dropping the brick waits
/// for in-flight requests and joins them.
pub struct SyncFile {
    core: Arc<FileCore>,
    tx: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl SyncFile {
    /// Open `path` (see [`crate::file`] for the options and semantics).
    pub fn open(path: impl AsRef<Path>, opts: &FileOptions) -> Result<SyncFile> {
        let core = Arc::new(FileCore::open(path.as_ref(), opts)?);
        if opts.threads == 0 {
            return Ok(SyncFile {
                core,
                tx: None,
                workers: Vec::new(),
            });
        }
        let (tx, rx) = crossbeam_channel::bounded::<Job>(core.admission.limit() as usize);
        let id = INSTANCE.fetch_add(1, Relaxed);
        let mut workers = Vec::new();
        for _ in 0..opts.threads {
            let (core, rx) = (core.clone(), rx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("xio-sio-{id}"))
                .spawn(move || worker(core, rx));
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => {
                    // Join what was started before failing.
                    drop(tx);
                    for h in workers {
                        let _ = h.join();
                    }
                    return Err(Error::Brick {
                        brick: core_name(opts, path.as_ref()),
                        message: format!("cannot start a worker thread: {e}"),
                    });
                }
            }
        }
        Ok(SyncFile {
            core,
            tx: Some(tx),
            workers,
        })
    }

    /// Regular file, block device or other.
    pub fn kind(&self) -> FileKind {
        self.core.kind
    }
    /// Re-read the size after outside changes.
    pub fn refresh_size(&self) -> Result<u64> {
        self.core.refresh_size()
    }
    /// Write the dirty pages out and drop the page cache (`FileBrick::drop_page_cache`).
    pub fn drop_page_cache(&self) -> Result<()> {
        self.core.drop_page_cache()
    }
    /// Resize a regular file.
    pub fn set_size(&self, size: u64) -> Result<()> {
        self.core.set_size(size)
    }
    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        self.core.admission.used() as usize
    }
    /// Switch off, waiting up to `timeout` for in-flight IO to drain.
    pub fn switch_off_wait(&self, timeout: Duration) -> Result<()> {
        self.core
            .power
            .switch_off_wait(&self.core.name, timeout, || Ok(()))
    }
}

fn core_name(opts: &FileOptions, path: &Path) -> String {
    opts.name
        .clone()
        .unwrap_or_else(|| path.display().to_string())
}

fn worker(core: Arc<FileCore>, rx: Receiver<Job>) {
    WORKER_OF.with(|w| w.set(Arc::as_ptr(&core) as usize));
    brick_core::mark_completion_thread("sio worker");
    for (mut req, started) in rx {
        let result = core.execute_sync(&mut req);
        // A panicking completion hook must not kill the worker (see aio's completion loop).
        let run = std::panic::AssertUnwindSafe(|| core.complete(req, started, result));
        if std::panic::catch_unwind(run).is_err() {
            tracing::error!(brick = %core.name, "a completion hook panicked");
        }
    }
}

impl Output for SyncFile {
    fn info(&self) -> Result<Info> {
        Ok(self.core.info())
    }
    fn prepare(&self, req: &mut Aio) -> Result<()> {
        self.core.prepare(req);
        Ok(())
    }
    fn write_gather(&self, pos: u64, bufs: &[std::io::IoSlice<'_>]) -> Option<Result<()>> {
        Some(self.core.write_gather(pos, bufs))
    }
    fn submit(&self, req: Box<Aio>) -> Result<(), Rejected> {
        let core = &self.core;
        let on_worker = WORKER_OF.with(|w| w.get()) == Arc::as_ptr(core) as usize;
        match core.admit(req, !on_worker)? {
            Admit::Done(req, result) => core.complete_now(req, result),
            Admit::Go(mut req) => {
                let Some(tx) = self.tx.as_ref() else {
                    // Inline (no workers): run it here.
                    let started = Instant::now();
                    let result = core.execute_sync(&mut req);
                    core.complete(req, started, result);
                    return Ok(());
                };
                // Admission keeps at most `depth` jobs queued, so the bounded channel has room;
                // the workers live as long as the sender, so it is connected.
                if let Err(e) = tx.try_send((req, Instant::now())) {
                    let (req, started) = e.into_inner();
                    let err = Error::Off {
                        brick: core.name.clone(),
                    };
                    core.complete(req, started, Err(err));
                }
            }
        }
        Ok(())
    }
}

impl Brick for SyncFile {
    fn name(&self) -> &str {
        &self.core.name
    }
    fn switch(&self, on: bool) -> Result<()> {
        if on {
            self.core.power.switch_on(|| Ok(()))
        } else {
            self.core.power.switch_off(&self.core.name, || Ok(()))
        }
    }
    fn power(&self) -> PowerState {
        self.core.power.state()
    }
    fn stats(&self) -> StatsSnapshot {
        self.core.stats.snapshot()
    }
}

impl Drop for SyncFile {
    fn drop(&mut self) {
        // Closing the channel ends each worker once the queue is empty.
        self.tx.take();
        let on_worker = WORKER_OF.with(|w| w.get()) == Arc::as_ptr(&self.core) as usize;
        for h in self.workers.drain(..) {
            // A hook on one of our own workers may drop the last handle: that worker cannot
            // join itself; it exits on its own once the queue is empty.
            if !on_worker {
                let _ = h.join();
            }
        }
    }
}
