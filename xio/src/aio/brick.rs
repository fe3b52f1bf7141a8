//! [`UringFile`]: the io_uring brick, its submit path and its completion thread.
#![allow(unsafe_code)]

use super::local;
use super::ring::{Ring, WAKE};
use super::state::{self, Stage, Step, UringAspect};
use crate::file::core::{Admit, FileCore};
use crate::file::{from_io, FileKind, FileOptions};
use brick_core::{
    Aio, Brick, Error, Flags, Info, Op, Output, PowerState, Rejected, Result, Slot, StatsSnapshot,
};
use parking_lot::Mutex;
use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// User data of the shutdown marker (never a valid request pointer: not aligned).
const SHUTDOWN: u64 = u64::MAX;
/// The completion thread wakes at least this often (to notice submissions whose enter failed).
const IDLE_WAKE: Duration = Duration::from_millis(100);

thread_local! {
    /// The brick (address of its `Shared`) whose completion thread this is, or 0.
    static COMPLETION_OF: Cell<usize> = const { Cell::new(0) };
    /// The brick whose submissions this thread currently defers (batch scope or completion
    /// thread), or 0.
    static DEFER: Cell<usize> = const { Cell::new(0) };
}

static INSTANCE: AtomicUsize = AtomicUsize::new(0);

struct Shared {
    core: FileCore,
    ring: Ring,
    fd: i32,
    slot: Slot<UringAspect>,
    stopping: AtomicBool,
}

/// A file or block device served by io_uring.
///
/// The completion thread is named `xio-aio-<n>` (`n` unique per instance). It starts with the
/// first request that goes through the brick's ring: a device whose IO is all driven (the
/// logger's writeback, NBD readers) or done inline (`MAY_BLOCK` flushes) never has one, so an
/// idle primary costs no thread for it. Dropping the brick waits for in-flight requests and
/// joins it.
pub struct UringFile {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl UringFile {
    /// Open `path` (see [`crate::file`] for the options and semantics).
    pub fn open(path: impl AsRef<Path>, opts: &FileOptions) -> Result<UringFile> {
        let core = FileCore::open(path.as_ref(), opts)?;
        let ring = Ring::new(core.admission.limit() as usize).map_err(|e| Error::Brick {
            brick: core.name.clone(),
            message: format!(
                "cannot set up io_uring: {e}; is io_uring disabled (sysctl kernel.io_uring_disabled)? \
                 use the sio backend instead"
            ),
        })?;
        let fd = core.file.as_raw_fd();
        let shared = Arc::new(Shared {
            core,
            ring,
            fd,
            slot: Slot::new(),
            stopping: AtomicBool::new(false),
        });
        Ok(UringFile {
            shared,
            thread: Mutex::new(None),
        })
    }

    /// Start the completion thread unless it runs: before anything is queued in the ring
    /// (only that thread enters it).
    fn completion_thread(&self) -> Result<()> {
        let mut t = self.thread.lock();
        if t.is_none() {
            let id = INSTANCE.fetch_add(1, Relaxed);
            let s = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("xio-aio-{id}"))
                .spawn(move || completion_loop(s))
                .map_err(|e| Error::Brick {
                    brick: self.shared.core.name.clone(),
                    message: format!("cannot start the completion thread: {e}; the machine is out of threads or memory"),
                })?;
            *t = Some(spawned);
        }
        Ok(())
    }

    fn me(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }

