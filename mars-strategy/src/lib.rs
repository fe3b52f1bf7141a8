//! # mars-strategy: the replicated metadata store and its propagation
//!
//! MARS keeps all cluster state in a replicated key/value tree whose key names follow upstream
//! (`ips/ip-<h>`, `resource-<r>/replay-<h>`, ...). This crate owns:
//!
//! - [`MetaStore`]: key → [`Entry`] (value or tombstone, Lamport stamp, origin); newer stamp
//!   wins, ties by origin; keys ending in `-<node>` are written only by that node; tombstones
//!   are collected only after every member acknowledged them.
//! - [`views`]: typed parsers/formatters for replay links, the version hash chain, log names,
//!   sync status and the todo/actual switches.
//! - [`MetaNode`]: propagation that scales. Resource keys travel only among the resource's
//!   members; global keys by bounded-fanout anti-entropy (digest, then only the differences)
//!   plus an immediate rumour push; cluster uuid checked on every message.
//! - [`strategy`]: the pure `derive(snapshot, facts) -> actions` per resource, and the
//!   state `marsadm view` shows for each replica.
//! - Membership operations (create/join/leave/merge-cluster) on [`MetaNode`].
//! - Shells with IO: [`disk`] (redb persistence, one transaction per logical update) and
//!   [`net`] (the real transport over mars-net and a node runner), and [`sim`], thousands of nodes in one process.
//!
//! ```
//! use mars_strategy::{ClockSource, MetaNode, MetaStore, PropConfig};
//! let store = MetaStore::new("a", ClockSource::System).unwrap();
//! let mut a = MetaNode::new(store, PropConfig::default(), 1);
//! a.create_cluster("127.0.0.1:7777").unwrap();
//! a.set("defaults/sync-limit", "100").unwrap();
//! assert_eq!(a.store().get("defaults/sync-limit"), Some("100"));
//! assert!(a.set("ips/ip-b", "x").is_err()); // owned by b
//! ```
//!
//! **Architecture invariant:** the store, the views and the propagation state machine do no
//! IO; only `disk`, `net` and the simulation driver touch files, sockets or threads.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod disk;
pub mod entry;
mod error;
mod membership;
pub mod names;
pub mod net;
pub mod node;
pub mod proto;
pub mod sim;
pub mod store;
pub mod strategy;
pub mod transport;
pub mod views;

pub use entry::{Acks, Entry, Value};
pub use error::{Error, Result};
pub use names::{Key, NodeName, Scope};
pub use node::{MetaNode, Mode, NodeEvent, PropConfig};
pub use store::{Change, ClockSource, MetaStore};
pub use transport::Transport;
