//! `Ring`: a thin, shareable wrapper around one io_uring instance. Many threads push
//! submissions (under a lock), but **only the completion thread enters the kernel**: it submits
//! what is queued and reaps completions. Other threads wake it through an eventfd that it keeps
//! a read on.
//!
//! Why one issuer: io_uring delivers some completions (e.g. reads that missed the page cache)
//! as task work of the task that *submitted* them. With a single issuer that task is always the
//! completion thread, which spends its idle time inside `io_uring_enter`, so the ring can use
//! `SINGLE_ISSUER | DEFER_TASKRUN`: task work runs when the completion thread waits, with no
//! inter-processor interrupt per completion. Under virtualisation each such IPI is an MSR write
//! and a VM exit: before this change perf showed `native_write_msr` and
//! `irqentry_exit_to_user_mode` at ~40 % of a 4 KiB random-write run, and aio reached 0.53x of
//! fio; after it, 0.96x. Kernels without these flags (< 6.1) get a plain ring with the same
//! single-issuer discipline.
#![allow(unsafe_code)]

use io_uring::{opcode, squeue, types, IoUring};
use parking_lot::Mutex;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

/// User data of the eventfd read that wakes the completion thread.
pub(crate) const WAKE: u64 = u64::MAX - 1;

pub(crate) struct Ring {
    uring: IoUring,
    sq: Mutex<()>,
    /// Built with `R_DISABLED`: the completion thread enables it and so becomes its issuer.
    disabled: bool,
    wake_fd: OwnedFd,
    /// The kernel writes the eventfd counter here (never read by us).
    wake_buf: Box<AtomicU64>,
    /// A wake-up is on its way (saves eventfd writes while the completion thread is busy).
    wake_pending: AtomicBool,
}

impl Ring {
    /// A ring for at most `depth` requests in flight (each with at most one submission queued)
    /// plus the shutdown marker and the wake-up read.
    pub(crate) fn new(depth: usize) -> io::Result<Ring> {
        let entries = u32::try_from(depth + 2)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?
            .next_power_of_two();
        let (uring, disabled) = match IoUring::builder()
            .setup_cqsize(entries * 2)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_r_disabled()
            .build(entries)
        {
            Ok(u) => (u, true),
            Err(_) => (
                IoUring::builder()
                    .setup_cqsize(entries * 2)
                    .build(entries)?,
                false,
            ),
        };
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Ring {
            uring,
            sq: Mutex::new(()),
            disabled,
            // SAFETY: `fd` was just created and is owned by nobody else.
            wake_fd: unsafe { OwnedFd::from_raw_fd(fd) },
            wake_buf: Box::new(AtomicU64::new(0)),
            wake_pending: AtomicBool::new(false),
        })
    }

    /// Called once by the completion thread before anything else: it becomes the ring's only
    /// issuer, and arms the wake-up read.
    pub(crate) fn start_issuer(&self) -> io::Result<()> {
        if self.disabled {
            self.uring.submitter().register_enable_rings()?;
        }
        self.arm_wake()
    }

    /// Queue the eventfd read that [`Ring::wake`] completes (completion thread only).
    pub(crate) fn arm_wake(&self) -> io::Result<()> {
        let read = opcode::Read::new(
            types::Fd(self.wake_fd.as_raw_fd()),
            self.wake_buf.as_ptr().cast(),
            8,
        )
        .build()
        .user_data(WAKE);
        // SAFETY: the buffer lives in `self` (boxed, stable address) as long as the ring; only
        // the kernel writes it and we never read it.
        unsafe { self.push(&read) }
    }

    /// The completion thread saw the wake-up read complete: later wakes must write again.
    pub(crate) fn woken(&self) {
        self.wake_pending.store(false, SeqCst);
    }

    /// Make the completion thread submit what is queued (any thread; cheap when a wake-up is
    /// already on its way).
    pub(crate) fn wake(&self) {
        if self.wake_pending.swap(true, SeqCst) {
            return;
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to our own eventfd.
        let rc = unsafe { libc::write(self.wake_fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if rc != 8 {
            // The counter can only overflow after 2^64 - 1 unread wakes; the completion thread
            // also wakes every IDLE_WAKE, so a lost wake delays, never loses, a submission.
            self.wake_pending.store(false, SeqCst);
        }
    }

    /// Queue one submission (it reaches the kernel on the next [`Ring::enter`] or wait).
    ///
    /// # Safety
    /// Every buffer the entry points to must stay valid and untouched (except by the kernel)
    /// until its completion has been reaped.
    pub(crate) unsafe fn push(&self, entry: &squeue::Entry) -> io::Result<()> {
        let _g = self.sq.lock();
        // SAFETY: the submission queue is only ever touched under `self.sq`, so this is the
        // only live `SubmissionQueue`; the entry's buffers are the caller's promise.
        let mut sq = unsafe { self.uring.submission_shared() };
        // SAFETY: as above, buffers stay valid until completion (caller's contract).
        if unsafe { sq.push(entry) }.is_err() {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        sq.sync();
        Ok(())
    }

    /// Hand everything queued to the kernel without waiting (completion thread only).
    #[allow(dead_code)]
    pub(crate) fn enter(&self) -> io::Result<usize> {
        loop {
            match self.uring.submit() {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                r => return r,
            }
        }
    }

    /// Submit what is queued and wait up to `timeout` for at least one completion (completion
    /// thread only; this is also where deferred task work runs).
    /// Timeouts and interruptions are not errors.
    pub(crate) fn wait(&self, timeout: Duration) -> io::Result<()> {
        let ts = types::Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.uring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Copy up to `out.len()` completions (user data, result) out of the ring and free their
    /// ring slots. Must only be called from the completion thread.
    pub(crate) fn reap(&self, out: &mut [(u64, i32)]) -> usize {
        // SAFETY: only the completion thread calls `reap`, so this is the only consumer of the
        // completion queue; the `CompletionQueue` is dropped (publishing the new head) before
        // the completions are processed.
        let mut cq = unsafe { self.uring.completion_shared() };
        let mut n = 0;
        while n < out.len() {
            match cq.next() {
                Some(cqe) => {
                    out[n] = (cqe.user_data(), cqe.result());
                    n += 1;
                }
                None => break,
            }
        }
        n
    }
}
