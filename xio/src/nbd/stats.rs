//! The server's counters: shared by the server (connections) and each connection's reader
//! (requests), so they live apart from both.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters of the whole server (plain atomics, read with `NbdServer::stats`).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) active: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) violations: AtomicU64,
}

/// A snapshot of the server's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStats {
    /// Connections accepted so far.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Transmission requests received.
    pub requests: u64,
    /// Requests answered with an error before touching the device.
    pub refused: u64,
    /// Connections closed because the client broke the protocol.
    pub violations: u64,
}

impl Counters {
    /// The counters now.
    pub(crate) fn snapshot(&self) -> ServerStats {
        ServerStats {
            accepted: self.accepted.load(Relaxed),
            active: self.active.load(Relaxed),
            requests: self.requests.load(Relaxed),
            refused: self.refused.load(Relaxed),
            violations: self.violations.load(Relaxed),
        }
    }
}
