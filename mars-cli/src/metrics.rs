//! `marsd --metrics-listen ADDR`: the Prometheus text exposition format (version 0.0.4)
//! over plain HTTP (`GET /metrics`), from a std `TcpListener` on its own thread. The owner
//! loop renders the text from its state once per second ([`render`], pure) and publishes it
//! ([`Published`]); a scrape only copies the last text, so it never waits for the owner.
//! Every metric is listed, with its unit and labels, in `METRICS.md`.

mod memory;

use crate::progress::Kind;
use crate::view::{NodeStatus, ProgressKind};
use brick_core::StatsSnapshot;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// What the owner loop knows beyond the status.
#[derive(Debug, Default)]
pub struct Input {
    /// The node status (as `marsadm view` gets it).
    pub status: NodeStatus,
    /// Per resource with a running primary here: the export's (logger's) counters.
    pub exports: BTreeMap<String, StatsSnapshot>,
    /// Per resource: local log files and their bytes.
    pub logs: BTreeMap<String, (usize, u64)>,
    /// Free and total bytes of the mars directory's file system.
    pub space: Option<(u64, u64)>,
    /// Bytes seen pass per (resource, node, kind) since marsd started.
    pub bytes: Vec<(String, String, Kind, u64)>,
}

/// The text last rendered, shared with the HTTP thread.
pub type Published = Arc<Mutex<Arc<String>>>;

struct Out {
    text: String,
    node: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample; `node` is this node unless the labels name another.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        let own = [("node", self.node.as_str())];
        let node = labels.iter().all(|(k, _)| *k != "node").then_some(&own[..]);
        let all: Vec<String> = node
            .unwrap_or_default()
            .iter()
            .chain(labels)
            .map(|(k, val)| format!("{k}=\"{}\"", esc(val)))
            .collect();
        let _ = writeln!(self.text, "{name}{{{}}} {v}", all.join(","));
    }
}

/// Escape a label value (backslash, quote, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn b(x: bool) -> u8 {
    u8::from(x)
}

/// The exposition text.
pub fn render(i: &Input) -> String {
    let s = &i.status;
    let mut o = Out {
        text: String::new(),
        node: s.node.clone(),
    };
    type PeerValue = fn(&crate::view::PeerStatus) -> u64;
    let per_peer: [(&str, &str, PeerValue); 2] = [
        (
            "mars_peer_connected",
            "1 while a metadata connection to the peer is open.",
            |p| u64::from(p.connected),
        ),
        (
            "mars_peer_unreachable_seconds",
            "Seconds since the peer became unreachable (0 while connected).",
            |p| p.unreachable_s.unwrap_or(0),
        ),
    ];
    for (name, help, f) in per_peer {
        o.family(name, "gauge", help);
        for p in &s.peers {
            o.sample(name, &[("peer", &p.name)], f(p));
        }
    }
    resources(&mut o, i);
    replicas(&mut o, s);
    progress(&mut o, i);
    exports(&mut o, i);
    memory::render(&mut o, s);
    o.family(
        "mars_dir_free_bytes",
        "gauge",
        "Free bytes in the file system of the mars directory.",
    );
    o.family(
        "mars_dir_size_bytes",
        "gauge",
        "Size of the file system of the mars directory.",
    );
    if let Some((free, total)) = i.space {
        o.sample("mars_dir_free_bytes", &[], free);
        o.sample("mars_dir_size_bytes", &[], total);
    }
    let m = &s.meta;
    for (name, help, v) in [
        (
            "mars_meta_rounds_total",
            "Metadata propagation rounds.",
            m.rounds,
        ),
        (
            "mars_meta_sent_messages_total",
            "Metadata messages sent.",
            m.sent,
        ),
        (
            "mars_meta_sent_bytes_total",
            "Metadata bytes sent.",
            m.sent_bytes,
        ),
        (
            "mars_meta_handled_messages_total",
            "Metadata messages received and handled.",
            m.handled,
        ),
    ] {
        o.family(name, "counter", help);
        o.sample(name, &[], v);
    }
    o.text
}

