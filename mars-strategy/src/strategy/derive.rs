//! [`derive`]: the rules. Each function below owns one concern and only appends actions.

use super::action::Action;
use super::facts::{Facts, Running};
use super::snapshot::{Member, Snapshot};
use super::split::{split_brain, SplitBrain};
use crate::views::{LogName, ReplayLink, Switch, VersionLink};

/// How long after a full sync's copy ended the primary's replay link is taken as `syncpos`:
/// every write the copy could have read is in the log by then (the logger appends within
/// milliseconds, commits within a second, and the primary publishes its position each tick).
pub const SYNCPOS_SETTLE_NS: u64 = 3_000_000_000;

/// After a (re)start, a designated primary waits this long before it starts its own log
/// again, so that newer metadata from its peers (another node made primary meanwhile) can
/// arrive first (upstream ignored `primary` for two scan intervals after modprobe).
pub const STARTUP_GRACE_NS: u64 = 1_000_000_000;

/// Sync progress is published in steps of 2% of the size, at least 1 MiB, at most 64 MiB.
fn syncstatus_step(size: u64) -> u64 {
    (size / 50).clamp(1 << 20, 64 << 20)
}

/// What node `s.me` must do next for resource `s.res`.
pub fn derive(s: &Snapshot, f: &Facts) -> Vec<Action> {
    let mut out = Vec::new();
    let Some(me) = s.mine() else {
        match f.running {
            Running::Primary => out.push(Action::StopPrimary {
                reason: "this node is no longer a member of the resource".into(),
            }),
            Running::Secondary => out.push(Action::StopSecondary),
            Running::Nothing => {}
        }
        return out;
    };
    leds(s, me, f, &mut out);
    log_delete(s, f, &mut out);
    if !me.switch(Switch::Attach) {
        match f.running {
            Running::Primary => stop_primary_when_idle(f, "the resource was detached", &mut out),
            Running::Secondary => out.push(Action::StopSecondary),
            Running::Nothing => {}
        }
        return out;
    }
    match f.running {
        Running::Primary => primary(s, me, f, &mut out),
        _ if s.designated_me() => become_primary(s, me, f, &mut out),
        _ => secondary(s, me, f, &mut out),
    }
    out
}

/// The LEDs in `actual-<me>/`, written when they differ from the truth.
fn leds(s: &Snapshot, me: &Member, f: &Facts, out: &mut Vec<Action>) {
    let fetching = f
        .fetch
        .as_ref()
        .is_some_and(|x| !x.done && x.failed.is_none());
    let syncing = f
        .sync
        .as_ref()
        .is_some_and(|x| x.done_at.is_none() && x.failed.is_none());
    let clients = f.primary.as_ref().map_or(0, |p| p.clients);
    let want = [
        ("is-attached", flag(f.running != Running::Nothing)),
        ("is-primary", flag(f.running == Running::Primary)),
        ("is-fetching", flag(fetching)),
        ("is-syncing", flag(syncing)),
        ("open-count", clients.to_string()),
        (
            "is-emergency",
            flag(f.primary.as_ref().is_some_and(|p| p.bypass)),
        ),
    ];
    for (led, v) in want {
        // An absent LED reads as off: nothing to write for a 0 nobody wrote yet.
        let now = me.actual.get(led).map_or("0", String::as_str);
        if now != v {
            out.push(Action::link(format!("actual-{}/{led}", s.me), v));
        }
    }
}

fn flag(b: bool) -> String {
    if b { "1" } else { "0" }.to_string()
}

/// `log-delete` (the shared key `log-delete` = first sequence to keep): my own log keys and
/// any local copies below it go, but never what a member still needs (its replay link), the
/// newest log, or what the local logger's crash recovery needs.
fn log_delete(s: &Snapshot, f: &Facts, out: &mut Vec<Action>) {
    let Some(below) = s.log_delete_below else {
        return;
    };
    let needed = s.min_needed_seq().unwrap_or(0);
    let recovery = f.primary.as_ref().map_or(u64::MAX, |p| p.min_seq);
    let last = s.last_log().map_or(0, |l| l.seq);
    let limit = below.min(needed).min(recovery).min(last);
    for l in s.logs.iter().filter(|l| l.seq < limit && l.creator == s.me) {
        out.push(Action::DeleteLink { key: l.to_string() });
    }
    for l in f.local_logs.keys().filter(|l| l.seq < limit) {
        out.push(Action::DeleteLocalLog { log: l.clone() });
    }
}

