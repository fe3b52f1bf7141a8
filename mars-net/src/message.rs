//! Control messages (the [`Message`] enum, encoded with postcard) and the protocol version.
//!
//! Compatibility rule: variants and fields are only ever **appended**; postcard encodes an enum
//! variant as its index (varint), so an old peer rejects an unknown new variant with a clear
//! decode error instead of misreading it. Every incompatible change adds a [`ProtocolVersion`].

use serde::{Deserialize, Serialize};
use std::fmt;

/// Protocol versions, one variant per wire change (documented in `FORMAT.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
pub enum ProtocolVersion {
    /// First version: 24-byte frame header, postcard control messages, HMAC-SHA256 handshake.
    V1 = 1,
}

impl ProtocolVersion {
    /// The newest version this build speaks.
    pub const CURRENT: ProtocolVersion = ProtocolVersion::V1;
    /// The oldest version this build still speaks.
    pub const OLDEST: ProtocolVersion = ProtocolVersion::V1;

    /// The version for a wire number, if this build speaks it.
    pub fn from_wire(v: u16) -> Option<ProtocolVersion> {
        match v {
            1 => Some(ProtocolVersion::V1),
            _ => None,
        }
    }

    /// The wire number.
    pub fn wire(self) -> u16 {
        self as u16
    }
}

/// What a connection is for. A node registers one handler per kind; the kind is part of the
/// authenticated handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChannelKind {
    /// Metadata exchange (the replicated key/value store).
    Meta,
    /// Fetching transaction-log files.
    Fetch,
    /// Full sync of a data device.
    Sync,
    /// Control RPC (admin commands between nodes).
    Rpc,
}

impl ChannelKind {
    /// All kinds.
    pub const ALL: [ChannelKind; 4] = [
        ChannelKind::Meta,
        ChannelKind::Fetch,
        ChannelKind::Sync,
        ChannelKind::Rpc,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            ChannelKind::Meta => "meta",
            ChannelKind::Fetch => "fetch",
            ChannelKind::Sync => "sync",
            ChannelKind::Rpc => "rpc",
        }
    }
}

/// A cluster's identity (a UUID, 16 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct ClusterId(pub [u8; 16]);

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterId({self})")
    }
}

/// First message of every connection, client → server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Highest protocol version the client speaks.
    pub version: u16,
    /// Cluster the client belongs to.
    pub cluster: ClusterId,
    /// Client node name.
    pub node: String,
    /// What the connection is for.
    pub kind: ChannelKind,
    /// Fresh random client nonce.
    pub nonce: [u8; 32],
}

/// Server → client answer to [`Hello`]: the server's nonce and its proof of the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// Version both sides will speak.
    pub version: u16,
    /// Cluster the server belongs to.
    pub cluster: ClusterId,
    /// Server node name.
    pub node: String,
    /// Fresh random server nonce.
    pub nonce: [u8; 32],
    /// `HMAC-SHA256(secret, "mars-net server" ‖ hello ‖ challenge-core)`, see `FORMAT.md`.
    pub mac: [u8; 32],
}

/// Every control message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Handshake step 1 (client).
    Hello(Hello),
    /// Handshake step 2 (server).
    Challenge(Challenge),
    /// Handshake step 3 (client): `HMAC-SHA256(secret, "mars-net client" ‖ hello ‖ challenge-core)`.
    Proof {
        /// The client's MAC.
        mac: [u8; 32],
    },
    /// Handshake step 4 (server): authenticated, the channel is open.
    Welcome,
    /// The handshake was refused (sent before closing).
    Refused {
        /// What is wrong and what to do.
        reason: String,
    },
    /// Keepalive probe.
    Ping {
        /// Echoed in the pong.
        seq: u64,
    },
    /// Keepalive answer.
    Pong {
        /// The ping's sequence number.
        seq: u64,
    },
    /// An application request; `body` is the application's own postcard message, the frame's
    /// bulk payload travels beside it.
    Request {
        /// Caller-chosen id, echoed in the reply.
        id: u64,
        /// Application message.
        body: Vec<u8>,
    },
    /// The answer to [`Message::Request`] with the same id.
    Reply {
        /// The request's id.
        id: u64,
        /// Application message.
        body: Vec<u8>,
    },
    /// A one-way application message.
    Notify {
        /// Application message.
        body: Vec<u8>,
    },
    /// Orderly close with a reason (logged by the receiver).
    Close {
        /// Why.
        reason: String,
    },
}

impl Message {
    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Challenge(_) => "challenge",
            Message::Proof { .. } => "proof",
            Message::Welcome => "welcome",
            Message::Refused { .. } => "refused",
            Message::Ping { .. } => "ping",
            Message::Pong { .. } => "pong",
            Message::Request { .. } => "request",
            Message::Reply { .. } => "reply",
            Message::Notify { .. } => "notify",
            Message::Close { .. } => "close",
        }
    }
}