fn resources(o: &mut Out, i: &Input) {
    type ResValue = fn(&crate::view::ResourceStatus) -> u64;
    let per_res: [(&str, &str, ResValue); 4] = [
        ("mars_resource_size_bytes", "Size of the resource.", |r| {
            r.size
        }),
        (
            "mars_resource_split_brain",
            "1 while the history of the resource forks (split brain).",
            |r| u64::from(r.split_brain.is_some()),
        ),
        (
            "mars_resource_emergency",
            "1 while the primary is in emergency mode or a replica is Orphan.",
            |r| {
                let e = |d: &str| d == "EmergencyMode" || d == "Orphan";
                u64::from(r.replicas.iter().any(|m| e(&m.disk)))
            },
        ),
        (
            "mars_resource_data_device_full",
            "1 while the primary's writeback to its data device stalls for lack of space there.",
            |r| {
                let full = |m: &crate::view::ReplicaStatus| {
                    m.msg
                        .as_deref()
                        .is_some_and(|x| x.starts_with("DataDeviceFull"))
                };
                u64::from(r.replicas.iter().any(full))
            },
        ),
    ];
    for (name, help, f) in per_res {
        o.family(name, "gauge", help);
        for r in &i.status.resources {
            o.sample(name, &[("resource", &r.name)], f(r));
        }
    }
    o.family(
        "mars_log_files",
        "gauge",
        "Log files of the resource in this node's mars directory.",
    );
    o.family("mars_log_bytes", "gauge", "Bytes of those log files.");
    for (res, (files, bytes)) in &i.logs {
        o.sample("mars_log_files", &[("resource", res)], files);
        o.sample("mars_log_bytes", &[("resource", res)], bytes);
    }
}

fn replicas(o: &mut Out, s: &NodeStatus) {
    for (name, help) in [
        (
            "mars_replica_role",
            "The replica's role (label role, upstream's words): always 1.",
        ),
        (
            "mars_replica_disk_state",
            "The replica's disk state (label state): always 1.",
        ),
        (
            "mars_replica_repl_state",
            "The replica's replication state (label state): always 1.",
        ),
    ] {
        o.family(name, "gauge", help);
        for r in &s.resources {
            for m in &r.replicas {
                let (k, v) = match name {
                    "mars_replica_role" => ("role", &m.role),
                    "mars_replica_disk_state" => ("state", &m.disk),
                    _ => ("state", &m.repl),
                };
                o.sample(name, &[("resource", &r.name), ("node", &m.host), (k, v)], 1);
            }
        }
    }
    o.family(
        "mars_replica_up_to_date",
        "gauge",
        "1 when the replica equals the primary's current position.",
    );
    o.family(
        "mars_replica_consistent",
        "gauge",
        "1 when the replica is consistent (sync complete, replay past it).",
    );
    o.family(
        "mars_replica_sync_bytes",
        "gauge",
        "Bytes of the replica's full sync done.",
    );
    o.family(
        "mars_replica_nbd_clients",
        "gauge",
        "NBD clients connected to the replica's export.",
    );
    for r in &s.resources {
        for m in &r.replicas {
            let l = [("resource", r.name.as_str()), ("node", m.host.as_str())];
            o.sample("mars_replica_up_to_date", &l, b(m.up_to_date));
            o.sample("mars_replica_consistent", &l, b(m.consistent));
            o.sample("mars_replica_sync_bytes", &l, m.syncstatus);
            o.sample("mars_replica_nbd_clients", &l, m.clients);
        }
    }
    checksums(o, s);
}