fn stop_primary_when_idle(f: &Facts, reason: &str, out: &mut Vec<Action>) {
    let clients = f.primary.as_ref().map_or(0, |p| p.clients);
    if clients > 0 {
        out.push(Action::Report {
            msg: format!(
                "RemainsPrimary: {reason}, but {clients} NBD client(s) are still connected; \
                 the export stays until they disconnect"
            ),
        });
    } else {
        out.push(Action::StopPrimary {
            reason: reason.to_string(),
        });
    }
}

/// The primary graph runs: stay (and publish links) or hand over.
fn primary(s: &Snapshot, me: &Member, f: &Facts, out: &mut Vec<Action>) {
    if !s.designated_me() {
        let who = s.primary.as_deref().unwrap_or("(none)");
        stop_primary_when_idle(f, &format!("{who} is the designated primary now"), out);
        return;
    }
    let Some(p) = &f.primary else {
        return;
    };
    announce_logs(s, f, &p.log, out);
    if s.forced_primary.as_deref() == Some(s.me.as_str()) {
        forced_history(s, f, p.log.seq, out);
    }
    emergency(s, f, p, out);
    if let Some(e) = &p.failed {
        out.push(Action::Report {
            msg: format!(
                "LoggerFailed: the logger of {} stopped after an IO error ({e}); IO through the export fails; every acknowledged write is in the log: fix the cause (marsd's log has the details), then restart marsd here: opening the resource replays the log onto the data device",
                s.res
            ),
        });
    }
    if let Some(e) = &p.writeback_error {
        out.push(Action::Report {
            msg: format!(
                "DataDeviceFull: writeback to this node's data device of {} stalls ({e}); nothing is lost: the writes stay in the log and in memory and reads are served from there, but new writes wait once the logger's memory budget is used up; free space on the file system of the data device (or grow it): writeback retries every second and catches up by itself",
                s.res
            ),
        });
    }
    let here = ReplayLink {
        log: p.log.clone(),
        pos: p.end,
        len: 0,
    };
    if me.replay.as_ref() != Some(&here) {
        out.push(Action::link(format!("replay-{}", s.me), here.to_string()));
    }
    // Version links of the logs I finished (rotated away from), oldest first, chained.
    let mut carry: Option<String> = None;
    for (log, local) in &f.local_logs {
        if log.creator != s.me || log.seq >= p.log.seq || s.version(log.seq, &s.me).is_some() {
            carry = None;
            continue;
        }
        let prev = match carry.take() {
            Some(v) => Some(v),
            None => prev_version(s, log.seq),
        };
        let Some(prev) = prev else {
            out.push(Action::Report {
                msg: format!(
                    "cannot write the version link of {log}: the version link of log {} is missing",
                    log.seq - 1
                ),
            });
            return;
        };
        let v = VersionLink::next(&prev, log.clone(), local.len).to_string();
        out.push(Action::link(version_key(log.seq, &s.me), v.clone()));
        carry = Some(v);
    }
}

/// The `log-<seq>-<me>` key of the log I write, and of every log of mine before it that has
/// none: the logger can rotate more than once between two rounds (fast sequential writes, a
/// busy node), and a log nobody announced is never fetched (the secondaries' replay then stops
/// at a gap). Logs below `logdelete-below` were announced and deleted; logs from before another
/// node's newest log belong to an earlier term of mine: neither is announced again.
fn announce_logs(s: &Snapshot, f: &Facts, current: &LogName, out: &mut Vec<Action>) {
    let others_newest = s
        .logs
        .iter()
        .filter(|l| l.creator != s.me)
        .map(|l| l.seq)
        .max();
    let from = s
        .log_delete_below
        .unwrap_or(0)
        .max(others_newest.map_or(0, |q| q + 1));
    let passed = f
        .local_logs
        .keys()
        .filter(|l| l.creator == s.me && l.seq >= from && l.seq < current.seq);
    for log in passed.chain(std::iter::once(current)) {
        if !s.logs.contains(log) {
            out.push(Action::link(log.to_string(), "1"));
        }
    }
}

