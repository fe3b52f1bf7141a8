//! The messages of every replica: what its own marsd reported (`actual-<host>/msg`), and
//! what the answering node sees itself: a member it cannot reach, an unreachable primary,
//! switches an operator turned off. Pure; run by the daemon on every status it answers.

use super::{Level, Message, NodeStatus, ReplicaStatus};

/// Fill in `messages` of every replica (and the connection states in `repl`).
pub fn annotate(s: &mut NodeStatus) {
    let down = |h: &str| {
        s.peers
            .iter()
            .find(|p| p.name == h && !p.connected)
            .map(|p| p.unreachable_s.unwrap_or(0))
    };
    for r in &mut s.resources {
        let primary_down = r
            .primary
            .as_deref()
            .filter(|p| *p != s.node)
            .and_then(|p| down(p).map(|secs| (p.to_string(), secs)));
        for m in &mut r.replicas {
            let mut out = Vec::new();
            if let Some(msg) = &m.msg {
                out.push(Message {
                    level: classify(m, msg),
                    text: msg.clone(),
                });
            }
            if let Some(secs) = down(&m.host) {
                m.repl = "UnResponsive".into();
                out.push(Message {
                    level: Level::Warning,
                    text: format!(
                        "no connection to {} for {secs} s: its marsd is down or the link is cut; its state is the last known",
                        m.host
                    ),
                });
            } else if m.host == s.node && m.role != "Primary" {
                if let Some((p, secs)) = &primary_down {
                    if m.repl == "Replaying" {
                        m.repl = "PrimaryUnreachable".into();
                    }
                    out.push(Message {
                        level: Level::Warning,
                        text: format!(
                            "primary {p} unreachable for {secs} s: nothing new is fetched, the data here is as of then; if {p} is lost for good: `marsadm pause-fetch {res}`, then `marsadm primary --force {res}` (writes not fetched are lost)",
                            res = r.name
                        ),
                    });
                }
            }
            out.extend(paused(&r.name, m));
            out.sort_by_key(|x| x.level);
            m.messages = out;
        }
    }
}

/// Switches an operator turned off, with the command that turns them on again.
fn paused(res: &str, m: &ReplicaStatus) -> Vec<Message> {
    let flag = |i: usize| m.flags.as_bytes().get(i).copied();
    let mut out = Vec::new();
    let mut info = |text: String| {
        out.push(Message {
            level: Level::Info,
            text,
        })
    };
    if m.disk == "Detached" {
        info(format!(
            "detached by operator: `marsadm up {res}` on {} attaches it",
            m.host
        ));
        return out;
    }
    if m.role == "Primary" || m.role == "RemainsPrimary" {
        return out;
    }
    if flag(3) == Some(b'-') {
        info(format!(
            "sync paused by operator: `marsadm resume-sync {res}` on {} resumes it",
            m.host
        ));
    }
    if flag(4) == Some(b'-') {
        info(format!(
            "fetch paused by operator: `marsadm resume-fetch {res}` on {} resumes it",
            m.host
        ));
    }
    if flag(5) == Some(b'-') {
        info(format!(
            "replay paused by operator: `marsadm resume-replay {res}` on {} resumes it",
            m.host
        ));
    }
    out
}

/// How serious a replica's own report is: errors when its data is cut off from the history
/// (split brain, emergency mode, orphan) or something failed; warnings when replication is
/// held back and retried; infos otherwise (what it waits for).
fn classify(m: &ReplicaStatus, msg: &str) -> Level {
    let lower = msg.to_ascii_lowercase();
    let cut_off = matches!(m.disk.as_str(), "Orphan" | "EmergencyMode") || m.repl == "SplitBrain";
    if cut_off
        || [
            "split brain",
            "cannot",
            "failed",
            "does not verify",
            "stopped",
        ]
        .iter()
        .any(|w| lower.contains(w))
    {
        Level::Error
    } else if ["interrupted", "remainsprimary", "free", "retrying"]
        .iter()
        .any(|w| lower.contains(w))
    {
        Level::Warning
    } else {
        Level::Info
    }
}
