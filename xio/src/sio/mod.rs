//! `sio`: the portable file backend. A pool of worker threads executes requests with
//! `pread`/`pwrite`/`fdatasync`/`fallocate`, each request on one worker, and completes it on
//! that worker. Same interface and semantics as [`crate::aio`]; see [`crate::file`] for both.

mod brick;

pub use brick::SyncFile;
