//! Mutual HMAC-SHA256 challenge-response. Both MACs cover the client's hello (with its fresh
//! nonce) and the server's challenge core (with its fresh nonce), under different labels, so
//! - a recorded client proof is useless on a new connection (the server's nonce differs),
//! - a recorded server challenge is useless to an impostor server (the client's nonce differs),
//! - a server proof cannot be reflected as a client proof (labels differ).

use crate::config::Secret;
use crate::message::{Challenge, ClusterId, Hello};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const SERVER_LABEL: &[u8] = b"mars-net v1 server proof";
const CLIENT_LABEL: &[u8] = b"mars-net v1 client proof";

/// The bytes both MACs cover.
fn transcript(
    hello: &Hello,
    version: u16,
    cluster: &ClusterId,
    node: &str,
    nonce: &[u8; 32],
) -> Vec<u8> {
    // postcard of plain data cannot fail.
    let mut t = postcard::to_allocvec(hello).unwrap_or_default();
    let core = (version, cluster, node, nonce);
    t.extend_from_slice(&postcard::to_allocvec(&core).unwrap_or_default());
    t
}

fn mac(secret: &Secret, label: &[u8], t: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret.bytes()).expect("HMAC takes keys of any length");
    m.update(label);
    m.update(&(t.len() as u64).to_le_bytes());
    m.update(t);
    m
}

/// The server's MAC for a challenge it is about to send.
pub(crate) fn server_mac(secret: &Secret, hello: &Hello, c: &Challenge) -> [u8; 32] {
    let t = transcript(hello, c.version, &c.cluster, &c.node, &c.nonce);
    mac(secret, SERVER_LABEL, &t).finalize().into_bytes().into()
}

/// Check the server's MAC (constant time).
pub(crate) fn verify_server(secret: &Secret, hello: &Hello, c: &Challenge) -> bool {
    let t = transcript(hello, c.version, &c.cluster, &c.node, &c.nonce);
    mac(secret, SERVER_LABEL, &t).verify_slice(&c.mac).is_ok()
}

/// The client's MAC over the same transcript.
pub(crate) fn client_mac(secret: &Secret, hello: &Hello, c: &Challenge) -> [u8; 32] {
    let t = transcript(hello, c.version, &c.cluster, &c.node, &c.nonce);
    mac(secret, CLIENT_LABEL, &t).finalize().into_bytes().into()
}

/// Check the client's MAC (constant time).
pub(crate) fn verify_client(secret: &Secret, hello: &Hello, c: &Challenge, got: &[u8; 32]) -> bool {
    let t = transcript(hello, c.version, &c.cluster, &c.node, &c.nonce);
    mac(secret, CLIENT_LABEL, &t).verify_slice(got).is_ok()
}

/// A fresh random nonce.
pub(crate) fn nonce() -> [u8; 32] {
    use rand::RngCore;
    let mut n = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}
