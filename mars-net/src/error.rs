//! The one error type of mars-net ([`NetError`]) with a retry classifier.

use std::io;

/// Result alias of mars-net.
pub type Result<T, E = NetError> = std::result::Result<T, E>;

/// Why a network operation failed. Every message says what happened and, where it helps, what
/// to do about it.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A socket call failed (connection reset, refused, unreachable, ...).
    #[error("network I/O error while {context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// No progress for the configured time.
    #[error("timed out after {millis} ms without progress while {context}")]
    Timeout {
        /// What was being waited for.
        context: &'static str,
        /// How long we waited.
        millis: u64,
    },
    /// A frame announced a length above the configured limit; nothing was allocated for it.
    #[error("frame {what} length {len} exceeds the limit {limit}: the peer is broken or hostile (or raise the limit on both sides)")]
    FrameTooLarge {
        /// Which part of the frame (control, payload, uncompressed payload).
        what: &'static str,
        /// Announced length.
        len: u64,
        /// Configured limit.
        limit: u64,
    },
    /// The bytes on the wire are not a mars-net frame.
    #[error("bad frame magic {found:#010x} (expected {expected:#010x}): the peer is not speaking mars-net")]
    BadMagic {
        /// What arrived.
        found: u32,
        /// What mars-net frames start with.
        expected: u32,
    },
    /// A frame's checksum does not match its bytes.
    #[error("frame checksum mismatch (header says {expected:#010x}, bytes give {found:#010x}): corrupted in transit")]
    Checksum {
        /// Checksum carried in the header.
        expected: u32,
        /// Checksum computed over what arrived.
        found: u32,
    },
    /// A frame is well-framed but its content is malformed.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The peer closed the connection (cleanly with a reason, or by EOF).
    #[error("connection closed by peer: {reason}")]
    Closed {
        /// The reason the peer gave, or "end of stream".
        reason: String,
    },
    /// The peer refused our handshake.
    #[error("refused by peer {peer}: {reason}")]
    Refused {
        /// Peer address or name.
        peer: String,
        /// The reason it gave.
        reason: String,
    },
    /// Authentication failed: the peer does not know the cluster secret (or replayed an old
    /// handshake).
    #[error("authentication of peer {peer} failed: {reason}")]
    AuthFailed {
        /// Peer address or name.
        peer: String,
        /// What did not match.
        reason: String,
    },
    /// The peer belongs to a different cluster.
    #[error(
        "peer {peer} belongs to cluster {theirs}, this node to {ours}: check the cluster uuid"
    )]
    ClusterMismatch {
        /// Peer address or name.
        peer: String,
        /// Our cluster uuid (hex).
        ours: String,
        /// Theirs (hex).
        theirs: String,
    },
    /// The peer speaks a protocol version we do not.
    #[error("peer {peer} speaks protocol version {theirs}, this node {min}..={max}: upgrade the older node")]
    Version {
        /// Peer address or name.
        peer: String,
        /// Its version.
        theirs: u16,
        /// Lowest version we speak.
        min: u16,
        /// Highest version we speak.
        max: u16,
    },
    /// The peer sent a message that is not allowed at this point of the protocol.
    #[error("protocol violation by {peer}: {what}")]
    Protocol {
        /// Peer address or name.
        peer: String,
        /// What was wrong.
        what: String,
    },
    /// The configuration cannot work.
    #[error("invalid network configuration: {0}")]
    Config(String),
}

impl NetError {
    /// Whether reconnecting and retrying can succeed (transient network trouble), as opposed to
    /// a configuration or authentication problem that needs an operator.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NetError::Io { .. }
                | NetError::Timeout { .. }
                | NetError::Closed { .. }
                | NetError::Checksum { .. }
        )
    }

    pub(crate) fn io(context: &'static str) -> impl FnOnce(io::Error) -> NetError {
        move |source| NetError::Io { context, source }
    }
}