/// What the block checksums of each replica say: failed reads, the last scrub, the last
/// verify.
fn checksums(o: &mut Out, s: &NodeStatus) {
    o.family(
        "mars_checksum_read_errors_total",
        "counter",
        "Reads of the replica failed (EIO) because the data did not match its checksum, since its marsd started.",
    );
    o.family(
        "mars_scrub_damaged_blocks",
        "gauge",
        "Damaged 4 KiB blocks the replica's last scrub found (absent before the first).",
    );
    o.family(
        "mars_scrub_checksum_file_errors",
        "gauge",
        "Blocks whose checksum-file page the last scrub found damaged.",
    );
    o.family(
        "mars_scrub_age_seconds",
        "gauge",
        "Seconds since the replica's last scrub ended.",
    );
    o.family(
        "mars_verify_differing_blocks",
        "gauge",
        "4 KiB blocks in which the replica's checksums differed from the primary's at the last verify.",
    );
    o.family(
        "mars_verify_age_seconds",
        "gauge",
        "Seconds since the primary recorded the replica's last verify.",
    );
    for r in &s.resources {
        for m in &r.replicas {
            let l = [("resource", r.name.as_str()), ("node", m.host.as_str())];
            let c = &m.checksums;
            o.sample("mars_checksum_read_errors_total", &l, c.read_errors);
            if let Some(sc) = &c.last_scrub {
                o.sample("mars_scrub_damaged_blocks", &l, sc.damaged);
                o.sample(
                    "mars_scrub_checksum_file_errors",
                    &l,
                    sc.checksum_file_errors,
                );
                o.sample("mars_scrub_age_seconds", &l, sc.ago_secs);
            }
            if let Some(v) = &c.last_verify {
                o.sample("mars_verify_differing_blocks", &l, v.differing);
                o.sample("mars_verify_age_seconds", &l, v.ago_secs);
            }
        }
    }
}

fn progress(o: &mut Out, i: &Input) {
    let s = &i.status;
    o.family("mars_replica_lag_bytes", "gauge", "Bytes of the primary's history the replica has not replayed (fetch: this node, not fetched).");
    o.family("mars_replica_lag_seconds", "gauge", "Age of the oldest write the replica has not replayed (fetch: not fetched), from when this node saw the primary reach it.");
    o.family(
        "mars_replica_rate_bytes_per_second",
        "gauge",
        "Sync, fetch or replay rate over the last 5 s of this node's rounds.",
    );
    for r in &s.resources {
        for m in &r.replicas {
            for p in &m.progress {
                let what = match p.kind {
                    ProgressKind::Sync => "sync",
                    ProgressKind::Fetch => "fetch",
                    ProgressKind::Replay => "replay",
                };
                let l = [
                    ("resource", r.name.as_str()),
                    ("node", m.host.as_str()),
                    ("what", what),
                ];
                if let Some(v) = p.lag_bytes {
                    o.sample("mars_replica_lag_bytes", &l, v);
                }
                if let Some(v) = p.lag_s {
                    o.sample("mars_replica_lag_seconds", &l, v);
                }
                o.sample("mars_replica_rate_bytes_per_second", &l, p.rate);
            }
        }
    }
    o.family("mars_bytes_total", "counter", "Bytes seen pass since marsd started: what = sync, fetch, replay (of the replica), write (the primary's log).");
    for (res, host, kind, v) in &i.bytes {
        let what = match kind {
            Kind::Sync => "sync",
            Kind::Fetch => "fetch",
            Kind::Replay => "replay",
            Kind::Write => "write",
        };
        o.sample(
            "mars_bytes_total",
            &[("resource", res), ("node", host), ("what", what)],
            v,
        );
    }
}

fn exports(o: &mut Out, i: &Input) {
    o.family(
        "mars_export_requests_total",
        "counter",
        "Requests completed by the export (logger) of a primary here; its rate is the IOPS.",
    );
    o.family(
        "mars_export_errors_total",
        "counter",
        "Requests of the export that completed with an error.",
    );
    o.family(
        "mars_export_bytes_total",
        "counter",
        "Bytes read and written through the export.",
    );
    o.family(
        "mars_export_inflight",
        "gauge",
        "Requests in flight in the export.",
    );
    for (res, st) in &i.exports {
        let l = [("resource", res.as_str())];
        o.sample("mars_export_requests_total", &l, st.completed);
        o.sample("mars_export_errors_total", &l, st.errors);
        o.sample("mars_export_bytes_total", &l, st.bytes);
        o.sample("mars_export_inflight", &l, st.inflight());
    }
    let name = "mars_export_latency_seconds";
    o.family(
        name,
        "histogram",
        "Latency of the export's requests (log2 buckets).",
    );
    for (res, st) in &i.exports {
        let mut seen = 0;
        let last = st.histogram.len().saturating_sub(1);
        for (k, n) in st.histogram.iter().enumerate().take(last) {
            seen += n;
            let le = format!("{}", (1u64 << k) as f64 / 1e6);
            o.sample(
                &format!("{name}_bucket"),
                &[("resource", res), ("le", &le)],
                seen,
            );
        }
        o.sample(
            &format!("{name}_bucket"),
            &[("resource", res), ("le", "+Inf")],
            st.completed,
        );
        o.sample(
            &format!("{name}_sum"),
            &[("resource", res)],
            st.latency_sum.as_secs_f64(),
        );
        o.sample(&format!("{name}_count"), &[("resource", res)], st.completed);
    }
}

