//! The copy engine: copies `[start, end)` from a [`CopySource`] (input A) to an
//! [`Output`] (input B).
//!
//! **Invariants** (tested in `xio/tests/copy_*.rs`):
//! - Strict write order: chunk *k*'s write is submitted only after chunk *k−1*'s write was
//!   submitted (or *k−1* needed none), so an appending target never sees a hole.
//! - The restart position only covers chunks whose writes completed **and were flushed** on B
//!   before it was persisted; resuming from it never skips data.
//! - Fast full sync transfers only chunks whose checksums differ (except that after 32
//!   differing chunks in a row it reads plainly, comparing every 16th chunk, so at most 15
//!   identical chunks after a long differing run travel); the result is byte-identical.
//! - At most `window` chunks are in flight; the limiter bounds transferred bytes per second.

use super::error::{CopyError, Result};
use super::restart::{self, RestartPoint};
use super::source::CopySource;
use crate::remote::chunk_sum;
use brick_core::{Aio, CompletionQueue, Limiter, Op, Output};
use parking_lot::{Condvar, Mutex};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings of one copy.
#[derive(Clone)]
pub struct CopyConfig {
    /// First byte to copy (a stored restart position further on wins).
    pub start: u64,
    /// End of the range (`None`: the source's size).
    pub end: Option<u64>,
    /// Chunk size (64 KiB .. 8 MiB is sensible).
    pub chunk: usize,
    /// Chunks in flight.
    pub window: usize,
    /// Fast full sync: compare checksums, transfer only differing chunks.
    pub fast: bool,
    /// Bytes/s limit on transferred data (shared hierarchy).
    pub limiter: Option<Arc<Limiter>>,
    /// Where the restart position is persisted (`None`: not persisted).
    pub restart_file: Option<PathBuf>,
    /// How often the restart position is persisted (each time after a flush of B).
    pub persist_every: Duration,
    /// How long one chunk retries transient source errors before the copy fails.
    pub retry_for: Duration,
}

impl CopyConfig {
    /// Defaults: whole source, 1 MiB chunks, window 8, fast sync, persist every second.
    pub fn new() -> CopyConfig {
        CopyConfig {
            start: 0,
            end: None,
            chunk: 1 << 20,
            window: 8,
            fast: true,
            limiter: None,
            restart_file: None,
            persist_every: Duration::from_secs(1),
            retry_for: Duration::from_secs(300),
        }
    }
}

impl Default for CopyConfig {
    fn default() -> Self {
        CopyConfig::new()
    }
}

/// Where a copy stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyProgress {
    /// Where this run started (the stored restart position or `start`).
    pub resumed_from: u64,
    /// Everything below is copied (and, once persisted, durable).
    pub restart_pos: u64,
    /// End of the range.
    pub end: u64,
    /// Bytes transferred from A and written to B in this run.
    pub transferred: u64,
    /// Bytes found identical by checksum in this run (not transferred).
    pub skipped: u64,
    /// Whether the whole range is done.
    pub complete: bool,
}

struct Sched {
    next: u64,
    /// Workers holding a chunk (taken, not yet done or abandoned).
    active: usize,
    turn: u64,
    contiguous: u64,
    done: BTreeSet<u64>,
    error: Option<CopyError>,
}

/// A copy from A to B.
pub struct Copy {
    name: String,
    a: Arc<dyn CopySource>,
    b: Arc<dyn Output>,
    cfg: CopyConfig,
    sched: Mutex<Sched>,
    cv: Condvar,
    stop: AtomicBool,
    transferred: AtomicU64,
    /// Consecutive compared chunks that differed (fast sync adapts to it).
    differ_streak: AtomicU64,
    skipped: AtomicU64,
    progress: Mutex<CopyProgress>,
}