    /// Run `f`; requests this thread submits to this brick inside `f` are handed to the kernel
    /// with one system call when `f` returns. Nested batches enter once, at the outermost end.
    pub fn batch<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore<'a> {
            prev: usize,
            me: usize,
            ring: &'a Ring,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                DEFER.with(|d| d.set(self.prev));
                if self.prev != self.me {
                    self.ring.wake();
                }
            }
        }
        let me = self.me();
        let _restore = Restore {
            prev: DEFER.with(|d| d.replace(me)),
            me,
            ring: &self.shared.ring,
        };
        f()
    }

    /// Regular file, block device or other.
    pub fn kind(&self) -> FileKind {
        self.shared.core.kind
    }
    /// Re-read the size after outside changes.
    pub fn refresh_size(&self) -> Result<u64> {
        self.shared.core.refresh_size()
    }
    /// Write the dirty pages out and drop the page cache (`FileBrick::drop_page_cache`).
    pub fn drop_page_cache(&self) -> Result<()> {
        self.shared.core.drop_page_cache()
    }
    /// Resize a regular file.
    pub fn set_size(&self, size: u64) -> Result<()> {
        self.shared.core.set_size(size)
    }
    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        self.shared.core.admission.used() as usize
    }
    /// Switch off, waiting up to `timeout` for in-flight IO to drain.
    pub fn switch_off_wait(&self, timeout: Duration) -> Result<()> {
        let core = &self.shared.core;
        core.power.switch_off_wait(&core.name, timeout, || Ok(()))
    }
}

/// Where a request's next submission goes.
#[derive(Clone, Copy)]
enum Route {
    /// The brick's ring; `deferred`: the completion thread (or a batch's end) enters it,
    /// otherwise wake the completion thread.
    Ring { deferred: bool },
    /// The submitting thread's own ring (driven mode, [`local`]).
    Local,
}

impl local::Owner for Shared {
    fn on_local_completion(self: Arc<Self>, req: Box<Aio>, res: i32) {
        self.on_completion(req, res, true);
    }
    fn name(&self) -> &str {
        &self.core.name
    }
}

impl Shared {
    /// Start (or continue) `req` in `stage`: build its submission and queue it.
    fn start(self: &Arc<Self>, mut req: Box<Aio>, stage: Stage, done: usize, route: Route) {
        {
            let a = req.aspect(&self.slot);
            a.stage = stage;
            a.done = done;
        }
        let direct = self.core.opts.direct.then(|| {
            let a = req.aspect(&self.slot);
            // SAFETY (pointer arithmetic): `bounce_at` is inside `bounce` (set by `bounce()`).
            unsafe { a.bounce.as_mut_ptr().add(a.bounce_at) }
        });
        let entry = state::entry(self.fd, &mut req, stage, done, direct);
        let deferred = match route {
            Route::Local => {
                // SAFETY: the entry points into the request's own buffers (see below) or the
                // static ZEROES; `push` keeps the request until the entry's completion.
                if let Err((req, e)) = unsafe { local::push(self.clone(), req, entry) } {
                    self.finish(req, Err(from_io(&e, "queueing an io_uring submission")));
                }
                return;
            }
            Route::Ring { deferred } => deferred,
        };
        let ptr = Box::into_raw(req);
        let entry = entry.user_data(ptr as u64);
        // SAFETY: the entry points into the request's `data` heap buffer, its aspect's bounce
        // buffer (O_DIRECT) or the static ZEROES; the request is leaked into the ring (`ptr`)
        // and nobody touches it (or its buffers) until the completion thread takes it back
        // with `Box::from_raw` after this entry's completion.
        let pushed = unsafe { self.ring.push(&entry) };
        if let Err(e) = pushed {
            // SAFETY: the push failed, so the kernel never saw `ptr`; we own it again.
            let req = unsafe { Box::from_raw(ptr) };
            self.finish(req, Err(from_io(&e, "queueing an io_uring submission")));
            return;
        }
        if !deferred {
            // Only the completion thread enters the ring (see `ring.rs`): wake it.
            self.ring.wake();
        }
    }

