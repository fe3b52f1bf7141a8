//! `migrate-resource`: the request (checks, then the shared record `migrations/<res>`), and
//! each node's part of it, executed every round from [`migrate_step`]'s decision. Also the
//! free space each node publishes (`actual-<node>/rest-space`), which the request checks.

use super::Daemon;
use crate::control::{Request, Response};
use mars_strategy::strategy::{migrate_step, MigrateStep, Migration, Snapshot};
use std::time::{Duration, Instant};

/// A failed join of a migration target is tried again after this long.
const JOIN_RETRY: Duration = Duration::from_secs(5);
/// Free space is published at most this often (and only when it changed by 1% or more).
const SPACE_EVERY: Duration = Duration::from_secs(5);

/// Free and total bytes of the file system holding `dir`.
pub(super) fn space_of(dir: &std::path::Path) -> Option<(u64, u64)> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some((
        st.f_bavail.saturating_mul(st.f_frsize),
        st.f_blocks.saturating_mul(st.f_frsize),
    ))
}

/// A level: `defaults/<key>` in bytes if set, else `percent` of the file system, at most `cap`
/// (so that the same binary suits a 64 MiB test file system and a 4 TB /mars).
fn level(store: &mars_strategy::MetaStore, key: &str, total: u64, percent: u64, cap: u64) -> u64 {
    store
        .get(&format!("defaults/{key}"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| (total / 100 * percent).min(cap))
}

impl Daemon {
    /// Free space and the emergency levels for this round.
    pub(super) fn space(&self) -> crate::runtime::Space {
        let (free, total) = space_of(&self.opts.dir).unzip();
        let total = total.unwrap_or(0);
        let store = self.runner.node().store();
        crate::runtime::Space {
            free,
            delete_logs_below: level(store, "delete-logs-free", total, 8, 8 << 30),
            stop_fetch_below: level(store, "stop-fetch-free", total, 6, 4 << 30),
            emergency_below: level(store, "emergency-free", total, 4, 2 << 30),
        }
    }

    /// Publish this node's free space in its mars directory (global: a migration source
    /// checks a target's space before anything starts).
    pub(super) fn publish_space(&mut self) {
        if self.space_at.is_some_and(|t| t.elapsed() < SPACE_EVERY)
            || self.runner.node().cluster().is_none()
        {
            return;
        }
        self.space_at = Some(Instant::now());
        self.publish_device_sizes();
        let Some(free) = space_of(&self.opts.dir).map(|(free, _)| free) else {
            return;
        };
        let key = format!("actual-{}/rest-space", self.opts.node);
        let old: Option<u64> = self
            .runner
            .node()
            .store()
            .get(&key)
            .and_then(|v| v.parse().ok());
        if old.is_none_or(|o| o.abs_diff(free) > o / 100) {
            self.write(&key, Some(&free.to_string()));
        }
    }

    /// `actsize-<me>` of every resource here: the size of its data device now (an operator
    /// may grow it before `resize`).
    fn publish_device_sizes(&mut self) {
        let me = self.opts.node.clone();
        let store = self.runner.node().store();
        let mut writes = Vec::new();
        for r in store.resources() {
            let Some(dev) = store.get(&format!("resource-{r}/data-{me}")) else {
                continue;
            };
            let Ok(size) = super::device_size(std::path::Path::new(dev)) else {
                continue;
            };
            let key = format!("resource-{r}/actsize-{me}");
            if store.get(&key) != Some(size.to_string().as_str()) {
                writes.push((key, size.to_string()));
            }
        }
        for (k, v) in writes {
            self.write(&k, Some(&v));
        }
    }

    /// `resize`: on the primary, grow online; never beyond the smallest member device.
    pub(super) fn resize(&mut self, res: &str, size: Option<u64>) -> Result<Response, Response> {
        let me = self.me();
        let s = self.member(res)?;
        let old = s.size.unwrap_or(0);
        let Some(p) = self.rts.get(res).and_then(|rt| rt.primary()) else {
            return Err(Response::refused(format!(
                "{me} is not the running primary of {res} (the primary is {}): run resize there",
                s.primary.as_deref().unwrap_or("(none)")
            )));
        };
        let _ = p;
        self.publish_device_sizes();
        let s = self.snapshot(res);
        let smallest = s
            .members
            .iter()
            .filter(|(h, _)| **h != me)
            .map(|(h, m)| (m.actsize.unwrap_or(0), h.clone()))
            .min();
        let new = match (size, &smallest) {
            (Some(n), _) => n,
            (None, Some((n, _))) => *n,
            (None, None) => {
                return Err(Response::refused(format!(
                    "give the new size: `marsadm resize {res} SIZE`"
                )))
            }
        };
        if new <= old {
            return Err(Response::refused(format!(
                "{res} has {old} bytes; resize only grows (asked for {new})"
            )));
        }
        if let Some((n, h)) = smallest.filter(|(n, _)| *n < new) {
            return Err(Response::refused(format!(
                "{new} bytes is more than the device of member {h} holds ({n} bytes): grow that device first (then actsize-{h} follows), or resize to at most {n}"
            )));
        }
        let grown = self
            .rts
            .get(res)
            .and_then(|rt| rt.primary())
            .map(|p| p.grow(new));
        if let Some(Err(e)) = grown {
            return Err(Response::failed(format!(
                "growing the primary's device to {new} bytes: {e}"
            )));
        }
        self.write(
            &format!("resource-{res}/syncstatus-{me}"),
            Some(&new.to_string()),
        );
        self.write(&format!("resource-{res}/size"), Some(&new.to_string()));
        self.write(&format!("sizes/{res}"), Some(&new.to_string()));
        Ok(Response::ok(format!(
            "{res} grown from {old} to {new} bytes; the secondaries sync the new {} bytes (NBD clients see the new size when they reconnect)",
            new - old
        )))
    }

    /// `migrate-resource`: check, then record it; the nodes do the rest.
    pub(super) fn migrate_request(
        &mut self,
        res: &str,
        to: &str,
        from: Option<String>,
        dev: Option<String>,
    ) -> Result<Response, Response> {
        let s = self.known(res)?;
        let store = self.runner.node().store();
        if store.get(&format!("ips/ip-{to}")).is_none() {
            return Err(Response::refused(format!(
                "no node {to} in this cluster (`marsadm view` and `lowlevel-ls ips/` list them)"
            )));
        }
        // A migration under way continues (running the command again after an interruption
        // follows it, whatever the primary is by now).
        let key = format!("migrations/{res}");
        if let Some(v) = store.get(&key) {
            let m = Migration::parse(v);
            if let Some(m) = m.filter(|m| m.to == to && from.as_ref().is_none_or(|f| *f == m.from))
            {
                return Ok(Response::ok(format!(
                    "migration of {res} from {} to {to} is under way: continuing",
                    m.from
                )));
            }
            return Err(Response::refused(format!(
                "another migration of {res} is under way ({v}): wait for it to end"
            )));
        }
        if from.is_none() && s.primary.as_deref() == Some(to) && s.members.contains_key(to) {
            return Ok(Response::ok(format!(
                "{res} is already primary on {to}: nothing to migrate (give --from NODE to move another replica away)"
            )));
        }
        let from = match from.or_else(|| s.primary.clone()) {
            Some(f) => f,
            None => {
                return Err(Response::refused(format!(
                    "{res} has no primary: give --from NODE"
                )))
            }
        };
        if from == to {
            return Err(Response::refused(format!("--to and --from are both {to}")));
        }
        if s.members.contains_key(to) && !s.members.contains_key(&from) {
            return Ok(Response::ok(format!(
                "{res} is already on {to} and no longer on {from}: nothing to do"
            )));
        }
        if !s.members.contains_key(&from) {
            return Err(Response::refused(format!(
                "{from} holds no replica of {res} (--from)"
            )));
        }
        let size = s.size.unwrap_or(0);
        if dev.is_none() && !s.members.contains_key(to) {
            let free: Option<u64> = store
                .get(&format!("actual-{to}/rest-space"))
                .and_then(|v| v.parse().ok());
            match free {
                None => return Err(Response::refused(format!("the free space of {to} is not known yet (is its marsd running?); retry in a few seconds, or give --dev PATH of a device on {to}"))),
                Some(f) if f < size => return Err(Response::refused(format!(
                    "{to} has {f} bytes free in its mars directory, {res} needs {size}: free space there, or give --dev PATH of a device on {to}"
                ))),
                Some(_) => {}
            }
        }
        let m = Migration {
            to: to.to_string(),
            from: from.clone(),
            dev,
        };
        self.write(&key, Some(&m.to_string()));
        self.write(&format!("migrations-error/{res}"), None);
        Ok(Response::ok(format!(
            "migrating {res} from {from} to {to}: join, sync, {}leave",
            if s.primary.as_deref() == Some(from.as_str()) {
                "handover, "
            } else {
                ""
            }
        )))
    }

    /// This node's part of every migration under way.
    pub(super) fn migrate_round(&mut self) {
        let me = self.me();
        let records: Vec<(String, String)> = self
            .runner
            .node()
            .store()
            .list("migrations/")
            .into_iter()
            .map(|(k, v)| (k["migrations/".len()..].to_string(), v.to_string()))
            .collect();
        for (res, v) in records {
            let Some(m) = Migration::parse(&v) else {
                continue;
            };
            if m.to != me && m.from != me {
                continue;
            }
            let s = Snapshot::from_store(self.runner.node().store(), &res, &me);
            let detached = self.rts.get(&res).is_none_or(|rt| rt.is_idle());
            match migrate_step(&s, &m, detached) {
                MigrateStep::Wait(_) => {}
                MigrateStep::Join(dev) => self.migrate_join(&res, &s, dev),
                MigrateStep::TakeOver => {
                    tracing::info!(%res, "migration: taking over from {}", m.from);
                    self.write(&format!("resource-{res}/primary"), Some(&me));
                }
                MigrateStep::Down => {
                    tracing::info!(%res, "migration: {} took over; stopping here", m.to);
                    let r = self.command(Request::Switch {
                        res: res.clone(),
                        switch: "all".into(),
                        on: false,
                    });
                    tracing::debug!("{}", r.message);
                }
                MigrateStep::Leave => {
                    tracing::info!(%res, "migration: leaving");
                    self.forget_member(&res, &s);
                }
                MigrateStep::Done => {
                    tracing::info!(%res, "migration from {} to {me} complete", m.from);
                    self.write(&format!("migrations/{res}"), None);
                    self.write(&format!("migrations-error/{res}"), None);
                }
            }
        }
    }

    fn migrate_join(&mut self, res: &str, s: &Snapshot, dev: Option<String>) {
        if self
            .join_tried
            .get(res)
            .is_some_and(|t| t.elapsed() < JOIN_RETRY)
        {
            return;
        }
        self.join_tried.insert(res.to_string(), Instant::now());
        let dev = match dev {
            Some(d) => d,
            None => {
                let size: u64 = self
                    .runner
                    .node()
                    .store()
                    .get(&format!("sizes/{res}"))
                    .and_then(|v| v.parse().ok())
                    .or(s.size)
                    .unwrap_or(0);
                let path = self.opts.dir.join("data").join(format!("{res}.img"));
                let made = std::fs::create_dir_all(self.opts.dir.join("data"))
                    .and_then(|()| {
                        std::fs::OpenOptions::new()
                            .create(true)
                            .truncate(false)
                            .write(true)
                            .open(&path)
                    })
                    .and_then(|f| {
                        if f.metadata()?.len() < size {
                            f.set_len(size)
                        } else {
                            Ok(())
                        }
                    });
                if let Err(e) = made {
                    self.write(
                        &format!("migrations-error/{res}"),
                        Some(&format!(
                            "{}: cannot create {}: {e}",
                            self.opts.node,
                            path.display()
                        )),
                    );
                    return;
                }
                path.display().to_string()
            }
        };
        let r = self.command(Request::JoinResource {
            res: res.to_string(),
            dev,
        });
        if r.status == crate::control::Outcome::Ok {
            tracing::info!(%res, "migration: {}", r.message);
            self.write(&format!("migrations-error/{res}"), None);
        } else {
            tracing::warn!(%res, "migration: join refused: {}", r.message);
            self.write(
                &format!("migrations-error/{res}"),
                Some(&format!("{}: {}", self.opts.node, r.message)),
            );
        }
    }
}
