//! The crate's error type: one enum with structured fields, and a retry classifier.

use std::sync::Arc;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the metadata store and its propagation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key does not follow the naming rules.
    #[error("invalid metadata key {key:?}: {reason} (keys are '/'-separated names like resource-r/replay-h)")]
    InvalidKey {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A node name does not follow the naming rules.
    #[error("invalid node name {name:?}: {reason} (use letters, digits, '.', '_' and '-', at most 64 bytes)")]
    InvalidNode {
        /// The offending name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A write to a key owned by another node.
    #[error("key {key} belongs to node {owner}; node {writer} may not write it (run the command on {owner})")]
    NotOwner {
        /// The key.
        key: Arc<str>,
        /// The node that owns it.
        owner: String,
        /// The node that tried to write it.
        writer: String,
    },
    /// A value could not be parsed as the typed view expects.
    #[error("malformed value {value:?} of key {key}: expected {expected}")]
    Malformed {
        /// The key (or a description of where the value came from).
        key: String,
        /// The raw value.
        value: String,
        /// What the parser expected.
        expected: &'static str,
    },
    /// A version link does not chain onto its predecessor.
    #[error(
        "version chain broken at {key}: {reason} (split brain or corruption; see `marsadm view`)"
    )]
    BrokenChain {
        /// The version key.
        key: String,
        /// Why the check failed.
        reason: String,
    },
    /// The node is not (yet) a member of a cluster.
    #[error("node {node} is not a member of a cluster (run create-cluster or join-cluster first)")]
    NoCluster {
        /// The node.
        node: String,
    },
    /// The node is already in a cluster.
    #[error("node {node} is already a member of cluster {uuid} (leave-cluster first)")]
    AlreadyInCluster {
        /// The node.
        node: String,
        /// The cluster it is in.
        uuid: String,
    },
    /// leave-cluster refused while this node still holds resource data.
    #[error("node {node} still holds data of resources {resources:?} (leave-resource them first)")]
    StillHoldsData {
        /// The node.
        node: String,
        /// The resources it holds data of.
        resources: Vec<String>,
    },
    /// merge-cluster refused because resource names collide.
    #[error("merge-cluster refused: resource names exist in both clusters: {conflicts:?} (rename or delete them first)")]
    MergeConflict {
        /// The colliding resource names.
        conflicts: Vec<String>,
    },
    /// The local metadata database failed.
    #[error("metadata database {path}: {detail} (check the disk; the store is unchanged)")]
    Storage {
        /// The database path.
        path: String,
        /// The underlying error.
        detail: String,
    },
    /// A persisted or received record could not be decoded.
    #[error("cannot decode {what}: {detail}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// The decoder's message.
        detail: String,
    },
    /// An IO error in a shell (network or files).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether retrying the same operation later may succeed (IO and storage hiccups).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::Storage { .. })
    }

    pub(crate) fn storage(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Error::Storage {
            path: path.display().to_string(),
            detail: e.to_string(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
