//! The node status (`status` request, `marsadm view`, events, metrics): the replicated
//! metadata of each resource, what this node measured (rates, time lag: [`Tracker`]) and
//! which peers it reaches. [`Daemon::observe`] feeds the tracker once per round.

use super::Daemon;
use crate::progress::{distance, eta, Kind, Pos, Tracker};
use crate::runtime::ResourceRt;
use crate::view::{
    messages, MemoryStatus, MetaCounters, NodeStatus, PeerStatus, Progress, ProgressKind,
    ReplicaStatus, ResourceStatus,
};
use anyhow::Context;
use brick_core::{Brick, TimeSource};
use mars_strategy::strategy::{replica_state, split_brain, Facts, Running, Snapshot};
use mars_strategy::views::{LogName, ReplayLink};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The length of the finished log `seq` of the resource (the first one, in a split brain).
fn end_of(s: &Snapshot) -> impl Fn(u64) -> Option<u64> + '_ {
    |seq| {
        s.logs
            .iter()
            .filter(|l| l.seq == seq)
            .find_map(|l| s.log_end(l))
    }
}

fn pos(l: &ReplayLink) -> Pos {
    (l.log.seq, l.pos)
}

/// The running primary's position (its replay link is its log end).
fn primary_pos(s: &Snapshot) -> Option<Pos> {
    let p = s.primary.as_ref()?;
    s.members.get(p)?.replay.as_ref().map(pos)
}

/// Where this node's fetch got to: the newest log copied here from another node.
fn fetched(s: &Snapshot, f: &Facts) -> Option<Pos> {
    f.local_logs
        .iter()
        .rev()
        .find(|(l, _)| l.creator != s.me)
        .map(|(l, x)| (l.seq, x.len))
}

/// How often the metrics text is rendered (a scrape gets the last one).
const METRICS_EVERY: Duration = Duration::from_secs(1);

impl Daemon {
    /// Serve Prometheus metrics on `addr` (`marsd --metrics-listen`); returns the address.
    pub fn serve_metrics(&mut self, addr: &str) -> anyhow::Result<std::net::SocketAddr> {
        let published = crate::metrics::Published::default();
        let local = crate::metrics::serve(addr, published.clone())
            .with_context(|| format!("--metrics-listen {addr}"))?;
        let long_ago = Instant::now()
            .checked_sub(METRICS_EVERY)
            .unwrap_or_else(Instant::now);
        self.metrics = Some((published, long_ago));
        tracing::info!(%local, "serving Prometheus metrics at http://{local}/metrics");
        Ok(local)
    }

