//! The two seams of brick-core: [`Output`] (the data path: one `submit` that accepts or hands
//! back) and [`Brick`] (the control plane: name, power, statistics).

use crate::error::{Rejected, Result};
use crate::power::PowerState;
use crate::request::Aio;
use crate::timing::StatsSnapshot;

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
