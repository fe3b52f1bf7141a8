//! # mars-net: the transport of MARS
//!
//! One TCP listener per node ([`Node`]); every connection starts with a versioned handshake
//! (protocol version, cluster uuid, node name, [`ChannelKind`]) and a **mutual HMAC-SHA256
//! challenge-response** over the cluster [`Secret`] with fresh nonces on both sides, so neither
//! an unauthenticated peer nor a replayed handshake gets in. After that, both sides exchange
//! length-prefixed frames ([`frame`]): a postcard control [`Message`] plus an optional raw bulk
//! payload (optionally lz4-compressed), all covered by a crc32c. Lengths are checked against
//! hard [`Limits`] before anything is allocated. Wire layout and byte fixtures: `FORMAT.md`.
//!
//! Threads, not async: a [`Connection`] is blocking; [`Connection::split`] gives a receiver for
//! one thread and a cloneable [`ConnSender`]. The receiver answers keepalive pings itself, sends
//! pings when idle and declares the peer dead after `dead_after` of silence; a frame making no
//! progress for `io_timeout` fails. A peer that sends garbage is cut with a logged reason.
//! Reconnect with [`Backoff`] (exponential, jittered) or [`connect_retry`].
//!
//! ```
//! use mars_net::*;
//! let secret = Secret::new("a long shared cluster secret").unwrap();
//! let cfg = |name: &str| NetConfig::new(ClusterId([7; 16]), name, secret.clone());
//! // Server: echo every request on the meta channel.
//! let handlers = Handlers::new().on(ChannelKind::Meta, |mut conn: Connection| {
//!     while let Ok(f) = conn.recv() {
//!         if let Message::Request { id, body } = f.msg {
//!             let _ = conn.reply(id, body, &f.payload);
//!         }
//!     }
//! });
//! let node = Node::listen("127.0.0.1:0", cfg("server"), handlers).unwrap();
//! // Client.
//! let mut conn = connect(node.local_addr(), &cfg("client"), ChannelKind::Meta).unwrap();
//! let reply = conn.request(b"hi".to_vec(), b"bulk").unwrap();
//! assert_eq!(reply.msg, Message::Reply { id: 1, body: b"hi".to_vec() });
//! assert_eq!(reply.payload, b"bulk");
//! assert_eq!(conn.peer().node, "server");
//! ```
//!
//! Application protocols (the metadata store, the remote bricks of xio) put their own
//! postcard-encoded enums into the `body` of [`Message::Request`] / [`Message::Reply`] /
//! [`Message::Notify`], and bulk data into the payload.
//!
//! For tests, [`fault::FaultProxy`] injects latency, bandwidth caps, drops and corruption.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod auth;
mod backoff;
mod config;
mod conn;
mod error;
pub mod fault;
pub mod frame;
mod handshake;
mod message;
mod node;

pub use backoff::Backoff;
pub use config::{NetConfig, Secret};
pub use conn::{ConnReceiver, ConnSender, Connection, PeerInfo};
pub use error::{NetError, Result};
pub use frame::{Frame, Limits};
pub use message::{Challenge, ChannelKind, ClusterId, Hello, Message, ProtocolVersion};
pub use node::{connect, connect_retry, Handler, Handlers, Node, NodeStats};
