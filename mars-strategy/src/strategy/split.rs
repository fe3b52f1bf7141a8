//! Split-brain detection (pure): where the histories of a resource fork, and how much data
//! each side wrote after the fork.
//!
//! Triggers, as upstream: two logs with the same sequence number from different creators
//! (each side of a forced failover continued the history on its own); two version links of
//! the same log whose digests differ (the same log ended at different positions, or the
//! chains before it differ); and a member whose replay position lies beyond where the
//! history ends that log (the old primary went on writing after a forced failover).

use super::snapshot::Snapshot;
use std::collections::{BTreeMap, BTreeSet};

/// A fork in the history of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitBrain {
    /// The first log sequence number at which the histories differ.
    pub seq: u64,
    /// Where the common history ends: the shortest end of log `seq` any side reports (0 when
    /// the sides differ from the first byte of that log, i.e. two creators).
    pub common_end: u64,
    /// Per node that wrote after the fork: the log bytes it holds past the common history.
    pub divergent: BTreeMap<String, u64>,
}

impl std::fmt::Display for SplitBrain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SPLIT BRAIN after log {} position {}: ",
            self.seq, self.common_end
        )?;
        let parts: Vec<String> = self
            .divergent
            .iter()
            .map(|(h, b)| format!("{h} holds {b} bytes past it"))
            .collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// The first fork in the history of `s`, if any.
pub fn split_brain(s: &Snapshot) -> Option<SplitBrain> {
    let mut by_seq: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for l in &s.logs {
        by_seq.entry(l.seq).or_default().insert(l.creator.as_str());
    }
    let double = by_seq
        .iter()
        .find(|(_, c)| c.len() > 1)
        .map(|(seq, _)| *seq);
    let mut digests: BTreeMap<u64, BTreeMap<&str, (&str, u64)>> = BTreeMap::new();
    for ((seq, host), v) in &s.versions {
        digests
            .entry(*seq)
            .or_default()
            .insert(host.as_str(), (v.digest.as_str(), v.pos));
    }
    let mismatch = digests
        .iter()
        .find(|(_, d)| d.values().map(|(g, _)| *g).collect::<BTreeSet<_>>().len() > 1)
        .map(|(seq, _)| *seq);
    // A member that got further into a log than where the history says it ends (the old
    // primary after a forced failover, which went on writing).
    let beyond = s
        .members
        .values()
        .filter_map(|m| m.replay.as_ref())
        .filter_map(|r| {
            s.log_end(&r.log)
                .filter(|end| r.pos > *end)
                .map(|end| (r.log.seq, end))
        })
        .min();
    let seq = [double, mismatch, beyond.map(|b| b.0)]
        .into_iter()
        .flatten()
        .min()?;
    let common_end = match (mismatch == Some(seq), beyond.filter(|b| b.0 == seq)) {
        (true, b) => digests[&seq]
            .values()
            .map(|(_, p)| *p)
            .chain(b.map(|b| b.1))
            .min()
            .unwrap_or(0),
        (false, Some(b)) => b.1,
        (false, None) => 0,
    };
    // Bytes past the fork per node: how far past the common end of log `seq` it got (its
    // version link, or for the creator still writing it its replay link), plus the logs it
    // created after `seq`.
    let mut divergent = BTreeMap::new();
    for (h, m) in &s.members {
        let own_end = |l: &crate::views::LogName| {
            s.version(l.seq, &l.creator)
                .filter(|v| v.log == *l)
                .map(|v| v.pos)
                .or_else(|| m.replay.as_ref().filter(|r| r.log == *l).map(|r| r.pos))
        };
        let at_fork = s
            .version(seq, h)
            .map(|v| v.pos)
            .or_else(|| {
                s.logs
                    .iter()
                    .find(|l| l.seq == seq && l.creator == *h)
                    .and_then(own_end)
            })
            .map_or(0, |p| p.saturating_sub(common_end));
        let later: u64 = s
            .logs
            .iter()
            .filter(|l| l.seq > seq && l.creator == *h)
            .map(|l| own_end(l).unwrap_or(0))
            .sum();
        if at_fork + later > 0 {
            divergent.insert(h.clone(), at_fork + later);
        }
    }
    Some(SplitBrain {
        seq,
        common_end,
        divergent,
    })
}

/// Whether node `h` is on the losing side of the fork: past it on a history that is not the
/// designated primary's (its chain differs there, or it holds data past the fork). A loser
/// fetches and replays nothing more (its data after the fork is what `invalidate`
/// discards); the other nodes follow the designated primary.
pub fn is_loser(s: &Snapshot, sb: &SplitBrain, h: &str) -> bool {
    if s.primary.as_deref() == Some(h) {
        return false;
    }
    let theirs = s.primary.as_deref().and_then(|p| s.version(sb.seq, p));
    let other_chain =
        matches!((s.version(sb.seq, h), theirs), (Some(m), Some(t)) if m.digest != t.digest);
    other_chain || sb.divergent.get(h).is_some_and(|b| *b > 0)
}
