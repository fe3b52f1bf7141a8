//! [`Snapshot`]: the typed metadata of one resource, as one node sees it.

use crate::error::Result;
use crate::store::MetaStore;
use crate::views::{parse_flag, parse_u64, LogName, ReplayLink, Switch, VersionLink};
use std::collections::{BTreeMap, BTreeSet};

/// What the metadata says about one member (`<h>`) of the resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    /// `data-<h>`: its backing device.
    pub data: String,
    /// `replay-<h>`.
    pub replay: Option<ReplayLink>,
    /// Lamport stamp (ns) of `replay-<h>`.
    pub replay_stamp: u64,
    /// `syncstatus-<h>`: bytes synced.
    pub syncstatus: u64,
    /// `syncpos-<h>`: the primary's position when its full sync ended.
    pub syncpos: Option<ReplayLink>,
    /// `actsize-<h>`: the size of its device.
    pub actsize: Option<u64>,
    /// `todo-<h>/<switch>`, absent switches read as on.
    pub todo: BTreeMap<&'static str, bool>,
    /// `actual-<h>/<led>` (raw values).
    pub actual: BTreeMap<String, String>,
}

impl Member {
    /// A todo switch (absent: on, as after create/join).
    pub fn switch(&self, s: Switch) -> bool {
        self.todo.get(s.name()).copied().unwrap_or(true)
    }

    /// An actual LED as a flag (absent or malformed: off).
    pub fn led(&self, name: &str) -> bool {
        self.actual.get(name).is_some_and(|v| v == "1")
    }

    /// An actual value as a number (absent or malformed: 0).
    pub fn count(&self, name: &str) -> u64 {
        self.actual
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// The metadata of one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// This node.
    pub me: String,
    /// The resource.
    pub res: String,
    /// `size` (bytes).
    pub size: Option<u64>,
    /// The designated primary (`primary`; `(none)` reads as `None`).
    pub primary: Option<String>,
    /// Members by name (`data-<h>` live).
    pub members: BTreeMap<String, Member>,
    /// `log-<seq>-<h>` keys.
    pub logs: BTreeSet<LogName>,
    /// `version-<seq>-<h>` links by (seq, host).
    pub versions: BTreeMap<(u64, String), VersionLink>,
    /// Raw values of the version links (the chain hashes the whole previous value).
    pub version_values: BTreeMap<(u64, String), String>,
    /// `logdelete-below`: `marsadm log-delete` asked to delete the logs below this sequence
    /// number (each node still keeps what a member needs).
    pub log_delete_below: Option<u64>,
    /// `emergency-hole` = `log-<seq>-<h>,<pos>`: the primary ran out of log space there; the
    /// log lacks what was written after it, so a replica at or before it cannot go on
    /// (Orphan) until `invalidate` syncs it afresh.
    pub emergency_hole: Option<ReplayLink>,
    /// `emergency-limit`: most bytes of log this resource may keep on its primary; above it
    /// the primary enters emergency mode as if the disk were full (a per-resource limit).
    pub emergency_limit: Option<u64>,
    /// `forced-primary`: the node made primary by `primary --force` (it starts without waiting
    /// for the old primary and its logs).
    pub forced_primary: Option<String>,
    /// Keys whose value could not be parsed (reported, otherwise ignored).
    pub malformed: Vec<String>,
}

impl Snapshot {
    /// Read resource `res` from a store, as node `me`.
    pub fn from_store(store: &MetaStore, res: &str, me: &str) -> Snapshot {
        let prefix = format!("resource-{res}/");
        let mut stamps = BTreeMap::new();
        let pairs: Vec<(String, String)> = store
            .list(&prefix)
            .into_iter()
            .map(|(k, v)| {
                let rel = k[prefix.len()..].to_string();
                if rel.starts_with("replay-") {
                    if let Some(e) = store.entry(&k) {
                        stamps.insert(rel.clone(), e.stamp.0);
                    }
                }
                (rel, v.to_string())
            })
            .collect();
        let mut s = Snapshot::from_pairs(me, res, pairs.iter().map(|(k, v)| (&**k, &**v)));
        for (h, m) in s.members.iter_mut() {
            m.replay_stamp = stamps.get(&format!("replay-{h}")).copied().unwrap_or(0);
        }
        s
    }

    /// Build from `(key relative to resource-<res>/, value)` pairs (live keys only).
    pub fn from_pairs<'a>(
        me: &str,
        res: &str,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Snapshot {
        let mut s = Snapshot {
            me: me.to_string(),
            res: res.to_string(),
            ..Snapshot::default()
        };
        let pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
        // Members first: the other per-host keys only count for members.
        for (k, v) in &pairs {
            if let Some(h) = k.strip_prefix("data-") {
                s.members.entry(h.to_string()).or_default().data = v.to_string();
            }
        }
        for (k, v) in pairs {
            if let Err(e) = s.absorb(k, v) {
                s.malformed.push(format!("{k}: {e}"));
            }
        }
        s
    }

