//! # Remote bricks: client and server over mars-net
//!
//! - [`server`]: [`Exports`] serves a node's exported devices and its log directory on the
//!   `fetch` and `sync` channels (read, stat, checksum-read, compare-read).
//! - [`client`]: [`RemoteClient`], a read-only [`brick_core::Output`] for a peer's device or log
//!   file over a bundle of connections, with resubmission after reconnects and a no-progress
//!   timeout.
//! - [`fetch`]: [`LogFetch`], the append-only fetch of a peer's growing log file, verified as
//!   records arrive by [`verify::log_verifier`].
//! - [`proto`]: the request/reply messages (wire layout in `FORMAT.md`).
//!
//! ```no_run
//! use std::sync::Arc;
//! use brick_core::bricks::{MemDisk, MemDiskMode};
//! use mars_net::{ChannelKind, ClusterId, NetConfig, Secret};
//! use xio::remote::{ClientConfig, Exports, RemoteClient, Target};
//! let net = |n: &str| NetConfig::new(ClusterId([1; 16]), n, Secret::new("sixteen+ byte secret").unwrap());
//! let exports = Exports::new(None);
//! exports.add_device("data", MemDisk::new("d", 1 << 20, MemDiskMode::Inline));
//! let node = exports.listen("127.0.0.1:0", net("primary")).unwrap();
//! let cfg = ClientConfig::new(net("secondary"), node.local_addr(), ChannelKind::Sync, Target::Device("data".into()));
//! let client = RemoteClient::start("data@primary", cfg);
//! let bytes = brick_core::read_all(&*client, 0, 4096).unwrap();
//! ```

pub mod client;
pub mod error;
pub mod fetch;
pub mod proto;
pub mod server;
mod source;
pub mod verify;
mod watchdog;

pub use client::{ClientConfig, Done, RemoteClient};
pub use error::{RemoteError, Result};
pub use fetch::{FetchConfig, FetchProgress, LogFetch, VerifyFn};
pub use proto::{chunk_sum, ChunkSum, RemoteReply, RemoteReq, Target};
pub use server::Exports;
pub use verify::log_verifier;
