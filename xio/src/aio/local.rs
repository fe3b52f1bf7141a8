//! The *driven* mode: a thread that submits IO and then waits for it (the logger's writeback)
//! submits to a ring of its own and reaps its completions itself, inside `io_uring_enter`,
//! instead of waking the brick's completion thread through the eventfd and being woken back
//! by it (two thread switches per batch instead of none).
//!
//! Inside [`drive`], every request this thread submits to any [`super::UringFile`] goes to the
//! thread's own ring (created on first use, single issuer: this thread, so task work runs when
//! it waits, as on the completion thread). Its completions are reaped, continued (partial IO,
//! FUA tail) and finished on this thread whenever it waits for a completion
//! ([`brick_core::CompletionQueue`] drives the ring through [`brick_core::with_driver`]), waits
//! for a queue slot, or leaves the outermost `drive` (which waits until nothing of its own is
//! in flight, so that no request outlives the scope unreaped).
//!
//! Completion hooks then run on this thread. It is not a completion thread: hooks may block
//! there, but a submit from a hook never waits for a queue slot (only this thread could free
//! one).
#![allow(unsafe_code)]

use brick_core::Aio;
use io_uring::{squeue, types, IoUring};
use std::cell::{Cell, RefCell};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Submission queue entries of a thread's ring (a full queue is entered and reused).
const ENTRIES: u32 = 64;
/// Longest single wait while leaving a scope or waiting for a slot (then look again).
const SLICE: Duration = Duration::from_millis(100);

/// The brick a request in a driven ring belongs to: it continues or finishes the request.
pub(super) trait Owner: Send + Sync {
    /// Handle `req`'s completion with result `res` on this (driven) thread.
    fn on_local_completion(self: Arc<Self>, req: Box<Aio>, res: i32);
    /// The brick's name (for messages).
    fn name(&self) -> &str;
}

type InFlight = (Arc<dyn Owner>, Box<Aio>);

struct LocalRing {
    uring: IoUring,
    /// Requests in flight, by user data (their index here).
    slab: Vec<Option<InFlight>>,
    free: Vec<usize>,
    inflight: usize,
    /// Reused buffer of reaped completions.
    done: Vec<(InFlight, i32)>,
    /// A readiness poll of [`wait_readable`] is in the ring.
    poll_armed: bool,
    /// It completed since it was armed.
    poll_fired: bool,
}

/// User data of the readiness poll of [`wait_readable`] (never a slab index).
const POLL: u64 = u64::MAX;

