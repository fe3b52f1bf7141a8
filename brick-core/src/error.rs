//! The one error type of brick-core. Every request carries `Option<Error>` back to its initiator.

use std::fmt;

/// Result alias used throughout brick-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a request or a control operation failed. Cloneable: the same error travels through every
/// completion hook of a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input has no output connected (never wired, or disconnected for rewiring).
    #[error("input `{input}` is not connected: wire it to an output before submitting IO")]
    NotConnected {
        /// Name of the input.
        input: String,
    },
    /// The input is already connected; disconnect it first (or use `rewire`).
    #[error("input `{input}` is already connected: disconnect it or use rewire")]
    AlreadyConnected {
        /// Name of the input.
        input: String,
    },
    /// The brick is switched off (or switching off) and accepts no new IO.
    #[error("brick `{brick}` is switched off: switch it on before submitting IO")]
    Off {
        /// Name of the brick.
        brick: String,
    },
    /// The brick refused to switch because of the power ordering rules.
    #[error("brick `{brick}` cannot switch {}: {reason}", if *.on { "on" } else { "off" })]
    PowerOrder {
        /// Name of the brick.
        brick: String,
        /// Direction that was refused.
        on: bool,
        /// What blocks it.
        reason: String,
    },
    /// The request addresses bytes outside the device.
    #[error("request out of range: pos {pos} len {len} exceeds the device size {size}")]
    OutOfRange {
        /// Byte offset of the request.
        pos: u64,
        /// Length of the request.
        len: u64,
        /// Size of the device.
        size: u64,
    },
    /// The request is malformed (zero length where not allowed, data length mismatch, ...).
    #[error("invalid request: {0}")]
    Invalid(&'static str),
    /// The operation is not supported by this brick or backend.
    #[error("operation {op} is not supported by `{brick}`")]
    Unsupported {
        /// The operation name.
        op: &'static str,
        /// Which brick refused it.
        brick: String,
    },
    /// A read returned fewer bytes than requested inside the device (truncated file, media error).
    #[error("short read at pos {pos}: got {got} of {want} bytes")]
    ShortRead {
        /// Where the read started.
        pos: u64,
        /// Bytes delivered.
        got: usize,
        /// Bytes wanted.
        want: usize,
    },
    /// The device or file system is full.
    #[error("no space left on device while {context}: free space or grow the device")]
    NoSpace {
        /// What was being done.
        context: &'static str,
    },
    /// A system call failed.
    #[error("I/O error while {context}: {} (errno {errno})", errno_text(*.errno))]
    Os {
        /// The raw errno value.
        errno: i32,
        /// What was being done.
        context: &'static str,
    },
    /// Back-pressure: the queue is full. Retry later.
    #[error("`{brick}` is busy ({inflight} requests in flight): retry later")]
    Busy {
        /// Which brick.
        brick: String,
        /// How many requests are in flight.
        inflight: usize,
    },
    /// Something did not finish in time.
    #[error("timed out after {millis} ms while {context}")]
    Timeout {
        /// What was being waited for.
        context: &'static str,
        /// How long we waited.
        millis: u64,
    },
    /// Data read from a device does not match the checksum stored when it was written: the
    /// medium (or something behind the system's back) damaged it.
    #[error("checksum mismatch in {device} at bytes {pos}..{}: the data on the disk is damaged (other blocks are unaffected); run `marsadm scrub` on this node to find every damaged block and `--repair` to fetch them from a healthy replica", .pos + .len)]
    Checksum {
        /// The device (a path).
        device: String,
        /// First byte of the damaged block.
        pos: u64,
        /// Its length.
        len: u64,
    },
    /// Stored data failed its integrity check where it was read: a log record whose header,
    /// checksum or numbering is wrong, a fetched log that does not verify. Nothing from
    /// `offset` on was used.
    #[error("{file} is corrupt at offset {offset}: {reason}; nothing from there on was applied (restore the file from a replica, or invalidate this node's copy)")]
    Corrupt {
        /// The damaged file (a path or a log name).
        file: String,
        /// Byte offset of the damage in it.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A brick-specific failure with a message (kept structured by the brick's own error type,
    /// flattened here so that it can travel through a generic chain).
    #[error("{brick}: {message}")]
    Brick {
        /// Which brick failed.
        brick: String,
        /// What happened and what to do.
        message: String,
    },
}

fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

impl Error {
    /// Whether retrying the same request later can succeed (back-pressure, rewiring, timeouts).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::NotConnected { .. } | Error::Busy { .. } | Error::Timeout { .. }
        ) || matches!(self, Error::Os { errno, .. } if *errno == EAGAIN || *errno == EINTR)
    }

    /// The structured error for a failed system call with `errno`, made while doing
    /// `context`: the one errno → error mapping. ENOSPC and EDQUOT (a full file system or
    /// quota) become [`Error::NoSpace`]; every other errno stays in [`Error::Os`] (EIO stays
    /// `Os { errno: 5, .. }`); a zero or negative "errno" (a bookkeeping bug) becomes EIO
    /// rather than success.
    pub fn from_errno(errno: i32, context: &'static str) -> Error {
        match errno {
            ENOSPC | EDQUOT => Error::NoSpace { context },
            e if e > 0 => Error::Os { errno: e, context },
            _ => Error::Os {
                errno: EIO,
                context,
            },
        }
    }

    /// [`Error::from_errno`] for an `std::io::Error` (errors without an errno become EIO).
    pub fn from_io(err: &std::io::Error, context: &'static str) -> Error {
        Error::from_errno(err.raw_os_error().unwrap_or(EIO), context)
    }

    /// The closest errno, for protocols that speak errno (NBD replies, the remote log
    /// server): the one error → errno mapping. A corrupt record or a damaged block is EIO.
    pub fn errno(&self) -> i32 {
        match self {
            Error::OutOfRange { .. } | Error::Invalid(_) => EINVAL,
            Error::NoSpace { .. } => ENOSPC,
            Error::Unsupported { .. } => EOPNOTSUPP,
            Error::Os { errno, .. } => *errno,
            Error::Busy { .. } => EAGAIN,
            Error::Timeout { .. } => ETIMEDOUT,
            Error::Off { .. } | Error::NotConnected { .. } => ESHUTDOWN,
            _ => EIO,
        }
    }
}