/// Emergency mode (log space exhausted): below the level the logger stops logging and
/// writes go straight to the data device (IO goes on); the hole is published so that the
/// secondaries stop at it (Orphan). The record goes once no member is at or before it.
fn emergency(s: &Snapshot, f: &Facts, p: &super::facts::PrimaryFact, out: &mut Vec<Action>) {
    let low = f.free_space.is_some_and(|free| free < f.emergency_below);
    let logged: u64 = f.local_logs.values().map(|l| l.len).sum();
    let over = s.emergency_limit.filter(|limit| logged > *limit);
    if (low || over.is_some()) && !p.bypass {
        let reason = match over {
            Some(limit) => {
                format!("{logged} bytes of log exceed the resource's emergency-limit of {limit}")
            }
            None => format!(
                "only {} bytes free in the mars directory (emergency level {})",
                f.free_space.unwrap_or(0),
                f.emergency_below
            ),
        };
        out.push(Action::EnterEmergency { reason });
    }
    if let (true, Some((seq, pos)), None) = (p.bypass, p.hole, &s.emergency_hole) {
        out.push(Action::link(
            "emergency-hole",
            format!("{},{pos}", LogName::new(seq, s.me.clone())),
        ));
    }
    if p.bypass {
        out.push(Action::Report {
            msg: format!(
                "EmergencyMode: the log is full, writes go straight to the data device and are not replicated; free space in the mars directory, run `marsadm cron` here, then `marsadm invalidate {}` on every secondary",
                s.res
            ),
        });
    }
    if let Some(hole) = &s.emergency_hole {
        let stuck = s.members.keys().any(|h| s.orphaned(h));
        if !p.bypass && !stuck {
            let _ = hole;
            out.push(Action::DeleteLink {
                key: "emergency-hole".into(),
            });
        }
    }
}

/// After `primary --force`: end my copy of the log before my first one with my own version
/// link (the others end it there too: [`Snapshot::log_end`]), then drop the flag.
fn forced_history(s: &Snapshot, f: &Facts, first_own: u64, out: &mut Vec<Action>) {
    let before = f
        .local_logs
        .iter()
        .filter(|(l, _)| l.seq + 1 == first_own)
        .max_by_key(|(l, _)| l.seq);
    if let Some((log, local)) = before {
        if s.version(log.seq, &s.me).is_none() {
            match prev_version(s, log.seq) {
                Some(prev) => out.push(Action::link(
                    version_key(log.seq, &s.me),
                    VersionLink::next(&prev, log.clone(), local.len).to_string(),
                )),
                None => {
                    out.push(Action::Report {
                        msg: format!(
                            "forced primary: cannot end the history at {log}: my version link of log {} is missing",
                            log.seq - 1
                        ),
                    });
                    return;
                }
            }
        }
    }
    out.push(Action::DeleteLink {
        key: "forced-primary".into(),
    });
}

/// `version-<seq %09d>-<h>`.
fn version_key(seq: u64, h: &str) -> String {
    format!("version-{seq:09}-{h}")
}

/// The value my version link of log `seq` chains onto: my own link of `seq - 1`, or the start
/// of the history when nobody has a link for `seq - 1`. `None`: mine is missing.
fn prev_version(s: &Snapshot, seq: u64) -> Option<String> {
    if let Some(v) = s.version_value(seq.wrapping_sub(1), &s.me) {
        return Some(v.to_string());
    }
    let anyone = s.versions.keys().any(|(q, _)| *q + 1 == seq);
    (!anyone).then(String::new)
}

