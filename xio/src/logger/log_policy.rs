//! What the log thread does next: a pure function of the logger's state ([`LogFacts`]) and
//! its settings ([`LogLimits`]). The loop in `log_thread.rs` gathers the facts under the lock,
//! asks [`decide`], and executes the answer.
//!
//! Invariants (each has rows in the table test below):
//! - **Nothing durable waits for nothing.** A FUA write or a FLUSH waiting (`waiters`) makes
//!   the thread commit: right away when nothing is queued, after the queued records are
//!   appended otherwise (at most one `group_wait` later, so that writers released by the last
//!   commit share the next `fdatasync`).
//! - **A commit is bounded** in bytes (`commit_bytes`, at most a quarter of the memory the
//!   logger could hold now: writeback may only take durable data) and in time
//!   (`commit_interval` after the first append of the batch); closing (`stop`) and rotation
//!   commit too.
//! - **Queued records are appended once urgent**: a waiter, a full chunk, or the oldest record
//!   older than `batch_delay`; otherwise the thread waits for the first of these.
//! - **Rotation only between batches**: the next file is switched to only when nothing is
//!   appended and uncommitted, once the file reached `rotate_size` or on request.
//! - **Outside `Logging`** the thread appends nothing; it runs a requested resume, or ends
//!   on `stop`. It ends at once on a kill or a failure.

use super::mode::LoggerMode;
use std::time::Duration;

/// The logger's state as the log thread sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogFacts {
    pub mode: LoggerMode,
    /// Stop as a crash would.
    pub kill: bool,
    /// Closing: log what is queued, then end.
    pub stop: bool,
    pub rotate_req: bool,
    pub resume_req: bool,
    /// Bytes of the records queued for the log (0: none).
    pub pending_bytes: usize,
    /// How long the oldest queued record has waited.
    pub oldest_pending: Duration,
    /// FUA writes or flushes wait for a commit.
    pub waiters: bool,
    /// Records were appended and not committed yet (the open batch).
    pub batch_open: bool,
    /// Bytes appended since the last commit.
    pub open_bytes: u64,
    /// Time since the first append of the open batch (`None`: nothing appended).
    pub open_age: Option<Duration>,
    /// The group-commit wait of this batch was taken already.
    pub group_waited: bool,
    /// Write offset in the current log file.
    pub file_offset: u64,
    /// The next log file may be created ahead (a store exists, none is connected yet).
    pub can_prepare_next: bool,
}

/// The settings the decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogLimits {
    pub commit_bytes: u64,
    pub commit_interval: Duration,
    pub chunk_size: usize,
    pub batch_delay: Duration,
    pub group_wait: Duration,
    pub rotate_size: u64,
}

/// When the records appended now are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitRule {
    /// Append only (more follows before the commit).
    No,
    /// Commit with this append.
    Yes,
    /// Commit if the batch leaves nothing queued or reaches a waiter's target (see
    /// [`commit_after_take`]).
    IfWaiterServed,
}

/// What the log thread does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogDecision {
    /// End the thread.
    Exit,
    /// Leave emergency bypass (`resume.rs`).
    Resume,
    /// Commit the open batch (nothing new to append).
    Commit,
    /// Switch to the next log file.
    Rotate,
    /// Take a batch from the queue and append it.
    Append(CommitRule),
    /// Wait for the writers released by the last commit (then decide again).
    GroupWait(Duration),
    /// Wait for work (creating the next log file first when `prepare_next`).
    Wait { wait: Duration, prepare_next: bool },
}

/// Not logging: how often the thread looks for a resume request or `stop`.
pub(crate) const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Nothing queued, nothing appended: how long the thread sleeps between checks.
pub(crate) const EMPTY_WAIT: Duration = Duration::from_millis(200);
/// Shortest wait (a zero wait would spin).
pub(crate) const MIN_WAIT: Duration = Duration::from_micros(50);

