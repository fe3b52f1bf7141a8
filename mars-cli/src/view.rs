//! What `marsadm view` prints: the node's status as the daemon reports it (serde types, the
//! `data` of a `status` response) and its text form. Pure: tested with fixed inputs.

use serde::{Deserialize, Serialize};

/// The node and its resources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// This node.
    pub node: String,
    /// The cluster uuid, once in a cluster.
    pub cluster: Option<String>,
    /// Where this node listens.
    pub listen: String,
    /// The other nodes of the cluster.
    pub peers: Vec<PeerStatus>,
    /// Resources this node is a member of (or the one asked for).
    pub resources: Vec<ResourceStatus>,
    /// How the last merge-cluster ended (`merged with <node>` or `refused: ...`).
    #[serde(default)]
    pub merge: Option<String>,
    /// Metadata propagation counters since start.
    #[serde(default)]
    pub meta: MetaCounters,
}

/// Metadata propagation counters of a node (for measuring propagation cost).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaCounters {
    /// Propagation rounds (ticks).
    pub rounds: u64,
    /// Messages sent.
    pub sent: u64,
    /// Bytes sent.
    pub sent_bytes: u64,
    /// Messages received and handled.
    pub handled: u64,
}

/// Another node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its name.
    pub name: String,
    /// Its address (`ips/ip-<name>`).
    pub addr: String,
    /// A metadata connection to it is open.
    pub connected: bool,
}

/// One resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceStatus {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// The designated primary.
    pub primary: Option<String>,
    /// Every member's state (this node's first).
    pub replicas: Vec<ReplicaStatus>,
    /// Log files announced (`log-<seq>-<creator>`).
    pub logs: Vec<String>,
    /// The NBD socket of the export, on the primary.
    pub nbd_socket: Option<String>,
    /// Where the history forks, if it does (every node reports the same).
    #[serde(default)]
    pub split_brain: Option<String>,
    /// A migration under way (`to=<node> from=<node> dev=<path|->`), and its error if any.
    #[serde(default)]
    pub migration: Option<String>,
    /// Why the migration's current step failed.
    #[serde(default)]
    pub migration_error: Option<String>,
}

/// One member of a resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// The node.
    pub host: String,
    /// Upstream's disk state (`UpToDate`, `InConsistent`, `OutDated[R]`, ...).
    pub disk: String,
    /// Upstream's replication state (`Replicating`, `Replaying`, `Syncing`, `PausedFetch`, ...).
    pub repl: String,
    /// Six flags: device, consistent, attach, sync, fetch, replay.
    pub flags: String,
    /// `Primary`, `Secondary`, `NotYetPrimary`, `RemainsPrimary`, `None`.
    pub role: String,
    /// Its replay link (`log-<seq>-<h>,<pos>,<len>`).
    pub replay: Option<String>,
    /// Bytes of the full sync done.
    pub syncstatus: u64,
    /// Log bytes behind the primary (same log only; `None` when not comparable).
    pub lag: Option<u64>,
    /// NBD clients connected (on a primary).
    pub clients: u64,
    /// What it waits for, or what went wrong (`actual-<h>/msg`).
    pub msg: Option<String>,
    /// Consistent (sync complete, replay past the sync position).
    pub consistent: bool,
    /// Equal to the primary's current position.
    pub up_to_date: bool,
    /// Its block checksums: scrubs and read errors.
    #[serde(default)]
    pub checksums: ChecksumView,
}

/// What a replica's block checksums say (`actual-<h>/scrub`, `scrub-progress`, `csum-errors`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecksumView {
    /// A scrub running now: bytes done, device size, bytes/s.
    pub scrubbing: Option<(u64, u64, u64)>,
    /// The last finished scrub.
    pub last_scrub: Option<ScrubRecord>,
    /// Reads failed because data did not match its checksum (since its marsd started), and
    /// the last such error.
    pub read_errors: u64,
    /// The last read error.
    pub last_error: Option<String>,
    /// Damaged blocks the last local scrub found (block numbers of 4 KiB, the first ones; on
    /// this node only).
    #[serde(default)]
    pub damaged_blocks: Vec<u64>,
}

