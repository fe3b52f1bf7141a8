//! [`LogStore`]: where log files and the state file live. [`super::FsLogStore`] is a directory
//! of real files; `crate::fault::MemLogStore` is an in-memory store whose files can be torn by
//! a simulated crash.

use brick_core::{Output, Result};
use std::sync::Arc;

/// A directory of log files (`log-<seq %09d>-<creator>`, [`crate::log::LogName`]; one file per
/// sequence number) plus one small state file.
///
/// Durability contract: `create` makes the new file's existence durable; `store_state` replaces
/// the state atomically and durably (old or new content after a crash, never a mixture);
/// `truncate` is durable when it returns.
pub trait LogStore: Send + Sync {
    /// Sequence numbers of the existing log files, ascending.
    fn list(&self) -> Result<Vec<u64>>;
    /// Create the log file `seq` (fails if it exists) and return it for writing: empty, or a
    /// recycled file whose header block is zero (stale bytes may follow; the writer writes the
    /// header when it starts the file).
    fn create(&self, seq: u64) -> Result<Arc<dyn Output>>;
    /// Open the existing log file `seq` for reading; returns it and its length in bytes.
    fn open(&self, seq: u64) -> Result<(Arc<dyn Output>, u64)>;
    /// Cut log file `seq` to `len` bytes (sealing a torn tail).
    fn truncate(&self, seq: u64, len: u64) -> Result<()>;
    /// Delete log file `seq` (a store may keep it to reuse its blocks for a later `create`:
    /// readers never see it again).
    fn remove(&self, seq: u64) -> Result<()>;
    /// The logger's file `seq` is durable up to `end` (after every commit): a store may
    /// publish it to readers that must not read further (the log server).
    fn durable(&self, _seq: u64, _end: u64) {}
    /// The state file's content, if there is one.
    fn load_state(&self) -> Result<Option<Vec<u8>>>;
    /// Replace the state file's content atomically and durably.
    fn store_state(&self, bytes: &[u8]) -> Result<()>;
    /// How to name file `seq` in messages (a path).
    fn describe(&self, seq: u64) -> String;
}
