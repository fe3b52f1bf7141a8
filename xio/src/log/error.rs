//! Errors of the log format layer: every one names the file (and offset) it is about.

/// Result alias of the log layer.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// What went wrong while writing or reading a log file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// An IO request on the log file failed.
    #[error("log file {file}: {source}")]
    Io {
        /// Which log file.
        file: String,
        /// The underlying error.
        source: brick_core::Error,
    },
    /// A bad record or header that is not a crash effect (see FORMAT.md, "Corruption").
    #[error(
        "log file {file} is corrupt at offset {offset}: {reason}; nothing after it was applied \
         (restore the file from a replica or invalidate this node's copy)"
    )]
    Corruption {
        /// Which log file.
        file: String,
        /// Byte offset of the damage.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The file was written by a newer or unknown format version.
    #[error("log file {file} has format version {version}, this build reads version 1 only: upgrade mars-rs")]
    UnknownVersion {
        /// Which log file.
        file: String,
        /// The version found.
        version: u32,
    },
    /// The file belongs to another resource.
    #[error("log file {file} belongs to resource `{found}`, expected `{expected}`: check the log directory")]
    WrongResource {
        /// Which log file.
        file: String,
        /// The resource we expected.
        expected: String,
        /// The resource named in the header.
        found: String,
    },
    /// A value cannot be encoded (too long a name, too large a record).
    #[error("cannot encode log data: {0}")]
    Encode(String),
}

impl LogError {
    /// Flatten into a brick-core error so that it can travel through a request chain.
    pub fn to_brick(&self, brick: &str) -> brick_core::Error {
        match self {
            LogError::Io { source, .. } => source.clone(),
            LogError::Corruption {
                file,
                offset,
                reason,
            } => brick_core::Error::Corrupt {
                file: file.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            other => brick_core::Error::Brick {
                brick: brick.to_string(),
                message: other.to_string(),
            },
        }
    }
}
