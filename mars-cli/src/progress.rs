//! Rates and time lag, measured by `marsd` over a sliding window of its own rounds (not by
//! `marsadm`, which only asks once). Pure: every function takes the node clock (`now`, ns).
//!
//! Every round the daemon feeds each series one sample: a byte position (sync position,
//! fetched or replayed log position, the primary's log end). A series keeps the bytes it
//! saw pass as a counter (a move to the next log counts the rest of the old one when its end
//! is known) and the samples of the last [`WINDOW`]; the rate is the counter's slope over
//! them. The primary's positions are also kept with the time this node first saw them
//! ([`History`]): the time lag of a replica is the age of the oldest write it lacks.

use std::collections::{BTreeMap, VecDeque};

/// The sliding window the rates are measured over.
pub const WINDOW_NS: u64 = 5_000_000_000;
/// Samples kept per series at most (50 rounds of 100 ms fill the window).
const MAX_SAMPLES: usize = 128;
/// Positions of a primary kept at most (one per round with new writes: ~7 min at 100 ms).
const MAX_HISTORY: usize = 4096;

/// What a series measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Full sync: bytes of the device copied.
    Sync,
    /// Log fetch: bytes of the primary's logs copied here (this node only).
    Fetch,
    /// Replay: bytes of the logs applied to the data device.
    Replay,
    /// The primary's log: bytes written by its clients.
    Write,
}

/// A position in a resource's history: (log sequence number, offset in that log).
pub type Pos = (u64, u64);

/// One measured quantity.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Bytes seen pass since the series started (a Prometheus counter).
    pub total: u64,
    last: Option<Pos>,
    samples: VecDeque<(u64, u64)>,
}

impl Series {
    /// A new position at `now`. `end_of(seq)` is the length of a finished log, when known.
    pub fn push(&mut self, now: u64, pos: Pos, end_of: impl Fn(u64) -> Option<u64>) {
        if let Some(last) = self.last {
            self.total += advanced(last, pos, end_of);
        }
        self.last = Some(pos);
        self.tick(now);
    }

    /// Record the counter at `now` without a new position (nothing moved).
    pub fn tick(&mut self, now: u64) {
        self.samples.push_back((now, self.total));
        while self.samples.len() > MAX_SAMPLES
            || self
                .samples
                .get(1)
                .is_some_and(|(t, _)| now.saturating_sub(*t) >= WINDOW_NS)
        {
            self.samples.pop_front();
        }
    }

    /// Bytes per second over the window (0 with fewer than two samples).
    pub fn rate(&self) -> u64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, b0)), Some(&(t1, b1))) if t1 > t0 => {
                ((b1 - b0) as u128 * 1_000_000_000 / (t1 - t0) as u128) as u64
            }
            _ => 0,
        }
    }

    /// The last position pushed.
    pub fn last(&self) -> Option<Pos> {
        self.last
    }
}

/// Bytes between two positions: forward within one log, or the rest of the old log (when
/// its end is known) plus the new offset. A move backwards (invalidate, a new history)
/// counts nothing.
fn advanced(from: Pos, to: Pos, end_of: impl Fn(u64) -> Option<u64>) -> u64 {
    use std::cmp::Ordering::*;
    match to.0.cmp(&from.0) {
        Equal => to.1.saturating_sub(from.1),
        Greater => end_of(from.0).map_or(0, |e| e.saturating_sub(from.1)) + to.1,
        Less => 0,
    }
}

/// The positions a primary reached, with the time this node first saw each.
#[derive(Debug, Clone, Default)]
pub struct History {
    seen: VecDeque<(u64, Pos)>,
}

/// How far behind in time a replica is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeLag {
    /// Seconds since the oldest write the replica lacks was seen.
    pub secs: f64,
    /// The history kept does not reach back that far: the lag is at least `secs`.
    pub lower_bound: bool,
}

impl History {
    /// The primary is at `pos` at `now`.
    pub fn push(&mut self, now: u64, pos: Pos) {
        if self.seen.back().is_some_and(|(_, p)| *p >= pos) {
            return;
        }
        self.seen.push_back((now, pos));
        if self.seen.len() > MAX_HISTORY {
            self.seen.pop_front();
        }
    }

    /// The time lag of a replica at `pos`: zero when it has everything seen.
    pub fn lag(&self, now: u64, pos: Pos) -> Option<TimeLag> {
        let latest = self.seen.back()?.1;
        if pos >= latest {
            return Some(TimeLag {
                secs: 0.0,
                lower_bound: false,
            });
        }
        // The first position past `pos` holds the oldest write the replica lacks.
        let i = self.seen.partition_point(|(_, p)| *p <= pos);
        let (t, _) = self.seen[i];
        Some(TimeLag {
            secs: now.saturating_sub(t) as f64 / 1e9,
            lower_bound: i == 0 && self.seen.len() >= MAX_HISTORY,
        })
    }
}

