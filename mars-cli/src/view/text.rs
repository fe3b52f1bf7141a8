//! The text of `marsadm view`: per resource a header, then per replica upstream's line
//! `<host>: <res> [<replicas>/<nodes>] <disk> <repl> <flags> <role> <primary> [<commstate>]`,
//! its progress lines (bar, percent, bytes, rate, ETA, lag) and its messages.

use super::{
    Level, MemoryStatus, NodeStatus, Progress, ProgressKind, ReplicaStatus, ResourceStatus,
};
use std::fmt::Write;

/// Bytes for people: `512 B`, `1.5 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

pub(super) fn bar(done: u64, total: u64) -> String {
    let pct = (done.min(total) * 100)
        .checked_div(total)
        .map_or(100, |p| p as usize);
    let fill = pct / 5;
    format!("[{}{}] {pct:>3}%", "=".repeat(fill), ".".repeat(20 - fill))
}

fn progress_line(p: &Progress) -> String {
    let what = match p.kind {
        ProgressKind::Sync => "sync:  ",
        ProgressKind::Fetch => "fetch: ",
        ProgressKind::Replay => "replay:",
    };
    let mut line = format!(
        "    {what} {} {}/{}",
        bar(p.done, p.total),
        human(p.done),
        human(p.total)
    );
    if let Some(log) = &p.log {
        let _ = write!(line, " of {log}");
    }
    let _ = write!(line, ", rate {}/s", human(p.rate));
    match p.eta_s {
        Some(s) => {
            let _ = write!(line, ", ETA {s} s");
        }
        None => line.push_str(", ETA -"),
    }
    if let Some(b) = p.lag_bytes {
        let _ = write!(line, ", lag {}", human(b));
        if let Some(s) = p.lag_s {
            let at_least = if p.lag_s_lower_bound { ">= " } else { "" };
            let _ = write!(line, " / {at_least}{s:.1} s");
        }
    }
    line
}

fn replica_lines(out: &mut String, r: &ResourceStatus, m: &ReplicaStatus, s: &NodeStatus) {
    let nodes = s.peers.len() + 1;
    let primary = r.primary.as_deref().unwrap_or("(none)");
    let commstate = s
        .peers
        .iter()
        .find(|p| p.name == m.host && !p.connected)
        .map(|p| format!(" [no contact {} s]", p.unreachable_s.unwrap_or(0)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{:<8} {} [{}/{nodes}] {} {} {} {} {primary}{commstate}",
        format!("{}:", m.host),
        r.name,
        r.replicas.len(),
        m.disk,
        m.repl,
        m.flags,
        m.role
    );
    for p in &m.progress {
        out.push_str(&progress_line(p));
        out.push('\n');
    }
    for line in m.checksums.lines(&r.name, &m.host) {
        out.push_str(&line);
        out.push('\n');
    }
    if m.clients > 0 {
        let _ = writeln!(out, "    nbd: {} client(s) connected", m.clients);
    }
    for msg in &m.messages {
        let level = match msg.level {
            Level::Error => "ERROR",
            Level::Warning => "warning",
            Level::Info => "info",
        };
        let _ = writeln!(out, "    > {level}: {}", msg.text);
    }
}

/// `4.0 MiB used (peak 8.0 MiB) of 1.0 GiB, floor 8.0 MiB, 0 waits`.
fn memory_line(m: &MemoryStatus, floor: &str) -> String {
    format!(
        "{} used (peak {}) of {}, {floor} {}, {} waits",
        human(m.used),
        human(m.peak),
        human(m.limit),
        human(m.floor),
        m.waits
    )
}

/// The text of `marsadm view`.
pub fn render(s: &NodeStatus) -> String {
    let mut out = String::new();
    if s.cluster.is_none() {
        let _ = writeln!(
            out,
            "node {} is not in a cluster: run `marsadm create-cluster` or `marsadm join-cluster HOST:PORT`",
            s.node
        );
    }
    for r in &s.resources {
        let primary = r.primary.as_deref().unwrap_or("(none)");
        let _ = writeln!(
            out,
            "--------- resource {}: {} ({} bytes), primary {primary}",
            r.name,
            human(r.size),
            r.size
        );
        if let Some(m) = &r.migration {
            let _ = writeln!(out, "  migrating: {m}");
        }
        if let Some(e) = &r.migration_error {
            let _ = writeln!(out, "  > ERROR: migration stopped: {e}");
        }
        if let Some(sb) = &r.split_brain {
            let _ = writeln!(
                out,
                "  > ERROR: {sb}\n  > resolve: `marsadm invalidate {}` on each node whose data is to be discarded (or `down` + `leave-resource` to keep it); `--dry-run` shows what goes",
                r.name
            );
        }
        if r.replicas.iter().all(|m| m.host != s.node) {
            let _ = writeln!(
                out,
                "  {} has no replica of {}: `marsadm join-resource {} DEV` makes one",
                s.node, r.name, r.name
            );
        }
        for m in &r.replicas {
            replica_lines(&mut out, r, m, s);
        }
        if let Some(sock) = &r.nbd_socket {
            let _ = writeln!(out, "  export: nbd+unix:///{}?socket={sock}", r.name);
        }
        if let Some(mode) = r.logger {
            let _ = writeln!(out, "  logger: {mode}");
        }
        if let Some(m) = &r.memory {
            let _ = writeln!(out, "  memory: {}", memory_line(m, "floor"));
        }
    }
    // The budget is the primaries' (their loggers'): shown where one runs.
    if s.resources.iter().any(|r| r.memory.is_some()) {
        let _ = writeln!(
            out,
            "node {} memory: {}",
            s.node,
            memory_line(&s.memory, "floors")
        );
    }
    if s.resources.is_empty() && s.cluster.is_some() {
        let _ = writeln!(out, "node {}: no resources here", s.node);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_bars() {
        assert_eq!(human(1000), "1000 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(256 << 20), "256.0 MiB");
        assert_eq!(bar(250, 1000), "[=====...............]  25%");
        assert_eq!(bar(0, 0), "[====================] 100%");
    }

    #[test]
    fn a_primary_shows_its_memory_and_the_node_s() {
        let share = MemoryStatus {
            used: 4096,
            peak: 1 << 20,
            limit: 1 << 30,
            floor: 8 << 20,
            waits: 3,
        };
        let s = NodeStatus {
            node: "alice".into(),
            cluster: Some("c".into()),
            memory: MemoryStatus {
                floor: 16 << 20,
                ..share
            },
            resources: vec![ResourceStatus {
                name: "r0".into(),
                memory: Some(share),
                ..ResourceStatus::default()
            }],
            ..NodeStatus::default()
        };
        let text = render(&s);
        assert!(
            text.contains(
                "  memory: 4.0 KiB used (peak 1.0 MiB) of 1.0 GiB, floor 8.0 MiB, 3 waits\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("node alice memory: 4.0 KiB used (peak 1.0 MiB) of 1.0 GiB, floors 16.0 MiB, 3 waits\n"),
            "{text}"
        );
    }
}
