//! `Ring`: a thin, shareable wrapper around one io_uring instance. Many threads push
//! submissions (under a lock); exactly one thread, the completion thread, reaps completions.
#![allow(unsafe_code)]

use io_uring::{squeue, types, IoUring};
use parking_lot::Mutex;
use std::io;
use std::time::Duration;

pub(crate) struct Ring {
    uring: IoUring,
    sq: Mutex<()>,
}

impl Ring {
    /// A ring for at most `depth` requests in flight (each with at most one submission queued)
    /// plus the shutdown marker.
    pub(crate) fn new(depth: usize) -> io::Result<Ring> {
        let entries = u32::try_from(depth + 1)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?
            .next_power_of_two();
        // Not COOP_TASKRUN, although it doubles 4 KiB random-write IOPS here (measured
        // 190k -> 330k, fio 363k; without it perf shows `native_write_msr` +
        // `irqentry_exit_to_user_mode`, i.e. task-work IPIs and VM exits, at ~40 %): with it
        // the kernel no longer wakes a submitting thread that sleeps outside io_uring (an NBD
        // reader blocked on its socket) to run the task work that posts its completions, e.g.
        // of reads that miss the page cache. Doing that safely needs all submissions to go
        // through the completion thread (then SINGLE_ISSUER + DEFER_TASKRUN): a next step.
        let uring = IoUring::builder()
            .setup_cqsize(entries * 2)
            .build(entries)?;
        Ok(Ring {
            uring,
            sq: Mutex::new(()),
        })
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

    /// Hand everything queued to the kernel without waiting.
    pub(crate) fn enter(&self) -> io::Result<usize> {
        loop {
            match self.uring.submit() {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                r => return r,
            }
        }
    }

    /// Submit what is queued and wait up to `timeout` for at least one completion.
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
