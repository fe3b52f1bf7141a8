//! # Transaction-log formats v1 and v2
//!
//! The byte format is specified in `FORMAT.md` next to this file (file header, records with
//! header/payload/trailer and CRC32C, batches and the torn-tail rule; v2 aligns every write
//! for `O_DIRECT`). This module owns:
//! - [`header`]: the 512-byte file header;
//! - [`chain`]: [`Chain`], record and batch validation shared by every reader;
//! - [`record`]: record encoding/decoding (optional lz4 per record); `crc`: a fast CRC32C
//!   combine (a record's CRC from its header's and its payload's);
//! - [`writer`]: [`LogWriter`], group commit of one file (one write + one flush per batch);
//!   `gather`: a write's pieces (headers and trailers, payloads uncopied);
//! - [`scan`]: [`Scanner`], which walks a file and tells a clean end from a torn tail, and both
//!   from corruption, unknown versions and foreign files;
//! - [`LogPos`], positions across a sequence of files;
//! - [`name`]: [`LogName`], the file name `log-<seq %09d>-<creator>`;
//! - [`ends`]: where a file's valid bytes end without scanning it (the one rule,
//!   [`ends::file_end`], over facts its readers gather; the loggers' [`LiveEnds`]): a recycled
//!   file is longer than its records.
//!
//! Log files are reached through [`brick_core::Output`]s, so the same code runs on real files
//! and on the in-memory, fault-injecting disks of the tests.

pub mod chain;
mod crc;
pub mod ends;
pub mod error;
mod gather;
pub mod header;
pub mod name;
mod pos;
pub mod record;
pub mod scan;
mod scanned;
pub mod writer;

pub use chain::Chain;
pub use ends::LiveEnds;
pub use error::{LogError, Result};
pub use header::{FileHeader, HEADER_LEN};
pub use name::{LogName, LogNameError};
pub use pos::LogPos;
pub use record::{RecordHeader, RecordIn, RecordOp};
pub use scan::{Expect, Record, ScanEnd, Scanner};
pub use writer::{BatchSpans, LogWriter};
