//! What the writeback and flusher threads do next: pure functions of the logger's state
//! ([`WbFacts`]) and settings ([`WbLimits`]). The loops in `writeback.rs` gather the facts
//! under the lock, ask, and execute.
//!
//! Invariants (each has rows in the table tests below):
//! - **Only durable data is written back** while the log may be replayed: writeback selects
//!   versions up to the durable sequence number; everything only after draining recorded
//!   "do not replay" (`skip_persisted`).
//! - **Writeback is deferred**: a version waits `writeback_delay` (so that overwrites of it
//!   are never written), unless the memory budget is half used, a drain, a close or a
//!   `writeback_all` forces it.
//! - **A flush covers only what was written before it started** (writeback epochs): one
//!   flush at a time; one is started every `data_flush_interval` or `data_flush_bytes` of
//!   writeback, and before any step that needs everything written back to be flushed.
//! - **Draining ends in this order**: every durable version written back and flushed, the
//!   watermark persisted, then "do not replay" persisted, then the rest written back and
//!   flushed, and only then bypass. The data device never gets ahead of a log that a restart
//!   would replay.
//! - **A full data device stalls writeback, it does not fail the logger**: a round the device
//!   refuses for lack of space is retried after [`NOSPACE_RETRY`] (the versions stay in the
//!   index and the log); a closing logger does not wait for space (the log replays the rest
//!   at the next open), and any other write error fails the logger.
//! - **The watermark is persisted whenever writeback rests** (and after every round and flush,
//!   by the executor); a close ends only after everything is written back and flushed.
//! - **The buffer pool keeps what the writes need, no more**: every [`POOL_PERIOD`] that
//!   writeback rests, it trims the pool (`bufpool.rs`) to the peak budget use of the period
//!   ([`pool_keep`]): an idle logger, or one down to a trickle after a burst, gives the
//!   burst's buffers back within two periods, whatever the other loggers of the node do.

use std::time::Duration;

/// The logger's state as the writeback thread sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct WbFacts {
    /// Killed, or failed: end now.
    pub exit: bool,
    /// Emergency: the index is being drained to the data device.
    pub draining: bool,
    /// Draining persisted "do not replay": versions that are not durable may go too.
    pub skip_persisted: bool,
    /// Closing, and the log thread has ended.
    pub closing: bool,
    /// Write everything back now (`writeback_all`, close, drain).
    pub force: bool,
    /// At least half of the memory budget is in use.
    pub budget_pressure: bool,
    /// Age of the oldest version writeback may take (`None`: none).
    pub oldest_age: Option<Duration>,
    /// Data was written back since the last flush started.
    pub needs_flush: bool,
    /// A flush runs (on the flusher thread).
    pub flush_running: bool,
    /// Written-back data not yet covered by a completed flush.
    pub unflushed: bool,
    /// The index holds no extent.
    pub index_empty: bool,
    /// Time since the last flush started.
    pub since_flush: Duration,
    /// Bytes written back since the last flush started.
    pub unflushed_bytes: u64,
}

/// The settings the decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WbLimits {
    pub writeback_delay: Duration,
    pub data_flush_interval: Duration,
    pub data_flush_bytes: u64,
}

/// What the writeback thread does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WbDecision {
    /// End the thread.
    Exit,
    /// Write the selected versions back.
    Write,
    /// Ask the flusher for a data-device flush.
    StartFlush,
    /// The next step needs everything written back to be flushed: wait for the flusher.
    AwaitFlush,
    /// Draining: every durable version is on the flushed data device: persist the
    /// watermark, then "do not replay".
    PersistSkip,
    /// Draining is done: writes bypass the log from now on.
    EnterBypass,
    /// Nothing to do: persist the watermark (clearing `force` when `clear_force`), then end
    /// (`wait: None`) or wait.
    Rest {
        clear_force: bool,
        wait: Option<Duration>,
    },
}

