//! # Copy brick and fast full sync
//!
//! [`Copy`] copies a range from input A (a [`CopySource`]: usually a
//! [`crate::remote::RemoteClient`], or any local brick through [`LocalSource`]) to input B (any
//! [`brick_core::Output`]) with a window of parallel chunks, strict write order, a persisted
//! restart position ([`restart`]), a [`brick_core::Limiter`] and progress reporting.
//!
//! **Fast full sync** (`CopyConfig::fast`): for each chunk B's bytes are hashed locally
//! (xxh3-128) and sent to A's server, which hashes its own chunk and returns data only when the
//! sums differ. Identical chunks cost one small round trip; different ones cost exactly one
//! transfer; after a long run of differing chunks the brick stops comparing (but probes every
//! 16th chunk), so an all-different sync costs little more than a plain copy.
//!
//! ```
//! use std::sync::Arc;
//! use brick_core::bricks::{MemDisk, MemDiskMode};
//! use xio::copy::{Copy, CopyConfig, LocalSource};
//! let a = MemDisk::new("a", 1 << 20, MemDiskMode::Inline);
//! brick_core::write_all(&*a, 4096, b"data").unwrap();
//! let b = MemDisk::new("b", 1 << 20, MemDiskMode::Inline);
//! let mut cfg = CopyConfig::new();
//! cfg.chunk = 64 << 10;
//! let copy = Copy::new("sync", Arc::new(LocalSource(a.clone())), b.clone(), cfg);
//! let p = copy.run().unwrap();
//! assert!(p.complete);
//! assert_eq!(p.transferred, 64 << 10); // only the one chunk that differs
//! assert_eq!(a.contents(), b.contents());
//! ```

mod brick;
pub mod error;
pub mod restart;
mod source;

pub use brick::{Copy, CopyConfig, CopyProgress};
pub use error::{CopyError, Result};
pub use source::{CopySource, LocalSource};
