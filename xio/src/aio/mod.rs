//! `aio`: the io_uring file backend.
//!
//! - **Submission** is batched: submitters push entries into the ring's submission queue, and
//!   one `io_uring_enter` hands them to the kernel. Requests submitted from a completion hook
//!   (on the completion thread) or inside [`UringFile::batch`] are collected and entered
//!   together; a plain `submit` from another thread enters at once (the completion thread may
//!   be asleep in the kernel).
//! - **One completion thread** per brick (`xio-aio-<n>`, started with the first request that goes
//!   through the brick's ring: driven and inline IO never start it) reaps completions, advances each
//!   request's state machine (partial reads/writes are continued, FUA adds an `fdatasync`,
//!   unsupported `fallocate` falls back to writing zeroes) and runs the completion hooks.
//! - **Driven mode** ([`drive`]): a thread that waits for its own IO anyway submits to a ring of
//!   its own and reaps there (no eventfd wake of the completion thread, no wake back).
//! - **Bounded queue depth**: see [`crate::file`] (wait up to `busy_wait`, then `Busy`).
//!
//! Same interface and semantics as [`crate::sio`]; [`crate::file`] documents both.
//!
//! Registered (fixed) buffers are not used: requests bring their own `Vec<u8>`, so a fixed
//! buffer would cost a copy, and a `perf` profile of buffered 4 KiB random writes at QD32 puts
//! the time in the kernel (the io-wq worker's ext4 write path and wake-ups), with the
//! completion loop itself at about 0.2 % of samples: there is nothing for them to save.

mod brick;
mod local;
mod ring;
mod state;

pub use brick::UringFile;
pub use local::{drive, reap_own, wait_readable};

/// Set up (and drop) a small ring the way the backend does: can this process use io_uring?
pub(crate) fn probe() -> std::io::Result<()> {
    ring::Ring::new(1).map(drop)
}
