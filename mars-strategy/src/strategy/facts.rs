//! [`Facts`]: what runs on this node for one resource and how far it got (reported by the
//! daemon's executors; never replicated).

use crate::views::LogName;
use std::collections::BTreeMap;

/// Which graph runs for the resource here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Running {
    /// Nothing (detached, or not started yet).
    #[default]
    Nothing,
    /// The primary graph: data device → trans_logger → NBD export.
    Primary,
    /// The secondary pipeline: fetch → verify → replay (and full sync).
    Secondary,
}

/// A log file present in the local log directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalLog {
    /// Its length.
    pub len: u64,
    /// How far its records verified (a record-aligned prefix).
    pub verified: u64,
}

/// The running (or last finished) fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFact {
    /// The log fetched.
    pub log: LogName,
    /// From whom.
    pub peer: String,
    /// The fetch returned because the remote log is finished and fully here.
    pub done: bool,
    /// The fetch stopped with this error.
    pub failed: Option<String>,
}

/// The running (or finished) full sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFact {
    /// Bytes copied so far (persisted restart point).
    pub pos: u64,
    /// When the copy ended (node clock, ns), if it did.
    pub done_at: Option<u64>,
    /// The sync stopped with this error.
    pub failed: Option<String>,
}

/// The running primary graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryFact {
    /// The log being written.
    pub log: LogName,
    /// Its durable end.
    pub end: u64,
    /// NBD clients connected now.
    pub clients: u64,
    /// The log holding the logger's min_pos watermark: crash recovery starts there, so it
    /// and every later log stay.
    pub min_seq: u64,
    /// The logger bypasses the log (emergency mode: it ran out of log space, or was told to).
    pub bypass: bool,
    /// Where the log stops being complete, if it does (`log-<seq>-<me>` and offset).
    pub hole: Option<(u64, u64)>,
    /// Writeback to the data device stalls (no space left there): why.
    pub writeback_error: Option<String>,
    /// The logger stopped after an IO error (the export's IO fails): why.
    pub failed: Option<String>,
}

/// Everything local the strategy looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// What runs.
    pub running: Running,
    /// Log files in the local log directory.
    pub local_logs: BTreeMap<LogName, LocalLog>,
    /// The fetch, if one ran since the last fetch action.
    pub fetch: Option<FetchFact>,
    /// A replay step is in progress.
    pub replay_busy: bool,
    /// The last replay step failed with this error.
    pub replay_failed: Option<String>,
    /// The full sync, if one ran since it was started.
    pub sync: Option<SyncFact>,
    /// The primary graph's state, when it runs.
    pub primary: Option<PrimaryFact>,
    /// The node clock (ns): same clock as the metadata stamps.
    pub now: u64,
    /// When the daemon started (ns, same clock).
    pub started: u64,
    /// Free bytes in the file system of the mars directory, if known.
    pub free_space: Option<u64>,
    /// Below this many free bytes a secondary deletes the local logs it replayed (level 2).
    pub delete_logs_below: u64,
    /// Below this many free bytes a secondary stops fetching (upstream's level 3).
    pub stop_fetch_below: u64,
    /// Below this many free bytes a primary stops logging: emergency mode (level 4).
    pub emergency_below: u64,
}

impl Facts {
    /// Verified bytes of a local log (0 if absent).
    pub fn verified(&self, log: &LogName) -> u64 {
        self.local_logs.get(log).map_or(0, |l| l.verified)
    }
}
