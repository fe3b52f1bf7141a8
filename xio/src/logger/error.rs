//! Errors of the trans_logger's control paths (open, replay, close).

use crate::log::LogError;

/// Result alias of the logger.
pub type Result<T, E = LoggerError> = std::result::Result<T, E>;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoggerError {
    /// A log file is damaged, foreign or of an unknown version.
    #[error(transparent)]
    Log(#[from] LogError),
    /// An IO request failed.
    #[error(transparent)]
    Io(#[from] brick_core::Error),
    /// The state file is unreadable.
    #[error("log state file in {dir} is unusable: {reason}; restore it or re-create the log directory after a full sync")]
    State {
        /// The log directory.
        dir: String,
        /// What is wrong.
        reason: String,
    },
    /// Two log files of one sequence number made by different nodes: both claim the same place
    /// in the history.
    #[error(
        "{first} and {second}: two logs with the same sequence number from different creators (split brain): resolve it before using this directory"
    )]
    SplitBrain {
        /// One of the files (a path).
        first: String,
        /// The other one.
        second: String,
    },
    /// Log files are missing between the replay start and the newest file.
    #[error(
        "log file {missing} is missing ({context}): the log has a gap, replay cannot continue"
    )]
    Gap {
        /// The missing file's name.
        missing: String,
        /// Where the gap was found.
        context: String,
    },
    /// `resume_logging` on a logger that is not in emergency bypass.
    #[error("the logger is in mode {mode}, not in emergency bypass: there is nothing to resume")]
    NotInBypass {
        /// The mode it is in (`LoggerStatus::mode`).
        mode: super::LoggerMode,
    },
    /// A hand-wired logger (no log store) cannot make its next log file itself.
    #[error(
        "this logger has no log store to create a new log file in: restart it on a log directory"
    )]
    NoStore,
}

impl LoggerError {
    /// Flatten into a brick-core error.
    pub fn to_brick(&self, brick: &str) -> brick_core::Error {
        match self {
            LoggerError::Io(e) => e.clone(),
            LoggerError::Log(e) => e.to_brick(brick),
            other => brick_core::Error::Brick {
                brick: brick.to_string(),
                message: other.to_string(),
            },
        }
    }
}
