//! The logger's modes and the one place where they change.
//!
//! ```text
//!            LogFailed                Drained
//!  Logging ───────────► Draining ───────────► Bypass
//!     ▲                                       │  ▲
//!     │ Resumed                ResumeStarted  │  │ ResumeFailed
//!     └──────────────── Resuming ◄────────────┘  │
//!                          └─────────────────────┘
//!  any mode but Failed ── Fatal ──► Failed (terminal)
//! ```
//!
//! Invariants (each a row of the table test below):
//! - the emergency hole is known exactly in `Draining`, `Bypass` and `Resuming`: it is set by
//!   `LogFailed` and kept until `Resumed` (after which the logger reports it as the hole of a
//!   finished emergency);
//! - `Failed` is terminal and keeps the first error: a second fatal error changes nothing;
//! - writers wait in `Draining` and `Resuming` (the data device must not get ahead of the
//!   index, or of the flush that a resume needs), go to the data device in `Bypass`, and to
//!   the log only in `Logging`.
//!
//! Recovery ([`super::TransLogger::open`]) runs before the brick exists: a logger starts in
//! `Logging`; a hole recorded by an earlier run is reported, not a mode.
//!
//! [`transition`] is pure; [`ModeState::apply`] is the only code that changes the mode.

use crate::log::LogPos;
use brick_core::Error;
use serde::{Deserialize, Serialize};

/// What the logger does with new writes (`LoggerStatus::mode`; printed in lower case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoggerMode {
    /// Normal: log, acknowledge, write back later.
    Logging,
    /// Logging failed: the index is being written to the data device; writers wait.
    Draining,
    /// Emergency bypass: writes go straight to the data device; the log lacks them.
    Bypass,
    /// Leaving bypass: writers wait while the bypass writes in flight finish, the data
    /// device is flushed and a new log file starts.
    Resuming,
    /// A fatal error (the data device failed, or the logger was killed): every request
    /// fails with it.
    Failed,
}

impl LoggerMode {
    /// The name operators see (`mode=bypass`).
    pub fn as_str(self) -> &'static str {
        match self {
            LoggerMode::Logging => "logging",
            LoggerMode::Draining => "draining",
            LoggerMode::Bypass => "bypass",
            LoggerMode::Resuming => "resuming",
            LoggerMode::Failed => "failed",
        }
    }

    /// In emergency mode: the log has a hole (draining, bypass or resuming).
    pub fn is_emergency(self) -> bool {
        matches!(
            self,
            LoggerMode::Draining | LoggerMode::Bypass | LoggerMode::Resuming
        )
    }
}

impl std::fmt::Display for LoggerMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to the logger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModeEvent {
    /// A log write failed (or emergency mode was requested); the log is complete up to `hole`.
    LogFailed { hole: LogPos },
    /// Every version is on the flushed data device.
    Drained,
    /// `resume_logging` started on the log thread.
    ResumeStarted,
    /// The new log file is ready and its watermark persisted.
    Resumed,
    /// The resume could not finish; writes keep going to the data device.
    ResumeFailed,
    /// The data device failed, or the logger was killed.
    Fatal(Error),
}

impl ModeEvent {
    fn name(&self) -> &'static str {
        match self {
            ModeEvent::LogFailed { .. } => "log failed",
            ModeEvent::Drained => "drained",
            ModeEvent::ResumeStarted => "resume started",
            ModeEvent::Resumed => "resumed",
            ModeEvent::ResumeFailed => "resume failed",
            ModeEvent::Fatal(_) => "fatal error",
        }
    }
}

/// A transition the state machine refuses (the caller's event does not apply in this mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the logger cannot take event `{event}` in mode {from}")]
pub struct IllegalTransition {
    /// The mode the logger was in.
    pub from: LoggerMode,
    /// The event that does not apply.
    pub event: &'static str,
}

/// The mode after `event` in `mode`, or why the event does not apply.
pub(crate) fn transition(
    mode: LoggerMode,
    event: &ModeEvent,
) -> Result<LoggerMode, IllegalTransition> {
    use LoggerMode as M;
    use ModeEvent as E;
    match (mode, event) {
        (M::Logging, E::LogFailed { .. }) => Ok(M::Draining),
        (M::Draining, E::Drained) => Ok(M::Bypass),
        (M::Bypass, E::ResumeStarted) => Ok(M::Resuming),
        (M::Resuming, E::Resumed) => Ok(M::Logging),
        (M::Resuming, E::ResumeFailed) => Ok(M::Bypass),
        (m, E::Fatal(_)) if m != M::Failed => Ok(M::Failed),
        (from, ev) => Err(IllegalTransition {
            from,
            event: ev.name(),
        }),
    }
}

