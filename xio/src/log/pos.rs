//! Positions in a sequence of log files.

use std::fmt;

/// A position in the log: file sequence number and byte offset in that file. Ordered first by
/// file, then by offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogPos {
    /// Log file sequence number (`log-<seq>`).
    pub seq: u64,
    /// Byte offset inside that file.
    pub offset: u64,
}

impl LogPos {
    /// A position.
    pub fn new(seq: u64, offset: u64) -> Self {
        LogPos { seq, offset }
    }
}

impl fmt::Display for LogPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "log-{:09}:{}", self.seq, self.offset)
    }
}
