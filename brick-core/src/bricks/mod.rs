//! Generic bricks that need no IO: a statistics probe (optionally throttled) and an in-memory
//! disk.
//! They double as templates for writing bricks (upstream's `mars_dummy.c`).

mod memdisk;
mod probe;

pub use memdisk::{MemDisk, MemDiskMode};
pub use probe::Probe;
