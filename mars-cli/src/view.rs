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