    /// After a round: the changes to the event subscribers, the metrics text when due.
    pub(super) fn publish_status(&mut self) {
        let metrics_due = self
            .metrics
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() >= METRICS_EVERY);
        if self.subscribers.is_empty() && !metrics_due {
            return;
        }
        let st = self.status(None, false);
        if metrics_due {
            let input = crate::metrics::Input {
                exports: self
                    .rts
                    .iter()
                    .filter_map(|(r, rt)| Some((r.clone(), rt.primary()?.logger().stats())))
                    .collect(),
                logs: st
                    .resources
                    .iter()
                    .map(|r| {
                        let totals = match self.rts.get_mut(&r.name) {
                            Some(rt) => rt.log_totals(),
                            None => super::local_logs(&self.opts.dir, &r.name),
                        };
                        (r.name.clone(), totals)
                    })
                    .collect(),
                space: super::migrate::space_of(&self.opts.dir),
                bytes: self.tracker.totals(),
                status: st.clone(),
            };
            if let Some((published, at)) = &mut self.metrics {
                *published.lock() = Arc::new(crate::metrics::render(&input));
                *at = Instant::now();
            }
        }
        if !self.subscribers.is_empty() {
            self.subscribers.publish(st);
        }
    }

    /// One round's samples of resource `s.res`: every member's sync and replay position and
    /// the primary's log end from the metadata; this node's own sync, fetch and replay from
    /// its workers (finer than what it publishes).
    pub(super) fn observe(&mut self, s: &Snapshot, f: &Facts, now: u64) {
        let ends = end_of(s);
        let t = &mut self.tracker;
        for (h, m) in &s.members {
            let mut sync = m.syncstatus;
            if *h == s.me {
                sync = f.sync.as_ref().map_or(sync, |x| x.pos.max(sync));
            }
            t.series(&s.res, h, Kind::Sync)
                .push(now, (0, sync), |_| None);
            let Some(r) = &m.replay else { continue };
            if s.primary.as_deref() == Some(h.as_str()) && m.led("is-primary") {
                t.series(&s.res, h, Kind::Write).push(now, pos(r), &ends);
                t.history(&s.res).push(now, pos(r));
            } else {
                t.series(&s.res, h, Kind::Replay).push(now, pos(r), &ends);
            }
        }
        if f.running == Running::Secondary {
            if let Some(p) = fetched(s, f) {
                t.series(&s.res, &s.me, Kind::Fetch).push(now, p, &ends);
            }
        }
    }

    /// The status of this node's resources (`only`: that one; `all`: every resource of the
    /// cluster, also those without a replica here).
    pub(super) fn status(&self, only: Option<&str>, all: bool) -> NodeStatus {
        let me = self.me();
        let store = self.runner.node().store();
        let now = brick_core::SystemTimeSource.now_ns();
        let peers: Vec<PeerStatus> = store
            .list("ips/ip-")
            .into_iter()
            .filter(|(k, _)| k["ips/ip-".len()..] != *me)
            .map(|(k, v)| {
                let name = k["ips/ip-".len()..].to_string();
                let connected = self.runner.net().connected(&name);
                PeerStatus {
                    unreachable_s: (!connected).then(|| {
                        let since = self.peer_down.get(&name).copied().unwrap_or(self.started);
                        now.saturating_sub(since) / 1_000_000_000
                    }),
                    connected,
                    name,
                    addr: v.to_string(),
                }
            })
            .collect();
        let mut names = store.resources();
        if all {
            // Every resource's name is global (`resources/<r>`); its other keys reach only
            // its members.
            names.extend(
                store
                    .list("resources/")
                    .into_iter()
                    .map(|(k, _)| std::sync::Arc::from(&k["resources/".len()..])),
            );
        }
        if let Some(o) = only.filter(|o| store.get(&format!("resources/{o}")).is_some()) {
            names.push(std::sync::Arc::from(o));
        }
        names.sort();
        names.dedup();
        let mut resources = Vec::new();
        for r in names {
            if only.is_some_and(|o| o != &*r) {
                continue;
            }
            let s = Snapshot::from_store(store, &r, &me);
            if s.mine().is_none() && only.is_none() && !all {
                continue;
            }
            let mut st = resource_status(&s, self.rts.get(&*r), &self.tracker, now);
            st.migration = store.get(&format!("migrations/{r}")).map(str::to_string);
            st.migration_error = store
                .get(&format!("migrations-error/{r}"))
                .map(str::to_string);
            resources.push(st);
        }
        let mut status = NodeStatus {
            node: me,
            cluster: self.runner.node().cluster().map(|u| u.to_string()),
            listen: self.runner.local_addr().to_string(),
            peers,
            resources,
            merge: self.merge.clone(),
            meta: MetaCounters {
                rounds: self.runner.ticks(),
                sent: self.runner.net().sent,
                sent_bytes: self.runner.net().sent_bytes,
                handled: self.runner.node().stats().handled.values().sum(),
            },
            time_ms: now / 1_000_000,
            memory: node_memory(&self.budget),
        };
        messages::annotate(&mut status);
        status
    }
}

/// The progress lines of member `h`: sync while incomplete, fetch (this node) and replay
/// while behind the primary or moving.
fn progress(s: &Snapshot, h: &str, t: &Tracker, now: u64) -> Vec<Progress> {
    let mut out = Vec::new();
    let Some(m) = s.members.get(h) else {
        return out;
    };
    let size = s.size.unwrap_or(0);
    let ends = end_of(s);
    let rate = |k| t.get(&s.res, h, k).map_or(0, |x| x.rate());
    let sync = t
        .get(&s.res, h, Kind::Sync)
        .and_then(|x| x.last())
        .map_or(m.syncstatus, |p| p.1.max(m.syncstatus));
    if sync < size {
        let r = rate(Kind::Sync);
        out.push(Progress {
            kind: ProgressKind::Sync,
            done: sync,
            total: size,
            log: None,
            rate: r,
            eta_s: eta(size - sync, r as i128),
            lag_bytes: None,
            lag_s: None,
            lag_s_lower_bound: false,
        });
    }
    let is_primary = s.primary.as_deref() == Some(h) && m.led("is-primary");
    let (Some(target), false) = (primary_pos(s), is_primary) else {
        return out;
    };
    let write_rate = s
        .primary
        .as_deref()
        .and_then(|p| t.get(&s.res, p, Kind::Write))
        .map_or(0, |x| x.rate()) as i128;
    let fetch = (h == s.me)
        .then(|| t.get(&s.res, h, Kind::Fetch).and_then(|x| x.last()))
        .flatten();
    let mut line = |kind, at: Pos, upto: Pos, k| {
        let lag = distance(at, target, &ends);
        let r = rate(k);
        if lag == Some(0) && r == 0 {
            return;
        }
        let log_len = ends(at.0).unwrap_or(if upto.0 == at.0 { upto.1 } else { at.1 });
        let tl = t.lag(&s.res, now, at);
        out.push(Progress {
            kind,
            done: at.1,
            total: log_len.max(at.1),
            log: s
                .logs
                .iter()
                .find(|l| l.seq == at.0)
                .map(LogName::to_string),
            rate: r,
            eta_s: lag.and_then(|b| eta(b, r as i128 - write_rate)),
            lag_bytes: lag,
            lag_s: tl.map(|x| x.secs),
            lag_s_lower_bound: tl.is_some_and(|x| x.lower_bound),
        });
    };
    if let Some(f) = fetch {
        line(ProgressKind::Fetch, f, target, Kind::Fetch);
    }
    if let Some(r) = &m.replay {
        line(
            ProgressKind::Replay,
            pos(r),
            fetch.unwrap_or(target),
            Kind::Replay,
        );
    }
    out
}

