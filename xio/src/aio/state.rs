//! The per-request state machine of `aio`, kept in the request's own aspect: which stage the
//! request is in (read/write progress, `fallocate`, the zero-write fallback, the trailing
//! `fdatasync` of FUA), how to build its next submission, and what a completion means.
#![allow(unsafe_code)]

use crate::file::core::{align_bounce, FileCore, DIRECT_ALIGN, ZEROES};
use crate::file::from_errno;
use brick_core::{Aio, Aspect, Error, Flags, Op};
use io_uring::{opcode, squeue, types};
use std::time::Instant;

/// Largest single read/write submission (the kernel caps one `rw` at a bit under 2 GiB).
const MAX_CHUNK: usize = 1 << 30;

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Reading or writing `data`, `done` bytes so far.
    #[default]
    Rw,
    /// `fdatasync` (a flush, or the tail of a FUA mutation).
    Sync,
    /// `fallocate` for discard / write-zeroes.
    Falloc,
    /// Writing zeroes because `fallocate` is unsupported, `done` bytes so far.
    ZeroFill,
}

/// `aio`'s aspect of a request.
#[derive(Debug, Default)]
pub(crate) struct UringAspect {
    pub(crate) started: Option<Instant>,
    pub(crate) stage: Stage,
    pub(crate) done: usize,
    /// `O_DIRECT` files: an aligned bounce buffer (over-allocated; the aligned part starts at
    /// `bounce_at`), kept with the request for reuse.
    pub(crate) bounce: Vec<u8>,
    pub(crate) bounce_at: usize,
}

impl UringAspect {
    /// Make the aligned part `len` bytes long; returns it.
    pub(crate) fn bounce(&mut self, len: usize) -> &mut [u8] {
        self.bounce_at = align_bounce(&mut self.bounce, len);
        &mut self.bounce[self.bounce_at..self.bounce_at + len]
    }
}

/// Prepare an `O_DIRECT` request's bounce buffer before its first submission: a write's data is
/// copied in; a read or a zero fill gets room (zeroes for the fill, at most 1 MiB at a time).
pub(crate) fn prepare_bounce(req: &mut Aio, a: &mut UringAspect) {
    match req.op {
        Op::Write => a.bounce(req.len).copy_from_slice(&req.data[..req.len]),
        Op::Read => {
            a.bounce(req.len);
        }
        Op::Discard | Op::WriteZeroes => a.bounce(req.len.min(ZEROES.len())).fill(0),
        Op::Flush => {}
    }
}

/// Bounce buffers up to this size stay with a recycled request.
const KEEP_BOUNCE: usize = (1 << 20) + DIRECT_ALIGN;

impl Aspect for UringAspect {
    /// A recycled request keeps its bounce buffer (if not too large): steady-state `O_DIRECT`
    /// IO through an `AioPool` then allocates nothing.
    fn reset(&mut self) {
        let mut bounce = std::mem::take(&mut self.bounce);
        if bounce.capacity() > KEEP_BOUNCE {
            bounce = Vec::new();
        }
        *self = UringAspect {
            bounce,
            ..UringAspect::default()
        };
    }
}

/// What to do after a completion.
pub(crate) enum Step {
    /// Submit the next part in this stage with this progress.
    Next(Stage, usize),
    /// The request is done.
    Finish(brick_core::Result<()>),
}

/// The first stage of a fresh request.
pub(crate) fn first_stage(op: Op) -> Stage {
    match op {
        Op::Read | Op::Write => Stage::Rw,
        Op::Flush => Stage::Sync,
        Op::Discard | Op::WriteZeroes => Stage::Falloc,
    }
}

/// Prepare a fresh read's buffer: empty, with room for `len` bytes that the kernel fills.
pub(crate) fn prepare_read_buffer(req: &mut Aio) {
    req.data.clear();
    req.data.reserve(req.len);
}

/// After a read ends, expose the `done` bytes the kernel wrote.
pub(crate) fn finish_read_buffer(req: &mut Aio, done: usize) {
    debug_assert!(done <= req.data.capacity());
    // SAFETY: `prepare_read_buffer` reserved at least `len` bytes and every read submission
    // targeted `data[done..]` below `len`; the kernel initialised exactly the first `done`
    // bytes (completions are processed in order of progress) and `done <= len <= capacity`.
    unsafe { req.data.set_len(done.min(req.len)) };
}