/// A finished scrub.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubRecord {
    /// How long ago it ended (seconds, when the status was taken).
    pub ago_secs: u64,
    /// Bytes scrubbed.
    pub bytes: u64,
    /// Damaged blocks found.
    pub damaged: u64,
    /// Blocks whose checksum-file page was damaged.
    pub checksum_file_errors: u64,
    /// `--repair` was given.
    pub repair: bool,
}

impl ChecksumView {
    /// Parse the published keys (absent or unparsable ones are left out).
    pub fn from_keys(
        scrub: Option<&str>,
        progress: Option<&str>,
        errors: Option<&str>,
        now_secs: u64,
    ) -> ChecksumView {
        let nums =
            |v: &str| -> Vec<u64> { v.split_whitespace().map_while(|x| x.parse().ok()).collect() };
        let last_scrub = scrub.map(nums).and_then(|n| match n[..] {
            [at, bytes, damaged, errs, repair] => Some(ScrubRecord {
                ago_secs: now_secs.saturating_sub(at),
                bytes,
                damaged,
                checksum_file_errors: errs,
                repair: repair == 1,
            }),
            _ => None,
        });
        let scrubbing = progress.map(nums).and_then(|n| match n[..] {
            [pos, size, rate] => Some((pos, size, rate)),
            _ => None,
        });
        let (read_errors, last_error) = match errors.and_then(|e| e.split_once(' ')) {
            Some((n, last)) => (n.parse().unwrap_or(0), Some(last.to_string())),
            None => (errors.and_then(|e| e.parse().ok()).unwrap_or(0), None),
        };
        ChecksumView {
            scrubbing,
            last_scrub,
            read_errors,
            last_error: last_error.filter(|l| !l.is_empty()),
            damaged_blocks: Vec::new(),
        }
    }

    /// Its lines in `view` (indented like the other replica lines).
    pub fn lines(&self, res: &str, host: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((pos, size, rate)) = self.scrubbing {
            let eta = (size.saturating_sub(pos))
                .checked_div(rate)
                .map_or_else(|| "?".to_string(), |s| format!("{s} s"));
            out.push(format!(
                "    scrubbing: {} {} MiB/s, ETA {eta}",
                bar(pos, size),
                rate >> 20
            ));
        }
        if let Some(r) = &self.last_scrub {
            let found = if r.damaged + r.checksum_file_errors == 0 {
                "0 differences".to_string()
            } else {
                format!(
                    "{} damaged block(s), {} checksum-file error(s)",
                    r.damaged, r.checksum_file_errors
                )
            };
            out.push(format!(
                "    last scrub: {} ago, {found}{}",
                ago(r.ago_secs),
                if r.repair { " (with repair)" } else { "" }
            ));
            if r.damaged > 0 && !r.repair {
                out.push(format!(
                    "    > damaged data on {host}: run `marsadm scrub {res} --repair` there"
                ));
            }
        }
        if self.read_errors > 0 {
            out.push(format!(
                "    > CHECKSUM: {} read(s) failed on {host}; last: {}",
                self.read_errors,
                self.last_error.as_deref().unwrap_or("?")
            ));
        }
        out
    }
}