pub(super) fn resource_status(
    s: &Snapshot,
    rt: Option<&ResourceRt>,
    t: &Tracker,
    now: u64,
) -> ResourceStatus {
    let target = primary_pos(s);
    let mut hosts: Vec<&String> = s.members.keys().collect();
    hosts.sort_by_key(|h| (**h != s.me, (*h).clone()));
    let replicas = hosts
        .into_iter()
        .map(|h| {
            let m = &s.members[h];
            let st = replica_state(s, h);
            ReplicaStatus {
                host: h.clone(),
                disk: st.disk,
                repl: st.repl,
                flags: st.flags,
                role: st.role,
                replay: m.replay.as_ref().map(|r| r.to_string()),
                syncstatus: m.syncstatus.min(s.size.unwrap_or(0)),
                lag: match (&m.replay, target) {
                    (Some(r), Some(p)) => distance(pos(r), p, end_of(s)),
                    _ => None,
                },
                clients: m.count("open-count"),
                msg: m.actual.get("msg").filter(|v| *v != "OK").cloned(),
                consistent: st.consistent,
                up_to_date: st.up_to_date,
                progress: progress(s, h, t, now),
                messages: Vec::new(),
                checksums: checksum_view(m, h == &s.me, rt, verify_record(s), h, now),
            }
        })
        .collect();
    // The running primary of this node, if it is one.
    let primary = rt.and_then(|rt| rt.primary());
    ResourceStatus {
        name: s.res.clone(),
        size: s.size.unwrap_or(0),
        primary: s.primary.clone(),
        replicas,
        logs: s.logs.iter().map(LogName::to_string).collect(),
        split_brain: split_brain(s).map(|sb| sb.to_string()),
        migration: None,
        migration_error: None,
        nbd_socket: primary.map(|p| p.nbd_socket().display().to_string()),
        logger: primary.map(|p| p.logger().status().mode),
        memory: primary.map(|p| share_memory(&p.logger().budget())),
    }
}

/// A resource's share of the node's memory budget.
fn share_memory(b: &brick_core::MemBudget) -> MemoryStatus {
    MemoryStatus {
        used: b.used(),
        peak: b.peak(),
        limit: b.limit(),
        floor: b.floor(),
        waits: b.waits(),
    }
}

/// The node's memory budget.
fn node_memory(b: &brick_core::NodeBudget) -> MemoryStatus {
    let c = b.counts();
    MemoryStatus {
        used: c.used,
        peak: b.peak(),
        limit: c.limit,
        floor: c.floors,
        waits: b.waits(),
    }
}

/// What `view` shows of replica `m`'s checksums: its published keys, and on this node the
/// running scrub's live progress and the damaged blocks it found.
fn checksum_view(
    m: &mars_strategy::strategy::Member,
    mine: bool,
    rt: Option<&ResourceRt>,
    verify: Option<&str>,
    host: &str,
    now_ns: u64,
) -> crate::view::ChecksumView {
    let now = now_ns / 1_000_000_000;
    let key = |k: &str| m.actual.get(k).map(String::as_str);
    let mut v = crate::view::ChecksumView::from_keys(
        key("scrub"),
        key("scrub-progress"),
        key("csum-errors"),
        now,
    );
    v.last_verify = verify.and_then(|r| crate::view::VerifyRecord::parse(r, host, now));
    if let (true, Some(rt)) = (mine, rt) {
        let local = rt.scrub_progress();
        v.scrubbing = local.as_ref().map(|p| (p.pos, p.size, p.rate));
        if let Some(p) = local.or_else(|| rt.last_scrub().cloned()) {
            v.damaged_blocks = p.damaged;
        }
    }
    v
}

/// The primary's record of the last verify (`actual-<primary>/verify`).
fn verify_record(s: &Snapshot) -> Option<&str> {
    let p = s.primary.as_ref()?;
    s.members.get(p)?.actual.get("verify").map(String::as_str)
}