/// Serve `GET /metrics` on `addr` with the text in `published`. Returns the bound address.
pub fn serve(addr: &str, published: Published) -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind(addr)?;
    let local = l.local_addr()?;
    std::thread::Builder::new()
        .name("marsd-metrics".into())
        .spawn(move || {
            for conn in l.incoming().flatten() {
                // One scrape at a time, each bounded by the socket timeouts.
                if let Err(e) = answer(conn, &published) {
                    tracing::debug!("metrics: {e}");
                }
            }
        })?;
    Ok(local)
}

/// The request head (at most 8 KiB) and the response.
fn answer(mut c: TcpStream, published: &Published) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(2)))?;
    c.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = c.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.split_whitespace();
    let (status, ctype, body) = match (words.next(), words.next()) {
        (Some("GET"), Some("/metrics")) => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            published.lock().clone(),
        ),
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            Arc::new("marsd serves only GET /metrics\n".to_string()),
        ),
    };
    write!(
        c,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    c.write_all(body.as_bytes())?;
    c.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{PeerStatus, Progress, ReplicaStatus, ResourceStatus};

    fn input() -> Input {
        let progress = Progress {
            kind: ProgressKind::Replay,
            done: 1,
            total: 2,
            log: None,
            rate: 3,
            eta_s: None,
            lag_bytes: Some(4),
            lag_s: Some(0.5),
            lag_s_lower_bound: false,
        };
        let status = NodeStatus {
            node: "bob".into(),
            peers: vec![PeerStatus {
                name: "al\"ice".into(),
                ..PeerStatus::default()
            }],
            resources: vec![ResourceStatus {
                name: "r0".into(),
                replicas: vec![ReplicaStatus {
                    host: "bob".into(),
                    progress: vec![progress],
                    ..ReplicaStatus::default()
                }],
                memory: Some(crate::view::MemoryStatus {
                    used: 4096,
                    ..Default::default()
                }),
                ..ResourceStatus::default()
            }],
            ..NodeStatus::default()
        };
        let st = brick_core::Stats::new();
        st.on_submit();
        st.on_complete(4096, Duration::from_micros(3), false);
        let snap = st.snapshot();
        Input {
            status,
            exports: [("r0".to_string(), snap)].into(),
            logs: [("r0".to_string(), (1, 4096))].into(),
            space: Some((10, 100)),
            bytes: vec![("r0".into(), "bob".into(), Kind::Write, 4096)],
        }
    }

    #[test]
    fn every_metric_rendered_is_documented_and_histograms_are_cumulative() {
        let text = render(&input());
        let doc = include_str!("METRICS.md");
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(names.len() >= 25, "{names:?}");
        for n in names {
            assert!(doc.contains(&format!("`{n}`")), "{n} is not in METRICS.md");
        }
        assert!(text.contains("mars_peer_connected{node=\"bob\",peer=\"al\\\"ice\"} 0\n"));
        // 3 µs falls below 4 µs: buckets 1 µs and 2 µs hold 0, from 4 µs on 1.
        assert!(text.contains("mars_export_latency_seconds_bucket{node=\"bob\",resource=\"r0\",le=\"0.000002\"} 0\n"), "{text}");
        assert!(text.contains("mars_export_latency_seconds_bucket{node=\"bob\",resource=\"r0\",le=\"0.000004\"} 1\n"), "{text}");
        assert!(
            text.contains("mars_export_latency_seconds_count{node=\"bob\",resource=\"r0\"} 1\n")
        );
        assert!(
            text.contains(
                "mars_replica_lag_seconds{resource=\"r0\",node=\"bob\",what=\"replay\"} 0.5\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("mars_resource_memory_used_bytes{node=\"bob\",resource=\"r0\"} 4096\n"),
            "{text}"
        );
    }
}
