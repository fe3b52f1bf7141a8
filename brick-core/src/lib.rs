//! # brick-core: composing IO from small bricks
//!
//! A **brick** is a small component with typed inputs and one output; bricks are wired into a
//! graph at runtime. One request object, [`Aio`], travels down through several bricks; each brick
//! keeps its private per-request state as an **aspect** of that request (a [`Slot`] per brick
//! instance, so nothing is allocated per brick per request once requests are recycled through an
//! [`AioPool`]). Completion flows back up through the hooks the bricks pushed, last in first out.
//!
//! ```
//! use brick_core::prelude::*;
//! use brick_core::bricks::{MemDisk, MemDiskMode, Probe};
//!
//! let disk = MemDisk::new("disk", 1 << 20, MemDiskMode::Inline);
//! let probe = Probe::new("probe", disk.clone());
//! brick_core::write_all(&*probe, 4096, b"hello").unwrap();
//! assert_eq!(brick_core::read_all(&*probe, 4096, 5).unwrap(), b"hello");
//! assert_eq!(probe.stats().completed, 2);
//! ```
//!
//! Contracts (each one tested in `tests/`):
//! - [`Output::submit`] accepts a request (then it completes exactly once) or hands it back in
//!   [`Rejected`]; there is no separate reservation step. Back-pressure is [`Error::Busy`].
//! - [`Output::prepare`] may shorten a request; callers loop ([`read_all`], [`write_all`]).
//! - [`Input::rewire`] swaps an input's output while IO is in flight; the [`Drain`] it returns
//!   says when the old side is idle. Nothing is lost, duplicated or moved between outputs.
//! - [`Power`] implements switch on/off with LEDs; switching off drains in-flight IO.
//! - [`Graph`] reconciles bricks by path and enforces the power ordering (predecessors on
//!   first, successors off first).
//!
//! Helper libraries: [`LamportClock`], [`Limiter`] (hierarchical ops/s and bytes/s),
//! [`Stats`] (counters and latency histogram), [`MemBudget`] (memory with back-pressure),
//! [`IdleWorker`] (a thread on demand that ends when idle).
//! Logging goes through `tracing`.
//!
//! **Architecture invariant:** brick-core knows nothing of files, sockets or MARS.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod aspect;
mod brick;
pub mod bricks;
mod budget;
mod completion;
mod error;
mod graph;
mod idle_worker;
mod input;
mod lamport;
mod limiter;
mod power;
mod request;
mod timing;

pub use aspect::{Aspect, Slot};
pub use brick::{
    completion_thread, debug_assert_may_block, mark_completion_thread, Brick, Info, Output,
};
pub use budget::{admits, MemBudget, NodeBudget, PoolCounts, Reservation, ShareCounts};
pub use completion::{
    read_all, run, submit_wait, with_driver, write_all, write_gather, CompletionQueue, Driver,
};
pub use error::{Error, Rejected, Result};
pub use graph::Graph;
pub use idle_worker::IdleWorker;
pub use input::{Drain, Input};
pub use lamport::{LamportClock, Observed, Stamp, SystemTimeSource, TimeSource};
pub use limiter::{Limiter, Rates, BURST};
pub use power::{Power, PowerState};
pub use request::{Aio, AioPool, Completer, Flags, Op};
pub use timing::{Stats, StatsSnapshot};

/// The names most bricks need.
pub mod prelude {
    pub use crate::{
        Aio, AioPool, Aspect, Brick, Completer, CompletionQueue, Error, Flags, Info, Input, Op,
        Output, Power, PowerState, Rejected, Result, Slot, Stats, StatsSnapshot,
    };
}
