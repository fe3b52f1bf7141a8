//! The two seams of brick-core: [`Output`] (the data path: one `submit` that accepts or hands
//! back) and [`Brick`] (the control plane: name, power, statistics).

use crate::error::{Rejected, Result};
use crate::power::PowerState;
use crate::request::Aio;
use crate::timing::StatsSnapshot;
use std::io::IoSlice;

/// What a device looks like from above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// Size in bytes.
    pub size: u64,
    /// Smallest IO unit the device handles without read-modify-write (usually 512 or 4096).
    pub block_size: u32,
    /// Largest single request the brick accepts; `prepare` shortens longer ones.
    pub max_len: usize,
    /// Whether writes are refused.
    pub read_only: bool,
    /// Whether discard is supported.
    pub can_discard: bool,
    /// Whether write-zeroes is supported.
    pub can_write_zeroes: bool,
}

impl Info {
    /// A writable device of `size` bytes with the usual defaults.
    pub fn new(size: u64) -> Self {
        Info {
            size,
            block_size: 512,
            max_len: 32 << 20,
            read_only: false,
            can_discard: true,
            can_write_zeroes: true,
        }
    }
}

/// The data path of a brick: where requests enter.
///
/// # Contract
/// - `submit` either **accepts** the request, and then it completes exactly once (through
///   [`Aio::complete`], on any thread, possibly before `submit` returns), or **rejects** it and
///   hands it back unchanged in [`Rejected`] (hooks it pushed popped again). Nothing is lost.
/// - Requests accepted from one thread reach the terminal brick in submission order;
///   completions may be reordered unless the brick documents otherwise.
/// - Back-pressure is a bounded queue depth: a full brick rejects with [`crate::Error::Busy`].
///
/// # Blocking
/// Most bricks return from `submit` at once. These may **block** the calling thread:
/// - `xio::logger::TransLogger`: a write waits for the memory budget (released by its
///   writeback, which needs the data device's completions); every request waits while the
///   logger drains to emergency bypass or resumes logging; a read of bytes that are not in its
///   index reads the data device synchronously;
/// - the file backends (`xio::aio`, `xio::sio`): a request with [`crate::Flags::MAY_BLOCK`]
///   is done on the calling thread; a full queue waits a short, configured time for a slot
///   (not on the backend's own completion thread: there it rejects with `Busy` at once);
/// - [`crate::bricks::Probe`] with a [`crate::Limiter`]: waits for its tokens.
///
/// A brick that may block must **never be called from an IO completion thread** (a
/// completion hook runs there: io_uring's completion thread, a thread-pool backend's worker,
/// a `MemDisk` worker). Blocking there stalls every completion of that device, and deadlocks
/// when the wait needs one of them (the logger's budget waits for writeback, writeback for the
/// data device's completions). Completion threads mark themselves with
/// [`mark_completion_thread`]; blocking bricks check [`debug_assert_may_block`] (debug builds).
/// A hook that must start blocking work hands it to a thread of its own. (A thread that
/// reaps its own completions, e.g. inside `xio::file::drive`, runs hooks too, but it is an
/// ordinary thread that may block.)
pub trait Output: Send + Sync {
    /// Current geometry.
    fn info(&self) -> Result<Info>;

    /// Upstream's `get`: may **shorten** `req.len` (e.g. at a region boundary, or to `max_len`)
    /// but never lengthen it; the caller loops over the rest. The default accepts as is.
    fn prepare(&self, req: &mut Aio) -> Result<()> {
        let _ = req;
        Ok(())
    }

    /// Start the IO. See the trait contract.
    fn submit(&self, req: Box<Aio>) -> Result<(), Rejected>;

    /// Write the concatenation of `bufs` at `pos` on the calling thread, returning when it is
    /// done (a write of that many bytes in every other respect): a caller that holds its bytes
    /// in pieces (the log writer: each record's header, the client's payload buffer, its
    /// trailer) need not copy them into one buffer first. `None`: this brick has no gather
    /// write (the default); [`crate::write_gather`] then writes a copy through `submit`.
    ///
    /// It blocks: never call it from an IO completion thread (see "Blocking").
    fn write_gather(&self, pos: u64, bufs: &[IoSlice<'_>]) -> Option<Result<()>> {
        let _ = (pos, bufs);
        None
    }
}

/// The control plane of a brick.
pub trait Brick: Output {
    /// Instance name (upstream's path: a file name, `res/logger`, ...).
    fn name(&self) -> &str;

    /// Press the power button (idempotent; may need several calls to reach the target state,
    /// which [`Brick::power`] reports).
    fn switch(&self, on: bool) -> Result<()>;

    /// Current power state (the "actual" LEDs).
    fn power(&self) -> PowerState;

    /// Counters and latency of this brick.
    fn stats(&self) -> StatsSnapshot;
}

thread_local! {
    /// The kind of IO completion thread this is (`None`: not one).
    static COMPLETION_THREAD: std::cell::Cell<Option<&'static str>> =
        const { std::cell::Cell::new(None) };
}

/// Mark the calling thread as an IO completion thread of `kind` (e.g. `"io_uring completion"`):
/// bricks that may block in `submit` must not be called from it (see [`Output`], "Blocking").
pub fn mark_completion_thread(kind: &'static str) {
    COMPLETION_THREAD.with(|c| c.set(Some(kind)));
}

/// The kind of IO completion thread the caller runs on, if it is one.
pub fn completion_thread() -> Option<&'static str> {
    COMPLETION_THREAD.with(|c| c.get())
}

/// Debug builds: panic when `brick`, which may block in `submit`, is called from an IO
/// completion thread (a contract violation that stalls or deadlocks the device). Free in
/// release builds.
#[inline]
pub fn debug_assert_may_block(brick: &str) {
    if cfg!(debug_assertions) {
        if let Some(kind) = completion_thread() {
            panic!(
                "`{brick}` may block in submit and was called from an {kind} thread: hand the \
                 request to a thread of its own (brick_core::Output, \"Blocking\")"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocking_brick_on_a_completion_thread_is_caught_in_debug_builds() {
        debug_assert_may_block("free thread");
        let r = std::thread::spawn(|| {
            mark_completion_thread("io_uring completion");
            assert_eq!(completion_thread(), Some("io_uring completion"));
            debug_assert_may_block("res/logger");
        })
        .join();
        assert_eq!(r.is_err(), cfg!(debug_assertions));
        assert_eq!(completion_thread(), None, "the mark is per thread");
    }
}
