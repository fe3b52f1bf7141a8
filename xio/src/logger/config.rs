//! [`LoggerConfig`]: the knobs of the trans_logger, with sensible defaults.

use crate::log::LogPos;
use brick_core::{LamportClock, MemBudget};
use std::sync::Arc;
use std::time::Duration;

/// Called with the new min_pos watermark whenever it advances.
pub type WatermarkFn = Arc<dyn Fn(LogPos) + Send + Sync>;

/// Configuration of a [`super::TransLogger`].
#[derive(Clone)]
pub struct LoggerConfig {
    /// Resource name written into (and expected in) every log file header.
    pub resource: String,
    /// This node's name, written into log file headers and, as their creator, into the names
    /// of the log files it creates (`log-<seq>-<node>`; default `$HOSTNAME` if it is a valid
    /// creator, else `local`).
    pub node: String,
    /// Memory for written-but-not-written-back data; writers wait beyond it (default 256 MiB).
    /// Used when `budget` is `None`.
    pub mem_budget: u64,
    /// The budget to draw that memory from instead (default none: a budget of its own of
    /// `mem_budget` bytes). `marsd` hands in each resource's share of the node's budget
    /// ([`brick_core::NodeBudget::share`]).
    pub budget: Option<Arc<MemBudget>>,
    /// Soft upper bound of one write to the log (default 1 MiB; holds at least one record).
    pub chunk_size: usize,
    /// How long a record nobody waits for may sit in memory before it is written to the log
    /// (default 2 ms). FUA writes and flushes never wait for this.
    pub batch_delay: Duration,
    /// How long written records may wait for their `fdatasync` when nobody asks for it
    /// (default 1 s, upstream flushed idle chunks after 2–4 s). FUA writes and flushes commit
    /// at once. Measured: 20 ms turned unsynced random 4 KiB writes into a stream of
    /// `fdatasync`s bound by the disk (0.45× of aio); 1 s gives 0.64–0.77×.
    pub commit_interval: Duration,
    /// Commit (`fdatasync`) at the latest after this many bytes were appended to the log
    /// (default 16 MiB; at most a quarter of `mem_budget`, because writeback only takes
    /// durable data). Log files start writing appended bytes to disk at once, so a commit
    /// mostly waits for the tail.
    pub commit_bytes: u64,
    /// Before a commit that someone waits for, wait this long once for more writes to join it
    /// (default zero: off). Group commit happens anyway: what queues during one commit's
    /// `fdatasync` goes into the next. Measured with 32 writers each flushing after every
    /// write: 50 µs gave 20–23k writes/s (32 per commit), zero 26–27k (29 per commit).
    pub group_wait: Duration,
    /// Rotate to a new log file once the current one reaches this size (default 1 GiB).
    pub rotate_size: u64,
    /// Write back data at the latest this long after it was accepted (default 5 s); earlier
    /// when half the memory budget is used. Writeback is deferred on purpose (as upstream's
    /// log-before-writeback ranking): it competes with the log for the disk and the file
    /// system journal, and deferring de-duplicates more.
    pub writeback_delay: Duration,
    /// Flush the data device (and so advance the watermark) at least this often while written
    /// back data waits for it (default 5 s; the flush runs beside writeback). Rarer flushes
    /// disturb log commits less (measured: 1 s → 10 s cut a commit from ~600 to ~450 µs under
    /// random writes); the price is a longer replay after a crash and log files kept longer.
    pub data_flush_interval: Duration,
    /// ... or once this many bytes were written back since the last flush (default 1 GiB).
    pub data_flush_bytes: u64,
    /// Writeback requests in flight on the data device (default 64).
    pub writeback_depth: usize,
    /// Bytes per writeback round (default 32 MiB).
    pub writeback_round: usize,
    /// Compress record payloads with lz4 when that makes them smaller (default off).
    pub compress: bool,
    /// Alignment of the writes to new log files: > 0 writes log format v2 (`log/FORMAT.md`;
    /// raised to the log device's logical block size where that is larger). 0 (default):
    /// format v1 for buffered log files (records back to back: padding would only cost log
    /// space), v2 with 4 KiB for `log_direct` ones. Both formats are read.
    pub log_align: u32,
    /// Open log files with `O_DIRECT` (default false): log writes bypass the page cache, so
    /// that a commit's `fdatasync` has no dirty pages to write and the log does not compete
    /// with the data for the cache. Implies format v2.
    pub log_direct: bool,
    /// Keep log files that are fully written back (default false: delete them; a replicating
    /// caller that ships logs to secondaries sets this and deletes them itself).
    pub keep_logs: bool,
    /// Deleted log files kept as spares to become later log files (default 4; 0: delete
    /// them): a commit into a recycled file is a data-only `fdatasync` (`spares.rs`).
    pub log_spares: usize,
    /// Publish the durable end of the log file being written here (default none), for a log
    /// server in this process that must not serve unsynced or stale bytes
    /// ([`crate::remote::Exports::with_live_ends`]).
    pub live_ends: Option<crate::log::LiveEnds>,
    /// Longest write accepted in one request; `prepare` shortens longer ones (default 1 MiB).
    pub max_write: usize,
    /// Lamport clock for record stamps (default: a private clock).
    pub clock: Option<Arc<LamportClock>>,
    /// Watermark callback (default none); see [`WatermarkFn`].
    pub on_min_pos: Option<WatermarkFn>,
}

impl Default for LoggerConfig {
    fn default() -> Self {
        LoggerConfig {
            resource: "default".into(),
            node: std::env::var("HOSTNAME")
                .ok()
                .filter(|h| crate::log::LogName::check_creator(h).is_ok())
                .unwrap_or_else(|| "local".into()),
            mem_budget: 256 << 20,
            budget: None,
            chunk_size: 1 << 20,
            batch_delay: Duration::from_millis(2),
            commit_interval: Duration::from_secs(1),
            commit_bytes: 16 << 20,
            group_wait: Duration::ZERO,
            rotate_size: 1 << 30,
            writeback_delay: Duration::from_secs(5),
            data_flush_interval: Duration::from_secs(5),
            data_flush_bytes: 1 << 30,
            writeback_depth: 64,
            writeback_round: 32 << 20,
            compress: false,
            log_align: 0,
            log_direct: false,
            keep_logs: false,
            log_spares: super::spares::DEFAULT_SPARES,
            live_ends: None,
            max_write: 1 << 20,
            clock: None,
            on_min_pos: None,
        }
    }
}

impl std::fmt::Debug for LoggerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggerConfig")
            .field("resource", &self.resource)
            .field("node", &self.node)
            .field("mem_budget", &self.mem_budget)
            .field(
                "budget",
                &self.budget.as_ref().map(|b| (b.floor(), b.limit())),
            )
            .field("chunk_size", &self.chunk_size)
            .field("batch_delay", &self.batch_delay)
            .field("commit_interval", &self.commit_interval)
            .field("commit_bytes", &self.commit_bytes)
            .field("group_wait", &self.group_wait)
            .field("rotate_size", &self.rotate_size)
            .field("writeback_delay", &self.writeback_delay)
            .field("data_flush_interval", &self.data_flush_interval)
            .field("data_flush_bytes", &self.data_flush_bytes)
            .field("writeback_depth", &self.writeback_depth)
            .field("writeback_round", &self.writeback_round)
            .field("compress", &self.compress)
            .field("log_align", &self.log_align)
            .field("log_direct", &self.log_direct)
            .field("keep_logs", &self.keep_logs)
            .field("log_spares", &self.log_spares)
            .field("max_write", &self.max_write)
            .finish_non_exhaustive()
    }
}