    fn absorb(&mut self, k: &str, v: &str) -> Result<()> {
        if k == "size" {
            self.size = Some(parse_u64(k, v)?);
        } else if k == "primary" {
            self.primary = (v != "(none)" && !v.is_empty()).then(|| v.to_string());
        } else if k == "emergency-hole" {
            self.emergency_hole = Some(ReplayLink::parse(k, &format!("{v},0"))?);
        } else if k == "emergency-limit" {
            self.emergency_limit = Some(parse_u64(k, v)?);
        } else if k == "forced-primary" {
            self.forced_primary = Some(v.to_string());
        } else if k == "logdelete-below" {
            self.log_delete_below = Some(parse_u64(k, v)?);
        } else if k.starts_with("log-") {
            let name = LogName::parse(k).map_err(|_| malformed(k, v))?;
            self.logs.insert(name);
        } else if let Some(rest) = k.strip_prefix("version-") {
            let name = LogName::parse(&format!("log-{rest}")).map_err(|_| malformed(k, v))?;
            let link = VersionLink::parse(k, v)?;
            self.versions.insert((name.seq, name.creator.clone()), link);
            self.version_values
                .insert((name.seq, name.creator), v.to_string());
        } else if let Some(h) = k.strip_prefix("replay-") {
            let link = ReplayLink::parse(k, v)?;
            if let Some(m) = self.members.get_mut(h) {
                m.replay = Some(link);
            }
        } else if let Some(h) = k.strip_prefix("syncstatus-") {
            let n = parse_u64(k, v)?;
            if let Some(m) = self.members.get_mut(h) {
                m.syncstatus = n;
            }
        } else if let Some(h) = k.strip_prefix("syncpos-") {
            let link = ReplayLink::parse(k, v)?;
            if let Some(m) = self.members.get_mut(h) {
                m.syncpos = Some(link);
            }
        } else if let Some(h) = k.strip_prefix("actsize-") {
            let n = parse_u64(k, v)?;
            if let Some(m) = self.members.get_mut(h) {
                m.actsize = Some(n);
            }
        } else if let Some(rest) = k.strip_prefix("todo-") {
            if let Some((h, sw)) = rest.split_once('/') {
                if let (Some(m), Some(sw)) = (self.members.get_mut(h), Switch::from_name(sw)) {
                    m.todo.insert(sw.name(), parse_flag(k, v)?);
                }
            }
        } else if let Some(rest) = k.strip_prefix("actual-") {
            if let Some((h, led)) = rest.split_once('/') {
                if let Some(m) = self.members.get_mut(h) {
                    m.actual.insert(led.to_string(), v.to_string());
                }
            }
        }
        Ok(())
    }

    /// Whether replica `h` is cut off by the emergency hole: at or before it (its data lacks
    /// what the primary wrote while it bypassed the log).
    pub fn orphaned(&self, h: &str) -> bool {
        match (
            &self.emergency_hole,
            self.members.get(h).and_then(|m| m.replay.as_ref()),
        ) {
            (Some(hole), Some(r)) => {
                self.primary.as_deref() != Some(h) && r.log.seq <= hole.log.seq
            }
            _ => false,
        }
    }

    /// My member entry, if I am a member.
    pub fn mine(&self) -> Option<&Member> {
        self.members.get(&self.me)
    }

    /// Whether I am the designated primary.
    pub fn designated_me(&self) -> bool {
        self.primary.as_deref() == Some(self.me.as_str())
    }

    /// The version link of log `seq` written by `host`.
    pub fn version(&self, seq: u64, host: &str) -> Option<&VersionLink> {
        self.versions.get(&(seq, host.to_string()))
    }

    /// The raw value of a version link.
    pub fn version_value(&self, seq: u64, host: &str) -> Option<&str> {
        self.version_values
            .get(&(seq, host.to_string()))
            .map(String::as_str)
    }

    /// The final length of a log: where the designated primary's history says it ends (after
    /// a forced failover the new primary ends its predecessor's log where its copy ended),
    /// else where its creator finished it (their version links).
    pub fn log_end(&self, log: &LogName) -> Option<u64> {
        let by = |h: &str| {
            self.version(log.seq, h)
                .filter(|v| v.log == *log)
                .map(|v| v.pos)
        };
        self.primary
            .as_deref()
            .and_then(by)
            .or_else(|| by(&log.creator))
    }

    /// The log after `log` in sequence (any creator), if announced.
    pub fn next_log(&self, log: &LogName) -> Option<&LogName> {
        self.logs.iter().find(|l| l.seq == log.seq + 1)
    }

    /// The newest announced log.
    pub fn last_log(&self) -> Option<&LogName> {
        self.logs.iter().next_back()
    }

    /// Members other than me that claim to be primary now (`actual-<h>/is-primary`).
    pub fn other_actual_primaries(&self) -> Vec<&str> {
        self.members
            .iter()
            .filter(|(h, m)| **h != self.me && m.led("is-primary"))
            .map(|(h, _)| h.as_str())
            .collect()
    }

    /// The smallest log sequence number some member still needs (its replay link), if any.
    pub fn min_needed_seq(&self) -> Option<u64> {
        self.members
            .values()
            .filter_map(|m| m.replay.as_ref().map(|r| r.log.seq))
            .min()
    }
}

fn malformed(k: &str, v: &str) -> crate::Error {
    crate::Error::Malformed {
        key: k.to_string(),
        value: v.to_string(),
        expected: "a key named log-<seq>-<host> or version-<seq>-<host>",
    }
}
