//! Shared helpers of the remote/copy tests (included with `mod remote_common;`).
#![allow(dead_code)]

use mars_net::{ChannelKind, ClusterId, NetConfig, Secret};
use std::net::SocketAddr;
use std::time::Duration;
use xio::remote::{ClientConfig, Target};

pub fn net(name: &str) -> NetConfig {
    let mut c = NetConfig::new(
        ClusterId([3; 16]),
        name,
        Secret::new("remote test secret 0123456789").unwrap(),
    );
    c.keepalive = Duration::from_millis(200);
    c.dead_after = Duration::from_secs(2);
    c.io_timeout = Duration::from_secs(2);
    c
}

pub fn client_cfg(peer: SocketAddr, target: Target) -> ClientConfig {
    let kind = match target {
        Target::Device(_) => ChannelKind::Sync,
        Target::Log(_) => ChannelKind::Fetch,
    };
    let mut c = ClientConfig::new(net("client"), peer, kind, target);
    c.connections = 3;
    c.timeout = Duration::from_secs(10);
    c.backoff_initial = Duration::from_millis(5);
    c.backoff_max = Duration::from_millis(100);
    c
}

/// Deterministic pseudo-random bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// Run a fetch, stopping it after `limit` so that a regression fails instead of hanging.
pub fn run_bounded(
    f: &std::sync::Arc<xio::remote::LogFetch>,
    limit: Duration,
) -> xio::remote::Result<xio::remote::FetchProgress> {
    let f2 = f.clone();
    let (tx, rx) = crossbeam_channel::bounded::<()>(1);
    let guard = std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            f2.stop();
        }
    });
    let r = f.run();
    let _ = tx.send(());
    guard.join().unwrap();
    r
}

/// Wait (bounded, 30 s) until `f` holds; `what` names the event in the failure message.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The header of log `seq`, as the logger writes it when it switches to that file: what
/// finishes the log before it for the log server (`prev_end` 0: the predecessor's length is
/// its end).
pub fn started_header(seq: u64) -> [u8; 512] {
    xio::log::FileHeader::new(seq, "r", "alice", 0)
        .encode()
        .unwrap()
}