/// The submission for the request's current stage. `user_data` is set by the caller.
/// `direct`: the aligned bounce buffer of an `O_DIRECT` request (see [`prepare_bounce`]), which
/// reads, writes and zero fills use instead of `data` / `ZEROES`.
pub(crate) fn entry(
    fd: i32,
    req: &mut Aio,
    stage: Stage,
    done: usize,
    direct: Option<*mut u8>,
) -> squeue::Entry {
    let fd = types::Fd(fd);
    let pos = req.pos + done as u64;
    let n = (req.len - done.min(req.len)).min(MAX_CHUNK) as u32;
    if let Some(base) = direct {
        match stage {
            Stage::Rw if req.op == Op::Read => {
                // SAFETY (pointer arithmetic): the bounce buffer holds `len` bytes, `done < len`.
                let buf = unsafe { base.add(done) };
                return opcode::Read::new(fd, buf, n).offset(pos).build();
            }
            Stage::Rw => {
                // SAFETY (pointer arithmetic): as above.
                let buf = unsafe { base.add(done) };
                return opcode::Write::new(fd, buf, n).offset(pos).build();
            }
            Stage::ZeroFill => {
                let n = (req.len - done).min(ZEROES.len()) as u32;
                return opcode::Write::new(fd, base, n).offset(pos).build();
            }
            Stage::Sync | Stage::Falloc => {}
        }
    }
    match stage {
        Stage::Rw if req.op == Op::Read => {
            // SAFETY (pointer arithmetic): `done < len <= capacity` (reserved up front).
            let buf = unsafe { req.data.as_mut_ptr().add(done) };
            opcode::Read::new(fd, buf, n).offset(pos).build()
        }
        Stage::Rw => {
            // SAFETY (pointer arithmetic): `done < len == data.len()` (checked at admission).
            let buf = unsafe { req.data.as_ptr().add(done) };
            opcode::Write::new(fd, buf, n).offset(pos).build()
        }
        Stage::ZeroFill => {
            let n = (req.len - done).min(ZEROES.len()) as u32;
            opcode::Write::new(fd, ZEROES.as_ptr(), n)
                .offset(pos)
                .build()
        }
        Stage::Sync => opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build(),
        Stage::Falloc => opcode::Fallocate::new(fd, req.len as u64)
            .offset(req.pos)
            .mode(FileCore::falloc_mode(req.op, req.flags))
            .build(),
    }
}

fn context(op: Op, stage: Stage) -> &'static str {
    match (stage, op) {
        (Stage::Sync, _) => "flushing (fdatasync)",
        (Stage::Rw, Op::Read) => "reading",
        (Stage::Rw, _) => "writing",
        (Stage::Falloc, Op::Discard) => "discarding (punching a hole)",
        (Stage::Falloc, _) | (Stage::ZeroFill, _) => "writing zeroes",
    }
}

/// Interpret completion `res` of the request's current submission.
pub(crate) fn step(core: &FileCore, req: &Aio, stage: Stage, done: usize, res: i32) -> Step {
    if res < 0 && crate::file::error::is_transient(-res) {
        return Step::Next(stage, done);
    }
    let fua_tail = |req: &Aio| {
        if req.flags.contains(Flags::FUA) {
            Step::Next(Stage::Sync, 0)
        } else {
            Step::Finish(Ok(()))
        }
    };
    if res < 0 {
        let errno = -res;
        if stage == Stage::Falloc && core.falloc_falls_back(errno) {
            return Step::Next(Stage::ZeroFill, 0);
        }
        return Step::Finish(Err(from_errno(errno, context(req.op, stage))));
    }
    let n = res as usize;
    match stage {
        Stage::Sync => Step::Finish(Ok(())),
        Stage::Falloc => fua_tail(req),
        Stage::Rw if req.op == Op::Read => {
            if n == 0 {
                Step::Finish(Err(Error::ShortRead {
                    pos: req.pos,
                    got: done,
                    want: req.len,
                }))
            } else if done + n < req.len {
                Step::Next(Stage::Rw, done + n)
            } else {
                Step::Finish(Ok(()))
            }
        }
        Stage::Rw | Stage::ZeroFill => {
            if n == 0 {
                // A write that makes no progress would loop forever.
                Step::Finish(Err(from_errno(libc::EIO, context(req.op, stage))))
            } else if done + n < req.len {
                Step::Next(stage, done + n)
            } else {
                fua_tail(req)
            }
        }
    }
}
