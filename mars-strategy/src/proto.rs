//! The metadata exchange protocol: one [`Envelope`] per message, serde + postcard on the wire
//! (see `FORMAT.md` next to this file).
//!
//! An anti-entropy exchange between A and B (all steps only when something differs):
//! 1. A → B `Digest`: root digests of the global scope (if B was picked this round) and of
//!    every resource A and B share.
//! 2. B → A `Buckets`: bucket digests of each scope whose root differs.
//! 3. A → B `Summaries`: (key hash, stamp, origin, entry hash) of the differing buckets.
//! 4. B → A `Push`: the entries A lacks or has older, plus the key hashes B wants.
//! 5. A → B `Push`: the wanted entries.
//!
//! Changes travel at once as `Push` (resource keys to the resource's members, global keys as a
//! rumour to a few random members, each of which forwards a new write once).

use crate::entry::Entry;
use crate::names::{Key, NodeName, Scope};
use crate::store::Summary;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Wire protocol versions, one variant per change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProtocolVersion {
    /// The first version.
    V1,
}

/// The version this build speaks.
pub const PROTOCOL: ProtocolVersion = ProtocolVersion::V1;

/// The cluster label of a node that has not joined a cluster yet.
pub const NO_CLUSTER: &str = "(any)";

/// One message between two nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version.
    pub version: ProtocolVersion,
    /// Sender's cluster uuid ([`NO_CLUSTER`] while joining).
    pub cluster: Arc<str>,
    /// Former cluster uuids the sender's cluster absorbed by merge-cluster.
    pub also: Vec<Arc<str>>,
    /// Sender.
    pub from: NodeName,
    /// Content.
    pub body: Body,
}

/// Message content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Body {
    /// Root digests: global (if included) and shared resources.
    Digest {
        /// Root of the global scope.
        global: Option<u64>,
        /// Roots of shared resource scopes.
        resources: Vec<(Arc<str>, u64)>,
    },
    /// Bucket digests of scopes whose root differed.
    Buckets {
        /// Per scope, all bucket digests.
        scopes: Vec<(Scope, Vec<u64>)>,
    },
    /// Summaries of the entries in differing buckets.
    Summaries {
        /// Per scope: bucket numbers and the sender's summaries of those buckets.
        parts: Vec<(Scope, Vec<u16>, Vec<Summary>)>,
    },
    /// Entries, and the key hashes the sender wants back.
    Push {
        /// Entries to merge.
        entries: Vec<(Key, Entry)>,
        /// Per scope, key hashes the sender wants.
        want: Vec<(Scope, Vec<u64>)>,
    },
    /// Full-mesh mode (upstream's behaviour, for comparison): "send me your tree".
    Pull,
    /// Full-mesh reply. Upstream sends the whole tree; the simulation transfers only what
    /// changed since the last pull by this peer and charges `dump_bytes` (the whole tree).
    Dump {
        /// The entries changed since the peer's last pull.
        entries: Vec<(Key, Entry)>,
        /// Size of the whole tree upstream would send.
        dump_bytes: u64,
    },
    /// join-cluster: the joiner's own entries (`ips/ip-<joiner>`).
    Join {
        /// The joiner's entries.
        entries: Vec<(Key, Entry)>,
    },
    /// Reply to `Join` or an accepted `MergeRequest`: the whole global scope.
    Welcome {
        /// Global entries.
        entries: Vec<(Key, Entry)>,
    },
    /// merge-cluster: the requester's resource names and global entries.
    MergeRequest {
        /// Resource names of the requester's cluster.
        resources: Vec<Arc<str>>,
        /// The requester's global entries.
        entries: Vec<(Key, Entry)>,
    },
    /// merge-cluster refused: resource names present in both clusters.
    MergeRefused {
        /// Conflicting names.
        conflicts: Vec<String>,
    },
}

impl Body {
    /// Short name for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Digest { .. } => "digest",
            Body::Buckets { .. } => "buckets",
            Body::Summaries { .. } => "summaries",
            Body::Push { .. } => "push",
            Body::Pull => "pull",
            Body::Dump { .. } => "dump",
            Body::Join { .. } => "join",
            Body::Welcome { .. } => "welcome",
            Body::MergeRequest { .. } => "merge-request",
            Body::MergeRefused { .. } => "merge-refused",
        }
    }
}

impl Envelope {
    /// Encode for the wire.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("serialising to a Vec cannot fail")
    }

    /// Decode from the wire; garbage gives an error, never a panic.
    pub fn decode(bytes: &[u8]) -> crate::Result<Envelope> {
        postcard::from_bytes(bytes).map_err(|e| crate::Error::Decode {
            what: "metadata message".into(),
            detail: e.to_string(),
        })
    }

    /// Bytes this message costs on the wire (for `Dump`: the whole tree upstream would send).
    pub fn wire_size(&self) -> u64 {
        let base = self.encode().len() as u64;
        match &self.body {
            Body::Dump { dump_bytes, .. } => base.max(*dump_bytes),
            _ => base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brick_core::Stamp;

    fn sample() -> Envelope {
        Envelope {
            version: PROTOCOL,
            cluster: Arc::from("c"),
            also: Vec::new(),
            from: Arc::from("a"),
            body: Body::Push {
                entries: vec![(
                    Arc::from("userspace/k"),
                    Entry::set("v", Stamp(5), Arc::from("a")),
                )],
                want: vec![(Scope::Global, vec![7])],
            },
        }
    }

    /// Byte fixture of the V1 wire format (FORMAT.md): changing it needs a new version.
    #[test]
    fn wire_fixture_v1() {
        let hex: String = sample()
            .encode()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, FIXTURE);
        let back = Envelope::decode(&sample().encode()).unwrap();
        assert_eq!(back.encode(), sample().encode());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let good = sample().encode();
        for cut in 0..good.len() {
            let _ = Envelope::decode(&good[..cut]);
        }
        assert!(Envelope::decode(&[0xff; 16]).is_err());
    }

    const FIXTURE: &str = "00016300016103010b7573657273706163652f6b00017605016101000107";
}
