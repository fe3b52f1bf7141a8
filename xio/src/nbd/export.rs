//! What the server exports: a named [`Export`] over any [`Output`], and the [`Geometry`] the
//! handshake advertises and the transmission phase enforces.

use super::error::{NbdError, Result};
use super::proto::tflag;
use brick_core::Output;
use std::sync::Arc;

/// The largest read or write payload the server accepts (and advertises): 32 MiB, the size the
/// protocol says no server should treat as a denial of service.
pub const MAX_PAYLOAD: u32 = 32 << 20;

/// Longest export name the protocol allows.
pub const MAX_NAME: usize = 4096;

/// One named export.
#[derive(Clone)]
pub struct Export {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) output: Arc<dyn Output>,
    pub(crate) read_only: bool,
    pub(crate) multi_conn: bool,
    /// Connections in transmission on this export now (shared by its clones, so one counter
    /// covers an export served on several listeners).
    pub(crate) clients: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("name", &self.name)
            .field("read_only", &self.read_only)
            .field("multi_conn", &self.multi_conn)
            .finish()
    }
}

impl Export {
    /// Export `output` under `name` (writable unless the output says read-only; no multi-conn).
    pub fn new(name: impl Into<String>, output: Arc<dyn Output>) -> Result<Export> {
        let name = name.into();
        if name.len() > MAX_NAME {
            return Err(NbdError::NameTooLong { len: name.len() });
        }
        Ok(Export {
            name,
            description: String::new(),
            output,
            read_only: false,
            multi_conn: false,
            clients: Arc::default(),
        })
    }

    /// The number of clients in transmission on this export (and its clones) now: the
    /// daemon's `open-count`, which keeps a primary from handing over under a client.
    pub fn client_count(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.clients.clone()
    }

    /// Refuse writes (`NBD_FLAG_READ_ONLY`; writes get `EPERM`).
    pub fn read_only(mut self, yes: bool) -> Export {
        self.read_only = yes;
        self
    }

    /// Advertise `NBD_FLAG_CAN_MULTI_CONN`. Set it **only** if a flush submitted to the output
    /// makes durable every write completed before it, whichever connection sent it (true for the
    /// trans_logger, the file backends and MemDisk, which has no cache).
    pub fn multi_conn(mut self, yes: bool) -> Export {
        self.multi_conn = yes;
        self
    }

    /// A human-readable description (`NBD_INFO_DESCRIPTION`, shown by `nbdinfo`).
    pub fn description(mut self, text: impl Into<String>) -> Export {
        let mut text = text.into();
        // The protocol limits strings to 4096 bytes; cut at a character boundary.
        while text.len() > MAX_NAME {
            text.pop();
        }
        self.description = text;
        self
    }

    /// The export's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current geometry and transmission flags.
    pub fn geometry(&self) -> Result<Geometry> {
        let info = self.output.info()?;
        let read_only = self.read_only || info.read_only;
        let min_block = if info.block_size.is_power_of_two() && info.block_size <= 65536 {
            info.block_size
        } else {
            512
        };
        let mut flags = tflag::HAS_FLAGS | tflag::SEND_FLUSH | tflag::SEND_FUA;
        if read_only {
            flags |= tflag::READ_ONLY;
        } else {
            if info.can_discard {
                flags |= tflag::SEND_TRIM;
            }
            if info.can_write_zeroes {
                flags |= tflag::SEND_WRITE_ZEROES;
            }
        }
        if self.multi_conn {
            flags |= tflag::CAN_MULTI_CONN;
        }
        Ok(Geometry {
            size: info.size,
            flags,
            min_block,
            pref_block: min_block.max(4096),
            max_payload: MAX_PAYLOAD,
            max_len: info.max_len.max(min_block as usize),
        })
    }
}

/// Size, flags and block constraints of an export as one connection sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Export size in bytes.
    pub size: u64,
    /// Transmission flags.
    pub flags: u16,
    /// Minimum block size: offsets and lengths must be multiples (`EINVAL` otherwise).
    pub min_block: u32,
    /// Preferred block size.
    pub pref_block: u32,
    /// Largest read or write payload.
    pub max_payload: u32,
    /// Largest request the output takes in one piece (longer requests are split).
    pub max_len: usize,
}

impl Geometry {
    /// Whether a transmission flag is set.
    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }
}
