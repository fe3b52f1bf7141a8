//! The operator's side, end to end with real marsd processes driven through marsadm: view
//! with live progress while a node joins, `--json` of every query parsed, Prometheus
//! metrics scraped during a replication, `events --json` across a planned handover, and
//! the reasons a replica waits.

mod common;
use common::*;
use mars_cli::control::{Outcome, Response};
use mars_cli::events::{Event, EventType};
use mars_cli::view::{Level, NodeStatus, ProgressKind, ReplicaStatus};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SIZE: u64 = 8 << 20;

fn json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> T {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{what}: {e}: {text:?}"))
}

/// `marsadm --json ARGS` must succeed; its lines parsed: the daemon's response first.
fn json_lines(n: &Node, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = n.ok(&all);
    out.lines()
        .map(|l| json(l, &format!("marsadm {args:?}")))
        .collect()
}

/// A command that answers with one daemon response (and waits for nothing).
fn json_response(n: &Node, args: &[&str]) -> Response {
    let lines = json_lines(n, args);
    assert_eq!(lines.len(), 1, "marsadm {args:?}: {lines:?}");
    let r: Response = serde_json::from_value(lines[0].clone()).unwrap();
    assert_eq!(r.status, Outcome::Ok, "{r:?}");
    r
}

fn view_json(n: &Node, res: &str) -> NodeStatus {
    json(&n.ok(&["--json", "view", res]), "view --json")
}

fn mine(s: &NodeStatus, res: &str) -> ReplicaStatus {
    s.resources
        .iter()
        .find(|r| r.name == res)
        .and_then(|r| r.replicas.iter().find(|m| m.host == s.node))
        .cloned()
        .unwrap_or_else(|| panic!("no replica of {res} on {}: {s:?}", s.node))
}

/// A device file of `size` bytes with content (a full sync must copy every chunk).
fn filled_device(c: &Cluster, name: &str, size: u64) -> String {
    let path = c.path(name);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..size / 4096 {
        f.write_all(&[(i % 251) as u8 | 1; 4096]).unwrap();
    }
    f.flush().unwrap();
    path.display().to_string()
}

