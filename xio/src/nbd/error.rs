//! The error type of the NBD export: setup failures (bind, duplicate export) and the reasons a
//! single connection is closed (IO errors, protocol violations). A connection error never
//! affects other connections.

use std::path::PathBuf;

/// Result alias of the NBD module.
pub type Result<T, E = NbdError> = std::result::Result<T, E>;

/// What went wrong in the NBD server or on one connection.
#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    /// Reading from or writing to the client's socket failed (usually: the client went away).
    #[error("socket IO failed while {context}: {source}")]
    Io {
        /// What the server was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The client broke a mandatory rule of the protocol; the connection is closed.
    #[error("protocol violation: {reason}")]
    Protocol {
        /// What the client did.
        reason: String,
    },
    /// The client ended the session (abort, disconnect command or EOF between messages).
    #[error("client closed the session")]
    Closed,
    /// An export with this name already exists.
    #[error("export `{name}` already exists: choose another name or remove the old export")]
    DuplicateExport {
        /// The name.
        name: String,
    },
    /// An export name is longer than the protocol allows (4096 bytes).
    #[error("export name of {len} bytes is too long: the NBD protocol allows at most 4096")]
    NameTooLong {
        /// Its length.
        len: usize,
    },
    /// Binding a listener failed.
    #[error("cannot listen on {addr}: {source} (is the address in use or the directory missing?)")]
    Bind {
        /// The address or socket path.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A Unix socket path exists and is not a socket, so it is not removed.
    #[error("{path} exists and is not a socket: remove it or choose another path")]
    PathInUse {
        /// The path.
        path: PathBuf,
    },
    /// The exported brick failed a control operation (e.g. `info`).
    #[error("exported device failed: {0}")]
    Brick(#[from] brick_core::Error),
}

impl NbdError {
    /// Wrap an IO error with what was being done.
    pub fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> NbdError {
        move |source| NbdError::Io { context, source }
    }

    /// A protocol violation with a reason.
    pub fn protocol(reason: impl Into<String>) -> NbdError {
        NbdError::Protocol {
            reason: reason.into(),
        }
    }

    /// Whether this ends the session normally (client left) rather than by a fault.
    pub fn is_disconnect(&self) -> bool {
        match self {
            NbdError::Closed => true,
            NbdError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
            ),
            _ => false,
        }
    }
}
