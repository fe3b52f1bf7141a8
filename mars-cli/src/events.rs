//! `marsadm events`: state changes as they happen (like `drbdsetup events2`). The daemon
//! diffs its status once per round ([`diff`], pure) and hands the changes to its
//! subscribers ([`Subscribers`]): bounded queues, so that a slow or dead subscriber never
//! blocks the owner loop (it is dropped, with the reason logged and sent as its last event).

use crate::view::{NodeStatus, ProgressKind, ReplicaStatus, ResourceStatus};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};

/// Events a subscriber may have queued before it is dropped.
pub const QUEUE: usize = 1024;

/// Whether an event reports the state found at subscription or a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventType {
    /// The state when the subscription started (`old` is null).
    Exists,
    /// A change seen in a round.
    Change,
    /// The daemon drops this subscriber (`new` says why); nothing follows.
    Dropped,
}

/// One change, one line of `marsadm events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When the daemon saw it (Unix time, ms).
    pub time_ms: u64,
    /// `exists`, `change` or `dropped`.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The node that reports it (the marsd subscribed to).
    pub node: String,
    /// The resource (null for cluster-wide events: peer connections).
    pub resource: Option<String>,
    /// The node the event is about (a replica's host, a peer).
    pub host: Option<String>,
    /// What changed: `role`, `disk`, `repl`, `primary`, `split-brain`, `emergency`,
    /// `connection`, `member`, `up-to-date`, `sync`, `message`, `migration`.
    pub what: String,
    /// The value before (null: none, or at subscription).
    pub old: Option<String>,
    /// The value now (null: gone).
    pub new: Option<String>,
}