#[test]
fn view_shows_live_sync_progress_of_a_joining_node_and_every_query_answers_json() {
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let size = 256u64 << 20;
    let da = filled_device(&c, "a.img", size);
    let r = json_response(a, &["create-resource", "r0", &da]);
    assert!(r.message.contains("primary"), "{r:?}");
    a.wait_state("r0", "Primary", |m| m.role == "Primary");

    // join-resource --json: the response, then the state reached.
    let lines = json_lines(b, &["join-resource", "r0", &c.device("b.img", size)]);
    let _: Response = serde_json::from_value(lines[0].clone()).unwrap();
    let reached: ReplicaStatus = serde_json::from_value(lines[1]["state"].clone()).unwrap();
    assert_eq!(reached.host, "bob");

    // While the sync runs, bob's view has a sync progress line with a measured rate.
    let mut seen = None;
    wait_until(
        Duration::from_secs(60),
        "a sync progress line with a rate",
        || {
            let m = mine(&view_json(b, "r0"), "r0");
            match m.progress.iter().find(|p| p.kind == ProgressKind::Sync) {
                Some(p) if p.done < p.total && p.rate > 0 && p.eta_s.is_some() => {
                    seen = Some(p.clone());
                    Ok(())
                }
                _ if m.syncstatus >= size => {
                    panic!("the sync ended before view showed its progress")
                }
                p => Err(format!("{p:?}")),
            }
        },
    );
    let p = seen.unwrap();
    assert_eq!(p.total, size);
    // Paused, the sync stays where it is and view says who paused it and how to resume.
    b.ok(&["pause-sync", "r0"]);
    b.wait_state("r0", "PausedSync", |m| m.repl == "PausedSync");
    let text = b.ok(&["view", "r0"]);
    assert!(
        text.contains("PausedSync") && text.contains("    sync:   ["),
        "{text}"
    );
    assert!(
        text.contains("sync paused by operator: `marsadm resume-sync r0`"),
        "{text}"
    );
    let m = mine(&view_json(b, "r0"), "r0");
    assert!(m
        .messages
        .iter()
        .any(|x| x.level == Level::Info && x.text.contains("sync paused")));
    b.ok(&["resume-sync", "r0"]);
    b.wait_uptodate("r0");
    let m = mine(&view_json(b, "r0"), "r0");
    assert!(
        m.progress.iter().all(|p| p.kind != ProgressKind::Sync),
        "{m:?}"
    );

    // Every query's --json parses: single values as JSON strings, statuses, lists.
    for (args, want) in [
        (&["view-diskstate", "r0"][..], "UpToDate"),
        (&["view-replstate", "r0"], "Replaying"),
        (&["view-flags", "r0"], "dCASFR"),
        (&["view-role", "r0"], "Secondary"),
        (&["view-primarynode", "r0"], "alice"),
        (&["view-is-split-brain", "r0"], "0"),
        (&["get-link", "resources/r0"], "alice"),
    ] {
        let v: String = json(
            &b.ok(&[&["--json"][..], args].concat()),
            &format!("{args:?}"),
        );
        assert_eq!(v, want, "{args:?}");
    }
    let all: NodeStatus = json(&b.ok(&["--json", "view", "all"]), "view all");
    assert_eq!(all.resources.len(), 1);
    assert!(
        all.time_ms > 0
            && all
                .peers
                .iter()
                .all(|p| p.connected && p.unreachable_s.is_none())
    );
    let ls: Vec<(String, String)> = json(&b.ok(&["--json", "lowlevel-ls", "resources/"]), "ls");
    assert_eq!(ls, [("resources/r0".to_string(), "alice".to_string())]);
    let w = json_lines(b, &["wait-resource", "r0", "is-uptodate"]);
    let st: ReplicaStatus = serde_json::from_value(w[0]["state"].clone()).unwrap();
    assert!(st.up_to_date);
    let w = json_lines(b, &["wait-cluster"]);
    assert_eq!(w[0]["state"][0]["name"], "alice");
    for args in [
        &["log-rotate", "r0"][..],
        &["cron"],
        &["resume-fetch", "r0"],
    ] {
        let node = if args[0] == "resume-fetch" { b } else { a };
        json_response(node, args);
    }
    // A resource nobody has here shows in `view all` of a node outside it.
    let r1 = c.device("a1.img", SIZE);
    a.ok(&["create-resource", "r1", &r1]);
    wait_until(Duration::from_secs(10), "bob to see r1 in view all", || {
        let all: NodeStatus = json(&b.ok(&["--json", "view", "all"]), "view all");
        let names: Vec<&str> = all.resources.iter().map(|r| r.name.as_str()).collect();
        if names == ["r0", "r1"] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });
    assert!(b.ok(&["view", "all"]).contains("bob has no replica of r1"));
    let here: NodeStatus = json(&b.ok(&["--json", "view"]), "view");
    assert_eq!(here.resources.len(), 1, "plain view: resources here only");
}

