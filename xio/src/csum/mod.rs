//! # Block checksums of a data device
//!
//! [`CsumDisk`] sits between its users (the trans_logger's writeback, replay, full sync, the
//! emergency bypass) and a data device. It keeps a 32-bit checksum (the low half of xxh3-64)
//! of every 4 KiB block in a checksum file (`FORMAT.md`), updated as writes complete and
//! persisted at every flush; reads are verified against it, and a block whose data no longer
//! matches fails its read with [`brick_core::Error::Checksum`] (EIO on NBD) while every other
//! request goes on. [`CsumDisk::scrub_chunk`] re-reads the device and reports exactly the
//! damaged blocks; a damaged page of the checksum file is reported as such and never used to
//! judge (or "repair") data.
//!
//! **Why xxh3 (32 bits kept):** the goal is catching hardware corruption, not an adversary.
//! xxh3 hashes at memory speed (the copy brick already uses it per chunk); blake3 is several
//! times slower per byte on one core. 32 bits miss a random corruption with probability
//! 2^-32 and keep the table at 0.1% of the device (1 MiB of file per GiB, reserved up front;
//! memory only for the table pages that hold checksums: 0.1% of what was written).
//!
//! **Crash consistency:** a write intent bitmap (one bit per 4 MiB region) is made durable
//! before a clean region is written and cleared only after a full flush interval without
//! writes, so opening after a crash recomputes exactly the regions where data and checksums
//! may disagree (the log replay that follows rewrites them, checksums included).
//!
//! **Cost:** on the write path one hash per block plus a mutex; one `fdatasync` of the
//! checksum file per data flush (and per first write into a clean region). Measured in
//! `cargo bench -p mars-rs --bench csum`.

mod brick;
pub mod format;
mod scrub;
mod store;
pub mod verify;

pub use brick::{CsumDisk, CsumStatus};
pub use scrub::{ScrubChunk, SCRUB_CHUNK};
pub use store::Entry;