/// The decision. Pure.
pub(crate) fn decide(f: &LogFacts, l: &LogLimits) -> LogDecision {
    use LogDecision as D;
    if f.kill || f.mode == LoggerMode::Failed {
        return D::Exit;
    }
    if f.mode != LoggerMode::Logging {
        return if f.stop {
            D::Exit
        } else if f.resume_req {
            D::Resume
        } else {
            D::Wait {
                wait: IDLE_WAIT,
                prepare_next: false,
            }
        };
    }
    let rotate_due = f.rotate_req || f.file_offset >= l.rotate_size;
    let must_commit = f.stop
        || rotate_due
        || f.open_bytes >= l.commit_bytes
        || f.open_age.is_some_and(|a| a >= l.commit_interval);
    let need_commit = must_commit || f.waiters;
    if f.pending_bytes == 0 {
        if f.batch_open && need_commit {
            return D::Commit;
        }
        if rotate_due {
            return D::Rotate;
        }
        if f.stop {
            return D::Exit;
        }
        let wait = match f.open_age {
            Some(age) => l.commit_interval.saturating_sub(age),
            None => EMPTY_WAIT,
        };
        return D::Wait {
            wait: wait.max(MIN_WAIT),
            prepare_next: f.can_prepare_next && f.file_offset >= l.rotate_size / 2,
        };
    }
    let urgent =
        need_commit || f.pending_bytes >= l.chunk_size || f.oldest_pending >= l.batch_delay;
    if !urgent {
        return D::Wait {
            wait: l.batch_delay.saturating_sub(f.oldest_pending),
            prepare_next: false,
        };
    }
    if need_commit && !f.group_waited && !l.group_wait.is_zero() && f.pending_bytes < l.chunk_size {
        return D::GroupWait(l.group_wait);
    }
    D::Append(if must_commit {
        CommitRule::Yes
    } else if need_commit {
        CommitRule::IfWaiterServed
    } else {
        CommitRule::No
    })
}