/// The series of one daemon: per (resource, host, kind), and the primaries' histories.
#[derive(Debug, Default)]
pub struct Tracker {
    series: BTreeMap<(String, String, Kind), Series>,
    history: BTreeMap<String, History>,
}

impl Tracker {
    /// The series of `host`'s `kind` in `res` (created empty).
    pub fn series(&mut self, res: &str, host: &str, kind: Kind) -> &mut Series {
        self.series
            .entry((res.to_string(), host.to_string(), kind))
            .or_default()
    }

    /// The series, if it was ever fed.
    pub fn get(&self, res: &str, host: &str, kind: Kind) -> Option<&Series> {
        self.series.get(&(res.to_string(), host.to_string(), kind))
    }

    /// The history of the primary of `res`.
    pub fn history(&mut self, res: &str) -> &mut History {
        self.history.entry(res.to_string()).or_default()
    }

    /// The time lag of a replica of `res` at `pos`.
    pub fn lag(&self, res: &str, now: u64, pos: Pos) -> Option<TimeLag> {
        self.history.get(res)?.lag(now, pos)
    }

    /// Every series' byte counter: (resource, host, kind, bytes).
    pub fn totals(&self) -> Vec<(String, String, Kind, u64)> {
        self.series
            .iter()
            .map(|((r, h, k), s)| (r.clone(), h.clone(), *k, s.total))
            .collect()
    }

    /// Forget what is not in `keep` (resources that left this node).
    pub fn retain(&mut self, keep: &dyn Fn(&str) -> bool) {
        self.series.retain(|(r, _, _), _| keep(r));
        self.history.retain(|r, _| keep(r));
    }
}

/// Bytes from `from` to `to` in a history whose finished logs have the lengths `end_of`
/// (0 when `from` is not behind); `None` when a log in between has no known end.
pub fn distance(from: Pos, to: Pos, end_of: impl Fn(u64) -> Option<u64>) -> Option<u64> {
    if from >= to {
        return Some(0);
    }
    if from.0 == to.0 {
        return Some(to.1 - from.1);
    }
    let mut bytes = end_of(from.0)?.saturating_sub(from.1) + to.1;
    for seq in from.0 + 1..to.0 {
        bytes += end_of(seq)?;
    }
    Some(bytes)
}

/// Seconds until `remaining` bytes are done at a net `rate` (bytes/s); `None` when not
/// progressing.
pub fn eta(remaining: u64, rate: i128) -> Option<u64> {
    if remaining == 0 {
        return Some(0);
    }
    (rate > 0).then(|| ((remaining as i128 + rate - 1) / rate) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn rate_is_the_slope_over_the_window_and_falls_to_zero_when_nothing_moves() {
        let mut s = Series::default();
        for i in 0..20u64 {
            s.push(i * S / 10, (1, i * 1000), |_| None);
        }
        assert_eq!(s.rate(), 10_000);
        assert_eq!(s.total, 19_000);
        for i in 20..100u64 {
            s.tick(i * S / 10);
        }
        assert_eq!(s.rate(), 0, "nothing moved for longer than the window");
    }

    #[test]
    fn a_new_log_counts_the_rest_of_the_old_one_and_backwards_counts_nothing() {
        assert_eq!(advanced((1, 100), (2, 50), |_| Some(300)), 250);
        assert_eq!(advanced((1, 100), (2, 50), |_| None), 50);
        assert_eq!(advanced((2, 100), (1, 500), |_| Some(900)), 0);
        assert_eq!(advanced((2, 100), (2, 40), |_| None), 0);
    }

    #[test]
    fn time_lag_is_the_age_of_the_oldest_missing_write() {
        let mut h = History::default();
        h.push(10 * S, (1, 100));
        h.push(12 * S, (1, 200));
        h.push(15 * S, (2, 10));
        let lag = |p| h.lag(20 * S, p).unwrap().secs;
        assert_eq!(lag((2, 10)), 0.0);
        assert_eq!(lag((1, 200)), 5.0);
        assert_eq!(lag((1, 150)), 8.0);
        assert_eq!(lag((1, 0)), 10.0);
        assert!(!h.lag(20 * S, (1, 0)).unwrap().lower_bound);
    }

    #[test]
    fn distance_spans_finished_logs_and_needs_their_ends() {
        let ends = |seq| {
            [None, Some(100), Some(50)]
                .get(seq as usize)
                .copied()
                .flatten()
        };
        assert_eq!(distance((1, 40), (1, 90), ends), Some(50));
        assert_eq!(distance((1, 40), (3, 7), ends), Some(60 + 50 + 7));
        assert_eq!(distance((3, 7), (1, 40), ends), Some(0));
        assert_eq!(distance((3, 7), (4, 1), ends), None);
    }

    #[test]
    fn eta_needs_progress() {
        assert_eq!(eta(0, 0), Some(0));
        assert_eq!(eta(100, 30), Some(4));
        assert_eq!(eta(100, 0), None);
        assert_eq!(eta(100, -5), None);
    }
}
