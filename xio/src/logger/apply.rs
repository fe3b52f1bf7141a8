//! Turning a log record (or a piece of one) into a request on the data device, and applying
//! many of them with a bounded window: parallel when they do not overlap, in order when they do.

use crate::log::record::FLAG_NO_HOLE;
use crate::log::RecordOp;
use brick_core::{Aio, AioPool, CompletionQueue, Error, Flags, Info, Op, Output, Result};

/// The data-device request for `op` on `[pos, pos+len)`, built in a request from `pool`.
/// Discard and write-zeroes fall back to writing zeroes when the device lacks them (both
/// read back as zeroes).
pub(crate) fn device_request(
    pool: &AioPool,
    info: &Info,
    op: RecordOp,
    pos: u64,
    len: usize,
    data: Vec<u8>,
    flags: u8,
) -> Box<Aio> {
    let write = |data: Vec<u8>| {
        let mut r = pool.get(Op::Write, pos, data.len());
        r.data = data;
        r
    };
    match op {
        RecordOp::Write => write(data),
        RecordOp::Discard if info.can_discard => pool.get(Op::Discard, pos, len),
        RecordOp::Discard | RecordOp::WriteZeroes if info.can_write_zeroes => {
            let mut r = pool.get(Op::WriteZeroes, pos, len);
            if flags & FLAG_NO_HOLE != 0 && op == RecordOp::WriteZeroes {
                r.flags = Flags::NO_HOLE;
            }
            r
        }
        _ => write(vec![0u8; len]),
    }
}

/// Most buffer capacity [`Applier::keep_buffers`] keeps between two takes.
pub(crate) const SPENT_MAX_BYTES: usize = 64 << 20;

/// Applies requests to a data device with at most `depth` in flight; a request waits while it
/// overlaps one in flight (so overlapping ones keep their order).
pub(crate) struct Applier<'a> {
    out: &'a dyn Output,
    pub info: Info,
    cq: CompletionQueue,
    inflight: Vec<(u64, u64, u64)>,
    depth: usize,
    next_tag: u64,
    /// With [`Applier::keep_buffers`]: data buffers of completed writes, for reuse, and
    /// their total capacity.
    spent: Option<Vec<Vec<u8>>>,
    spent_bytes: usize,
    /// Tag of the flush started by [`Applier::flush_behind`], while it is in flight.
    flush_tag: Option<u64>,
    /// Added to every request (see [`Applier::request_flags`]).
    extra_flags: Flags,
    /// Completed requests, reused (with their aspects, e.g. an `O_DIRECT` bounce buffer):
    /// a stream of writes allocates no requests.
    pool: AioPool,
}