/// Waits while nothing is due, and between looks at a running flush.
pub(crate) const WB_IDLE: Duration = Duration::from_millis(100);
/// Shortest timed wait (a zero wait would spin).
const WB_MIN_WAIT: Duration = Duration::from_millis(1);

/// Which versions writeback may take: up to this sequence number.
pub(crate) fn select_upto(draining: bool, skip_persisted: bool, durable_seq: u64) -> u64 {
    if draining && skip_persisted {
        u64::MAX
    } else {
        durable_seq
    }
}

/// Whether a writeback round is due (the executor then selects the versions). Pure.
pub(crate) fn due(f: &WbFacts, l: &WbLimits) -> bool {
    f.draining
        || f.force
        || f.closing
        || f.budget_pressure
        || f.oldest_age.is_some_and(|a| a >= l.writeback_delay)
}

/// The decision, once the versions of a due round are selected (`selected`: any). Pure.
pub(crate) fn decide(f: &WbFacts, l: &WbLimits, selected: bool) -> WbDecision {
    use WbDecision as D;
    if f.exit {
        return D::Exit;
    }
    let urgent = f.draining || f.force || f.closing;
    let flush_due = f.needs_flush
        && (!selected && urgent
            || f.since_flush >= l.data_flush_interval
            || f.unflushed_bytes >= l.data_flush_bytes);
    if flush_due && !f.flush_running {
        return D::StartFlush;
    }
    if selected {
        return D::Write;
    }
    if urgent && (f.flush_running || f.unflushed) {
        return D::AwaitFlush;
    }
    if f.draining && !f.skip_persisted {
        return D::PersistSkip;
    }
    if f.draining && f.index_empty {
        return D::EnterBypass;
    }
    let clear_force = due(f, l) && !f.draining;
    if f.closing {
        return D::Rest {
            clear_force,
            wait: None,
        };
    }
    let mut wait = match f.oldest_age {
        Some(a) => l.writeback_delay.saturating_sub(a).max(WB_MIN_WAIT),
        None => WB_IDLE,
    };
    if f.needs_flush {
        wait = wait.min(
            l.data_flush_interval
                .saturating_sub(f.since_flush)
                .max(WB_MIN_WAIT),
        );
    }
    D::Rest {
        clear_force,
        wait: Some(wait),
    }
}

/// Writeback sizes the buffer pool to what the writes of the last period this long needed.
pub(crate) const POOL_PERIOD: Duration = Duration::from_secs(1);

/// What the buffer pool may keep after a period in which the logger held at most
/// `peak_used` bytes of its budget: that much (the next period's writes take their buffers
/// from it), and at least `floor`. A logger that went idle, or down to a trickle, gives
/// back the rest of an earlier burst's buffers; one under a steady load keeps them. Pure.
pub(crate) fn pool_keep(peak_used: u64, floor: usize) -> usize {
    usize::try_from(peak_used).unwrap_or(usize::MAX).max(floor)
}

/// How long writeback rests (`wait`, from [`decide`]) when the pool holds spare buffers
/// (`spare`) and the pool's period started `period_age` ago: at most until the period ends,
/// however long the versions may stay (`writeback_delay`), so that the trim comes on time.
/// Pure.
pub(crate) fn rest_wait(wait: Duration, spare: bool, period_age: Duration) -> Duration {
    if spare {
        wait.min(POOL_PERIOD.saturating_sub(period_age).max(WB_MIN_WAIT))
    } else {
        wait
    }
}

/// How long writeback waits before it retries a round the data device refused for lack of
/// space.
pub(crate) const NOSPACE_RETRY: Duration = Duration::from_secs(1);

/// What writeback does after a round failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteFailure {
    /// Keep the versions and try again after [`NOSPACE_RETRY`].
    Retry,
    /// Fail the logger.
    Fail,
}