/// Designated primary, not running it yet: wait for the old primary and for every log to be
/// here and replayed (planned handover), then start.
fn become_primary(s: &Snapshot, me: &Member, f: &Facts, out: &mut Vec<Action>) {
    let size = s.size.unwrap_or(0);
    if me.syncstatus < size {
        out.push(Action::Report {
            msg: format!(
                "NotYetPrimary: this replica's full sync is incomplete ({} of {size} bytes); \
                 it cannot become primary (make a complete replica primary instead)",
                me.syncstatus
            ),
        });
        return;
    }
    if s.forced_primary.as_deref() == Some(s.me.as_str()) {
        // primary --force: the unfetched tail of the old primary is given up.
        if f.running == Running::Secondary {
            out.push(Action::StopSecondary);
        }
        out.push(Action::StartPrimary);
        return;
    }
    let others = s.other_actual_primaries();
    if !others.is_empty() {
        out.push(Action::Report {
            msg: format!(
                "NotYetPrimary: waiting for {} to stop being primary (its NBD clients must disconnect)",
                others.join(", ")
            ),
        });
        catch_up(s, me, f, out);
        return;
    }
    if f.running == Running::Nothing && f.now < f.started.saturating_add(STARTUP_GRACE_NS) {
        out.push(Action::Report {
            msg: "NotYetPrimary: just started; waiting a moment for newer metadata from the peers"
                .into(),
        });
        return;
    }
    if let Some(last) = s.last_log() {
        if last.creator != s.me {
            let done = match (s.log_end(last), &me.replay) {
                (Some(end), Some(r)) => {
                    r.log == *last && r.pos >= end && s.version(last.seq, &s.me).is_some()
                }
                _ => false,
            };
            if !done {
                out.push(Action::Report {
                    msg: format!(
                        "NotYetPrimary: fetching and replaying the logs of {} up to {last} first",
                        last.creator
                    ),
                });
                catch_up(s, me, f, out);
                return;
            }
        }
    }
    if f.running == Running::Secondary {
        out.push(Action::StopSecondary);
    }
    out.push(Action::StartPrimary);
}

/// A designated primary that still has to catch up runs the secondary rules (without sync).
fn catch_up(s: &Snapshot, me: &Member, f: &Facts, out: &mut Vec<Action>) {
    let fork = losing_fork(s);
    fetch(s, me, f, fork.as_ref(), out);
    replay(s, me, f, fork.as_ref(), out);
}

/// The secondary pipeline: sync, fetch, replay.
fn secondary(s: &Snapshot, me: &Member, f: &Facts, out: &mut Vec<Action>) {
    if s.orphaned(&s.me) {
        let hole = s
            .emergency_hole
            .as_ref()
            .map(|h| format!("{},{}", h.log, h.pos))
            .unwrap_or_default();
        out.push(Action::Report {
            msg: format!(
                "Orphan: the primary ran out of log space at {hole}; this replica is consistent but outdated and cannot catch up by replay: run `marsadm invalidate {}` here once the primary has space again",
                s.res
            ),
        });
        if f.fetch
            .as_ref()
            .is_some_and(|x| !x.done && x.failed.is_none())
        {
            out.push(Action::StopFetch);
        }
        return;
    }
    if s.primary.is_none() && s.members.len() <= 1 {
        // Just joined: the other members' keys (the primary among them) have not arrived.
        out.push(Action::Report {
            msg: format!(
                "waiting for the metadata of {} from its other members (joined just now); if this lasts, check the connections with `marsadm wait-cluster`",
                s.res
            ),
        });
    } else if s.primary.is_none() {
        out.push(Action::Report {
            msg: "NoPrimaryDesignated: no node is primary; run `marsadm primary <res>` on one"
                .into(),
        });
    }
    sync(s, me, f, out);
    free_replayed_logs(me, f, out);
    let fork = losing_fork(s);
    fetch(s, me, f, fork.as_ref(), out);
    replay(s, me, f, fork.as_ref(), out);
}

/// Level 2 of the emergency levels: short of space, a secondary deletes its copies of the
/// logs it has replayed (the primary keeps its own; nothing this node needs goes).
fn free_replayed_logs(me: &Member, f: &Facts, out: &mut Vec<Action>) {
    let low = f.free_space.is_some_and(|free| free < f.delete_logs_below);
    let Some(r) = me.replay.as_ref().filter(|_| low) else {
        return;
    };
    for log in f.local_logs.keys().filter(|l| l.seq < r.log.seq) {
        out.push(Action::DeleteLocalLog { log: log.clone() });
    }
}

