//! A one-way elevator queue (C-LOOK, upstream's ordered `lib_queue`): items come out in
//! ascending position from the last position served, wrapping around to the lowest when nothing
//! lies above. Used to sort deferred writeback. Equal positions keep their insertion order.
//!
//! Plain priority queues need nothing of ours: use `std::collections::BinaryHeap`.

use std::collections::BTreeMap;

/// The queue.
#[derive(Debug)]
pub struct Elevator<T> {
    items: BTreeMap<(u64, u64), T>,
    cursor: u64,
    seq: u64,
}

impl<T> Default for Elevator<T> {
    fn default() -> Self {
        Elevator {
            items: BTreeMap::new(),
            cursor: 0,
            seq: 0,
        }
    }
}

impl<T> Elevator<T> {
    /// An empty queue with the cursor at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queue `item` at `pos`.
    pub fn push(&mut self, pos: u64, item: T) {
        self.seq += 1;
        self.items.insert((pos, self.seq), item);
    }

    /// The next item at or above the cursor, else the lowest one.
    pub fn pop(&mut self) -> Option<(u64, T)> {
        let key = match self.items.range((self.cursor, 0)..).next() {
            Some((k, _)) => *k,
            None => *self.items.keys().next()?,
        };
        let item = self.items.remove(&key)?;
        self.cursor = key.0;
        Some((key.0, item))
    }

    /// Number of queued items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}
