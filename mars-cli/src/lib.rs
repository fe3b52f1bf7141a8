//! # mars-cli: the `marsd` daemon and the `marsadm` admin tool
//!
//! - [`daemon`]: `marsd`, one owner thread per node: metadata, derive, execute.
//! - [`runtime`]: the executors of one resource (brick graphs and workers from
//!   `xio::replica`), turning strategy actions into running pipelines and facts.
//! - [`control`]: the versioned request/response protocol of the control socket
//!   (`FORMAT.md`), used by `marsadm` and by scripts.
//! - [`events`]: the state changes `marsadm events` streams.
//! - [`metrics`]: `marsd --metrics-listen`, the Prometheus exposition.
//! - [`progress`]: rates and time lag measured over the daemon's rounds.
//! - [`scrub`]: `marsadm scrub`, a throttled, resumable checksum pass over a data device.
//! - [`verify`]: `marsadm verify`, the primary comparing its checksums with a secondary's.
//! - [`view`]: what `marsadm view` prints.
//! - [`manual`]: the manual pages of `marsadm` (`marsadm help COMMAND`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod control;
pub mod daemon;
pub mod events;
pub mod manual;
pub mod metrics;
pub mod progress;
pub mod runtime;
pub mod scrub;
pub mod verify;
pub mod view;