/// `3 h`, `12 min`, `40 s`.
fn ago(secs: u64) -> String {
    match secs {
        s if s >= 2 * 86_400 => format!("{} d", s / 86_400),
        s if s >= 2 * 3600 => format!("{} h", s / 3600),
        s if s >= 120 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn bar(done: u64, total: u64) -> String {
    let pct = (done.min(total) * 100)
        .checked_div(total)
        .map_or(100, |p| p as usize);
    let fill = pct / 5;
    format!("[{}{}] {pct}%", "=".repeat(fill), ".".repeat(20 - fill))
}

/// The text of `marsadm view`: per resource, one line per replica in upstream's layout
/// `<res> <host> <disk> <repl> <flags> <role> <primary>` plus progress and the reason a
/// replica waits.
pub fn render(s: &NodeStatus) -> String {
    let mut out = String::new();
    if s.cluster.is_none() {
        out.push_str(&format!(
            "node {} is not in a cluster: run `marsadm create-cluster` or `marsadm join-cluster HOST:PORT`\n",
            s.node
        ));
    }
    let peers = s.peers.len() + 1;
    for r in &s.resources {
        let primary = r.primary.as_deref().unwrap_or("(none)");
        out.push_str(&format!(
            "--------- resource {} [{}/{peers}] size {} primary {primary}\n",
            r.name,
            r.replicas.len(),
            r.size
        ));
        if let Some(m) = &r.migration {
            out.push_str(&format!("  migrating: {m}\n"));
        }
        if let Some(e) = &r.migration_error {
            out.push_str(&format!("  > migration stopped: {e}\n"));
        }
        if let Some(sb) = &r.split_brain {
            out.push_str(&format!(
                "  {sb}\n  > resolve: `marsadm invalidate {}` on each node whose data is to be discarded (or `down` + `leave-resource` to keep it); `--dry-run` shows what goes\n",
                r.name
            ));
        }
        for m in &r.replicas {
            out.push_str(&format!(
                "  {} {:<8} {} {} {} {} {primary}\n",
                r.name, m.host, m.disk, m.repl, m.flags, m.role
            ));
            if m.syncstatus < r.size {
                out.push_str(&format!(
                    "    syncing: {} ({}/{} bytes)\n",
                    bar(m.syncstatus, r.size),
                    m.syncstatus,
                    r.size
                ));
            }
            if let (Some(lag), false) = (m.lag, m.role == "Primary") {
                if lag > 0 {
                    out.push_str(&format!("    replaying: {lag} bytes behind the primary\n"));
                }
            }
            if m.clients > 0 {
                out.push_str(&format!("    nbd: {} client(s) connected\n", m.clients));
            }
            for line in m.checksums.lines(&r.name, &m.host) {
                out.push_str(&line);
                out.push('\n');
            }
            if let Some(msg) = &m.msg {
                out.push_str(&format!("    > {msg}\n"));
            }
        }
        if let Some(sock) = &r.nbd_socket {
            out.push_str(&format!("  export: nbd+unix:///{}?socket={sock}\n", r.name));
        }
    }
    if s.resources.is_empty() && s.cluster.is_some() {
        out.push_str(&format!("node {}: no resources here\n", s.node));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_text_shows_states_progress_and_reasons() {
        let s = NodeStatus {
            node: "bob".into(),
            cluster: Some("alice_1".into()),
            listen: "127.0.0.1:7000".into(),
            peers: vec![PeerStatus {
                name: "alice".into(),
                addr: "127.0.0.1:7001".into(),
                connected: true,
            }],
            resources: vec![ResourceStatus {
                name: "r0".into(),
                size: 1000,
                primary: Some("alice".into()),
                replicas: vec![
                    ReplicaStatus {
                        host: "bob".into(),
                        disk: "InConsistent".into(),
                        repl: "Syncing".into(),
                        flags: "d-AsFR".into(),
                        role: "Secondary".into(),
                        syncstatus: 250,
                        msg: Some("full sync from alice".into()),
                        ..ReplicaStatus::default()
                    },
                    ReplicaStatus {
                        host: "alice".into(),
                        disk: "UpToDate".into(),
                        repl: "Replicating".into(),
                        flags: "DCASFR".into(),
                        role: "Primary".into(),
                        syncstatus: 1000,
                        clients: 1,
                        ..ReplicaStatus::default()
                    },
                ],
                logs: vec![],
                nbd_socket: None,
                split_brain: None,
                migration: None,
                migration_error: None,
            }],
            merge: None,
            meta: MetaCounters::default(),
        };
        let want = "\
--------- resource r0 [2/2] size 1000 primary alice
  r0 bob      InConsistent Syncing d-AsFR Secondary alice
    syncing: [=====...............] 25% (250/1000 bytes)
    > full sync from alice
  r0 alice    UpToDate Replicating DCASFR Primary alice
    nbd: 1 client(s) connected
";
        assert_eq!(render(&s), want);
    }
}
