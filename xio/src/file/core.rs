//! `FileCore`: what both backends share about one open file or block device: the descriptor,
//! its geometry, admission (power gate, queue depth, range checks), statistics and the
//! synchronous forms of the operations (used by `sio` and by `aio`'s fallbacks).

use super::error::{errno, from_errno, from_io, is_transient};
use super::sys;
use super::FileOptions;
use brick_core::{Aio, Error, Flags, Info, MemBudget, Op, Power, Rejected, Result, Stats};
use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What kind of object the backend talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file (size from `fstat`, discard by punching holes).
    Regular,
    /// A block device (size from the device, discard by `fallocate` on the device).
    BlockDevice,
    /// Anything else that supports positioned IO (a character device such as `/dev/full`).
    Other,
}

/// Zeroes for the write-zeroes fallback (in `.bss`: costs no memory until touched).
pub(crate) static ZEROES: [u8; 1 << 20] = [0; 1 << 20];

/// Alignment of `O_DIRECT` bounce buffers (memory).
pub(crate) const DIRECT_ALIGN: usize = 4096;

/// Grow `buf` (over-allocated, so no `unsafe` aligned allocation is needed) until it holds `len`
/// bytes from a `DIRECT_ALIGN`-aligned address; returns that address's offset in `buf`. The
/// `O_DIRECT` bounce buffers of both backends (sio: per thread, aio: per request).
pub(crate) fn align_bounce(buf: &mut Vec<u8>, len: usize) -> usize {
    if buf.len() < len + DIRECT_ALIGN {
        buf.resize(len + DIRECT_ALIGN, 0);
    }
    buf.as_ptr().align_offset(DIRECT_ALIGN)
}

