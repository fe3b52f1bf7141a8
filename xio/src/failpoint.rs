//! Fail points: named seams where a test makes the code fail on purpose (feature `failpoints`,
//! off in production builds; without it [`fail_point!`] is the constant `false` and this
//! registry is not compiled).
//!
//! The points, each at a seam where a crash or an IO error must not lose an acknowledged write:
//! - [`LOG_FSYNC`]: the log writer's flush (`fdatasync`) of a commit fails (EIO);
//! - [`LOG_MID_RECORD`]: the log writer stops in the middle of a record: only the bytes up to
//!   half of the batch's last record reach the file, then the write fails (or, with
//!   [`Action::Crash`], the process dies there);
//! - [`NBD_BEFORE_ACK`]: the NBD server loses the connection just before it writes a
//!   successful reply (the request was done; its acknowledgement never leaves).
//!
//! A test arms a point with [`set`], reads how often it was reached with [`hits`] and disarms
//! everything with [`reset`]. The registry is process-wide: tests that use it run one at a time.

/// The log writer's flush of a commit fails.
pub const LOG_FSYNC: &str = "log-fsync";
/// The log writer stops in the middle of a record.
pub const LOG_MID_RECORD: &str = "log-mid-record";
/// The NBD server drops the connection before a successful reply.
pub const NBD_BEFORE_ACK: &str = "nbd-before-ack";

/// Whether the named point fails now (counts the hit). `false` without the feature.
#[macro_export]
#[doc(hidden)]
macro_rules! fail_point {
    ($name:expr) => {{
        #[cfg(feature = "failpoints")]
        let fail = $crate::failpoint::triggered($name);
        #[cfg(not(feature = "failpoints"))]
        let fail = false;
        fail
    }};
}

#[cfg(feature = "failpoints")]
pub use registry::*;

#[cfg(feature = "failpoints")]
mod registry {
    use parking_lot::Mutex;
    use std::collections::HashMap;

    /// When an armed point fails.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Action {
        /// Every time it is reached.
        Always,
        /// Once, after it was passed `skip` times; then it is disarmed.
        Once {
            /// Hits that pass before the one that fails.
            skip: u64,
        },
        /// Like `Always`, and the process dies (`abort`) where the seam calls
        /// [`crash_if_armed`] (after its partial effect): a crash at exactly this point, for
        /// tests that run the code in a child process.
        Crash,
    }

    #[derive(Default)]
    struct Point {
        action: Option<Action>,
        hits: u64,
    }

    static POINTS: Mutex<Option<HashMap<&'static str, Point>>> = Mutex::new(None);

    fn with<R>(name: &'static str, f: impl FnOnce(&mut Point) -> R) -> R {
        f(POINTS
            .lock()
            .get_or_insert_with(HashMap::new)
            .entry(name)
            .or_default())
    }

    /// Arm `name`.
    pub fn set(name: &'static str, action: Action) {
        with(name, |p| p.action = Some(action));
    }

    /// How often `name` was reached (armed or not) since the last [`reset`].
    pub fn hits(name: &'static str) -> u64 {
        with(name, |p| p.hits)
    }

    /// Disarm every point and clear the counters.
    pub fn reset() {
        *POINTS.lock() = None;
    }

    /// Die (`abort`) if `name` is armed with [`Action::Crash`].
    pub fn crash_if_armed(name: &'static str) {
        if with(name, |p| p.action == Some(Action::Crash)) {
            eprintln!("fail point {name}: crashing the process here");
            std::process::abort();
        }
    }

    /// Count a hit of `name`; whether it fails now.
    pub fn triggered(name: &'static str) -> bool {
        with(name, |p| {
            p.hits += 1;
            match p.action {
                Some(Action::Always) => true,
                Some(Action::Crash) => true,
                Some(Action::Once { skip: 0 }) => {
                    p.action = None;
                    true
                }
                Some(Action::Once { skip }) => {
                    p.action = Some(Action::Once { skip: skip - 1 });
                    false
                }
                None => false,
            }
        })
    }
}