/// Whether an append under `rule` commits, once the batch is taken: `queue_left` records
/// stay queued, `waiter_served` a waiter's target is in the batch. Pure.
pub(crate) fn commit_after_take(rule: CommitRule, queue_left: bool, waiter_served: bool) -> bool {
    match rule {
        CommitRule::No => false,
        CommitRule::Yes => true,
        CommitRule::IfWaiterServed => !queue_left || waiter_served,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CommitRule::*;
    use LogDecision::*;

    const MS: Duration = Duration::from_millis(1);

    fn limits() -> LogLimits {
        LogLimits {
            commit_bytes: 8 << 20,
            commit_interval: 5 * MS,
            chunk_size: 1 << 20,
            batch_delay: MS,
            group_wait: Duration::from_micros(100),
            rotate_size: 1 << 30,
        }
    }

    /// Facts from a row: space-separated `key` or `key=value` (sizes in bytes, times in ms).
    fn facts(row: &str) -> LogFacts {
        let mut f = LogFacts {
            mode: LoggerMode::Logging,
            kill: false,
            stop: false,
            rotate_req: false,
            resume_req: false,
            pending_bytes: 0,
            oldest_pending: Duration::ZERO,
            waiters: false,
            batch_open: false,
            open_bytes: 0,
            open_age: None,
            group_waited: false,
            file_offset: 4096,
            can_prepare_next: false,
        };
        for word in row.split_whitespace() {
            let (k, v) = word.split_once('=').unwrap_or((word, "0"));
            let n: u64 = v.parse().unwrap_or(0);
            match k {
                "draining" => f.mode = LoggerMode::Draining,
                "bypass" => f.mode = LoggerMode::Bypass,
                "failed" => f.mode = LoggerMode::Failed,
                "kill" => f.kill = true,
                "stop" => f.stop = true,
                "rotate_req" => f.rotate_req = true,
                "resume_req" => f.resume_req = true,
                "pending" => f.pending_bytes = n as usize,
                "oldest" => f.oldest_pending = Duration::from_millis(n),
                "waiters" => f.waiters = true,
                "open" => {
                    f.batch_open = true;
                    f.open_bytes = n;
                }
                "open_age" => f.open_age = Some(Duration::from_millis(n)),
                "group_waited" => f.group_waited = true,
                "offset" => f.file_offset = n,
                "can_prepare" => f.can_prepare_next = true,
                _ => panic!("unknown fact {k}"),
            }
        }
        f
    }

    fn wait(ms: u64, prepare_next: bool) -> LogDecision {
        Wait {
            wait: Duration::from_millis(ms),
            prepare_next,
        }
    }

    /// The golden table: the state (as a row of facts) → what the log thread does.
    #[test]
    fn log_thread_decisions() {
        #[rustfmt::skip]
        let table: Vec<(&str, LogDecision)> = vec![
            // Ending.
            ("kill pending=4096 waiters",                       Exit),
            ("failed",                                          Exit),
            ("stop",                                            Exit),
            // Closing logs what is queued and commits it first.
            ("stop pending=4096",                               GroupWait(Duration::from_micros(100))),
            ("stop pending=4096 group_waited",                  Append(Yes)),
            ("stop open=4096 open_age=0",                       Commit),
            // Outside Logging: resume on request, end on stop, otherwise idle.
            ("bypass resume_req",                               Resume),
            ("bypass",                                          Wait { wait: IDLE_WAIT, prepare_next: false }),
            ("bypass stop resume_req",                          Exit),
            ("draining pending=4096 waiters",                   Wait { wait: IDLE_WAIT, prepare_next: false }),
            // Nothing queued: commit an open batch that must or may be committed...
            ("open=4096 open_age=1 waiters",                    Commit),
            ("open=8388608 open_age=1",                         Commit),
            ("open=4096 open_age=5",                            Commit),
            // ... or wait for its commit interval to pass.
            ("open=4096 open_age=2",                            wait(3, false)),
            // Rotation only once the batch is committed.
            ("offset=1073741824 open=4096 open_age=1",          Commit),
            ("offset=1073741824",                               Rotate),
            ("rotate_req",                                      Rotate),
            // Idle: prepare the next file from half the rotation size on.
            ("",                                                Wait { wait: EMPTY_WAIT, prepare_next: false }),
            ("can_prepare offset=536870912",                    Wait { wait: EMPTY_WAIT, prepare_next: true }),
            ("can_prepare offset=536870911",                    Wait { wait: EMPTY_WAIT, prepare_next: false }),
            // Queued, not urgent: wait for the batch delay.
            ("pending=4096",                                    Wait { wait: MS, prepare_next: false }),
            // Urgent by age or size: append, no commit.
            ("pending=4096 oldest=1",                           Append(No)),
            ("pending=1048576",                                 Append(No)),
            // A waiter: one group wait, then append and commit if it is served.
            ("pending=4096 waiters",                            GroupWait(Duration::from_micros(100))),
            ("pending=4096 waiters group_waited",               Append(IfWaiterServed)),
            ("pending=1048576 waiters",                         Append(IfWaiterServed)),
            // Bounds of the open batch force the commit.
            ("pending=4096 oldest=1 open=8388608 open_age=0",   GroupWait(Duration::from_micros(100))),
            ("pending=4096 open=8388608 open_age=0 group_waited", Append(Yes)),
            ("pending=4096 open=4096 open_age=5 group_waited",  Append(Yes)),
            ("pending=4096 open=4096 open_age=4 group_waited",  Wait { wait: MS, prepare_next: false }),
            ("pending=1048576 open=4096 open_age=5",            Append(Yes)),
            ("pending=4096 offset=1073741824",                  GroupWait(Duration::from_micros(100))),
            ("pending=4096 offset=1073741824 group_waited",     Append(Yes)),
            ("pending=4096 rotate_req group_waited",            Append(Yes)),
        ];
        let l = limits();
        let mut failed = Vec::new();
        for (row, want) in &table {
            let got = decide(&facts(row), &l);
            if got != *want {
                failed.push(format!("{row:?}: want {want:?}, got {got:?}"));
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    }

    #[test]
    fn group_wait_off_appends_at_once() {
        let l = LogLimits {
            group_wait: Duration::ZERO,
            ..limits()
        };
        assert_eq!(
            decide(&facts("pending=4096 waiters"), &l),
            Append(IfWaiterServed)
        );
    }

    #[test]
    fn commit_after_taking_the_batch() {
        #[rustfmt::skip]
        let table = [
            // rule            queue_left waiter_served  commits
            (No,               false,     true,          false),
            (Yes,              true,      false,         true),
            (IfWaiterServed,   true,      false,         false),
            (IfWaiterServed,   true,      true,          true),
            (IfWaiterServed,   false,     false,         true),
        ];
        for (rule, left, served, want) in table {
            assert_eq!(
                commit_after_take(rule, left, served),
                want,
                "{rule:?} {left} {served}"
            );
        }
    }
}
