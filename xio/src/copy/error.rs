//! Errors of the copy brick.

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading the source failed (after retries for transient errors).
    #[error("reading the source at {pos} failed: {source}")]
    Source {
        /// Chunk offset.
        pos: u64,
        /// Cause.
        #[source]
        source: brick_core::Error,
    },
    /// Writing or reading the target failed.
    #[error("target IO at {pos} failed: {source}")]
    Target {
        /// Chunk offset.
        pos: u64,
        /// Cause.
        #[source]
        source: brick_core::Error,
    },
    /// The target is smaller than the range.
    #[error("the target has {target} bytes but the copy needs {needed}: grow the target device")]
    TargetTooSmall {
        /// Target size.
        target: u64,
        /// Bytes needed.
        needed: u64,
    },
    /// The restart file cannot be read or written.
    #[error("restart file {path}: {source}")]
    Restart {
        /// Which file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of the copy brick.
pub type Result<T, E = CopyError> = std::result::Result<T, E>;