    fn finish(&self, mut req: Box<Aio>, result: Result<()>) {
        let (started, done) = {
            let a = req.aspect(&self.slot);
            (a.started.unwrap_or_else(Instant::now), a.done)
        };
        if req.op == Op::Read {
            let got = match &result {
                Ok(()) => req.len,
                Err(Error::ShortRead { got, .. }) => *got,
                Err(_) => done,
            };
            if self.core.opts.direct {
                let a = req.aspect(&self.slot);
                let bounce = std::mem::take(&mut a.bounce);
                let at = a.bounce_at;
                req.data.clear();
                req.data
                    .extend_from_slice(&bounce[at..at + got.min(req.len)]);
                req.aspect(&self.slot).bounce = bounce;
            } else {
                state::finish_read_buffer(&mut req, got);
            }
        }
        self.core.complete(req, started, result);
    }

    /// Handle one completion (on the completion thread, or `local`ly on a driven thread).
    fn on_completion(self: &Arc<Self>, mut req: Box<Aio>, res: i32, local: bool) {
        let (stage, done) = {
            let a = req.aspect(&self.slot);
            (a.stage, a.done)
        };
        match state::step(&self.core, &req, stage, done, res) {
            Step::Next(stage, done) => {
                let route = if local {
                    Route::Local
                } else {
                    Route::Ring { deferred: true }
                };
                self.start(req, stage, done, route)
            }
            Step::Finish(result) => self.finish(req, result),
        }
    }
}

fn completion_loop(shared: Arc<Shared>) {
    let me = Arc::as_ptr(&shared) as usize;
    brick_core::mark_completion_thread("io_uring completion");
    COMPLETION_OF.with(|c| c.set(me));
    DEFER.with(|d| d.set(me));
    let mut batch = [(0u64, 0i32); 64];
    if let Err(e) = shared.ring.start_issuer() {
        tracing::error!(brick = %shared.core.name, "cannot start the io_uring issuer: {e}");
    }
    loop {
        // Also submits everything the hooks queued during the last round: one enter.
        if let Err(e) = shared.ring.wait(IDLE_WAKE) {
            tracing::warn!(brick = %shared.core.name, "io_uring wait failed: {e}");
            std::thread::sleep(Duration::from_millis(1));
        }
        loop {
            let n = shared.ring.reap(&mut batch);
            for &(user_data, res) in &batch[..n] {
                if user_data == SHUTDOWN {
                    continue;
                }
                if user_data == WAKE {
                    // Clear first: a submitter queueing after this point writes again.
                    shared.ring.woken();
                    if let Err(e) = shared.ring.arm_wake() {
                        tracing::warn!(brick = %shared.core.name, "cannot re-arm the wake-up read: {e}");
                    }
                    continue;
                }
                // SAFETY: every other user data is a request leaked by `Shared::start` for
                // exactly this submission, whose completion this is; it is taken back once.
                let req = unsafe { Box::from_raw(user_data as *mut Aio) };
                // A panicking completion hook must not take the completion thread (and with it
                // every later request of this brick) down; the brick's own accounting is done
                // before hooks run.
                let run = std::panic::AssertUnwindSafe(|| shared.on_completion(req, res, false));
                if std::panic::catch_unwind(run).is_err() {
                    tracing::error!(brick = %shared.core.name, "a completion hook panicked");
                }
            }
            if n < batch.len() {
                break;
            }
        }
        if shared.stopping.load(SeqCst) && shared.core.admission.used() == 0 {
            break;
        }
    }
}

