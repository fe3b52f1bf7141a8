//! Files and block devices as terminal bricks: the shared part of the two IO backends and the
//! closed-set selector between them.
//!
//! ```no_run
//! use std::sync::Arc;
//! use brick_core::Output;
//! use xio::file::{self, Backend, FileOptions};
//!
//! let opts = FileOptions { create_size: Some(1 << 30), ..FileOptions::default() };
//! let disk: Arc<file::FileBrick> = file::open("/work/disk.img", Backend::IoUring, &opts)?;
//! brick_core::write_all(&*disk, 4096, b"hello")?;
//! assert_eq!(disk.info()?.size, 1 << 30);
//! # Ok::<(), brick_core::Error>(())
//! ```
//!
//! # Semantics (identical for [`Backend::Sync`] and [`Backend::IoUring`])
//! - **Read** fills `req.data` with exactly `len` bytes. A read that hits end-of-file inside the
//!   device size (file truncated underneath) completes with [`Error::ShortRead`] and `data`
//!   holding the bytes that were read; partial reads are retried for the remainder first.
//! - **Write** writes `data` (`data.len() == len`). With [`Flags::FUA`] it is followed by
//!   `fdatasync`, so that it *and every write completed before it* are durable on completion
//!   (`RWF_DSYNC` would only cover this write's range).
//! - **Flush**: `fdatasync` (every write completed before the flush is durable).
//! - **Discard**: `fallocate(PUNCH_HOLE | KEEP_SIZE)` (on block devices too: the kernel turns it
//!   into a discard that guarantees zeroes, unlike `BLKDISCARD`). The range reads back as zeroes.
//! - **WriteZeroes**: `fallocate(PUNCH_HOLE | KEEP_SIZE)`, or `ZERO_RANGE` with
//!   [`Flags::NO_HOLE`] (stays allocated). Where the file system or device refuses the mode
//!   (`EOPNOTSUPP`, or an unaligned range on a device) the backend writes zeroes instead.
//!   Discard and write-zeroes honour FUA with an `fdatasync`.
//! - **Size**: [`brick_core::Output::info`] reports the size measured at open (`fstat`, or the
//!   device size) and kept current by this brick's own resizes; [`FileBrick::refresh_size`]
//!   re-reads it after outside changes.
//! - [`brick_core::Output::prepare`] shortens reads and writes to [`FileOptions::max_len`].
//! - [`brick_core::Output::write_gather`] (the `Sync` backend, and `IoUring` on buffered
//!   files): a write of the pieces' concatenation on the calling thread, with `pwritev` (no
//!   copy; `O_DIRECT`, `Sync` only: through the bounce buffer).
//!
//! # Errors
//! - A request past the end ([`Error::OutOfRange`]), a malformed one ([`Error::Invalid`]) or a
//!   mutation on a read-only brick (`Os { errno: EROFS }`) is checked before any IO and
//!   *completed* with that error (the request is accepted, then finished at once).
//! - `EIO` stays `Error::Os { errno: 5, .. }`; `ENOSPC`/`EDQUOT` become [`Error::NoSpace`]
//!   (mapping in [`from_errno`]).
//! - Refusals hand the request back in [`brick_core::Rejected`]: [`Error::Off`] while the brick
//!   is switched off, [`Error::Busy`] when the queue stays full (below).
//!
//! # Queue depth and back-pressure
//! At most [`FileOptions::queue_depth`] requests are in flight. A submit beyond the depth
//! **waits** up to [`FileOptions::busy_wait`] for a slot and then **rejects** with
//! [`Error::Busy`], handing the request back. A submit made on a thread that completes this
//! brick's IO (a completion hook resubmitting) never waits: it is rejected at once if full.
//!
//! # Power and shutdown
//! Both bricks start switched on. `switch(false)` refuses new IO at once and reports
//! `Busy` until in-flight IO has drained ([`FileBrick::switch_off_wait`] waits for it).
//! Dropping a brick waits for in-flight IO and joins its threads; no thread outlives it.
//!
//! # Ordering
//! Requests in flight at the same time may execute and complete in any order, as on a real
//! disk (several `sio` workers, io_uring's workers). A caller that needs one write to land after
//! another waits for the first one's completion; a flush covers every write completed before it.
//!
//! IO is buffered unless [`FileOptions::direct`]: requests carry ordinary `Vec<u8>` buffers.
//!
//! # Driven submission
//! Inside [`drive`], io_uring requests of the calling thread are reaped by that thread while it
//! waits for completions (see [`crate::aio::drive`]); `Sync` bricks are unaffected.
//!
//! [`Error::ShortRead`]: brick_core::Error::ShortRead
//! [`Error::OutOfRange`]: brick_core::Error::OutOfRange
//! [`Error::Invalid`]: brick_core::Error::Invalid
//! [`Error::NoSpace`]: brick_core::Error::NoSpace
//! [`Error::Busy`]: brick_core::Error::Busy
//! [`Error::Off`]: brick_core::Error::Off
//! [`Flags::FUA`]: brick_core::Flags::FUA
//! [`Flags::NO_HOLE`]: brick_core::Flags::NO_HOLE