fn sync(s: &Snapshot, me: &Member, f: &Facts, out: &mut Vec<Action>) {
    let size = s.size.unwrap_or(0);
    let running = f
        .sync
        .as_ref()
        .is_some_and(|x| x.done_at.is_none() && x.failed.is_none());
    if me.syncstatus >= size {
        if running {
            out.push(Action::StopSync);
        }
        return;
    }
    let Some(primary) = s.primary.clone() else {
        return;
    };
    if !me.switch(Switch::Sync) {
        if running {
            out.push(Action::StopSync);
        }
        return;
    }
    match &f.sync {
        None => out.push(Action::StartSync {
            peer: primary,
            from: me.syncstatus,
            size,
        }),
        Some(x) if x.failed.is_some() => {
            out.push(Action::Report {
                msg: format!(
                    "full sync from {primary} interrupted at {} ({}); resuming",
                    x.pos,
                    x.failed.as_deref().unwrap_or_default()
                ),
            });
            out.push(Action::StartSync {
                peer: primary,
                from: x.pos.max(me.syncstatus),
                size,
            });
        }
        Some(x) => match x.done_at {
            Some(t) if f.now >= t.saturating_add(SYNCPOS_SETTLE_NS) => {
                let pos = s.members.get(&primary).and_then(|p| p.replay.clone());
                if let Some(pos) = pos {
                    out.push(Action::link(format!("syncpos-{}", s.me), pos.to_string()));
                    out.push(Action::link(
                        format!("syncstatus-{}", s.me),
                        size.to_string(),
                    ));
                }
            }
            Some(_) => {}
            None if x.pos >= me.syncstatus.saturating_add(syncstatus_step(size)) => {
                out.push(Action::link(
                    format!("syncstatus-{}", s.me),
                    x.pos.to_string(),
                ));
            }
            None => {}
        },
    }
}

/// Whether `log` is completely here: its creator finished it and we verified that far.
fn complete(s: &Snapshot, f: &Facts, log: &LogName) -> bool {
    s.log_end(log).is_some_and(|end| f.verified(log) >= end)
}

/// The fork of a split brain, when this node is on its losing side (then it fetches and
/// replays nothing past the fork).
fn losing_fork(s: &Snapshot) -> Option<SplitBrain> {
    split_brain(s).filter(|sb| is_loser(s, sb))
}

fn fetch(s: &Snapshot, me: &Member, f: &Facts, loser: Option<&SplitBrain>, out: &mut Vec<Action>) {
    let running = f
        .fetch
        .as_ref()
        .is_some_and(|x| !x.done && x.failed.is_none());
    let from_seq = me.replay.as_ref().map_or(0, |r| r.log.seq);
    let want = s
        .logs
        .iter()
        .filter(|l| on_primary_branch(s, l))
        .filter(|l| loser.is_none() || me.replay.as_ref().is_some_and(|r| r.log == **l))
        .find(|l| l.seq >= from_seq && !complete(s, f, l));
    let low_space = f.free_space.is_some_and(|free| free < f.stop_fetch_below);
    if low_space && want.is_some() {
        out.push(Action::Report {
            msg: format!(
                "fetch stopped: only {} bytes free in the mars directory (level {}); free space there",
                f.free_space.unwrap_or(0),
                f.stop_fetch_below
            ),
        });
    }
    let (Some(log), true) = (want, me.switch(Switch::Connect) && !low_space) else {
        if running {
            out.push(Action::StopFetch);
        }
        return;
    };
    let peer = if log.creator != s.me && s.members.contains_key(&log.creator) {
        log.creator.clone()
    } else {
        match &s.primary {
            Some(p) if *p != s.me => p.clone(),
            _ => {
                out.push(Action::Report {
                    msg: format!("no member to fetch {log} from (its creator left the resource)"),
                });
                return;
            }
        }
    };
    match &f.fetch {
        Some(x) if x.log == *log && x.failed.is_none() => {} // running, or done: waits for the version link
        other => {
            if let Some(e) = other.as_ref().and_then(|x| x.failed.as_ref()) {
                out.push(Action::Report {
                    msg: format!("fetch interrupted ({e}); retrying"),
                });
            }
            if running {
                out.push(Action::StopFetch);
            }
            let from = f.local_logs.get(log).map_or(0, |l| l.len);
            out.push(Action::Fetch {
                log: log.clone(),
                peer,
                from,
            });
        }
    }
}