#[test]
fn metrics_are_scraped_during_a_replication_and_are_plausible() {
    let ports = [free_port(), free_port()];
    let c = Cluster::new_with(&["alice", "bob"], |i, mut n| {
        n.extra = vec!["--metrics-listen".into(), format!("127.0.0.1:{}", ports[i])];
        n
    });
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let (ma, mb) = (
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.1:{}", ports[1]),
    );
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    b.wait_uptodate("r0");
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = a.nbd("r0");
    write_blocks(&mut nbd, &mut model, 1, 200, 20);
    // Metrics are rendered once per second: wait for a scrape that has the writes.
    let written = |s: &prometheus_parse::Scrape| {
        value(
            s,
            "mars_bytes_total",
            &[("node", "alice"), ("what", "write")],
        )
        .unwrap_or(0.0)
    };
    let mut first = None;
    wait_until(
        Duration::from_secs(20),
        "alice's metrics to count the writes",
        || {
            let s = scrape(&ma);
            if written(&s) >= (200 * 4096) as f64 {
                first = Some(s);
                Ok(())
            } else {
                Err(format!("write bytes {}", written(&s)))
            }
        },
    );
    let s1 = first.unwrap();
    let role = |s: &prometheus_parse::Scrape, node, role| {
        value(
            s,
            "mars_replica_role",
            &[("resource", "r0"), ("node", node), ("role", role)],
        )
    };
    assert_eq!(role(&s1, "alice", "Primary"), Some(1.0));
    assert_eq!(role(&s1, "bob", "Secondary"), Some(1.0));
    assert_eq!(
        value(
            &s1,
            "mars_peer_connected",
            &[("node", "alice"), ("peer", "bob")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s1, "mars_resource_split_brain", &[("resource", "r0")]),
        Some(0.0)
    );
    assert_eq!(
        value(&s1, "mars_resource_emergency", &[("resource", "r0")]),
        Some(0.0)
    );
    let reqs = |s: &prometheus_parse::Scrape| {
        value(s, "mars_export_requests_total", &[("resource", "r0")]).unwrap()
    };
    assert!(reqs(&s1) >= 200.0, "{}", reqs(&s1));
    let hist = value(&s1, "mars_export_latency_seconds", &[("resource", "r0")]).unwrap();
    assert_eq!(hist, reqs(&s1), "the +Inf bucket counts every request");
    assert!(value(&s1, "mars_log_bytes", &[("resource", "r0")]).unwrap() >= (200 * 4096) as f64);
    assert!(value(&s1, "mars_dir_free_bytes", &[]).unwrap() > 0.0);
    assert!(value(&s1, "mars_meta_rounds_total", &[]).unwrap() > 0.0);
    // More writes: the counters grow, on the primary and (replay) on the secondary.
    let replayed = |s: &prometheus_parse::Scrape| {
        value(
            s,
            "mars_bytes_total",
            &[("node", "bob"), ("what", "replay")],
        )
        .unwrap_or(0.0)
    };
    let r1 = replayed(&scrape(&mb));
    write_blocks(&mut nbd, &mut model, 2, 200, 20);
    wait_until(Duration::from_secs(20), "the counters to grow", || {
        let (sa, sb) = (scrape(&ma), scrape(&mb));
        let grown = written(&sa) >= written(&s1) + (200 * 4096) as f64
            && reqs(&sa) > reqs(&s1)
            && replayed(&sb) > r1;
        if grown {
            Ok(())
        } else {
            Err(format!("write {} replay {}", written(&sa), replayed(&sb)))
        }
    });
    let sb = scrape(&mb);
    assert_eq!(role(&sb, "bob", "Secondary"), Some(1.0));
    // Anything but GET /metrics is 404.
    let mut s = std::net::TcpStream::connect(&ma).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    nbd.disconnect().unwrap();
}

/// `marsadm events --json` on `n`, its lines delivered through a channel.
fn events(n: &Node) -> (ChildGuard, crossbeam_channel::Receiver<Event>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_marsadm"))
        .args([
            "--mars-dir",
            n.dir.to_str().unwrap(),
            "--timeout",
            "120",
            "--json",
            "events",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let e: Event = json(&line, "an event line");
            if tx.send(e).is_err() {
                return;
            }
        }
    });
    (ChildGuard(Some(child)), rx)
}

/// Events until `last` matches (at most 60 s).
fn until(rx: &crossbeam_channel::Receiver<Event>, last: impl Fn(&Event) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) => {
                let done = last(&e);
                got.push(e);
                if done {
                    return got;
                }
            }
            Err(_) => panic!("timed out; events so far: {got:#?}"),
        }
    }
}

