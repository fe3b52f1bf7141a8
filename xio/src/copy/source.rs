//! What the copy brick reads from: [`CopySource`], with a native implementation for the remote
//! client (compare-reads happen on the server, only differing chunks travel) and one for any
//! local [`brick_core::Output`].

use crate::remote::{chunk_sum, ChunkSum, RemoteClient};
use brick_core::{Error, Output, Result};
use std::sync::Arc;

/// The source side (input A) of a copy.
pub trait CopySource: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> Result<u64>;
    /// Exactly `len` bytes at `pos`.
    fn read(&self, pos: u64, len: usize) -> Result<Vec<u8>>;
    /// The bytes at `pos` if their [`chunk_sum`] differs from `sum`, else `None`.
    fn read_if_differs(&self, pos: u64, len: usize, sum: ChunkSum) -> Result<Option<Vec<u8>>>;
}

impl CopySource for RemoteClient {
    fn size(&self) -> Result<u64> {
        self.stat()
            .map(|(s, _)| s)
            .map_err(|e| e.to_brick("remote source"))
    }
    fn read(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        brick_core::read_all(self, pos, len)
    }
    fn read_if_differs(&self, pos: u64, len: usize, sum: ChunkSum) -> Result<Option<Vec<u8>>> {
        let len32 = u32::try_from(len).map_err(|_| Error::Invalid("chunk longer than 4 GiB"))?;
        match RemoteClient::read_if_differs(self, pos, len32, sum) {
            Ok(Some(d)) if d.len() != len => Err(Error::ShortRead {
                pos,
                got: d.len(),
                want: len,
            }),
            Ok(r) => Ok(r),
            Err(e) => Err(e.to_brick("remote source")),
        }
    }
}

/// Any local brick as a copy source (compare-reads read the data and compare here).
pub struct LocalSource(pub Arc<dyn Output>);

impl CopySource for LocalSource {
    fn size(&self) -> Result<u64> {
        self.0.info().map(|i| i.size)
    }
    fn read(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        brick_core::read_all(&*self.0, pos, len)
    }
    fn read_if_differs(&self, pos: u64, len: usize, sum: ChunkSum) -> Result<Option<Vec<u8>>> {
        let d = self.read(pos, len)?;
        Ok((chunk_sum(&d) != sum).then_some(d))
    }
}
