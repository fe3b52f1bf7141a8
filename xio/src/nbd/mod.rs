//! # The NBD export (upstream's `if` brick)
//!
//! Exports any [`brick_core::Output`] over the Network Block Device protocol (`doc/proto.md` of
//! the NBD project; the subset we speak is in `FORMAT.md` next to this file), so that qemu,
//! libnbd tools, fio or the kernel's `nbd-client` use a MARS resource as a block device.
//!
//! - [`NbdServer`]: named [`Export`]s, TCP and Unix listeners, graceful shutdown.
//! - Handshake: fixed newstyle; `EXPORT_NAME`, `INFO`, `GO`, `LIST`, `ABORT`,
//!   `STRUCTURED_REPLY`; other options are answered `NBD_REP_ERR_UNSUP`.
//! - Transmission: `READ`, `WRITE` (FUA), `FLUSH`, `TRIM`, `WRITE_ZEROES` (NO_HOLE), `DISC`;
//!   many requests in flight per connection, replies in completion order, structured replies
//!   when negotiated. Every request is checked ([`check`]) before it touches anything.
//!
//! Threads: one reader and one reply thread per connection (plain threads, no async runtime);
//! one accept thread per TCP listener, and one for all Unix listeners of the process
//! (`acceptor`, epoll through mio). The reader is *driven* (`crate::aio::drive`): io_uring
//! reads it submits to the data device (index misses of the logger, an `aio` export) complete
//! in its own ring, reaped while it waits for the socket or for a slot; their replies go to
//! the reply thread, never through the backend's completion thread.
//! **Invariant:** a misbehaving client closes only its own connection; nothing it sends can
//! panic the server or make it allocate more than the maximum payload (32 MiB) per request.

mod acceptor;
pub mod check;
pub mod client;
mod conn;
mod error;
mod export;
pub mod handshake;
mod payload;
pub mod proto;
mod reply;
mod server;
pub mod socket;
mod stats;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_gated;

pub use error::{NbdError, Result};
pub use export::{Export, Geometry, MAX_PAYLOAD};
pub use server::{NbdServer, ServerConfig};
pub use stats::ServerStats;