/// The mode with what belongs to it: the hole of the emergency, the error of a failure.
/// Only [`ModeState::apply`] changes it.
#[derive(Debug, Clone)]
pub(crate) struct ModeState {
    mode: LoggerMode,
    hole: Option<LogPos>,
    failure: Option<Error>,
}

impl ModeState {
    /// A logger starts logging.
    pub fn new() -> ModeState {
        ModeState {
            mode: LoggerMode::Logging,
            hole: None,
            failure: None,
        }
    }

    pub fn mode(&self) -> LoggerMode {
        self.mode
    }

    /// The hole of the emergency the logger is in (draining, bypass, resuming).
    pub fn hole(&self) -> Option<LogPos> {
        self.hole
    }

    /// The error the logger failed with.
    pub fn failure(&self) -> Option<&Error> {
        self.failure.as_ref()
    }

    /// Take `event`: the new mode, or the refusal (nothing changed then).
    pub fn apply(&mut self, event: ModeEvent) -> Result<LoggerMode, IllegalTransition> {
        let next = transition(self.mode, &event)?;
        match event {
            ModeEvent::LogFailed { hole } => self.hole = Some(hole),
            ModeEvent::Resumed => self.hole = None,
            ModeEvent::Fatal(e) => self.failure = Some(e),
            _ => {}
        }
        self.mode = next;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LoggerMode::*;

    fn events() -> Vec<ModeEvent> {
        vec![
            ModeEvent::LogFailed {
                hole: LogPos::new(3, 4096),
            },
            ModeEvent::Drained,
            ModeEvent::ResumeStarted,
            ModeEvent::Resumed,
            ModeEvent::ResumeFailed,
            ModeEvent::Fatal(Error::Invalid("test")),
        ]
    }

    /// Every (mode, event) pair: the golden table of the state machine. `-` is refused.
    #[test]
    fn transition_table() {
        #[rustfmt::skip]
        let table: [(LoggerMode, [Option<LoggerMode>; 6]); 5] = [
            //          LogFailed       Drained       ResumeStarted   Resumed        ResumeFailed  Fatal
            (Logging,  [Some(Draining), None,         None,           None,          None,         Some(Failed)]),
            (Draining, [None,           Some(Bypass), None,           None,          None,         Some(Failed)]),
            (Bypass,   [None,           None,         Some(Resuming), None,          None,         Some(Failed)]),
            (Resuming, [None,           None,         None,           Some(Logging), Some(Bypass), Some(Failed)]),
            (Failed,   [None,           None,         None,           None,          None,         None]),
        ];
        for (from, row) in table {
            for (ev, want) in events().iter().zip(row) {
                let got = transition(from, ev).ok();
                assert_eq!(got, want, "{from} + {ev:?}");
            }
        }
    }

    #[test]
    fn hole_is_known_exactly_in_emergency_and_failure_keeps_the_first_error() {
        let hole = LogPos::new(3, 4096);
        let mut s = ModeState::new();
        assert_eq!(s.hole(), None);
        s.apply(ModeEvent::LogFailed { hole }).unwrap();
        for ev in [
            ModeEvent::Drained,
            ModeEvent::ResumeStarted,
            ModeEvent::ResumeFailed,
            ModeEvent::ResumeStarted,
        ] {
            assert!(s.mode().is_emergency());
            assert_eq!(s.hole(), Some(hole), "{:?}", s.mode());
            s.apply(ev).unwrap();
        }
        s.apply(ModeEvent::Resumed).unwrap();
        assert_eq!((s.mode(), s.hole()), (Logging, None));
        // A refused event changes nothing.
        assert!(s.apply(ModeEvent::Drained).is_err());
        assert_eq!(s.mode(), Logging);
        s.apply(ModeEvent::Fatal(Error::Invalid("first"))).unwrap();
        assert!(s.apply(ModeEvent::Fatal(Error::Invalid("second"))).is_err());
        assert_eq!(s.failure(), Some(&Error::Invalid("first")));
    }

    #[test]
    fn serializes_as_the_operator_name() {
        for m in [Logging, Draining, Bypass, Resuming, Failed] {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{m}\""));
            assert_eq!(serde_json::from_str::<LoggerMode>(&json).unwrap(), m);
        }
    }
}
