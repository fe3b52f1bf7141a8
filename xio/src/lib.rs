//! # xio: the IO bricks of MARS
//!
//! Every brick here implements [`brick_core::Output`] and [`brick_core::Brick`]:
//! - [`aio`]: file/block-device backend on io_uring; [`sio`]: the same on a thread pool.
//!   [`file::open`] picks one of them by [`file::Backend`] and documents their semantics.
//! - [`log`]: the transaction-log format v1 (see `log/FORMAT.md`), writer and scanner.
//! - [`logger`]: the trans_logger brick (write path with group commit, writeback, replay).
//! - [`nbd`]: the NBD export (the `if` brick).
//! - [`remote`]: client/server bricks over mars-net; [`copy`]: copy and fast full sync.
//! - [`csum`]: per-block checksums of a data device (verified reads, scrub).
#![deny(missing_docs)]

pub mod aio;
pub mod copy;
pub mod csum;
pub mod failpoint;
pub mod fault;
pub mod file;
pub mod log;
pub mod logger;
pub mod nbd;
pub mod remote;
pub mod replica;
pub mod sio;