/// A request handed back by `submit` together with the reason (nothing is lost on an error path).
pub struct Rejected {
    /// The request, unchanged except for its error field, which is left untouched.
    pub req: Box<crate::Aio>,
    /// Why it was refused.
    pub error: Error,
}

impl Rejected {
    /// Pair a request with the reason it was refused.
    pub fn new(req: Box<crate::Aio>, error: Error) -> Self {
        Rejected { req, error }
    }
}

impl fmt::Debug for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("error", &self.error)
            .field("op", &self.req.op)
            .field("pos", &self.req.pos)
            .field("len", &self.req.len)
            .finish()
    }
}

const EIO: i32 = 5;
const EAGAIN: i32 = 11;
const EINTR: i32 = 4;
const EINVAL: i32 = 22;
const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;
const EOPNOTSUPP: i32 = 95;
const ESHUTDOWN: i32 = 108;
const ETIMEDOUT: i32 = 110;

#[cfg(test)]
mod tests {
    use super::*;

    /// The one error → errno table (every variant) and the one errno → error table.
    #[test]
    fn errno_mapping_both_ways() {
        let s = String::new;
        #[rustfmt::skip]
        let to_errno: Vec<(Error, i32)> = vec![
            (Error::NotConnected { input: s() },                              ESHUTDOWN),
            (Error::AlreadyConnected { input: s() },                          EIO),
            (Error::Off { brick: s() },                                       ESHUTDOWN),
            (Error::PowerOrder { brick: s(), on: true, reason: s() },         EIO),
            (Error::OutOfRange { pos: 0, len: 1, size: 0 },                   EINVAL),
            (Error::Invalid("x"),                                             EINVAL),
            (Error::Unsupported { op: "x", brick: s() },                      EOPNOTSUPP),
            (Error::ShortRead { pos: 0, got: 0, want: 1 },                    EIO),
            (Error::NoSpace { context: "x" },                                 ENOSPC),
            (Error::Os { errno: 30, context: "x" },                           30),
            (Error::Busy { brick: s(), inflight: 1 },                         EAGAIN),
            (Error::Timeout { context: "x", millis: 1 },                      ETIMEDOUT),
            (Error::Checksum { device: s(), pos: 0, len: 4096 },              EIO),
            (Error::Corrupt { file: s(), offset: 0, reason: s() },            EIO),
            (Error::Brick { brick: s(), message: s() },                       EIO),
        ];
        for (e, want) in &to_errno {
            assert_eq!(e.errno(), *want, "{e:?}");
        }
        #[rustfmt::skip]
        let from_errno = [
            (ENOSPC, Error::NoSpace { context: "c" }),
            (EDQUOT, Error::NoSpace { context: "c" }),
            (EIO,    Error::Os { errno: EIO, context: "c" }),
            (EINTR,  Error::Os { errno: EINTR, context: "c" }),
            (0,      Error::Os { errno: EIO, context: "c" }),
            (-3,     Error::Os { errno: EIO, context: "c" }),
        ];
        for (errno, want) in from_errno {
            assert_eq!(Error::from_errno(errno, "c"), want, "{errno}");
        }
        let io = std::io::Error::other("no errno");
        assert_eq!(Error::from_io(&io, "c").errno(), EIO);
        let io = std::io::Error::from_raw_os_error(EDQUOT);
        assert_eq!(Error::from_io(&io, "c"), Error::NoSpace { context: "c" });
    }

    #[test]
    fn a_corrupt_record_names_its_file_and_offset_and_is_not_retried() {
        let e = Error::Corrupt {
            file: "log-000000003-alice".into(),
            offset: 8192,
            reason: "record header checksum mismatch".into(),
        };
        let text = e.to_string();
        assert!(
            text.contains("log-000000003-alice") && text.contains("8192"),
            "{text}"
        );
        assert!(!e.is_retryable());
    }
}