/// A flat list of (resource, host, what) → value of everything events report.
type Facts = Vec<((Option<String>, Option<String>, &'static str), String)>;

/// Sync milestones reported: every quarter.
fn sync_milestone(r: &ResourceStatus, m: &ReplicaStatus) -> Option<String> {
    let p = m.progress.iter().find(|p| p.kind == ProgressKind::Sync);
    let done = p.map_or(m.syncstatus, |p| p.done);
    let pct = (done.min(r.size) * 100).checked_div(r.size).unwrap_or(100);
    Some(format!("{}%", pct / 25 * 25))
}

fn facts(s: &NodeStatus) -> Facts {
    let mut out: Facts = Vec::new();
    for p in &s.peers {
        let v = if p.connected {
            "connected"
        } else {
            "unreachable"
        };
        out.push(((None, Some(p.name.clone()), "connection"), v.into()));
    }
    for r in &s.resources {
        let res = Some(r.name.clone());
        let mut push = |host: Option<&str>, what, v: String| {
            out.push(((res.clone(), host.map(str::to_string), what), v));
        };
        push(
            None,
            "primary",
            r.primary.clone().unwrap_or("(none)".into()),
        );
        if let Some(sb) = &r.split_brain {
            push(None, "split-brain", sb.clone());
        }
        if let Some(m) = &r.migration {
            push(None, "migration", m.clone());
        }
        for m in &r.replicas {
            let h = Some(m.host.as_str());
            push(h, "member", "joined".into());
            push(h, "role", m.role.clone());
            push(h, "disk", m.disk.clone());
            push(h, "repl", m.repl.clone());
            push(h, "up-to-date", m.up_to_date.to_string());
            if m.disk == "EmergencyMode" {
                push(h, "emergency", "on".into());
            }
            if let Some(v) = sync_milestone(r, m) {
                push(h, "sync", v);
            }
            for msg in &m.messages {
                push(h, "message", format!("{:?}: {}", msg.level, msg.text));
            }
        }
    }
    out
}

/// The changes from `old` to `new` (`old` = the default status: everything `exists`).
pub fn diff(old: &NodeStatus, new: &NodeStatus, kind: EventType) -> Vec<Event> {
    let (before, after) = (facts(old), facts(new));
    let ev = |(res, host, what): &(Option<String>, Option<String>, &str), o, n| Event {
        time_ms: new.time_ms,
        kind,
        node: new.node.clone(),
        resource: res.clone(),
        host: host.clone(),
        what: what.to_string(),
        old: o,
        new: n,
    };
    let mut out = Vec::new();
    // Messages are a set per replica: each one appears and goes on its own.
    let multi = |k: &(Option<String>, Option<String>, &str)| k.2 == "message";
    for (k, v) in &before {
        let gone = if multi(k) {
            !after.iter().any(|(k2, v2)| k2 == k && v2 == v)
        } else {
            !after.iter().any(|(k2, _)| k2 == k)
        };
        if gone {
            out.push(ev(k, Some(v.clone()), None));
        }
    }
    for (k, v) in &after {
        if multi(k) {
            if !before.iter().any(|(k2, v2)| k2 == k && v2 == v) {
                out.push(ev(k, None, Some(v.clone())));
            }
            continue;
        }
        match before.iter().find(|(k2, _)| k2 == k) {
            Some((_, o)) if o == v => {}
            o => out.push(ev(k, o.map(|(_, o)| o.clone()), Some(v.clone()))),
        }
    }
    out
}

/// One subscriber: its queue and the resource it follows (all when `None`).
struct Subscriber {
    res: Option<String>,
    tx: Sender<Event>,
}

/// The daemon's subscribers and the status they were last told about.
#[derive(Default)]
pub struct Subscribers {
    subs: Vec<Subscriber>,
    last: Option<NodeStatus>,
}

impl Subscribers {
    /// Whether anyone listens (the daemon builds a status per round only then).
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// A new subscriber: it gets the current state as `exists` events first.
    pub fn subscribe(&mut self, res: Option<String>, now: &NodeStatus) -> Receiver<Event> {
        // One slot more than QUEUE: the `dropped` event always fits.
        let (tx, rx) = crossbeam_channel::bounded(QUEUE + 1);
        let sub = Subscriber { res, tx };
        let initial = diff(&NodeStatus::default(), now, EventType::Exists);
        if deliver(&sub, &initial, now) {
            self.subs.push(sub);
        }
        if self.last.is_none() {
            self.last = Some(now.clone());
        }
        rx
    }

    /// A new round's status: its changes go to every subscriber; those that cannot take
    /// them are dropped.
    pub fn publish(&mut self, now: NodeStatus) {
        if let Some(last) = &self.last {
            let events = diff(last, &now, EventType::Change);
            if !events.is_empty() {
                self.subs.retain(|s| deliver(s, &events, &now));
            }
        }
        self.last = if self.subs.is_empty() {
            None
        } else {
            Some(now)
        };
    }
}

/// Queue `events` (those of the subscriber's resource) without blocking; `false` when the
/// subscriber is gone or too slow (then its last event says so).
fn deliver(s: &Subscriber, events: &[Event], now: &NodeStatus) -> bool {
    for e in events {
        if s.res.is_some() && e.resource.is_some() && e.resource != s.res {
            continue;
        }
        if s.tx.len() >= QUEUE {
            let why =
                format!("subscriber too slow: {QUEUE} events queued and not read; subscribe again");
            tracing::warn!("events: dropping a subscriber: {why}");
            let _ = s.tx.try_send(Event {
                time_ms: now.time_ms,
                kind: EventType::Dropped,
                node: now.node.clone(),
                resource: None,
                host: None,
                what: "subscription".into(),
                old: None,
                new: Some(why),
            });
            return false;
        }
        match s.tx.try_send(e.clone()) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => {
                tracing::info!("events: a subscriber left");
                return false;
            }
            Err(TrySendError::Full(_)) => unreachable!("checked above: only the daemon sends"),
        }
    }
    true
}

/// `2026-12-07T09:30:00.123Z` for a Unix time in ms (UTC; civil date from days, after
/// Howard Hinnant's `civil_from_days`).
pub fn timestamp(ms: u64) -> String {
    let (secs, ms) = (ms / 1000, ms % 1000);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// One line of `marsadm events` for people.
pub fn text(e: &Event) -> String {
    let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    format!(
        "{} {} {} {} {} {} {} -> {}",
        timestamp(e.time_ms),
        serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        e.node,
        or(&e.resource),
        or(&e.host),
        e.what,
        or(&e.old),
        or(&e.new)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::PeerStatus;

    fn status(role: &str, connected: bool) -> NodeStatus {
        NodeStatus {
            node: "bob".into(),
            time_ms: 1_765_099_800_123,
            peers: vec![PeerStatus {
                name: "alice".into(),
                connected,
                ..PeerStatus::default()
            }],
            resources: vec![ResourceStatus {
                name: "r0".into(),
                size: 100,
                primary: Some("alice".into()),
                replicas: vec![ReplicaStatus {
                    host: "bob".into(),
                    role: role.into(),
                    syncstatus: 100,
                    ..ReplicaStatus::default()
                }],
                ..ResourceStatus::default()
            }],
            ..NodeStatus::default()
        }
    }

    #[test]
    fn a_role_change_and_a_lost_peer_are_one_event_each() {
        let (a, b) = (status("Secondary", true), status("Primary", false));
        let ev = diff(&a, &b, EventType::Change);
        let got: Vec<String> = ev.iter().map(text).collect();
        assert_eq!(
            got,
            [
                "2025-12-07T09:30:00.123Z change bob - alice connection connected -> unreachable",
                "2025-12-07T09:30:00.123Z change bob r0 bob role Secondary -> Primary",
            ]
        );
        assert!(diff(&b, &b, EventType::Change).is_empty());
        let all = diff(&NodeStatus::default(), &a, EventType::Exists);
        assert!(all
            .iter()
            .all(|e| e.old.is_none() && e.kind == EventType::Exists));
        assert!(all
            .iter()
            .any(|e| e.what == "sync" && e.new.as_deref() == Some("100%")));
    }

    #[test]
    fn a_subscriber_that_does_not_read_is_dropped_with_the_reason_and_never_blocks() {
        let mut subs = Subscribers::default();
        let a = status("Secondary", true);
        let rx = subs.subscribe(None, &a);
        let mut flip = false;
        for _ in 0..QUEUE {
            flip = !flip;
            subs.publish(status(if flip { "Primary" } else { "Secondary" }, true));
        }
        assert!(subs.is_empty(), "the slow subscriber is still there");
        let last = rx.try_iter().last().unwrap();
        assert_eq!(last.kind, EventType::Dropped);
        assert!(last.new.unwrap().contains("too slow"));
        // A subscriber that went away is dropped at the next change.
        let rx = subs.subscribe(None, &a);
        drop(rx);
        subs.publish(status("Primary", true));
        assert!(subs.is_empty());
    }
}