impl Copy {
    /// Prepare a copy (nothing happens until [`Copy::run`]).
    pub fn new(
        name: impl Into<String>,
        a: Arc<dyn CopySource>,
        b: Arc<dyn Output>,
        cfg: CopyConfig,
    ) -> Arc<Copy> {
        Arc::new(Copy {
            name: name.into(),
            a,
            b,
            cfg,
            sched: Mutex::new(Sched {
                next: 0,
                active: 0,
                turn: 0,
                contiguous: 0,
                done: BTreeSet::new(),
                error: None,
            }),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            transferred: AtomicU64::new(0),
            differ_streak: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            progress: Mutex::new(CopyProgress::default()),
        })
    }

    /// Progress (updated as chunks complete).
    pub fn progress(&self) -> CopyProgress {
        let mut p = *self.progress.lock();
        p.transferred = self.transferred.load(Ordering::Relaxed);
        p.skipped = self.skipped.load(Ordering::Relaxed);
        p
    }

    /// Ask a running copy to stop soon (its restart position is persisted).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.cv.notify_all();
    }

    /// Run the copy to the end (or until [`Copy::stop`] or an error). Blocking; uses `window`
    /// worker threads.
    pub fn run(&self) -> Result<CopyProgress> {
        let end = match self.cfg.end {
            Some(e) => e,
            None => self.source_size()?,
        };
        let tsize = self
            .b
            .info()
            .map_err(|source| CopyError::Target { pos: 0, source })?
            .size;
        if tsize < end {
            return Err(CopyError::TargetTooSmall {
                target: tsize,
                needed: end,
            });
        }
        let chunk = self.cfg.chunk.max(4096);
        let mut start = self.cfg.start.min(end);
        if let Some(path) = &self.cfg.restart_file {
            let stored = restart::load(path).map_err(|source| CopyError::Restart {
                path: path.display().to_string(),
                source,
            })?;
            match stored {
                Some(rp) if rp.end == end && rp.pos >= start && rp.pos <= end => {
                    tracing::info!(copy = %self.name, pos = rp.pos, "resuming copy from the restart position");
                    start = rp.pos;
                }
                Some(rp) => {
                    tracing::warn!(copy = %self.name, ?rp, "ignoring a restart position of another range")
                }
                None => {}
            }
        }
        let chunks = (end - start).div_ceil(chunk as u64);
        *self.progress.lock() = CopyProgress {
            resumed_from: start,
            restart_pos: start,
            end,
            ..CopyProgress::default()
        };
        let geo = Geo {
            start,
            end,
            chunk,
            chunks,
        };
        // Driven: each thread waits for its own writes and flushes, so an io_uring target's
        // completions are reaped where they are waited for (no completion-thread hop, and no
        // completion thread started for the copy).
        std::thread::scope(|s| {
            for _ in 0..self.cfg.window.max(1).min(chunks.max(1) as usize) {
                s.spawn(|| crate::aio::drive(|| self.worker(&geo)));
            }
            crate::aio::drive(|| self.persister(&geo));
        });
        let mut sched = self.sched.lock();
        if let Some(e) = sched.error.take() {
            return Err(e);
        }
        drop(sched);
        Ok(self.progress())
    }

    /// The source's size, retrying transient errors like chunk reads do.
    fn source_size(&self) -> Result<u64> {
        let begin = Instant::now();
        loop {
            match self.a.size() {
                Ok(s) => return Ok(s),
                Err(e)
                    if e.is_retryable()
                        && begin.elapsed() < self.cfg.retry_for
                        && !self.stop.load(Ordering::Acquire) =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(source) => return Err(CopyError::Source { pos: 0, source }),
            }
        }
    }

    fn persister(&self, g: &Geo) {
        let mut persisted = g.start;
        loop {
            let (pos, finished) = {
                let mut sched = self.sched.lock();
                let stopped = |s: &Sched| {
                    s.contiguous == g.chunks
                        || s.error.is_some()
                        || self.stop.load(Ordering::Acquire)
                };
                if !stopped(&sched) {
                    self.cv.wait_for(&mut sched, self.cfg.persist_every);
                } else if sched.active > 0 {
                    // Stopped, but a worker still holds a chunk (a read retrying against an
                    // unreachable source ends at its next attempt): wait for its `abandon`
                    // instead of spinning on the lock.
                    self.cv.wait_for(&mut sched, Duration::from_millis(50));
                }
                // Workers of a stopped copy finish or abandon the chunk they hold; wait for them.
                let finished = stopped(&sched) && sched.active == 0;
                (g.pos_of(sched.contiguous), finished)
            };
            let complete = pos == g.end;
            if pos > persisted || (finished && complete) {
                // Flush B first: the position may only cover durable data.
                match brick_core::run(&*self.b, Aio::new(Op::Flush, 0, 0)) {
                    Ok(_) => {
                        if let Some(path) = &self.cfg.restart_file {
                            let rp = RestartPoint {
                                pos,
                                end: g.end,
                                chunk: g.chunk as u32,
                            };
                            if let Err(source) = restart::store(path, rp) {
                                self.fail(CopyError::Restart {
                                    path: path.display().to_string(),
                                    source,
                                });
                            }
                        }
                        persisted = pos;
                        let mut p = self.progress.lock();
                        p.restart_pos = pos;
                        p.complete = complete;
                    }
                    Err(source) => self.fail(CopyError::Target { pos, source }),
                }
            }
            if finished {
                return;
            }
        }
    }

    fn fail(&self, e: CopyError) {
        let mut s = self.sched.lock();
        if s.error.is_none() {
            tracing::warn!(copy = %self.name, "copy fails: {e}");
            s.error = Some(e);
        }
        drop(s);
        self.cv.notify_all();
    }

    fn halted(&self) -> bool {
        self.stop.load(Ordering::Acquire) || self.sched.lock().error.is_some()
    }

    fn worker(&self, g: &Geo) {
        let cq = CompletionQueue::new();
        loop {
            let k = {
                let mut s = self.sched.lock();
                if s.next >= g.chunks || s.error.is_some() || self.stop.load(Ordering::Acquire) {
                    return;
                }
                s.next += 1;
                s.active += 1;
                s.next - 1
            };
            let pos = g.pos_of(k);
            let len = (g.end - pos).min(g.chunk as u64) as usize;
            let data = match self.fetch(pos, len) {
                Ok(Fetched::Data(d)) => Some(d),
                Ok(Fetched::Same) => None,
                Ok(Fetched::Stopped) => return self.abandon(),
                Err(e) => {
                    self.fail(e);
                    return self.abandon();
                }
            };
            // Strict write order: wait for our turn to submit. A stopped copy abandons chunks
            // whose predecessors were abandoned (they stay above the restart position).
            {
                let mut s = self.sched.lock();
                while s.turn != k && s.error.is_none() && !self.stop.load(Ordering::Acquire) {
                    self.cv.wait_for(&mut s, Duration::from_millis(50));
                }
                if s.turn != k || s.error.is_some() {
                    drop(s);
                    return self.abandon();
                }
            }
            let submitted = match &data {
                Some(d) => self.submit_writes(&cq, pos, d),
                None => Ok(0),
            };
            {
                let mut s = self.sched.lock();
                s.turn += 1;
            }
            self.cv.notify_all();
            let result = submitted.and_then(|n| {
                (0..n).try_for_each(|_| match cq.recv().error.take() {
                    Some(e) => Err(e),
                    None => Ok(()),
                })
            });
            if let Err(source) = result {
                self.fail(CopyError::Target { pos, source });
                return self.abandon();
            }
            match &data {
                Some(_) => self.transferred.fetch_add(len as u64, Ordering::Relaxed),
                None => self.skipped.fetch_add(len as u64, Ordering::Relaxed),
            };
            let mut s = self.sched.lock();
            s.active -= 1;
            s.done.insert(k);
            loop {
                let c = s.contiguous;
                if !s.done.remove(&c) {
                    break;
                }
                s.contiguous += 1;
            }
            drop(s);
            self.cv.notify_all();
        }
    }

    /// Give up the chunk this worker holds (error or stop); it stays above the restart position.
    fn abandon(&self) {
        self.sched.lock().active -= 1;
        self.cv.notify_all();
    }

    /// Submit the writes of one chunk (looping over `prepare` shortening); returns how many.
    fn submit_writes(&self, cq: &CompletionQueue, pos: u64, d: &[u8]) -> brick_core::Result<usize> {
        let mut off = 0;
        let mut n = 0;
        while off < d.len() {
            let mut req = Aio::new(Op::Write, pos + off as u64, d.len() - off);
            self.b.prepare(&mut req)?;
            req.data = d[off..off + req.len].to_vec();
            off += req.len;
            let mut pending = Some(req);
            loop {
                match cq.submit(&*self.b, pending.take().expect("set")) {
                    Ok(()) => break,
                    Err(rej) if rej.error.is_retryable() => {
                        pending = Some(rej.req);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(rej) => {
                        // Writes already submitted still complete; collect them first.
                        for _ in 0..n {
                            cq.recv();
                        }
                        return Err(rej.error);
                    }
                }
            }
            n += 1;
        }
        Ok(n)
    }

    /// The chunk's data if it must be written.
    fn fetch(&self, pos: u64, len: usize) -> Result<Fetched> {
        let begin = Instant::now();
        // In a long run of differing chunks comparing only costs (a local read and two
        // hashes per chunk): read plainly, but still compare every PROBE-th chunk so that an
        // identical region switches comparing back on.
        let compare = self.cfg.fast
            && (self.differ_streak.load(Ordering::Relaxed) < STREAK
                || (pos / self.cfg.chunk.max(1) as u64).is_multiple_of(PROBE));
        loop {
            let r = if compare {
                let r = match brick_core::read_all(&*self.b, pos, len) {
                    Ok(local) => self.a.read_if_differs(pos, len, chunk_sum(&local)),
                    // A damaged local block (its checksum says so) differs: fetch the chunk.
                    Err(brick_core::Error::Checksum { .. }) => self.a.read(pos, len).map(Some),
                    Err(source) => return Err(CopyError::Target { pos, source }),
                };
                if let (Ok(Some(_)), Some(l)) = (&r, &self.cfg.limiter) {
                    l.wait(1, len as u64);
                }
                r
            } else {
                if let Some(l) = &self.cfg.limiter {
                    l.wait(1, len as u64);
                }
                self.a.read(pos, len).map(Some)
            };
            match r {
                Ok(Some(d)) => {
                    if compare {
                        self.differ_streak.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(Fetched::Data(d));
                }
                Ok(None) => {
                    self.differ_streak.store(0, Ordering::Relaxed);
                    return Ok(Fetched::Same);
                }
                Err(_) if self.stop.load(Ordering::Acquire) => return Ok(Fetched::Stopped),
                Err(e)
                    if e.is_retryable()
                        && begin.elapsed() < self.cfg.retry_for
                        && !self.halted() =>
                {
                    tracing::debug!(copy = %self.name, pos, "retrying chunk after {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(source) => return Err(CopyError::Source { pos, source }),
            }
        }
    }
}

/// After this many differing chunks in a row, fast sync stops comparing ...
const STREAK: u64 = 32;
/// ... except for every PROBE-th chunk.
const PROBE: u64 = 16;

enum Fetched {
    Data(Vec<u8>),
    Same,
    Stopped,
}

struct Geo {
    start: u64,
    end: u64,
    chunk: usize,
    chunks: u64,
}

impl Geo {
    fn pos_of(&self, k: u64) -> u64 {
        (self.start + k * self.chunk as u64).min(self.end)
    }
}
