//! Errors of the remote bricks.

/// What went wrong talking to (or serving) a peer.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The transport failed (and the request could not be resubmitted in time).
    #[error("network: {0}")]
    Net(#[from] mars_net::NetError),
    /// The server answered with an error.
    #[error("the server failed the request: {message} (errno {errno})")]
    Server {
        /// Its message.
        message: String,
        /// The errno.
        errno: i32,
    },
    /// No reply for the configured time.
    #[error("no progress from peer {peer} for {millis} ms: the peer or the link is down (requests were failed; retry when it is back)")]
    Timeout {
        /// Peer address.
        peer: String,
        /// Configured timeout.
        millis: u64,
    },
    /// The reply does not fit the request.
    #[error("unexpected reply from {peer}: {what}")]
    Protocol {
        /// Peer address.
        peer: String,
        /// What was wrong.
        what: String,
    },
    /// The client was switched off.
    #[error("remote client {0} is switched off")]
    Off(String),
    /// A local file operation failed.
    #[error("local I/O on {path}: {source}")]
    Local {
        /// Which file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The local copy is longer than the remote log: they are not the same log (after a
    /// split brain, or the remote file was replaced). Nothing is appended.
    #[error("the local copy of {name} ({local} bytes) is longer than the remote log ({remote} bytes): not the same log (split brain?)")]
    Diverged {
        /// Log name.
        name: String,
        /// Local length.
        local: u64,
        /// Remote length.
        remote: u64,
    },
    /// A fetched log does not verify.
    #[error("fetched log {name} does not verify at offset {pos}: {reason}")]
    Verify {
        /// Log name.
        name: String,
        /// Where.
        pos: u64,
        /// What the scanner said.
        reason: String,
    },
}

impl RemoteError {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RemoteError::Net(e) => e.is_retryable(),
            RemoteError::Timeout { .. } => true,
            _ => false,
        }
    }

    /// Flatten into the brick-core error that travels on requests.
    pub fn to_brick(&self, brick: &str) -> brick_core::Error {
        match self {
            RemoteError::Timeout { millis, .. } => brick_core::Error::Timeout {
                context: "waiting for the remote peer (no progress)",
                millis: *millis,
            },
            RemoteError::Server { errno, .. } if *errno == libc::EINVAL => {
                brick_core::Error::Invalid("the server rejected the request range")
            }
            RemoteError::Off(_) => brick_core::Error::Off {
                brick: brick.into(),
            },
            RemoteError::Verify { name, pos, reason } => brick_core::Error::Corrupt {
                file: name.clone(),
                offset: *pos,
                reason: format!("fetched log does not verify: {reason}"),
            },
            other => brick_core::Error::Brick {
                brick: brick.into(),
                message: other.to_string(),
            },
        }
    }
}

/// Result alias of the remote bricks.
pub type Result<T, E = RemoteError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetched_log_that_does_not_verify_is_a_structured_corruption() {
        let e = RemoteError::Verify {
            name: "log-000000002-alice".into(),
            pos: 4096,
            reason: "record at 4096 carries another file's nonce".into(),
        };
        match e.to_brick("fetch") {
            brick_core::Error::Corrupt { file, offset, .. } => {
                assert_eq!((file.as_str(), offset), ("log-000000002-alice", 4096));
            }
            other => panic!("{other:?}"),
        }
        assert!(!e.is_retryable());
    }
}