thread_local! {
    /// Per-thread bounce buffer for `O_DIRECT` IO (grows to the largest request seen).
    static BOUNCE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f` on a `DIRECT_ALIGN`-aligned scratch slice of `len` bytes (this thread's).
fn with_bounce<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    BOUNCE.with(|b| {
        let mut b = b.borrow_mut();
        let off = align_bounce(&mut b, len);
        f(&mut b[off..off + len])
    })
}

/// The outcome of admitting a request.
pub(crate) enum Admit {
    /// Start the IO.
    Go(Box<Aio>),
    /// Complete at once with this result (range error, empty request) without touching the file.
    Done(Box<Aio>, Result<()>),
}

pub(crate) struct FileCore {
    pub(crate) name: String,
    pub(crate) file: File,
    pub(crate) kind: FileKind,
    size: AtomicU64,
    pub(crate) block_size: u32,
    pub(crate) opts: FileOptions,
    pub(crate) power: Power,
    pub(crate) stats: Stats,
    /// The queue depth: at most `queue_depth` requests in flight (a submitter beyond it waits
    /// `busy_wait` for a slot and is then refused with [`Error::Busy`], the request handed back).
    pub(crate) admission: Arc<MemBudget>,
}

/// What an operator reads when opening (or sizing) `path` failed with `e`. `EINVAL` from an
/// `O_DIRECT` open is the file system refusing direct IO, which "check the path" would not
/// explain.
fn open_failure(what: &str, path: &Path, direct: bool, e: &std::io::Error) -> String {
    if direct && e.raw_os_error() == Some(libc::EINVAL) {
        format!(
            "cannot {what} {} with O_DIRECT: {e}; its file system does not support direct IO \
             (some FUSE and network file systems, old tmpfs): turn direct IO off for it \
             (marsd --direct-io off / --log-direct-io off) or move it",
            path.display()
        )
    } else {
        format!(
            "cannot {what} {}: {e}; check that the path exists and is accessible",
            path.display()
        )
    }
}

impl FileCore {
    pub(crate) fn open(path: &Path, opts: &FileOptions) -> Result<FileCore> {
        let name = opts
            .name
            .clone()
            .unwrap_or_else(|| path.display().to_string());
        let fail = |what: &str, e: std::io::Error| Error::Brick {
            brick: name.clone(),
            message: open_failure(what, path, opts.direct, &e),
        };
        let mut oo = OpenOptions::new();
        oo.read(true).write(!opts.read_only);
        if opts.create_size.is_some() {
            oo.create(true);
        }
        oo.custom_flags(if opts.direct {
            libc::O_CLOEXEC | libc::O_DIRECT
        } else {
            libc::O_CLOEXEC
        });
        let mut file = oo.open(path).map_err(|e| fail("open", e))?;
        let meta = file.metadata().map_err(|e| fail("stat", e))?;
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            FileKind::Regular
        } else if ft.is_block_device() {
            FileKind::BlockDevice
        } else {
            FileKind::Other
        };
        if let (Some(want), FileKind::Regular) = (opts.create_size, kind) {
            if meta.len() < want {
                file.set_len(want).map_err(|e| fail("set the size of", e))?;
            }
        }
        let size = match kind {
            FileKind::Regular => file.metadata().map_err(|e| fail("stat", e))?.len(),
            // fstat reports 0 for devices; seeking to the end asks the driver (BLKGETSIZE64).
            _ => file
                .seek(SeekFrom::End(0))
                .map_err(|e| fail("measure", e))?,
        };
        let block_size = match kind {
            FileKind::BlockDevice => sys::logical_block_size(&file).unwrap_or(512),
            _ => (meta.blksize() as u32).clamp(512, 65536),
        };
        Ok(FileCore {
            name,
            file,
            kind,
            size: AtomicU64::new(size),
            block_size,
            opts: opts.clone(),
            power: Power::on(),
            stats: Stats::new(),
            admission: MemBudget::new(opts.queue_depth.max(1) as u64),
        })
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(SeqCst)
    }

    /// Re-read the size from the file system (after someone else grew or truncated it).
    pub(crate) fn refresh_size(&self) -> Result<u64> {
        let size = match self.kind {
            FileKind::Regular => self
                .file
                .metadata()
                .map_err(|e| from_io(&e, "reading the file size"))?
                .len(),
            _ => (&self.file)
                .seek(SeekFrom::End(0))
                .map_err(|e| from_io(&e, "reading the device size"))?,
        };
        self.size.store(size, SeqCst);
        Ok(size)
    }

    /// Write the dirty pages out and drop every cached page of the file. A file written
    /// sequentially (a full sync) or read ahead is cached in large folios; a 4 KiB write into
    /// one then allocates and walks buffer heads for the whole folio (measured on a secondary
    /// after its full sync: `ext4_block_write_begin` at 44 % of its samples under 4 KiB random
    /// replay, and half its CPU gone once the cache was dropped). Nothing to do with `O_DIRECT`.
    pub(crate) fn drop_page_cache(&self) -> Result<()> {
        if self.opts.direct {
            return Ok(());
        }
        self.file
            .sync_data()
            .map_err(|e| from_io(&e, "writing the file's dirty pages out"))?;
        super::sys::drop_cached_pages(&self.file)
            .map_err(|e| from_io(&e, "dropping the file's cached pages"))
    }

    /// Change the size of a regular file (`ftruncate`).
    pub(crate) fn set_size(&self, size: u64) -> Result<()> {
        if self.kind != FileKind::Regular {
            return Err(Error::Unsupported {
                op: "resize",
                brick: self.name.clone(),
            });
        }
        self.file
            .set_len(size)
            .map_err(|e| from_io(&e, "resizing the file"))?;
        self.size.store(size, SeqCst);
        Ok(())
    }

    pub(crate) fn info(&self) -> Info {
        Info {
            size: self.size(),
            block_size: self.block_size,
            max_len: self.opts.max_len,
            read_only: self.opts.read_only,
            can_discard: true,
            can_write_zeroes: true,
        }
    }

    /// Shorten reads and writes to `max_len`.
    pub(crate) fn prepare(&self, req: &mut Aio) {
        if matches!(req.op, Op::Read | Op::Write) && req.len > self.opts.max_len {
            req.shorten(self.opts.max_len);
        }
    }

    /// Power gate, validity and range checks, queue depth. `may_wait` says whether the caller
    /// may block for a queue slot (never on a thread that completes this brick's IO).
    pub(crate) fn admit(&self, req: Box<Aio>, may_wait: bool) -> Result<Admit, Rejected> {
        let wait = if may_wait {
            self.opts.busy_wait
        } else {
            Duration::ZERO
        };
        self.admit_with(req, |queue| queue.take(1, wait))
    }

    /// [`FileCore::admit`] with the caller's way of taking a queue slot (`take_slot(queue)`:
    /// whether it got one).
    pub(crate) fn admit_with(
        &self,
        req: Box<Aio>,
        take_slot: impl FnOnce(&MemBudget) -> bool,
    ) -> Result<Admit, Rejected> {
        if let Err(e) = self.power.enter(&self.name) {
            return Err(Rejected::new(req, e));
        }
        self.stats.on_submit();
        if let Err(e) = self.check(&req) {
            return Ok(Admit::Done(req, Err(e)));
        }
        if req.len == 0 && req.op != Op::Flush {
            return Ok(Admit::Done(req, Ok(())));
        }
        if !take_slot(&self.admission) {
            self.power.leave();
            return Err(Rejected::new(
                req,
                Error::Busy {
                    brick: self.name.clone(),
                    inflight: self.admission.used() as usize,
                },
            ));
        }
        Ok(Admit::Go(req))
    }

    fn check(&self, req: &Aio) -> Result<()> {
        self.check_shape(req.op, req.pos, req.len)?;
        if req.op == Op::Write && req.data.len() != req.len {
            return Err(Error::Invalid("write data length differs from len"));
        }
        Ok(())
    }

    /// The checks of a request's operation, place and length (not of its data).
    fn check_shape(&self, op: Op, pos: u64, len: usize) -> Result<()> {
        if self.opts.direct && op != Op::Flush {
            let bs = self.block_size as u64;
            if !pos.is_multiple_of(bs) || !(len as u64).is_multiple_of(bs) {
                return Err(Error::Invalid(
                    "this file is open with O_DIRECT: offset and length must be multiples of \
                     its block size (Info::block_size); align the request or open it without \
                     `direct`",
                ));
            }
        }
        if self.opts.read_only && op.is_mutation() {
            return Err(from_errno(
                errno::EROFS,
                "writing to a read-only file brick",
            ));
        }
        if op == Op::Flush {
            return Ok(());
        }
        let end = pos
            .checked_add(len as u64)
            .ok_or(Error::Invalid("pos + len overflows"))?;
        let size = self.size();
        if end > size && !(op == Op::Write && self.opts.growable) {
            return Err(Error::OutOfRange {
                pos,
                len: len as u64,
                size,
            });
        }
        Ok(())
    }

    /// A write of the concatenation of `bufs` at `pos` on the calling thread, checked,
    /// admitted and counted like a `Write` request (the file bricks' `Output::write_gather`).
    /// Buffered: `pwritev` from the pieces, no copy; `O_DIRECT`: through the bounce buffer,
    /// one copy, as a plain write.
    pub(crate) fn write_gather(&self, pos: u64, bufs: &[IoSlice<'_>]) -> Result<()> {
        let len = bufs.iter().map(|b| b.len()).sum::<usize>();
        self.power.enter(&self.name)?;
        self.stats.on_submit();
        let started = Instant::now();
        let result = self.check_shape(Op::Write, pos, len).and_then(|()| {
            if len == 0 {
                return Ok(());
            }
            if !self.admission.take(1, self.opts.busy_wait) {
                return Err(Error::Busy {
                    brick: self.name.clone(),
                    inflight: self.admission.used() as usize,
                });
            }
            let result = self.gather_sync(pos, len, bufs);
            self.admission.give(1);
            result
        });
        if result.is_ok() && self.opts.growable {
            self.size.fetch_max(pos + len as u64, SeqCst);
        }
        self.stats
            .on_complete(len as u64, started.elapsed(), result.is_err());
        self.power.leave();
        result
    }

    fn gather_sync(&self, pos: u64, len: usize, bufs: &[IoSlice<'_>]) -> Result<()> {
        const CONTEXT: &str = "writing";
        if self.opts.direct {
            return with_bounce(len, |b| {
                let mut at = 0;
                for piece in bufs {
                    b[at..at + piece.len()].copy_from_slice(piece);
                    at += piece.len();
                }
                self.write_all_at(pos, b, CONTEXT)
            });
        }
        let mut pieces: Vec<IoSlice<'_>> = bufs.to_vec();
        let mut rest = &mut pieces[..];
        let mut done = 0;
        while done < len {
            match sys::pwritev(&self.file, rest, pos + done as u64) {
                Ok(0) => return Err(from_errno(errno::EIO, CONTEXT)),
                Ok(n) => {
                    done += n;
                    IoSlice::advance_slices(&mut rest, n);
                }
                Err(e) if e.raw_os_error().is_some_and(is_transient) => {}
                Err(e) => return Err(from_io(&e, CONTEXT)),
            }
        }
        self.hint_writeback(pos, len);
        Ok(())
    }

    /// After a buffered write of `[pos, pos+len)`: the writeback hint of log files.
    fn hint_writeback(&self, pos: u64, len: usize) {
        if self.opts.start_writeback && !self.opts.direct {
            // Only a hint: on failure the next `fdatasync` still does all the work.
            let _ = sys::start_writeback(&self.file, pos, len as u64);
        }
    }

    /// Finish a request that never reached the file (admitted with [`Admit::Done`]).
    pub(crate) fn complete_now(&self, req: Box<Aio>, result: Result<()>) {
        self.stats
            .on_complete(req.len as u64, Duration::ZERO, result.is_err());
        self.power.leave();
        req.finish(result);
    }

    /// Account the end of an admitted request and pass it up.
    pub(crate) fn complete(&self, req: Box<Aio>, started: Instant, result: Result<()>) {
        if result.is_ok() && req.op == Op::Write && self.opts.growable {
            if let Some(end) = req.end() {
                self.size.fetch_max(end, SeqCst);
            }
        }
        self.stats
            .on_complete(req.len as u64, started.elapsed(), result.is_err());
        self.admission.give(1);
        self.power.leave();
        req.finish(result);
    }

    /// The `fallocate` mode for a discard or write-zeroes request.
    pub(crate) fn falloc_mode(op: Op, flags: Flags) -> i32 {
        if op == Op::WriteZeroes && flags.contains(Flags::NO_HOLE) {
            sys::ZERO_RANGE
        } else {
            sys::PUNCH_HOLE
        }
    }

    /// Whether a failed `fallocate` should be replaced by writing zeroes: the file system or
    /// device does not support the mode, or (block devices) the range is not sector-aligned.
    pub(crate) fn falloc_falls_back(&self, errno: i32) -> bool {
        errno == errno::EOPNOTSUPP
            || errno == errno::ENOTTY
            || (errno == errno::EINVAL && self.kind != FileKind::Regular)
    }

    // ----- synchronous operations (sio's workers) -----

    /// Execute `req` synchronously on the calling thread.
    pub(crate) fn execute_sync(&self, req: &mut Aio) -> Result<()> {
        match req.op {
            Op::Read => self.read_sync(req),
            Op::Write => {
                self.write_sync(req.pos, &req.data[..req.len], "writing")?;
                self.hint_writeback(req.pos, req.len);
                self.fua_sync(req.flags)
            }
            Op::Flush => self.fdatasync(),
            Op::Discard | Op::WriteZeroes => {
                let mode = Self::falloc_mode(req.op, req.flags);
                let context = if req.op == Op::Discard {
                    "discarding (punching a hole)"
                } else {
                    "writing zeroes"
                };
                match retry(|| sys::fallocate(&self.file, mode, req.pos, req.len as u64)) {
                    Ok(()) => {}
                    Err(e) if self.falloc_falls_back(e.raw_os_error().unwrap_or(0)) => {
                        self.zero_fill_sync(req.pos, req.len)?;
                    }
                    Err(e) => return Err(from_io(&e, context)),
                }
                self.fua_sync(req.flags)
            }
        }
    }

    fn read_sync(&self, req: &mut Aio) -> Result<()> {
        req.data.clear();
        req.data.resize(req.len, 0);
        let (pos, len) = (req.pos, req.len);
        let result = if self.opts.direct {
            with_bounce(len, |b| {
                let result = self.read_into(b, pos);
                let got = result.as_ref().map_or_else(|(got, _)| *got, |()| len);
                req.data[..got].copy_from_slice(&b[..got]);
                result
            })
        } else {
            self.read_into(&mut req.data[..len], pos)
        };
        result.map_err(|(got, e)| {
            req.data.truncate(got);
            e
        })
    }

    /// Fill `buf` from `pos`; on failure, how much was read and the error.
    fn read_into(&self, buf: &mut [u8], pos: u64) -> std::result::Result<(), (usize, Error)> {
        let want = buf.len();
        let mut done = 0;
        while done < want {
            match self.file.read_at(&mut buf[done..], pos + done as u64) {
                Ok(0) => {
                    return Err((
                        done,
                        Error::ShortRead {
                            pos,
                            got: done,
                            want,
                        },
                    ))
                }
                Ok(n) => done += n,
                Err(e) if e.raw_os_error().is_some_and(is_transient) => {}
                Err(e) => return Err((done, from_io(&e, "reading"))),
            }
        }
        Ok(())
    }

    fn write_sync(&self, pos: u64, data: &[u8], context: &'static str) -> Result<()> {
        if self.opts.direct {
            return with_bounce(data.len(), |b| {
                b.copy_from_slice(data);
                self.write_all_at(pos, b, context)
            });
        }
        self.write_all_at(pos, data, context)
    }

    fn write_all_at(&self, pos: u64, data: &[u8], context: &'static str) -> Result<()> {
        let mut done = 0;
        while done < data.len() {
            match self.file.write_at(&data[done..], pos + done as u64) {
                // A write that makes no progress would loop forever.
                Ok(0) => return Err(from_errno(errno::EIO, context)),
                Ok(n) => done += n,
                Err(e) if e.raw_os_error().is_some_and(is_transient) => {}
                Err(e) => return Err(from_io(&e, context)),
            }
        }
        Ok(())
    }

    fn zero_fill_sync(&self, pos: u64, len: usize) -> Result<()> {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZEROES.len());
            self.write_sync(pos + done as u64, &ZEROES[..n], "writing zeroes")?;
            done += n;
        }
        Ok(())
    }

    fn fua_sync(&self, flags: Flags) -> Result<()> {
        if flags.contains(Flags::FUA) {
            self.fdatasync()
        } else {
            Ok(())
        }
    }

    fn fdatasync(&self) -> Result<()> {
        retry(|| self.file.sync_data()).map_err(|e| from_io(&e, "flushing (fdatasync)"))
    }
}

fn retry(mut f: impl FnMut() -> std::io::Result<()>) -> std::io::Result<()> {
    loop {
        match f() {
            Err(e) if e.raw_os_error().is_some_and(is_transient) => continue,
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_system_that_refuses_o_direct_is_named_as_the_cause() {
        let einval = std::io::Error::from_raw_os_error(libc::EINVAL);
        let p = Path::new("/mnt/fuse/log-000000001-a");
        let m = open_failure("open", p, true, &einval);
        assert!(
            m.contains("does not support direct IO") && m.contains("--log-direct-io off"),
            "{m}"
        );
        // Without O_DIRECT, or another error: the path is the suspect.
        for (direct, e) in [
            (false, einval),
            (true, std::io::Error::from_raw_os_error(libc::ENOENT)),
        ] {
            let m = open_failure("open", p, direct, &e);
            assert!(m.contains("check that the path exists"), "{m}");
            assert!(!m.contains("direct IO"), "{m}");
        }
    }
}
