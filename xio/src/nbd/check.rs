//! The request check of the transmission phase: a pure function from a request header and the
//! export's geometry to what the server does. Nothing touches the device, allocates a payload
//! buffer or reads the payload before this verdict.
//!
//! Invariants (tested below, property-tested on random headers):
//! - [`Verdict::Submit`] only for known commands with allowed flags, `offset + length` without
//!   overflow and inside the export, both multiples of the minimum block size, and payload
//!   lengths at most the maximum payload.
//! - A write whose payload is longer than the maximum payload is a [`Verdict::Violation`]
//!   (the payload cannot be skipped cheaply); every other bad request is a [`Verdict::Refuse`]
//!   with the protocol's errno, and a refused write's payload is skipped.

use super::export::Geometry;
use super::proto::{cflag, cmd, errno, tflag, Request};
use brick_core::{Flags, Op};

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Submit `op` with `flags` over the request's range (split as the output requires).
    Submit {
        /// The brick operation.
        op: Op,
        /// FUA / NO_HOLE.
        flags: Flags,
    },
    /// A zero-length read/write/trim/write-zeroes inside the export: succeed without IO.
    Empty,
    /// Answer with `errno` without touching the device; skip `skip` payload bytes first.
    Refuse {
        /// The protocol error value.
        errno: u32,
        /// Why, for the structured error message and the log.
        reason: &'static str,
        /// Payload bytes that follow the header and must be read and dropped.
        skip: u32,
    },
    /// `NBD_CMD_DISC`: finish in-flight requests and close.
    Disconnect,
    /// Close the connection: the client broke a rule we cannot recover from.
    Violation(String),
}

