//! The few system calls std does not wrap (`fallocate`, `lseek` with `SEEK_DATA`/`SEEK_HOLE`,
//! the block-device sector-size ioctl, positioned gather writes).
//! The only `unsafe` of the `file` module lives here, one call per function.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;

/// `fallocate(2)` mode: deallocate the range, keep the file size.
pub(crate) const PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
/// `fallocate(2)` mode: zero the range, keep it allocated, keep the file size.
pub(crate) const ZERO_RANGE: i32 = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;

/// Where the next byte of data at or after `offset` is (`SEEK_DATA`), or the next hole
/// (`SEEK_HOLE`, `data = false`); `None` when there is none before the end of the file.
/// Allocated but never written ranges (`fallocate`) count as holes on ext4 and XFS.
pub(crate) fn seek_data(file: &File, offset: u64, data: bool) -> io::Result<Option<u64>> {
    let Ok(offset) = i64::try_from(offset) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    let whence = if data {
        libc::SEEK_DATA
    } else {
        libc::SEEK_HOLE
    };
    // SAFETY: plain syscall on a file descriptor we own for the duration of the call; it reads
    // no memory of ours. (It moves the file offset, which nothing here uses: all IO is pread
    // and pwrite.)
    let rc = unsafe { libc::lseek64(file.as_raw_fd(), offset, whence) };
    if rc >= 0 {
        return Ok(Some(rc as u64));
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        e => Err(e),
    }
}

/// `fallocate(fd, mode, offset, len)`.
pub(crate) fn fallocate(file: &File, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    // SAFETY: plain syscall on a file descriptor we own for the duration of the call; it reads
    // no memory of ours.
    let rc = unsafe { libc::fallocate64(file.as_raw_fd(), mode, offset, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Logical sector size of a block device (`BLKSSZGET`).
pub(crate) fn logical_block_size(file: &File) -> io::Result<u32> {
    const BLKSSZGET: libc::c_ulong = 0x1268;
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one `int` through the pointer, which points to a live local.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKSSZGET, &mut size as *mut libc::c_int) };
    if rc == 0 && size > 0 {
        Ok(size as u32)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Start writing back the dirty pages of `[offset, offset+len)` without waiting for them
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Makes no durability promise (the later
/// `fdatasync` does); it only lets that `fdatasync` find the bytes already on their way.
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    // SAFETY: plain syscall on a file descriptor we own for the duration of the call; it reads
    // no memory of ours.
    let rc = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Drop the file's clean pages from the page cache (`posix_fadvise(POSIX_FADV_DONTNEED)` over
/// the whole file). Dirty pages stay; sync first to drop them too.
pub(crate) fn drop_cached_pages(file: &File) -> io::Result<()> {
    // SAFETY: plain syscall on a file descriptor we own for the duration of the call; it reads
    // no memory of ours.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// How many of `file`'s pages are in the page cache (`mincore(2)` over a read-only mapping;
/// for tests and diagnostics). An empty file has none.
pub fn cached_pages(file: &File) -> io::Result<usize> {
    let len = usize::try_from(file.metadata()?.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    if len == 0 {
        return Ok(0);
    }
    // SAFETY: a read-only shared mapping of a file the caller keeps open for the duration of
    // the call; its memory is never read, only its address passed to mincore; unmapped below.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let mut pages = vec![0u8; len.div_ceil(4096)];
    // SAFETY: `addr..addr+len` is the mapping above; `pages` has a byte per 4 KiB page of it.
    let rc = unsafe { libc::mincore(addr, len, pages.as_mut_ptr()) };
    let err = io::Error::last_os_error();
    // SAFETY: the mapping above, unmapped once.
    unsafe { libc::munmap(addr, len) };
    if rc != 0 {
        return Err(err);
    }
    Ok(pages.iter().filter(|&&b| b & 1 == 1).count())
}

/// `pwritev(fd, bufs, offset)` (at most `IOV_MAX` of `bufs`): the bytes written, which may be
/// fewer than asked for.
pub(crate) fn pwritev(file: &File, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
    let Ok(offset) = i64::try_from(offset) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    let count = bufs.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
    // SAFETY: `IoSlice` is ABI-compatible with `struct iovec` on Unix (std guarantees it);
    // the kernel reads `count` of them and the bytes they point to, all borrowed for the call.
    let rc = unsafe {
        libc::pwritev64(
            file.as_raw_fd(),
            bufs.as_ptr().cast::<libc::iovec>(),
            count,
            offset,
        )
    };
    if rc >= 0 {
        Ok(rc as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}