impl Output for UringFile {
    fn info(&self) -> Result<Info> {
        Ok(self.shared.core.info())
    }
    fn prepare(&self, req: &mut Aio) -> Result<()> {
        self.shared.core.prepare(req);
        Ok(())
    }
    /// Buffered files only: `pwritev` on the calling thread from the pieces, no copy. An
    /// `O_DIRECT` file has none: the pieces would be copied into a bounce buffer anyway, and
    /// its submit path keeps several requests in flight on the device.
    fn write_gather(&self, pos: u64, bufs: &[std::io::IoSlice<'_>]) -> Option<Result<()>> {
        let core = &self.shared.core;
        (!core.opts.direct).then(|| core.write_gather(pos, bufs))
    }
    fn submit(&self, req: Box<Aio>) -> Result<(), Rejected> {
        let s = &self.shared;
        let me = self.me();
        let on_completion_thread = COMPLETION_OF.with(|c| c.get()) == me;
        // Driven: this thread's own ring (never the completion thread's: it has its own).
        let driven = !on_completion_thread && local::active();
        let deferred = DEFER.with(|d| d.get()) == me;
        if deferred && !on_completion_thread && s.core.admission.used() >= s.core.admission.limit()
        {
            // About to wait for a slot: first let the kernel see what this batch queued.
            s.ring.wake();
        }
        let admitted = if driven {
            let wait = if local::reaping() {
                Duration::ZERO
            } else {
                s.core.opts.busy_wait
            };
            s.core
                .admit_with(req, |queue| local::take_slot(queue, wait))
        } else {
            s.core.admit(req, !on_completion_thread)
        };
        match admitted? {
            Admit::Done(req, result) => s.core.complete_now(req, result),
            // A buffered write is a copy into the page cache that io_uring cannot do without
            // blocking (ext4: it punts every one to an io-wq worker, one at a time per file).
            // A submitter that may block saves the hand-off and the wake-ups by doing it here.
            // A flush done here also never needs an io-wq worker (io_uring runs every fsync on
            // one, and the last worker of a ring stays for the ring's life: a thread per idle
            // device).
            Admit::Go(mut req)
                if req.flags.contains(Flags::MAY_BLOCK)
                    && (req.op == Op::Flush || (req.op == Op::Write && !s.core.opts.direct)) =>
            {
                let started = Instant::now();
                let result = s.core.execute_sync(&mut req);
                s.core.complete(req, started, result);
            }
            Admit::Go(mut req) => {
                let stage = state::first_stage(req.op);
                {
                    let a = req.aspect(&s.slot);
                    a.started = Some(Instant::now());
                }
                if req.op == Op::Read {
                    state::prepare_read_buffer(&mut req);
                }
                if s.core.opts.direct {
                    let mut a = std::mem::take(req.aspect(&s.slot));
                    state::prepare_bounce(&mut req, &mut a);
                    *req.aspect(&s.slot) = a;
                }
                let route = if driven {
                    Route::Local
                } else {
                    if let Err(e) = self.completion_thread() {
                        s.finish(req, Err(e));
                        return Ok(());
                    }
                    Route::Ring { deferred }
                };
                s.start(req, stage, 0, route);
            }
        }
        Ok(())
    }
}

impl Brick for UringFile {
    fn name(&self) -> &str {
        &self.shared.core.name
    }
    fn switch(&self, on: bool) -> Result<()> {
        let core = &self.shared.core;
        if on {
            core.power.switch_on(|| Ok(()))
        } else {
            core.power.switch_off(&core.name, || Ok(()))
        }
    }
    fn power(&self) -> PowerState {
        self.shared.core.power.state()
    }
    fn stats(&self) -> StatsSnapshot {
        self.shared.core.stats.snapshot()
    }
}

impl Drop for UringFile {
    fn drop(&mut self) {
        let s = &self.shared;
        s.stopping.store(true, SeqCst);
        // What this thread has in its own ring must be reaped first, by this thread.
        if local::inflight() > 0 {
            local::drain();
        }
        let Some(thread) = self.thread.get_mut().take() else {
            return; // never started: nothing ever went through the ring
        };
        let nop = io_uring::opcode::Nop::new().build().user_data(SHUTDOWN);
        // SAFETY: a NOP points to no memory.
        if unsafe { s.ring.push(&nop) }.is_ok() {
            s.ring.wake();
        }
        // The completion thread exits once nothing is in flight. A hook on it may drop the
        // last handle: that thread cannot join itself; it exits by itself.
        if COMPLETION_OF.with(|c| c.get()) != self.me() {
            let _ = thread.join();
        }
    }
}