/// Decide what to do with `req` on an export with geometry `g`; `structured` says whether
/// structured replies were negotiated (oversized reads then get `EOVERFLOW`).
pub fn check(req: &Request, g: &Geometry, structured: bool) -> Verdict {
    let len = req.length;
    let is_write = req.kind == cmd::WRITE;
    if is_write && len > g.max_payload {
        return Verdict::Violation(format!(
            "write payload of {len} bytes exceeds the maximum payload of {} bytes",
            g.max_payload
        ));
    }
    let skip = if is_write { len } else { 0 };
    let refuse = |errno, reason| Verdict::Refuse {
        errno,
        reason,
        skip,
    };
    let (op, allowed) = match req.kind {
        cmd::READ => (Op::Read, cflag::FUA),
        cmd::WRITE => (Op::Write, cflag::FUA),
        cmd::FLUSH => (Op::Flush, cflag::FUA),
        cmd::TRIM if g.has(tflag::SEND_TRIM) => (Op::Discard, cflag::FUA),
        cmd::WRITE_ZEROES if g.has(tflag::SEND_WRITE_ZEROES) => {
            (Op::WriteZeroes, cflag::FUA | cflag::NO_HOLE)
        }
        cmd::DISC => return Verdict::Disconnect,
        cmd::TRIM | cmd::WRITE_ZEROES if g.has(tflag::READ_ONLY) => {
            return refuse(errno::EPERM, "the export is read-only")
        }
        _ => return refuse(errno::EINVAL, "unknown or not negotiated command"),
    };
    if req.flags & !allowed != 0 {
        return refuse(errno::EINVAL, "command flag not valid for this command");
    }
    let mut flags = Flags::NONE;
    if req.flags & cflag::FUA != 0 && op != Op::Read {
        flags = flags.with(Flags::FUA);
    }
    if req.flags & cflag::NO_HOLE != 0 {
        flags = flags.with(Flags::NO_HOLE);
    }
    if op == Op::Flush {
        // Offset and length of a flush are reserved; a flush covers the whole export anyway.
        return Verdict::Submit { op, flags };
    }
    if op.is_mutation() && g.has(tflag::READ_ONLY) {
        return refuse(errno::EPERM, "the export is read-only");
    }
    if op == Op::Read && len > g.max_payload {
        let e = if structured {
            errno::EOVERFLOW
        } else {
            errno::EINVAL
        };
        return refuse(e, "read longer than the maximum payload");
    }
    // Writes past the end are ENOSPC, reads and trims EINVAL (doc/proto.md, "Error values").
    let range_errno = if matches!(op, Op::Write | Op::WriteZeroes) {
        errno::ENOSPC
    } else {
        errno::EINVAL
    };
    match req.offset.checked_add(u64::from(len)) {
        None => return refuse(range_errno, "offset + length overflows"),
        Some(end) if end > g.size => {
            return refuse(range_errno, "request past the end of the export")
        }
        Some(_) => {}
    }
    let b = u64::from(g.min_block);
    if !req.offset.is_multiple_of(b) || !u64::from(len).is_multiple_of(b) {
        return refuse(
            errno::EINVAL,
            "request not aligned to the minimum block size",
        );
    }
    if len == 0 {
        return Verdict::Empty;
    }
    Verdict::Submit { op, flags }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn geo(flags: u16) -> Geometry {
        Geometry {
            size: 1 << 20,
            flags: tflag::HAS_FLAGS | flags,
            min_block: 512,
            pref_block: 4096,
            max_payload: 32 << 20,
            max_len: 32 << 20,
        }
    }
    const RW: u16 =
        tflag::SEND_FLUSH | tflag::SEND_FUA | tflag::SEND_TRIM | tflag::SEND_WRITE_ZEROES;

    fn req(kind: u16, flags: u16, offset: u64, length: u32) -> Request {
        Request {
            flags,
            kind,
            cookie: 1,
            offset,
            length,
        }
    }

    #[test]
    fn table_of_verdicts() {
        let g = geo(RW);
        let submit = |op, flags| Verdict::Submit { op, flags };
        assert_eq!(
            check(&req(cmd::READ, 0, 0, 4096), &g, false),
            submit(Op::Read, Flags::NONE)
        );
        assert_eq!(
            check(&req(cmd::WRITE, cflag::FUA, 512, 512), &g, false),
            submit(Op::Write, Flags::FUA)
        );
        assert_eq!(
            check(
                &req(cmd::WRITE_ZEROES, cflag::NO_HOLE, 0, 1 << 20),
                &g,
                false
            ),
            submit(Op::WriteZeroes, Flags::NO_HOLE)
        );
        assert_eq!(
            check(&req(cmd::FLUSH, 0, 7, 3), &g, false),
            submit(Op::Flush, Flags::NONE)
        );
        assert_eq!(
            check(&req(cmd::DISC, 0, 0, 0), &g, false),
            Verdict::Disconnect
        );
        assert_eq!(
            check(&req(cmd::READ, 0, 4096, 0), &g, false),
            Verdict::Empty
        );
        let errno_of = |v: Verdict| match v {
            Verdict::Refuse { errno, .. } => errno,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(
            errno_of(check(&req(cmd::READ, 0, 1 << 20, 512), &g, false)),
            errno::EINVAL
        );
        assert_eq!(
            errno_of(check(&req(cmd::WRITE, 0, 1 << 20, 512), &g, false)),
            errno::ENOSPC
        );
        assert_eq!(
            errno_of(check(&req(cmd::WRITE, 0, u64::MAX - 100, 512), &g, false)),
            errno::ENOSPC
        );
        assert_eq!(
            errno_of(check(&req(cmd::TRIM, 0, u64::MAX, 512), &g, false)),
            errno::EINVAL
        );
        assert_eq!(
            errno_of(check(&req(cmd::READ, 0, 100, 512), &g, false)),
            errno::EINVAL
        );
        assert_eq!(
            errno_of(check(&req(cmd::READ, cflag::DF, 0, 512), &g, false)),
            errno::EINVAL
        );
        assert_eq!(
            errno_of(check(&req(cmd::CACHE, 0, 0, 512), &g, false)),
            errno::EINVAL
        );
        assert_eq!(
            errno_of(check(&req(99, 0, 0, 512), &g, false)),
            errno::EINVAL
        );
        assert_eq!(
            errno_of(check(&req(cmd::READ, 0, 0, 64 << 20), &g, true)),
            errno::EOVERFLOW
        );
        assert_eq!(
            errno_of(check(&req(cmd::READ, 0, 0, 64 << 20), &g, false)),
            errno::EINVAL
        );
        // Write with bad flags: refused, and its payload is skipped.
        assert_eq!(
            check(&req(cmd::WRITE, cflag::NO_HOLE, 0, 512), &g, false),
            Verdict::Refuse {
                errno: errno::EINVAL,
                reason: "command flag not valid for this command",
                skip: 512
            }
        );
        assert!(matches!(
            check(&req(cmd::WRITE, 0, 0, (32 << 20) + 1), &g, false),
            Verdict::Violation(_)
        ));
        // Not negotiated: trim on an export without SEND_TRIM.
        let g2 = geo(tflag::SEND_FLUSH);
        assert_eq!(
            errno_of(check(&req(cmd::TRIM, 0, 0, 512), &g2, false)),
            errno::EINVAL
        );
        // Read-only: every mutation is EPERM, reads work.
        let ro = geo(tflag::READ_ONLY | tflag::SEND_FLUSH);
        assert_eq!(
            errno_of(check(&req(cmd::WRITE, 0, 0, 512), &ro, false)),
            errno::EPERM
        );
        assert_eq!(
            errno_of(check(&req(cmd::TRIM, 0, 0, 512), &ro, false)),
            errno::EPERM
        );
        assert_eq!(
            errno_of(check(&req(cmd::WRITE_ZEROES, 0, 0, 512), &ro, false)),
            errno::EPERM
        );
        assert_eq!(
            check(&req(cmd::READ, 0, 0, 512), &ro, false),
            submit(Op::Read, Flags::NONE)
        );
    }

    proptest! {
        #[test]
        fn submitted_requests_are_always_in_range(
            kind in 0u16..10, flags in any::<u16>(), offset in prop_oneof![any::<u64>(), 0u64..(2 << 20)],
            length in prop_oneof![any::<u32>(), 0u32..(2 << 20)], structured in any::<bool>(),
        ) {
            let g = geo(RW);
            let r = req(kind, flags, offset, length);
            match check(&r, &g, structured) {
                Verdict::Submit { op, .. } if op != Op::Flush => {
                    let end = offset.checked_add(u64::from(length));
                    prop_assert!(end.is_some_and(|e| e <= g.size));
                    prop_assert!(length > 0 && length <= g.max_payload);
                    prop_assert_eq!(offset % 512, 0);
                    prop_assert_eq!(length % 512, 0);
                    prop_assert_eq!(flags & !(cflag::FUA | cflag::NO_HOLE), 0);
                }
                Verdict::Refuse { skip, errno, .. } => {
                    prop_assert!(errno != 0);
                    prop_assert_eq!(skip, if kind == cmd::WRITE { length } else { 0 });
                    prop_assert!(skip <= g.max_payload);
                }
                Verdict::Violation(_) => prop_assert!(kind == cmd::WRITE && length > g.max_payload),
                _ => {}
            }
        }
    }
}