fn is_loser(s: &Snapshot, sb: &SplitBrain) -> bool {
    super::split::is_loser(s, sb, &s.me)
}

/// Where two logs share a sequence number, only the designated primary's continues the
/// history that secondaries follow.
fn on_primary_branch(s: &Snapshot, l: &LogName) -> bool {
    match s.primary.as_deref() {
        Some(p) if l.creator != p => !s.logs.iter().any(|o| o.seq == l.seq && o.creator == p),
        _ => true,
    }
}

fn replay(s: &Snapshot, me: &Member, f: &Facts, split: Option<&SplitBrain>, out: &mut Vec<Action>) {
    if me.syncstatus < s.size.unwrap_or(0) || !me.switch(Switch::AllowReplay) || f.replay_busy {
        return;
    }
    let Some(r) = &me.replay else {
        return;
    };
    if let Some(e) = &f.replay_failed {
        out.push(Action::Report {
            msg: format!("replay of {} stopped: {e}", r.log),
        });
        return;
    }
    if let Some(sb) = split.filter(|sb| r.log.seq >= sb.seq) {
        // Never past the fork: at most to where the common history ends.
        let to = f.verified(&r.log).min(sb.common_end);
        if r.log.seq == sb.seq && to > r.pos {
            out.push(Action::Replay {
                log: r.log.clone(),
                from: r.pos,
                to,
            });
        } else {
            out.push(Action::Report {
                msg: format!(
                    "{sb}; replay stops at the fork: run `marsadm invalidate {}` on each node whose data should be discarded",
                    s.res
                ),
            });
        }
        return;
    }
    let end = s.log_end(&r.log);
    let avail = f.verified(&r.log);
    let to = end.map_or(avail, |e| avail.min(e));
    if to > r.pos {
        out.push(Action::Replay {
            log: r.log.clone(),
            from: r.pos,
            to,
        });
        return;
    }
    if end != Some(r.pos) {
        return; // the log still grows (or its end is not known yet)
    }
    // At the end of a finished log: the version chain check, then the next log.
    let seq = r.log.seq;
    let Some(mine) = s.version(seq, &s.me) else {
        match prev_version(s, seq) {
            Some(prev) => out.push(Action::link(
                version_key(seq, &s.me),
                VersionLink::next(&prev, r.log.clone(), r.pos).to_string(),
            )),
            None => out.push(Action::Report {
                msg: format!(
                    "cannot check the version chain at {}: my version link of log {} is missing",
                    r.log,
                    seq - 1
                ),
            }),
        }
        return;
    };
    let theirs = s.version(seq, &r.log.creator);
    if theirs.is_some_and(|t| t.digest != mine.digest) {
        out.push(Action::Report {
            msg: format!(
                "split brain: my history at the end of {} differs from {}'s (version links differ); \
                 replay stops here",
                r.log, r.log.creator
            ),
        });
        return;
    }
    if let Some(sb) = split.filter(|sb| seq + 1 >= sb.seq) {
        out.push(Action::Report {
            msg: format!(
                "{sb}; replay stops at the fork: run `marsadm invalidate {}` on each node whose data should be discarded",
                s.res
            ),
        });
        return;
    }
    let next = s
        .logs
        .iter()
        .filter(|l| l.seq == seq + 1)
        .find(|l| on_primary_branch(s, l));
    if let Some(next) = next {
        let link = ReplayLink {
            log: next.clone(),
            pos: 0,
            len: 0,
        };
        out.push(Action::link(format!("replay-{}", s.me), link.to_string()));
    } else if let Some(later) = s.logs.iter().find(|l| l.seq > seq + 1) {
        // Normal for a round at most (the keys of one batch arrive one by one); for longer,
        // the next log was never announced and nothing here can fetch it.
        out.push(Action::Report {
            msg: format!(
                "replay waits at the end of {}: log {} is not announced in the metadata although {later} is; the node that wrote it must announce it (a marsd from before this was fixed could skip a log when it rotated twice within one round: restart that node with a fixed marsd); if it never comes, `marsadm invalidate {}` here makes a full sync",
                r.log,
                seq + 1,
                s.res
            ),
        });
    }
}
