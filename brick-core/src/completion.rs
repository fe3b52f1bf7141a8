//! Ways for an initiator to collect completions: a [`CompletionQueue`] (a channel of finished
//! requests, for pipelines with many requests in flight) and [`submit_wait`] (one synchronous
//! request, for control paths and tests).

use crate::brick::Output;
use crate::error::Result;
use crate::request::{Aio, Completer};
use crossbeam_channel::{Receiver, Sender};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reaps completions that only the calling thread can reap (e.g. of an io_uring that this
/// thread submits to and waits in itself). `wait`: how long it may sleep for one (`None`: not
/// at all). Returns `false` when this thread has nothing of its own in flight.
pub type Driver = fn(wait: Option<Duration>) -> bool;

/// How long one wait in a [`Driver`] lasts before the channel is looked at again (a completion
/// may also come from another thread: then it is seen this much later).
const DRIVE_SLICE: Duration = Duration::from_millis(10);

thread_local! {
    static DRIVER: Cell<Option<Driver>> = const { Cell::new(None) };
}

/// Run `f` with `driver` installed on this thread: while it runs, a [`CompletionQueue`] waiting
/// on this thread drives it instead of sleeping on its channel. Nested installs: the innermost
/// wins until it returns.
pub fn with_driver<R>(driver: Driver, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Driver>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DRIVER.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(DRIVER.with(|d| d.replace(Some(driver))));
    f()
}

fn driver() -> Option<Driver> {
    DRIVER.with(|d| d.get())
}

struct QueueHook(Sender<Box<Aio>>);

impl Completer for QueueHook {
    fn complete(&self, req: Box<Aio>) {
        // The receiver may be gone if the initiator gave up; the request is then dropped.
        let _ = self.0.send(req);
    }
}

/// Completed requests arrive here, in completion order.
pub struct CompletionQueue {
    hook: Arc<dyn Completer>,
    rx: Receiver<Box<Aio>>,
}

impl Default for CompletionQueue {
    fn default() -> Self {
        CompletionQueue::new()
    }
}

impl CompletionQueue {
    /// An unbounded completion queue (the number of requests in flight bounds it).
    pub fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        CompletionQueue {
            hook: Arc::new(QueueHook(tx)),
            rx,
        }
    }

    /// The hook to push onto a request so that its completion lands in this queue.
    pub fn hook(&self) -> Arc<dyn Completer> {
        self.hook.clone()
    }

    /// Push the hook onto `req` and submit it to `out`. On rejection the hook is removed again
    /// and the rejection returned.
    pub fn submit(&self, out: &dyn Output, mut req: Box<Aio>) -> Result<(), crate::Rejected> {
        req.push_hook(self.hook.clone());
        out.submit(req).map_err(|mut rej| {
            rej.req.pop_hook();
            rej
        })
    }

    /// Block for the next completion.
    pub fn recv(&self) -> Box<Aio> {
        loop {
            if let Some(req) = self.recv_timeout(Duration::from_secs(3600)) {
                return req;
            }
        }
    }

    /// Wait at most `timeout` for the next completion (driving this thread's own IO, see
    /// [`with_driver`], while it has some in flight).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Box<Aio>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(req) = self.rx.try_recv() {
                return Some(req);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match driver() {
                Some(drive) if !left.is_zero() && drive(Some(left.min(DRIVE_SLICE))) => {}
                _ => return self.rx.recv_timeout(left).ok(),
            }
        }
    }

    /// A completion if one is ready (after reaping this thread's own, see [`with_driver`]).
    pub fn try_recv(&self) -> Option<Box<Aio>> {
        if let Ok(req) = self.rx.try_recv() {
            return Some(req);
        }
        // Only when nothing is queued: reaping costs a system call.
        driver()?(None);
        self.rx.try_recv().ok()
    }
}

/// Submit one request and wait for it. Returns the completed request (its `error` tells the
/// outcome) or the rejection's error.
pub fn submit_wait(out: &dyn Output, req: Box<Aio>) -> Result<Box<Aio>> {
    let cq = CompletionQueue::new();
    cq.submit(out, req).map_err(|rej| rej.error)?;
    Ok(cq.recv())
}

/// Submit one request, wait, and turn its error field into a `Result`.
pub fn run(out: &dyn Output, req: Box<Aio>) -> Result<Box<Aio>> {
    let mut done = submit_wait(out, req)?;
    match done.error.take() {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

/// Read `len` bytes at `pos`, looping over `prepare` shortening.
pub fn read_all(out: &dyn Output, pos: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    let mut done = 0usize;
    while done < len {
        let mut req = Aio::read(pos + done as u64, len - done);
        out.prepare(&mut req)?;
        let got = run(out, req)?;
        buf.extend_from_slice(&got.data[..got.len]);
        done += got.len;
    }
    Ok(buf)
}

/// Write the concatenation of `bufs` at `pos` and wait: with the output's own gather write
/// ([`Output::write_gather`], no copy) or, where it has none, as one copy through `submit`
/// (several, when `prepare` shortens it).
pub fn write_gather(out: &dyn Output, pos: u64, bufs: &[std::io::IoSlice<'_>]) -> Result<()> {
    if let Some(result) = out.write_gather(pos, bufs) {
        return result;
    }
    let total = bufs.iter().map(|b| b.len()).sum();
    let mut req = Aio::new(crate::Op::Write, pos, total);
    out.prepare(&mut req)?;
    let mut data = Vec::with_capacity(total);
    for b in bufs {
        data.extend_from_slice(b);
    }
    if req.len < total {
        return write_all(out, pos, &data);
    }
    req.data = data;
    run(out, req).map(drop)
}

/// Write `data` at `pos`, looping over `prepare` shortening.
pub fn write_all(out: &dyn Output, pos: u64, data: &[u8]) -> Result<()> {
    let mut done = 0usize;
    while done < data.len() {
        let mut req = Aio::new(crate::Op::Write, pos + done as u64, data.len() - done);
        out.prepare(&mut req)?;
        req.data = data[done..done + req.len].to_vec();
        let n = req.len;
        run(out, req)?;
        done += n;
    }
    Ok(())
}
