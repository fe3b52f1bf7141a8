//! [`Action`]: one step the daemon executes for a resource. `Display` is the golden-test form.

use crate::views::LogName;
use std::fmt;

/// What the strategy asks the daemon to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop the secondary pipeline's workers (fetch, replay, sync).
    StopSecondary,
    /// Open the logger on the local log directory (it replays its own log first), then start
    /// the NBD export and serve the device to syncing peers.
    StartPrimary,
    /// Stop the NBD export, close the logger (everything written back), publish the final
    /// version link of the last log and become a secondary at its end.
    StopPrimary {
        /// Why (for the log).
        reason: String,
    },
    /// Fetch `log` from `peer`, appending from the local size `from`.
    Fetch {
        /// The log.
        log: LogName,
        /// From whom.
        peer: String,
        /// Local size (where the fetch resumes).
        from: u64,
    },
    /// Stop the running fetch.
    StopFetch,
    /// Replay `log` from `from` up to `to` (record aligned), flush, then publish the position.
    Replay {
        /// The log.
        log: LogName,
        /// Start offset.
        from: u64,
        /// End offset.
        to: u64,
    },
    /// Start (or resume) the full sync from `peer` at byte `from`.
    StartSync {
        /// The primary.
        peer: String,
        /// Restart point.
        from: u64,
        /// The resource size.
        size: u64,
    },
    /// Stop the running sync (its restart point is kept).
    StopSync,
    /// Write a metadata key of this resource (relative to `resource-<r>/`).
    SetLink {
        /// Key relative to the resource directory.
        key: String,
        /// Value.
        value: String,
    },
    /// Delete a metadata key of this resource (tombstone; relative to `resource-<r>/`).
    DeleteLink {
        /// Key relative to the resource directory.
        key: String,
    },
    /// Delete the local copy of a log nobody needs any more.
    DeleteLocalLog {
        /// The log.
        log: LogName,
    },
    /// The primary stops logging: writes go straight to the data device (emergency mode).
    EnterEmergency {
        /// Why.
        reason: String,
    },
    /// Report a condition that needs an operator (written to `actual-<me>/msg`, logged once).
    Report {
        /// The message.
        msg: String,
    },
}

impl Action {
    /// A link write.
    pub fn link(key: impl Into<String>, value: impl Into<String>) -> Action {
        Action::SetLink {
            key: key.into(),
            value: value.into(),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::StopSecondary => write!(f, "stop-secondary"),
            Action::StartPrimary => write!(f, "start-primary"),
            Action::StopPrimary { reason } => write!(f, "stop-primary ({reason})"),
            Action::Fetch { log, peer, from } => write!(f, "fetch {log} from {peer} at {from}"),
            Action::StopFetch => write!(f, "stop-fetch"),
            Action::Replay { log, from, to } => write!(f, "replay {log} {from}..{to}"),
            Action::StartSync { peer, from, size } => {
                write!(f, "start-sync from {peer} at {from} of {size}")
            }
            Action::StopSync => write!(f, "stop-sync"),
            Action::SetLink { key, value } => write!(f, "set {key} = {value}"),
            Action::DeleteLink { key } => write!(f, "delete {key}"),
            Action::DeleteLocalLog { log } => write!(f, "delete-local {log}"),
            Action::EnterEmergency { reason } => write!(f, "enter-emergency ({reason})"),
            Action::Report { msg } => write!(f, "report {msg}"),
        }
    }
}
