//! Operating-system errors of the file backends: the errno → [`brick_core::Error`] mapping is
//! brick-core's one (`Error::from_errno`, and `Error::errno` back); this module names the
//! errnos the backends react to.

use brick_core::Error;

/// `errno` values this crate reacts to (Linux numbering).
pub(crate) mod errno {
    pub const EINTR: i32 = libc::EINTR;
    pub const EAGAIN: i32 = libc::EAGAIN;
    pub const EIO: i32 = libc::EIO;
    pub const EINVAL: i32 = libc::EINVAL;
    pub const EROFS: i32 = libc::EROFS;
    pub const EOPNOTSUPP: i32 = libc::EOPNOTSUPP;
    pub const ENOTTY: i32 = libc::ENOTTY;
}

/// The structured error for a failed system call with `errno`, made while doing `context`:
/// [`Error::from_errno`], the one mapping of the workspace (ENOSPC and EDQUOT become
/// [`Error::NoSpace`]; EIO stays `Os { errno: 5, .. }`).
pub fn from_errno(errno: i32, context: &'static str) -> Error {
    Error::from_errno(errno, context)
}

/// [`from_errno`] for an `std::io::Error` (errors without an errno become EIO).
pub fn from_io(err: &std::io::Error, context: &'static str) -> Error {
    Error::from_io(err, context)
}

/// Whether a failed system call should simply be repeated.
pub(crate) fn is_transient(errno: i32) -> bool {
    errno == errno::EINTR || errno == errno::EAGAIN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_and_edquot_are_no_space() {
        assert_eq!(
            from_errno(libc::ENOSPC, "writing"),
            Error::NoSpace { context: "writing" }
        );
        assert_eq!(
            from_errno(libc::EDQUOT, "writing"),
            Error::NoSpace { context: "writing" }
        );
        assert_eq!(from_errno(libc::ENOSPC, "writing").errno(), libc::ENOSPC);
    }

    #[test]
    fn eio_keeps_its_errno() {
        let e = from_errno(libc::EIO, "reading");
        assert_eq!(
            e,
            Error::Os {
                errno: 5,
                context: "reading"
            }
        );
        assert_eq!(e.errno(), 5);
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("errno 5"), "{e}");
    }

    #[test]
    fn io_errors_map_through_their_errno() {
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(matches!(from_io(&io, "x"), Error::NoSpace { .. }));
        let io = std::io::Error::other("no errno");
        assert_eq!(from_io(&io, "x").errno(), libc::EIO);
        assert_eq!(from_errno(0, "x").errno(), libc::EIO);
        assert_eq!(from_errno(-3, "x").errno(), libc::EIO);
    }

    #[test]
    fn only_eintr_and_eagain_are_transient() {
        assert!(is_transient(libc::EINTR));
        assert!(is_transient(libc::EAGAIN));
        assert!(!is_transient(libc::EIO));
        assert!(!is_transient(libc::ENOSPC));
    }
}
