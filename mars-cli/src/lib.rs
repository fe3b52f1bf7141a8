//! # mars-cli: the `marsd` daemon and the `marsadm` admin tool
//!
//! - [`daemon`]: `marsd`, one owner thread per node: metadata, derive, execute.
//! - [`runtime`]: the executors of one resource (brick graphs and workers from
//!   `xio::replica`), turning strategy actions into running pipelines and facts.
//! - [`control`]: the versioned request/response protocol of the control socket
//!   (`FORMAT.md`), used by `marsadm` and by scripts.
//! - [`view`]: what `marsadm view` prints.
//! - [`manual`]: the manual pages of `marsadm` (`marsadm help COMMAND`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod control;
pub mod daemon;
pub mod manual;
pub mod runtime;
pub mod view;
