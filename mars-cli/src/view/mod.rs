//! What `marsadm view` shows: the node's status as the daemon reports it (serde types, the
//! `data` of a `status` response, documented in `../FORMAT.md`), the messages derived from
//! it ([`messages`]) and its text form ([`text`]). Pure: tested with fixed inputs (golden
//! files in `mars-cli/testdata/view/`).

pub mod checksums;
pub mod messages;
pub mod text;

pub use checksums::{ChecksumView, ScrubRecord, VerifyRecord};
pub use text::render;

use serde::{Deserialize, Serialize};

/// The node and its resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This node.
    pub node: String,
    /// The cluster uuid, once in a cluster.
    pub cluster: Option<String>,
    /// Where this node listens.
    pub listen: String,
    /// The other nodes of the cluster.
    pub peers: Vec<PeerStatus>,
    /// Resources this node is a member of (or the one asked for).
    pub resources: Vec<ResourceStatus>,
    /// How the last merge-cluster ended (`merged with <node>` or `refused: ...`).
    #[serde(default)]
    pub merge: Option<String>,
    /// Metadata propagation counters since start.
    #[serde(default)]
    pub meta: MetaCounters,
    /// When the daemon took this status (Unix time, ms).
    #[serde(default)]
    pub time_ms: u64,
    /// The node's memory budget (`marsd --mem-budget`), shared by its primaries' loggers.
    #[serde(default)]
    pub memory: MemoryStatus,
}

/// A memory budget's use, in bytes: the node's, or one resource's share of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStatus {
    /// Held now (written, not yet written back).
    pub used: u64,
    /// The most held at once since it was created.
    pub peak: u64,
    /// The node's limit; a resource's cap (what it may hold when the others leave room).
    pub limit: u64,
    /// The sum of the resources' floors; a resource's floor (what it can always get).
    pub floor: u64,
    /// Writes that waited for memory.
    pub waits: u64,
}

/// Metadata propagation counters of a node (for measuring propagation cost).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaCounters {
    /// Propagation rounds (ticks).
    pub rounds: u64,
    /// Messages sent.
    pub sent: u64,
    /// Bytes sent.
    pub sent_bytes: u64,
    /// Messages received and handled.
    pub handled: u64,
}

/// Another node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its name.
    pub name: String,
    /// Its address (`ips/ip-<name>`).
    pub addr: String,
    /// A metadata connection to it is open.
    pub connected: bool,
    /// Seconds since the connection was lost (since marsd started when it never was up);
    /// `null` while connected.
    #[serde(default)]
    pub unreachable_s: Option<u64>,
}

/// One resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceStatus {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// The designated primary.
    pub primary: Option<String>,
    /// Every member's state (this node's first).
    pub replicas: Vec<ReplicaStatus>,
    /// Log files announced (`log-<seq>-<creator>`).
    pub logs: Vec<String>,
    /// The NBD socket of the export, on the primary.
    pub nbd_socket: Option<String>,
    /// What the running primary's logger does with writes (`logging`, `draining`, `bypass`,
    /// `resuming`, `failed`); null elsewhere.
    #[serde(default)]
    pub logger: Option<xio::logger::LoggerMode>,
    /// Where the history forks, if it does (every node reports the same).
    #[serde(default)]
    pub split_brain: Option<String>,
    /// A migration under way (`to=<node> from=<node> dev=<path|->`), and its error if any.
    #[serde(default)]
    pub migration: Option<String>,
    /// Why the migration's current step failed.
    #[serde(default)]
    pub migration_error: Option<String>,
    /// The primary's share of the node's memory budget, on the primary.
    #[serde(default)]
    pub memory: Option<MemoryStatus>,
}

/// One member of a resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// The node.
    pub host: String,
    /// Upstream's disk state (`UpToDate`, `InConsistent`, `OutDated[R]`, ...).
    pub disk: String,
    /// Upstream's replication state (`Replicating`, `Replaying`, `Syncing`, `PausedFetch`, ...).
    pub repl: String,
    /// Six flags: device, consistent, attach, sync, fetch, replay.
    pub flags: String,
    /// `Primary`, `Secondary`, `NotYetPrimary`, `RemainsPrimary`, `None`.
    pub role: String,
    /// Its replay link (`log-<seq>-<h>,<pos>,<len>`).
    pub replay: Option<String>,
    /// Bytes of the full sync done.
    pub syncstatus: u64,
    /// Log bytes behind the primary (same log only; `None` when not comparable).
    pub lag: Option<u64>,
    /// NBD clients connected (on a primary).
    pub clients: u64,
    /// What it waits for, or what went wrong (`actual-<h>/msg`).
    pub msg: Option<String>,
    /// Consistent (sync complete, replay past the sync position).
    pub consistent: bool,
    /// Equal to the primary's current position.
    pub up_to_date: bool,
    /// Sync, fetch and replay under way or behind (see [`Progress`]).
    #[serde(default)]
    pub progress: Vec<Progress>,
    /// Errors, warnings and infos about this replica, including why it waits.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Its block checksums: scrubs and reads that failed their checksum.
    #[serde(default)]
    pub checksums: ChecksumView,
}

/// What a progress line measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProgressKind {
    /// Full sync of the device from the primary.
    Sync,
    /// Copying the primary's log files here (reported for the node answering only).
    Fetch,
    /// Applying fetched logs to the data device.
    Replay,
}

/// Progress of one activity of one replica. Rates are measured by the daemon that answers,
/// over the last 5 s of its rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Sync, fetch or replay.
    pub kind: ProgressKind,
    /// Bytes done: sync position; fetch/replay: offset in the current log.
    pub done: u64,
    /// Bytes to reach: the resource size; fetch/replay: what is known of the current log.
    pub total: u64,
    /// The log file (fetch, replay).
    #[serde(default)]
    pub log: Option<String>,
    /// Bytes per second over the window.
    pub rate: u64,
    /// Seconds until done at the current net rate (for fetch and replay: their rate minus
    /// the primary's write rate); `null` when not progressing.
    pub eta_s: Option<u64>,
    /// Bytes of the primary's history not yet fetched / replayed (`null` when the logs in
    /// between are not all known).
    pub lag_bytes: Option<u64>,
    /// Age in seconds of the oldest write not yet fetched / replayed, from the times this
    /// node saw the primary's positions (`null` before it saw any).
    pub lag_s: Option<f64>,
    /// The positions kept do not reach back that far: the lag is at least `lag_s`.
    #[serde(default)]
    pub lag_s_lower_bound: bool,
}

/// How serious a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Data is at risk or replication stopped: act.
    Error,
    /// Replication is held back: look.
    Warning,
    /// Why something waits, or what it does.
    Info,
}

/// A message about a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// How serious.
    pub level: Level,
    /// For people: what happened and what to do.
    pub text: String,
}
