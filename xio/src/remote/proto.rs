//! The remote-brick protocol: [`RemoteReq`] / [`RemoteReply`], postcard-encoded into the body of
//! mars-net `Request`/`Reply` frames; data travels as the frame payload. Layout in `FORMAT.md`.

use serde::{Deserialize, Serialize};

/// What a request addresses on the serving node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Target {
    /// An exported data device, by export name.
    Device(String),
    /// A log file in the server's log directory, by file name (no path components).
    Log(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Device(n) => write!(f, "device {n}"),
            Target::Log(n) => write!(f, "log {n}"),
        }
    }
}

/// A per-chunk checksum (xxh3-128 of the chunk's bytes, little-endian).
pub type ChunkSum = [u8; 16];

/// The checksum of one chunk.
pub fn chunk_sum(data: &[u8]) -> ChunkSum {
    xxhash_rust::xxh3::xxh3_128(data).to_le_bytes()
}

/// Largest data read per request.
pub const MAX_READ: usize = 8 << 20;
/// Largest range covered by one checksum request.
pub const MAX_SUM_RANGE: u64 = 256 << 20;
/// Smallest checksum chunk.
pub const MIN_SUM_CHUNK: u32 = 4096;
/// Longest a read at the end of a growing log waits for new bytes.
pub const MAX_WAIT_MS: u32 = 2000;

/// Client → server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteReq {
    /// Size now, and whether it can still grow.
    Stat {
        /// What.
        target: Target,
    },
    /// Read up to `len` bytes at `pos`. For a log, the reply may be shorter at its current end;
    /// if `pos` is at the end and the log is not finished, the server waits up to `wait_ms` for
    /// it to grow.
    Read {
        /// What.
        target: Target,
        /// Byte offset.
        pos: u64,
        /// Bytes wanted (≤ [`MAX_READ`]).
        len: u32,
        /// Follow-growth wait in ms (≤ [`MAX_WAIT_MS`]).
        wait_ms: u32,
    },
    /// Per-chunk checksums of `[pos, pos+len)` (the last chunk may be short); no data.
    Checksums {
        /// What.
        target: Target,
        /// Byte offset.
        pos: u64,
        /// Range length (≤ [`MAX_SUM_RANGE`]).
        len: u64,
        /// Chunk size (≥ [`MIN_SUM_CHUNK`]).
        chunk: u32,
    },
    /// Read `[pos, pos+len)` only if its checksum differs from `sum` (fast full sync).
    ReadIfDiffers {
        /// What.
        target: Target,
        /// Byte offset.
        pos: u64,
        /// Bytes (≤ [`MAX_READ`]).
        len: u32,
        /// The caller's checksum of its own copy.
        sum: ChunkSum,
    },
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteReply {
    /// Answer to `Stat`.
    Stat {
        /// Current size in bytes.
        size: u64,
        /// Whether the target is finished (a device always is; a log once its successor exists).
        finished: bool,
    },
    /// Data in the payload (answer to `Read`, or to `ReadIfDiffers` when different).
    Data {
        /// Size of the target as of this read.
        size: u64,
        /// Whether it is finished.
        finished: bool,
    },
    /// Answer to `Checksums`: one sum per chunk.
    Sums {
        /// The sums, in order.
        sums: Vec<ChunkSum>,
    },
    /// Answer to `ReadIfDiffers`: the checksums match, no data.
    Same,
    /// The request failed on the server.
    Error {
        /// What happened there.
        message: String,
        /// The errno it maps to.
        errno: i32,
    },
}

impl RemoteReq {
    /// The target addressed.
    pub fn target(&self) -> &Target {
        match self {
            RemoteReq::Stat { target }
            | RemoteReq::Read { target, .. }
            | RemoteReq::Checksums { target, .. }
            | RemoteReq::ReadIfDiffers { target, .. } => target,
        }
    }
}
