//! Node configuration: identity, the cluster secret, limits and timeouts.

use crate::error::{NetError, Result};
use crate::frame::Limits;
use crate::message::ClusterId;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The shared cluster secret (at least 16 bytes). Its `Debug` never prints the bytes.
#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// Shortest secret accepted.
    pub const MIN_LEN: usize = 16;

    /// Wrap secret bytes (e.g. the content of `--secret-file`, trimmed).
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<Secret> {
        let b = bytes.as_ref();
        if b.len() < Self::MIN_LEN {
            return Err(NetError::Config(format!(
                "the cluster secret has {} bytes, at least {} are needed: put a long random string in the secret file",
                b.len(),
                Self::MIN_LEN
            )));
        }
        Ok(Secret(b.into()))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// Everything a node needs to speak mars-net. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Cluster this node belongs to; peers of other clusters are refused.
    pub cluster: ClusterId,
    /// This node's name (sent in the handshake, used in logs).
    pub node: String,
    /// The cluster secret both sides prove knowledge of.
    pub secret: Secret,
    /// Hard limits for incoming frames.
    pub limits: Limits,
    /// The whole handshake must finish within this time.
    pub handshake_timeout: Duration,
    /// A frame that makes no progress (no byte in or out) for this long fails the connection.
    pub io_timeout: Duration,
    /// A receiver idle for this long sends a ping.
    pub keepalive: Duration,
    /// A receiver that hears nothing (not even a pong) for this long declares the peer dead.
    pub dead_after: Duration,
    /// Compress payloads with lz4 when it makes them smaller.
    pub compress: bool,
    /// Most connections a listener serves at once; more are refused.
    pub max_connections: usize,
}

impl NetConfig {
    /// A configuration with default limits and timeouts.
    pub fn new(cluster: ClusterId, node: impl Into<String>, secret: Secret) -> NetConfig {
        NetConfig {
            cluster,
            node: node.into(),
            secret,
            limits: Limits::default(),
            handshake_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(30),
            keepalive: Duration::from_secs(5),
            dead_after: Duration::from_secs(30),
            compress: false,
            max_connections: 1024,
        }
    }

    pub(crate) fn tick(&self) -> Duration {
        self.keepalive
            .min(self.io_timeout)
            .min(Duration::from_millis(500))
            .max(Duration::from_millis(10))
    }
}