pub(crate) mod core;
mod direct;
pub(crate) mod error;
pub(crate) mod sys;
mod uring_probe;

pub use self::core::FileKind;
pub use direct::DirectIo;
pub use error::{from_errno, from_io};
pub use sys::cached_pages;
pub use uring_probe::{io_uring_unavailable, IO_URING_ENV};

pub use crate::aio::drive;

use crate::aio::UringFile;
use crate::sio::SyncFile;
use brick_core::{Aio, Brick, Info, Output, PowerState, Rejected, Result, StatsSnapshot};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Which backend executes the IO (a closed set: enum dispatch, no `dyn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// [`SyncFile`]: a thread pool doing `pread`/`pwrite`; portable fallback.
    Sync,
    /// [`UringFile`]: io_uring with batched submission and one completion thread.
    IoUring,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "sio" | "sync" => Ok(Backend::Sync),
            "aio" | "io_uring" | "uring" => Ok(Backend::IoUring),
            _ => Err(format!("unknown IO backend `{s}`: use `aio` or `sio`")),
        }
    }
}

/// How to open a file brick. `FileOptions::default()` suits a data device.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// Brick name (default: the path).
    pub name: Option<String>,
    /// Open read-only; mutations complete with `EROFS`.
    pub read_only: bool,
    /// Create the file if missing and grow it to at least this size (regular files only).
    pub create_size: Option<u64>,
    /// Writes may extend the file past its size (log files); other requests stay range-checked.
    pub growable: bool,
    /// Most requests in flight (default 128).
    pub queue_depth: usize,
    /// How long a submit beyond the queue depth waits for a slot before `Busy` (default 100 ms).
    pub busy_wait: Duration,
    /// `prepare` shortens reads and writes to this many bytes (default 8 MiB).
    pub max_len: usize,
    /// Worker threads of the `Sync` backend (default 4; ignored by `IoUring`). 0: no thread,
    /// each request runs on the submitting thread and completes before `submit` returns (for
    /// a file with one synchronous user, such as a log file: no hand-over, no wake-up).
    pub threads: usize,
    /// After each write, start writing its pages to disk (`sync_file_range`), so that a later
    /// `fdatasync` finds them on their way instead of writing everything at once (default
    /// false; for log files written in a stream; ignored with `direct` and by `IoUring`).
    pub start_writeback: bool,
    /// Open with `O_DIRECT`: IO bypasses the page cache (default false). Data goes through an
    /// aligned bounce buffer (aio: one per request, kept with it; sio: one per worker thread);
    /// offsets and lengths must be multiples of `Info::block_size`, other requests fail with
    /// `Invalid`. `Flags::MAY_BLOCK` is ignored (an inline write would wait for the device).
    pub direct: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            name: None,
            read_only: false,
            create_size: None,
            growable: false,
            queue_depth: 128,
            busy_wait: Duration::from_millis(100),
            max_len: 8 << 20,
            threads: 4,
            start_writeback: false,
            direct: false,
        }
    }
}

/// A file brick of either backend.
pub enum FileBrick {
    /// Thread-pool backend.
    Sync(SyncFile),
    /// io_uring backend.
    IoUring(UringFile),
}

/// Open `path` (regular file or block device) with `backend`. `IoUring` falls back to `Sync`
/// where this process cannot use io_uring ([`io_uring_unavailable`] says why; warned once);
/// [`FileBrick::backend`] tells which one was opened.
pub fn open(
    path: impl AsRef<Path>,
    backend: Backend,
    opts: &FileOptions,
) -> Result<Arc<FileBrick>> {
    let backend = match backend {
        Backend::IoUring if io_uring_unavailable().is_some() => Backend::Sync,
        b => b,
    };
    Ok(Arc::new(match backend {
        Backend::Sync => FileBrick::Sync(SyncFile::open(path, opts)?),
        Backend::IoUring => FileBrick::IoUring(UringFile::open(path, opts)?),
    }))
}

macro_rules! both {
    ($self:expr, $f:ident => $e:expr) => {
        match $self {
            FileBrick::Sync($f) => $e,
            FileBrick::IoUring($f) => $e,
        }
    };
}

impl FileBrick {
    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            FileBrick::Sync(_) => Backend::Sync,
            FileBrick::IoUring(_) => Backend::IoUring,
        }
    }
    /// Regular file, block device or other.
    pub fn kind(&self) -> FileKind {
        both!(self, f => f.kind())
    }
    /// Re-read the size from the file system after outside changes; returns it.
    pub fn refresh_size(&self) -> Result<u64> {
        both!(self, f => f.refresh_size())
    }
    /// Write the dirty pages out and drop the file's page cache (see `FileCore`): after a
    /// full sync, so that small writes do not land in the large folios it left.
    pub fn drop_page_cache(&self) -> Result<()> {
        both!(self, f => f.drop_page_cache())
    }
    /// Resize a regular file (`ftruncate`).
    pub fn set_size(&self, size: u64) -> Result<()> {
        both!(self, f => f.set_size(size))
    }
    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        both!(self, f => f.inflight())
    }
    /// Switch off, waiting up to `timeout` for in-flight IO to drain.
    pub fn switch_off_wait(&self, timeout: Duration) -> Result<()> {
        both!(self, f => f.switch_off_wait(timeout))
    }
    /// Run `f`; requests submitted to this brick from inside it on this thread are handed to
    /// the kernel together when it returns (one system call for the batch with `IoUring`; the
    /// `Sync` backend has nothing to batch and just runs `f`).
    pub fn batch<R>(&self, f: impl FnOnce() -> R) -> R {
        match self {
            FileBrick::Sync(_) => f(),
            FileBrick::IoUring(u) => u.batch(f),
        }
    }
}

impl Output for FileBrick {
    fn info(&self) -> Result<Info> {
        both!(self, f => f.info())
    }
    fn prepare(&self, req: &mut Aio) -> Result<()> {
        both!(self, f => f.prepare(req))
    }
    fn submit(&self, req: Box<Aio>) -> Result<(), Rejected> {
        both!(self, f => f.submit(req))
    }
    fn write_gather(&self, pos: u64, bufs: &[std::io::IoSlice<'_>]) -> Option<Result<()>> {
        both!(self, f => f.write_gather(pos, bufs))
    }
}

impl Brick for FileBrick {
    fn name(&self) -> &str {
        both!(self, f => f.name())
    }
    fn switch(&self, on: bool) -> Result<()> {
        both!(self, f => f.switch(on))
    }
    fn power(&self) -> PowerState {
        both!(self, f => f.power())
    }
    fn stats(&self) -> StatsSnapshot {
        both!(self, f => f.stats())
    }
}
