//! The request object ([`Aio`]) that travels through a chain of bricks, its completion hooks and
//! a recycling pool.

use crate::aspect::{Aspect, Aspects, Slot};
use crate::error::Error;
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Read `len` bytes at `pos` into `data`.
    Read,
    /// Write `data` (exactly `len` bytes) at `pos`.
    Write,
    /// Make every write completed before this one durable. `pos`/`len` are ignored.
    Flush,
    /// Deallocate `len` bytes at `pos`; they read back as zeroes afterwards.
    Discard,
    /// Write `len` zero bytes at `pos` (may deallocate unless [`Flags::NO_HOLE`]).
    WriteZeroes,
}

impl Op {
    /// Lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
            Op::Discard => "discard",
            Op::WriteZeroes => "write-zeroes",
        }
    }

    /// Whether the operation changes device contents.
    pub fn is_mutation(self) -> bool {
        matches!(self, Op::Write | Op::Discard | Op::WriteZeroes)
    }
}

/// Request flags (a small bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(u32);

impl Flags {
    /// No flags.
    pub const NONE: Flags = Flags(0);
    /// Force unit access: complete only once this write (and everything acknowledged before it)
    /// is durable.
    pub const FUA: Flags = Flags(1);
    /// For write-zeroes: the range must stay allocated.
    pub const NO_HOLE: Flags = Flags(2);
    /// A hint from a submitter that may block (a writeback or replay thread, not a client
    /// path): a brick that would otherwise hand the request to another thread may execute it
    /// on the submitting thread and complete it before `submit` returns. Bricks that cannot
    /// pass it on unchanged.
    pub const MAY_BLOCK: Flags = Flags(4);

    /// Whether all bits of `other` are set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Union.
    pub fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
    /// Raw bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

/// Receives a request when the brick below completes it. A brick that wants to see the
/// completion pushes its hook before forwarding; hooks run last-in first-out, each on the thread
/// that completed the request, and each ends by calling [`Aio::complete`] to pass it on.
///
/// Hooks must not block: heavy work goes to the brick's own thread.
pub trait Completer: Send + Sync {
    /// Handle the completion of `req` (its `error` says how it went) and pass it on.
    fn complete(&self, req: Box<Aio>);
}

/// A request: one IO travelling through a chain of bricks (upstream's `mref`/`aio_object`).
///
/// Ownership: the holder of the `Box` owns the request. `submit` either takes it (and guarantees
/// exactly one completion) or hands it back in [`crate::Rejected`].
pub struct Aio {
    /// Operation.
    pub op: Op,
    /// Byte offset on the device.
    pub pos: u64,
    /// Byte length. A brick's `prepare` may shorten it; never lengthen.
    pub len: usize,
    /// Flags.
    pub flags: Flags,
    /// Payload: the bytes to write, or the buffer a read fills (the terminal brick sizes it to
    /// `len`). Its capacity survives recycling.
    pub data: Vec<u8>,
    /// Outcome, set by whoever completes the request; hooks may rewrite it.
    pub error: Option<Error>,
    /// Free for the initiator (a tag to find its own bookkeeping on completion).
    pub tag: u64,
    life: u64,
    aspects: Aspects,
    hooks: Vec<Arc<dyn Completer>>,
}

impl Aio {
    /// A fresh request (allocates; prefer [`AioPool::get`] on hot paths).
    pub fn new(op: Op, pos: u64, len: usize) -> Box<Aio> {
        Box::new(Aio {
            op,
            pos,
            len,
            flags: Flags::NONE,
            data: Vec::new(),
            error: None,
            tag: 0,
            life: 0,
            aspects: Aspects::default(),
            hooks: Vec::with_capacity(8),
        })
    }

    /// A write request carrying `data`.
    pub fn write(pos: u64, data: Vec<u8>) -> Box<Aio> {
        let mut r = Aio::new(Op::Write, pos, data.len());
        r.data = data;
        r
    }

    /// A read request.
    pub fn read(pos: u64, len: usize) -> Box<Aio> {
        Aio::new(Op::Read, pos, len)
    }

