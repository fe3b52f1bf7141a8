//! [`Payload`]: a mutation's bytes together with the memory budget they hold.
//!
//! One allocation per write, shared by the index's version, the log thread's pending record
//! and writeback items; the budget is released, and the buffer goes back to the logger's
//! [`BufPool`], when the last of them lets go, whoever that is. (Before, only the index's
//! retirement returned buffers, and only when nobody else held them at that moment: under
//! 1 MiB writes most buffers were freed by a later holder and every write allocated fresh
//! pages, zeroed by the kernel: 27% of the process's samples were that zeroing.)

use super::bufpool::BufPool;
use brick_core::Reservation;
use std::ops::Deref;
use std::sync::Arc;

pub(crate) struct Payload {
    bytes: Vec<u8>,
    /// CRC32C of `bytes`, computed where the payload is made (the client's thread): the log
    /// thread, the one thread that writes every client's records, then only combines it with
    /// the record header's (measured: 9% of the process's samples under 1 MiB writes were
    /// this CRC on the log thread).
    crc: u32,
    /// Where `bytes` go when the last holder lets go.
    pool: Option<Arc<BufPool>>,
    _mem: Reservation,
}

impl Payload {
    /// `bytes` (empty for discard / write-zeroes) holding `mem` of the budget; the buffer
    /// returns to `pool` (if any) when the payload is dropped.
    pub fn new(bytes: Vec<u8>, mem: Reservation, pool: Option<Arc<BufPool>>) -> Arc<Payload> {
        let crc = crc32c::crc32c(&bytes);
        Arc::new(Payload {
            bytes,
            crc,
            pool,
            _mem: mem,
        })
    }

    /// CRC32C of the bytes.
    pub fn crc(&self) -> u32 {
        self.crc
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.put(std::mem::take(&mut self.bytes));
        }
    }
}

impl Deref for Payload {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.bytes
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes)", self.bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brick_core::MemBudget;

    #[test]
    fn the_budget_and_the_buffer_are_held_until_the_last_holder_lets_go() {
        let budget = MemBudget::new(1 << 20);
        let pool = Arc::new(BufPool::new(1 << 20));
        let p = Payload::new(vec![7u8; 4096], budget.acquire(4096), Some(pool.clone()));
        let other = p.clone();
        drop(p);
        assert_eq!(budget.used(), 4096, "still shared");
        assert_eq!(pool.get_for(4096).capacity(), 0, "not back yet");
        drop(other);
        assert_eq!(budget.used(), 0);
        assert!(
            pool.get_for(4096).capacity() >= 4096,
            "the buffer is back in the pool"
        );
    }
}