impl<'a> Applier<'a> {
    pub fn new(out: &'a dyn Output, depth: usize) -> Result<Applier<'a>> {
        Ok(Applier {
            info: out.info()?,
            out,
            cq: CompletionQueue::new(),
            inflight: Vec::new(),
            depth: depth.max(1),
            next_tag: 1,
            spent: None,
            spent_bytes: 0,
            flush_tag: None,
            extra_flags: Flags::NONE,
            pool: AioPool::new(depth.max(1) + 1),
        })
    }

    /// Add `flags` to every request from now on (e.g. [`Flags::MAY_BLOCK`] from a thread
    /// that exists to wait for this IO).
    pub fn request_flags(&mut self, flags: Flags) {
        self.extra_flags = self.extra_flags.with(flags);
    }

    /// Start a device flush without waiting for it (it makes the writes completed before it
    /// durable early, so that the flush of [`Applier::finish`] has less left to do; writes go
    /// on meanwhile). At most one is in flight: returns `false` (and does nothing) while the
    /// previous one is.
    pub fn flush_behind(&mut self) -> Result<bool> {
        if self.flush_tag.is_some() {
            return Ok(false);
        }
        self.flush_tag = Some(self.next_tag);
        if let Err(e) = self.one(self.pool.get(Op::Flush, 0, 0)) {
            self.flush_tag = None;
            return Err(e);
        }
        Ok(true)
    }

    /// Keep the data buffers of completed writes (at most [`SPENT_MAX_BYTES`] of capacity
    /// between two [`Applier::take_spent`] calls) instead of freeing them.
    pub fn keep_buffers(&mut self) {
        self.spent.get_or_insert_with(Vec::new);
    }

    /// Move the kept buffers of completed writes (cleared, capacity intact) into `into`.
    pub fn take_spent(&mut self, into: &mut Vec<Vec<u8>>) {
        if let Some(s) = self.spent.as_mut() {
            into.append(s);
        }
        self.spent_bytes = 0;
    }

    /// Apply `op` with `data` (for writes) at `pos`, split at the device's `max_len`.
    pub fn apply(
        &mut self,
        op: RecordOp,
        pos: u64,
        len: usize,
        data: Vec<u8>,
        flags: u8,
    ) -> Result<()> {
        if op == RecordOp::Commit || len == 0 {
            return Ok(());
        }
        let max = self.info.max_len.max(512);
        if len <= max {
            let req = device_request(&self.pool, &self.info, op, pos, len, data, flags);
            return self.one(req);
        }
        let mut done = 0;
        while done < len {
            let n = (len - done).min(max);
            let piece = if op == RecordOp::Write {
                data[done..done + n].to_vec()
            } else {
                Vec::new()
            };
            self.one(device_request(
                &self.pool,
                &self.info,
                op,
                pos + done as u64,
                n,
                piece,
                flags,
            ))?;
            done += n;
        }
        Ok(())
    }

    fn one(&mut self, mut req: Box<Aio>) -> Result<()> {
        let (s, e) = (req.pos, req.pos + req.len as u64);
        while self.inflight.len() >= self.depth
            || self.inflight.iter().any(|&(_, a, b)| a < e && s < b)
        {
            self.reap()?;
            // Take every completion that is already there too: the submissions that follow
            // then reach the device together (fewer wake-ups on both sides).
            self.reap_ready()?;
        }
        let tag = self.next_tag;
        self.next_tag += 1;
        req.tag = tag;
        req.flags = req.flags.with(self.extra_flags);
        self.cq.submit(self.out, req).map_err(|rej| rej.error)?;
        self.inflight.push((tag, s, e));
        Ok(())
    }

    /// Handle the completions that are ready without waiting; returns the first error after
    /// handling all of them.
    fn reap_ready(&mut self) -> Result<()> {
        let mut first = Ok(());
        while let Some(done) = self.cq.try_recv() {
            let r = self.complete(done);
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    fn reap(&mut self) -> Result<()> {
        let done = self.cq.recv();
        self.complete(done)
    }

    fn complete(&mut self, done: Box<Aio>) -> Result<()> {
        let mut done = done;
        self.inflight.retain(|&(t, _, _)| t != done.tag);
        if self.flush_tag == Some(done.tag) {
            self.flush_tag = None;
        }
        if let Some(spent) = self.spent.as_mut() {
            let cap = done.data.capacity();
            if cap > 0 && self.spent_bytes + cap <= SPENT_MAX_BYTES {
                self.spent_bytes += cap;
                let mut buf = std::mem::take(&mut done.data);
                buf.clear();
                spent.push(buf);
            }
        }
        let result = match done.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        self.pool.put(done);
        result
    }

    /// Wait for everything in flight, then flush the device (with `flush`).
    pub fn finish(mut self, flush: bool) -> Result<()> {
        let mut first: Option<Error> = None;
        while !self.inflight.is_empty() {
            if let Err(e) = self.reap() {
                first.get_or_insert(e);
            }
        }
        if let Some(e) = first {
            return Err(e);
        }
        if !flush {
            return Ok(());
        }
        brick_core::run(self.out, Aio::new(Op::Flush, 0, 0)).map(|_| ())
    }
}

impl Drop for Applier<'_> {
    fn drop(&mut self) {
        // Never leave requests behind on an error path.
        while !self.inflight.is_empty() {
            let _ = self.reap();
        }
    }
}