/// The decision after a failed writeback round: `no_space` (the device's file system is
/// full), `stopping` (the logger is closing). Pure.
pub(crate) fn after_write_error(no_space: bool, stopping: bool) -> WriteFailure {
    if no_space && !stopping {
        WriteFailure::Retry
    } else {
        WriteFailure::Fail
    }
}

/// What the flusher thread does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlushDecision {
    Exit,
    /// Run the requested flush.
    Flush,
    Wait,
}

/// The flusher's decision: `exit` (killed or failed), a flush requested, writeback ended.
/// A requested flush runs even after writeback ended (a close waits for it). Pure.
pub(crate) fn flusher_decide(exit: bool, requested: bool, wb_done: bool) -> FlushDecision {
    if exit {
        FlushDecision::Exit
    } else if requested {
        FlushDecision::Flush
    } else if wb_done {
        FlushDecision::Exit
    } else {
        FlushDecision::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use WbDecision::*;

    const MS: Duration = Duration::from_millis(1);

    fn limits() -> WbLimits {
        WbLimits {
            writeback_delay: 50 * MS,
            data_flush_interval: 200 * MS,
            data_flush_bytes: 64 << 20,
        }
    }

    /// Facts from a row: space-separated `key` or `key=value` (bytes, times in ms).
    fn facts(row: &str) -> WbFacts {
        let mut f = WbFacts::default();
        for word in row.split_whitespace() {
            let (k, v) = word.split_once('=').unwrap_or((word, "0"));
            let n: u64 = v.parse().unwrap_or(0);
            match k {
                "exit" => f.exit = true,
                "draining" => f.draining = true,
                "skip_persisted" => f.skip_persisted = true,
                "closing" => f.closing = true,
                "force" => f.force = true,
                "pressure" => f.budget_pressure = true,
                "oldest" => f.oldest_age = Some(Duration::from_millis(n)),
                "needs_flush" => f.needs_flush = true,
                "flushing" => f.flush_running = true,
                "unflushed" => f.unflushed = true,
                "empty" => f.index_empty = true,
                "since_flush" => f.since_flush = Duration::from_millis(n),
                "unflushed_bytes" => f.unflushed_bytes = n,
                _ => panic!("unknown fact {k}"),
            }
        }
        f
    }

    fn rest(clear_force: bool, ms: Option<u64>) -> WbDecision {
        Rest {
            clear_force,
            wait: ms.map(Duration::from_millis),
        }
    }

    /// The golden table: state → due → decision (`selected`: the due round found versions).
    #[test]
    fn writeback_decisions() {
        #[rustfmt::skip]
        let table: Vec<(&str, bool, bool, WbDecision)> = vec![
            // row                                           due    selected decision
            ("exit draining",                                true,  true,  Exit),
            // Deferred: young versions wait for writeback_delay.
            ("oldest=10",                                    false, false, rest(false, Some(40))),
            ("",                                             false, false, rest(false, Some(100))),
            ("oldest=50",                                    true,  true,  Write),
            ("oldest=10 pressure",                           true,  true,  Write),
            ("oldest=10 force",                              true,  true,  Write),
            // A due round that found nothing (the versions are not durable yet).
            ("oldest=60",                                    true,  false, rest(true, Some(1))),
            // Flushes: by time or bytes, one at a time, beside writeback.
            ("oldest=50 needs_flush since_flush=200",        true,  true,  StartFlush),
            ("needs_flush unflushed_bytes=67108864",         false, false, StartFlush),
            ("oldest=50 needs_flush since_flush=200 flushing", true, true, Write),
            ("needs_flush since_flush=150",                  false, false, rest(false, Some(50))),
            ("oldest=30 needs_flush since_flush=190",        false, false, rest(false, Some(10))),
            // Forced (writeback_all): written back, then flushed, then rest.
            ("force needs_flush unflushed",                  true,  false, StartFlush),
            ("force flushing unflushed",                     true,  false, AwaitFlush),
            ("force",                                        true,  false, rest(true, Some(100))),
            // Closing: the same, then end.
            ("closing oldest=1",                             true,  true,  Write),
            ("closing needs_flush unflushed",                true,  false, StartFlush),
            ("closing unflushed",                            true,  false, AwaitFlush),
            ("closing empty",                                true,  false, rest(true, None)),
            // Draining: durable versions back and flushed, "do not replay", the rest, bypass.
            ("draining oldest=0",                            true,  true,  Write),
            ("draining needs_flush unflushed",               true,  false, StartFlush),
            ("draining flushing",                            true,  false, AwaitFlush),
            ("draining",                                     true,  false, PersistSkip),
            ("draining skip_persisted oldest=0",             true,  true,  Write),
            ("draining skip_persisted unflushed",            true,  false, AwaitFlush),
            ("draining skip_persisted empty",                true,  false, EnterBypass),
            // Not empty yet but nothing selectable (versions mid-write): look again soon.
            ("draining skip_persisted",                      true,  false, rest(false, Some(100))),
        ];
        let l = limits();
        let mut failed = Vec::new();
        for (row, want_due, selected, want) in &table {
            let f = facts(row);
            let got_due = due(&f, &l);
            let got = decide(&f, &l, *selected);
            if got_due != *want_due || got != *want {
                failed.push(format!(
                    "{row:?}: want due={want_due} {want:?}, got due={got_due} {got:?}"
                ));
            }
        }
        assert!(failed.is_empty(), "{}", failed.join("\n"));
    }

    #[test]
    fn what_writeback_may_select() {
        assert_eq!(select_upto(false, false, 7), 7);
        assert_eq!(
            select_upto(true, false, 7),
            7,
            "durable first while draining"
        );
        assert_eq!(
            select_upto(true, true, 7),
            u64::MAX,
            "everything after do-not-replay"
        );
        assert_eq!(select_upto(false, true, 7), 7);
    }

    #[test]
    fn the_pool_keeps_what_the_last_period_needed() {
        #[rustfmt::skip]
        let table = [
            // peak used     floor  keep
            (0,              10,    10),           // idle: the floor
            (4,              10,    10),           // a trickle
            (256 << 20,      10,    256 << 20),    // a steady load keeps its buffers
        ];
        for (peak, floor, want) in table {
            assert_eq!(pool_keep(peak, floor), want, "{peak} {floor}");
        }
    }

    #[test]
    fn writeback_rests_until_the_pools_period_ends_while_it_keeps_spare_buffers() {
        let ms = Duration::from_millis;
        #[rustfmt::skip]
        let table = [
            // wait        spare  period age  rest
            (ms(60_000),   false, ms(200),    ms(60_000)),
            (ms(60_000),   true,  ms(200),    ms(800)),
            (ms(100),      true,  ms(200),    ms(100)),
            (ms(60_000),   true,  ms(5_000),  WB_MIN_WAIT),
        ];
        for (wait, spare, age, want) in table {
            assert_eq!(
                rest_wait(wait, spare, age),
                want,
                "{wait:?} {spare} {age:?}"
            );
        }
    }

    #[test]
    fn write_error_decisions() {
        use WriteFailure::*;
        #[rustfmt::skip]
        let table = [
            // no_space stopping decision
            (true,      false,   Retry),
            (true,      true,    Fail),
            (false,     false,   Fail),
            (false,     true,    Fail),
        ];
        for (no_space, stopping, want) in table {
            assert_eq!(
                after_write_error(no_space, stopping),
                want,
                "{no_space} {stopping}"
            );
        }
    }

    #[test]
    fn flusher_decisions() {
        use FlushDecision::*;
        #[rustfmt::skip]
        let table = [
            // exit   requested wb_done  decision
            (true,    true,     false,   Exit),
            (false,   true,     true,    Flush),
            (false,   false,    true,    Exit),
            (false,   false,    false,   Wait),
        ];
        for (exit, req, done, want) in table {
            assert_eq!(flusher_decide(exit, req, done), want, "{exit} {req} {done}");
        }
    }
}
