//! Per-brick counters and latency histograms (upstream's `lib_timing`), lock-free on the hot
//! path: a handful of atomic adds per completed request.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const BUCKETS: usize = 40;

/// Live counters of one brick.
///
/// Cost per request: one atomic add on submit, two on completion (bytes and the histogram
/// bucket; the completion count is the histogram's sum), plus one on errors. The submit-side
/// counter lives on its own cache line so that submitting and completing threads do not
/// contend for one line.
#[derive(Debug)]
pub struct Stats {
    submitted: Padded,
    errors: AtomicU64,
    bytes: AtomicU64,
    latency_ns_sum: AtomicU64,
    /// Bucket `i` counts latencies in `[2^i, 2^(i+1))` microseconds (bucket 0 includes < 1 µs).
    histogram: [AtomicU64; BUCKETS],
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    /// All zero.
    pub fn new() -> Self {
        Stats {
            submitted: Padded::default(),
            errors: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            latency_ns_sum: AtomicU64::new(0),
            histogram: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Count a submission.
    pub fn on_submit(&self) {
        self.submitted.0.fetch_add(1, Relaxed);
    }

    /// Count a completion of `bytes` that took `latency`.
    pub fn on_complete(&self, bytes: u64, latency: Duration, failed: bool) {
        if failed {
            self.errors.fetch_add(1, Relaxed);
        } else {
            self.bytes.fetch_add(bytes, Relaxed);
        }
        let ns = latency.as_nanos().min(u64::MAX as u128) as u64;
        if ns >= 1000 {
            // Sub-microsecond latencies add nothing measurable to the mean: skip the atomic.
            self.latency_ns_sum.fetch_add(ns, Relaxed);
        }
        let us = ns / 1000;
        let bucket = (64 - us.leading_zeros() as usize).min(BUCKETS - 1);
        self.histogram[bucket].fetch_add(1, Relaxed);
    }

    /// A consistent-enough copy for display.
    pub fn snapshot(&self) -> StatsSnapshot {
        let histogram: Vec<u64> = self.histogram.iter().map(|b| b.load(Relaxed)).collect();
        let completed = histogram.iter().sum();
        StatsSnapshot {
            // Read after the histogram: a request completing in between is never counted as
            // completed but not submitted.
            submitted: self.submitted.0.load(Relaxed).max(completed),
            completed,
            errors: self.errors.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            mean_latency: Duration::from_nanos(
                self.latency_ns_sum.load(Relaxed) / completed.max(1),
            ),
            p50: quantile(&histogram, 0.50),
            p99: quantile(&histogram, 0.99),
            latency_sum: Duration::from_nanos(self.latency_ns_sum.load(Relaxed)),
            histogram,
        }
    }
}

fn quantile(histogram: &[u64], q: f64) -> Duration {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return Duration::ZERO;
    }
    let want = ((total as f64) * q).ceil() as u64;
    let mut seen = 0;
    for (i, n) in histogram.iter().enumerate() {
        seen += n;
        if seen >= want {
            // Upper edge of the bucket: a conservative estimate.
            return Duration::from_micros(1u64 << i);
        }
    }
    Duration::from_micros(1u64 << (histogram.len() - 1))
}

/// A copy of a brick's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Requests submitted.
    pub submitted: u64,
    /// Requests completed (with or without error).
    pub completed: u64,
    /// Requests completed with an error.
    pub errors: u64,
    /// Bytes moved by successful requests.
    pub bytes: u64,
    /// Mean latency.
    pub mean_latency: Duration,
    /// Median latency (upper bucket edge).
    pub p50: Duration,
    /// 99th percentile latency (upper bucket edge).
    pub p99: Duration,
    /// Sum of all latencies (sub-microsecond ones count as 0).
    pub latency_sum: Duration,
    /// Completions per latency bucket: bucket 0 is below 1 µs, bucket `i > 0` holds
    /// latencies below `2^i` µs (and at least `2^(i-1)` µs); the last one takes the rest.
    pub histogram: Vec<u64>,
}

impl StatsSnapshot {
    /// Requests in flight when the snapshot was taken.
    pub fn inflight(&self) -> u64 {
        self.submitted.saturating_sub(self.completed)
    }
}