fn is_role(e: &Event, host: &str, old: Option<&str>, new: Option<&str>) -> bool {
    e.kind == EventType::Change
        && e.what == "role"
        && e.host.as_deref() == Some(host)
        && (old.is_none() || e.old.as_deref() == old)
        && (new.is_none() || e.new.as_deref() == new)
}

#[test]
fn events_across_a_planned_handover_show_the_role_changes_on_both_nodes_in_order() {
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    b.wait_uptodate("r0");
    let (_ga, ea) = events(a);
    let (_gb, eb) = events(b);
    for (rx, node) in [(&ea, "alice"), (&eb, "bob")] {
        let first = until(rx, |e| {
            e.what == "role" && e.host.as_deref() == Some("alice")
        });
        assert!(
            first
                .iter()
                .all(|e| e.kind == EventType::Exists && e.node == node),
            "{first:#?}"
        );
        assert_eq!(first.last().unwrap().new.as_deref(), Some("Primary"));
    }
    b.ok(&["primary", "r0"]);
    for (rx, node) in [(&ea, "alice"), (&eb, "bob")] {
        let got = until(rx, |e| is_role(e, "bob", None, Some("Primary")));
        let alice_left = got
            .iter()
            .position(|e| is_role(e, "alice", Some("Primary"), None))
            .unwrap_or_else(|| panic!("{node}: alice never left the primary role: {got:#?}"));
        assert!(alice_left < got.len() - 1, "{node}: {got:#?}");
        assert!(got
            .iter()
            .any(|e| e.what == "primary" && e.new.as_deref() == Some("bob")));
        assert!(got.iter().all(|e| e.node == node && e.time_ms > 0));
    }
    // Text lines name the same changes.
    let o = b.ok(&["events", "r0", "--count", "3"]);
    assert_eq!(o.lines().count(), 3, "{o}");
    assert!(o.lines().all(|l| l.contains(" exists bob ")), "{o}");
    b.refused(&["events", "nope"], "no resource nope");
}

#[test]
fn view_says_why_a_replica_waits_paused_fetch_and_unreachable_primary() {
    let mut c = Cluster::new(&["alice", "bob"]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    c.nodes[1].wait_uptodate("r0");
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    b.ok(&["pause-fetch", "r0"]);
    b.wait_state("r0", "PausedFetch", |m| m.repl == "PausedFetch");
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = a.nbd("r0");
    write_blocks(&mut nbd, &mut model, 3, 100, 20);
    nbd.disconnect().unwrap();
    // Bob knows the primary moved on: the lag in bytes and in seconds, and why it waits.
    wait_until(Duration::from_secs(20), "bob's lag to show", || {
        let m = mine(&view_json(b, "r0"), "r0");
        let lag = m.progress.iter().find(|p| p.kind == ProgressKind::Replay);
        match lag {
            Some(p) if p.lag_bytes >= Some(100 * 4096) && p.lag_s.is_some() => Ok(()),
            _ => Err(format!("{m:?}")),
        }
    });
    let text = b.ok(&["view", "r0"]);
    assert!(
        text.contains("info: fetch paused by operator: `marsadm resume-fetch r0`"),
        "{text}"
    );
    // The view on alice says the same of bob (from the metadata).
    let text = a.ok(&["view", "r0"]);
    assert!(text.contains("fetch paused by operator"), "{text}");
    b.ok(&["resume-fetch", "r0"]);
    b.wait_uptodate("r0");
    c.nodes[0].stop();
    let b = &c.nodes[1];
    b.wait_unresponsive("r0", "alice", Duration::from_secs(30));
    let m = mine(&view_json(b, "r0"), "r0");
    assert_eq!(m.repl, "PrimaryUnreachable", "{m:?}");
    let w = m
        .messages
        .iter()
        .find(|x| x.level == Level::Warning && x.text.contains("primary alice unreachable for"))
        .unwrap_or_else(|| panic!("{m:?}"));
    assert!(w.text.contains("primary --force r0"), "{w:?}");
    assert!(b.ok(&["view", "r0"]).contains("[no contact "));
}