thread_local! {
    static LOCAL: RefCell<Option<LocalRing>> = const { RefCell::new(None) };
    /// Nesting depth of [`drive`] on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Completions are being finished (hooks run): a submit must not wait for a slot.
    static REAPING: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` with this thread driving its own io_uring IO (see the module docs). Returns when
/// `f` has returned and every request this thread submitted inside it has completed.
pub fn drive<R>(f: impl FnOnce() -> R) -> R {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            let depth = DEPTH.with(|d| {
                d.set(d.get() - 1);
                d.get()
            });
            if depth == 0 {
                drain();
            }
        }
    }
    DEPTH.with(|d| d.set(d.get() + 1));
    let _leave = Leave;
    brick_core::with_driver(reap, f)
}

/// Whether this thread's submissions go to its own ring.
pub(super) fn active() -> bool {
    DEPTH.with(|d| d.get()) > 0
}

/// Whether this thread is finishing its own completions (a submit must not wait).
pub(super) fn reaping() -> bool {
    REAPING.with(|r| r.get())
}

/// Requests of this thread in its own ring.
pub(super) fn inflight() -> usize {
    LOCAL.with(|l| l.borrow().as_ref().map_or(0, |r| r.inflight))
}

fn new_ring() -> io::Result<IoUring> {
    let built = IoUring::builder()
        .setup_cqsize(ENTRIES * 4)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(ENTRIES);
    match built {
        Ok(u) => Ok(u),
        // Kernels before 6.1: a plain ring, still entered by this thread only.
        Err(_) => IoUring::builder().setup_cqsize(ENTRIES * 4).build(ENTRIES),
    }
}

/// Queue `entry` (whose user data is set here) for `req` of `shared` on this thread's ring and
/// hand it to the kernel at once. On failure the request comes back untouched by the kernel.
///
/// # Safety
/// Every buffer the entry points to must stay valid and untouched (except by the kernel) until
/// its completion has been reaped; they belong to `req` (or are static).
pub(super) unsafe fn push(
    owner: Arc<dyn Owner>,
    req: Box<Aio>,
    entry: squeue::Entry,
) -> Result<(), (Box<Aio>, io::Error)> {
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        if l.is_none() {
            match new_ring() {
                Ok(uring) => {
                    *l = Some(LocalRing {
                        uring,
                        slab: Vec::new(),
                        free: Vec::new(),
                        inflight: 0,
                        done: Vec::new(),
                        poll_armed: false,
                        poll_fired: false,
                    })
                }
                Err(e) => return Err((req, e)),
            }
        }
        let r = l.as_mut().expect("created above");
        let idx = r.free.pop().unwrap_or_else(|| {
            r.slab.push(None);
            r.slab.len() - 1
        });
        let entry = entry.user_data(idx as u64);
        // SAFETY: buffers are the caller's promise; the request is kept in the slab (its heap
        // buffers do not move) until this entry's completion is reaped.
        if unsafe { r.uring.submission().push(&entry) }.is_err() {
            // Full of entries not yet entered: hand them over and retry once.
            let _ = r.uring.submit();
            // SAFETY: as above.
            if unsafe { r.uring.submission().push(&entry) }.is_err() {
                r.free.push(idx);
                return Err((req, io::Error::from_raw_os_error(libc::EBUSY)));
            }
        }
        r.slab[idx] = Some((owner, req));
        r.inflight += 1;
        // Start the IO now: a driven thread may go on to block elsewhere first. A failed enter
        // leaves the entry queued for the next one (every wait enters).
        match r.uring.submit() {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) => {}
            Err(e) => tracing::warn!("io_uring submit (driven ring) failed: {e}; will retry"),
        }
        Ok(())
    })
}

/// The [`brick_core::Driver`] of driven threads: reap (waiting up to `wait` for one completion
/// if given), continue and finish what completed. `false` when nothing is in flight.
fn reap(wait: Option<Duration>) -> bool {
    let done = LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let r = l.as_mut().filter(|r| r.inflight > 0)?;
        let entered = match wait {
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                r.uring.submitter().submit_with_args(1, &args).map(drop)
            }
            // Enter with GETEVENTS but no minimum: runs the deferred task work that posts
            // completions, submits what is queued, never sleeps.
            None => {
                let queued = r.uring.submission().len() as u32;
                // SAFETY: no argument pointer is passed.
                unsafe {
                    r.uring.submitter().enter::<libc::sigset_t>(
                        queued,
                        0,
                        io_uring::EnterFlags::GETEVENTS.bits(),
                        None,
                    )
                }
                .map(drop)
            }
        };
        if let Err(e) = entered {
            if !matches!(
                e.raw_os_error(),
                Some(libc::ETIME | libc::EINTR | libc::EAGAIN | libc::EBUSY)
            ) {
                tracing::warn!("io_uring wait (driven ring) failed: {e}");
            }
        }
        let mut done = std::mem::take(&mut r.done);
        for cqe in r.uring.completion() {
            if cqe.user_data() == POLL {
                r.poll_armed = false;
                r.poll_fired = true;
                continue;
            }
            let idx = cqe.user_data() as usize;
            if let Some(req) = r.slab.get_mut(idx).and_then(Option::take) {
                r.free.push(idx);
                r.inflight -= 1;
                done.push((req, cqe.result()));
            }
        }
        Some(done)
    });
    let Some(mut done) = done else {
        return false;
    };
    let was = REAPING.with(|r| r.replace(true));
    for ((owner, req), res) in done.drain(..) {
        // A panicking hook must not leave this thread's other completions unfinished.
        let run = std::panic::AssertUnwindSafe(|| owner.clone().on_local_completion(req, res));
        if std::panic::catch_unwind(run).is_err() {
            tracing::error!(brick = %owner.name(), "a completion hook panicked");
        }
    }
    REAPING.with(|r| r.set(was));
    LOCAL.with(|l| {
        if let Some(r) = l.borrow_mut().as_mut() {
            if r.done.capacity() < done.capacity() {
                r.done = done;
            }
        }
    });
    true
}

/// Reap this thread's completions (waiting up to `wait` for one), continue and finish them.
/// `false` when nothing of this thread's is in flight (then there is nothing to wait for).
pub fn reap_own(wait: Duration) -> bool {
    reap(Some(wait))
}

/// Wait until `fd` is readable, reaping and finishing this thread's completions meanwhile: a
/// driven thread that reads requests from a socket must not block in `read` while its own IO
/// waits to be reaped (nobody else would; the client may be waiting for those replies before
/// it sends more). Returns at once when nothing of this thread's is in flight: the caller
/// then blocks in its read, and nothing is left unreaped.
pub fn wait_readable(fd: std::os::fd::RawFd) {
    loop {
        if !arm_poll(fd) {
            return;
        }
        // Each wait ends at a completion: the poll's, or one of ours (finished here).
        let mut fired = false;
        while !fired && reap(Some(SLICE)) {
            fired = LOCAL.with(|l| {
                l.borrow()
                    .as_ref()
                    .is_some_and(|r| r.poll_fired || !r.poll_armed)
            });
        }
        // The poll may have been armed by an earlier call, and what it saw already read:
        // ask the socket itself before the caller blocks on it.
        if !fired || readable_now(fd) {
            return;
        }
    }
}

/// Queue a readiness poll of `fd` in this thread's ring, unless one is there. `false` when
/// nothing of this thread's is in flight (nothing to reap while waiting).
fn arm_poll(fd: std::os::fd::RawFd) -> bool {
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let Some(r) = l.as_mut().filter(|r| r.inflight > 0) else {
            return false;
        };
        r.poll_fired = false;
        if !r.poll_armed {
            let entry = io_uring::opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                .build()
                .user_data(POLL);
            // SAFETY: a poll entry points to no memory (twice: once more after entering what
            // filled the queue). Not queued at all: the wait below still ends at our next
            // completion, and the poll is tried again then.
            let pushed = unsafe { r.uring.submission().push(&entry) }.is_ok() || {
                let _ = r.uring.submit();
                unsafe { r.uring.submission().push(&entry) }.is_ok()
            };
            r.poll_armed = pushed;
        }
        true
    })
}

/// Whether `fd` has something to read (or is at its end) right now. A failed `poll` (EINTR)
/// says no: the caller then waits in its ring again rather than block in `read` unreaped.
fn readable_now(fd: std::os::fd::RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    let ready = unsafe { libc::poll(&mut p, 1, 0) };
    ready > 0
}

/// Wait until nothing of this thread's is in flight in its ring.
pub(super) fn drain() {
    while reap(Some(SLICE)) {}
}

/// Take one queue slot of `queue` for a driven submit, waiting at most `wait`: while the queue
/// is full and this thread has requests in its own ring, reap them (only it can).
pub(super) fn take_slot(queue: &brick_core::MemBudget, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if queue.take(1, Duration::ZERO) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        if !reap(Some(left.min(SLICE))) {
            return queue.take(1, left);
        }
    }
}
