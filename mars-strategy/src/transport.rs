//! The seam between the pure propagation logic and a network: the simulation implements it
//! with in-memory queues ([`crate::sim`]), the daemon with sockets ([`crate::net`]).

use crate::names::NodeName;
use crate::proto::Envelope;

/// Sends metadata messages. Delivery is best effort: a message may be lost, delayed,
/// duplicated or reordered; anti-entropy repairs all of that.
pub trait Transport {
    /// Queue `msg` for node `to`. Must not block for long (drop on back-pressure instead).
    fn send(&mut self, to: &NodeName, msg: Envelope);
}

/// Hand everything a node queued to a transport.
pub fn flush(node: &mut crate::MetaNode, t: &mut dyn Transport) {
    for (to, msg) in node.take_outbox() {
        t.send(&to, msg);
    }
}
