//! Generic bricks that need no IO: a statistics probe, a throttle and an in-memory disk.
//! They double as templates for writing bricks (upstream's `mars_dummy.c`).

mod memdisk;
mod probe;
mod throttle;

pub use memdisk::{MemDisk, MemDiskMode};
pub use probe::Probe;
pub use throttle::Throttle;