    /// This brick's private state on this request (created or reset lazily).
    pub fn aspect<A: Aspect>(&mut self, slot: &Slot<A>) -> &mut A {
        self.aspects.get(slot, self.life)
    }

    /// Register a hook to run when the request completes (upstream's INSERT_CALLBACK).
    pub fn push_hook(&mut self, hook: Arc<dyn Completer>) {
        self.hooks.push(hook);
    }

    /// Remove the most recently pushed hook: a brick calls this when the brick below rejected
    /// the request, before handing the rejection up.
    pub fn pop_hook(&mut self) -> Option<Arc<dyn Completer>> {
        self.hooks.pop()
    }

    /// Number of hooks still to run.
    pub fn hook_depth(&self) -> usize {
        self.hooks.len()
    }

    /// Complete with `result` and run the next hook.
    pub fn finish(mut self: Box<Self>, result: crate::Result<()>) {
        self.error = result.err();
        self.complete();
    }

    /// Pass the request to the next hook up the chain. Without hooks the request is dropped
    /// (an initiator that does not care about completion).
    pub fn complete(mut self: Box<Self>) {
        if let Some(hook) = self.hooks.pop() {
            hook.complete(self);
        }
    }

    /// Shorten the request to `len` bytes (a brick's `prepare` at a region boundary).
    ///
    /// # Panics
    /// If `len` is larger than the current length: requests only shrink.
    pub fn shorten(&mut self, len: usize) {
        assert!(len <= self.len, "a request may only be shortened");
        self.len = len;
        if self.op == Op::Write && self.data.len() > len {
            self.data.truncate(len);
        }
    }

    /// The end offset (`pos + len`), or `None` on overflow.
    pub fn end(&self) -> Option<u64> {
        self.pos.checked_add(self.len as u64)
    }

    /// Check that the request lies inside a device of `size` bytes and that a write carries
    /// exactly `len` bytes.
    pub fn check_range(&self, size: u64) -> crate::Result<()> {
        if self.op == Op::Flush {
            return Ok(());
        }
        let end = self.end().ok_or(Error::Invalid("pos + len overflows"))?;
        if end > size {
            return Err(Error::OutOfRange {
                pos: self.pos,
                len: self.len as u64,
                size,
            });
        }
        if self.op == Op::Write && self.data.len() != self.len {
            return Err(Error::Invalid("write data length differs from len"));
        }
        Ok(())
    }

    fn recycle(&mut self) {
        self.op = Op::Read;
        self.pos = 0;
        self.len = 0;
        self.flags = Flags::NONE;
        self.data.clear();
        self.error = None;
        self.tag = 0;
        self.hooks.clear();
        // A new life makes every aspect reset lazily on its next access.
        self.life = self.life.wrapping_add(1);
    }
}

impl std::fmt::Debug for Aio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aio")
            .field("op", &self.op)
            .field("pos", &self.pos)
            .field("len", &self.len)
            .field("flags", &self.flags)
            .field("error", &self.error)
            .field("hooks", &self.hooks.len())
            .finish()
    }
}

/// A bounded pool of recycled requests: steady-state IO allocates neither requests, aspects,
/// hook stacks nor (for same-sized IO) data buffers.
pub struct AioPool {
    free: ArrayQueue<Box<Aio>>,
}

impl AioPool {
    /// A pool that keeps at most `capacity` idle requests.
    pub fn new(capacity: usize) -> Self {
        AioPool {
            free: ArrayQueue::new(capacity.max(1)),
        }
    }

    /// A clean request for `op` at `pos`/`len` (recycled when possible).
    pub fn get(&self, op: Op, pos: u64, len: usize) -> Box<Aio> {
        match self.free.pop() {
            Some(mut r) => {
                r.op = op;
                r.pos = pos;
                r.len = len;
                r
            }
            None => Aio::new(op, pos, len),
        }
    }

    /// Return a completed request for reuse.
    pub fn put(&self, mut req: Box<Aio>) {
        req.recycle();
        let _ = self.free.push(req);
    }
}
