//! Ways for an initiator to collect completions: a [`CompletionQueue`] (a channel of finished
//! requests, for pipelines with many requests in flight) and [`submit_wait`] (one synchronous
//! request, for control paths and tests).

use crate::brick::Output;
use crate::error::Result;
use crate::request::{Aio, Completer};
use crossbeam_channel::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

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
        self.rx
            .recv()
            .expect("the queue holds its own sender, so it never disconnects")
    }

    /// Wait at most `timeout` for the next completion.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Box<Aio>> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// A completion if one is ready.
    pub fn try_recv(&self) -> Option<Box<Aio>> {
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
