//! # Replica pipelines: the library components the daemon composes
//!
//! - [`PrimaryGraph`]: data device → trans_logger → NBD export (Unix socket, optionally also a
//!   shared TCP server). Opening it replays the node's own log first; only then does it serve.
//! - The secondary pipeline's workers, one thread each, reporting progress through shared
//!   state that the owner polls: [`FetchWorker`] (log fetch from a peer, records verified as
//!   they arrive), [`ReplayWorker`] (replay of one verified range, device flush, then the
//!   local logger state moves to the new position) and [`SyncWorker`] (full sync of the
//!   device from a peer, fast: checksums first, persisted restart point).
//! - [`LogSizes`]: the local log files with their valid lengths, read every round by the
//!   owner, keeping the headers of finished logs between rounds.
//!
//! An embedder can build a primary and a secondary without the daemon:
//! ```no_run
//! # use std::path::Path;
//! use xio::replica::{PrimaryConfig, PrimaryGraph};
//! let p = PrimaryGraph::start(PrimaryConfig::new("r0", "alice", Path::new("/tmp/r0.img"),
//!     1 << 30, Path::new("/tmp/resource-r0"), Path::new("/tmp/r0.sock"))).unwrap();
//! println!("writing {}", p.current_log());
//! p.stop(std::time::Duration::from_secs(10)).unwrap();
//! ```

mod extents;
mod log_sizes;
mod primary;
mod workers;

pub use extents::log_extents;
pub use log_sizes::{local_log_state, LogSizes};
pub use primary::{PrimaryConfig, PrimaryGraph, StoppedPrimary};
pub use workers::{
    verified_prefix, FetchState, FetchWorker, ReplayState, ReplayWorker, SyncState, SyncWorker,
};

/// Why a pipeline could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The logger (open, recovery replay, close).
    #[error(transparent)]
    Logger(#[from] crate::logger::LoggerError),
    /// A device request.
    #[error(transparent)]
    Brick(#[from] brick_core::Error),
    /// The NBD export.
    #[error("NBD export: {what}: {source}")]
    Nbd {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: crate::nbd::NbdError,
    },
}
