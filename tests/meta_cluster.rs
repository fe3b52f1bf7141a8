//! A real 12-node metadata cluster of separate processes on loopback (mars-net transport,
//! redb persistence): join, converge after a change (time measured and printed), survive
//! `kill -9` and restart of 3 nodes, catch up on what they missed, converge again.
//!
//! The node processes are this test binary re-executed (`MARS_META_NODE` set) running
//! `mars_strategy::net::serve_stdio`.
use mars_strategy::net::{serve_stdio, StdioNode};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const N: usize = 12;
const SECRET: &str = "meta-cluster-test-secret-0123456789";

/// The child side: runs one node when re-executed with `MARS_META_NODE=<dir>|<name>|<join>`.
#[test]
fn meta_node_child() {
    let Ok(spec) = std::env::var("MARS_META_NODE") else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let join = parts[2]
        .split_once('@')
        .map(|(n, a)| (n.to_string(), a.parse().expect("contact address")));
    let opts = StdioNode {
        dir: parts[0].into(),
        node: parts[1].into(),
        listen: "127.0.0.1:0".into(),
        secret: SECRET.as_bytes().to_vec(),
        create: parts[2] == "create",
        join,
        tick: Duration::from_millis(200),
    };
    if let Err(e) = serve_stdio(opts) {
        eprintln!("node {}: {e}", parts[1]);
        std::process::exit(1);
    }
    std::process::exit(0);
}

struct Proc {
    child: Child,
    stdin: ChildStdin,
    addr: String,
}

/// Kills every child on drop (also when the test fails).
struct Cluster {
    procs: Vec<Option<Proc>>,
    events: mpsc::Receiver<(usize, String)>,
    tx: mpsc::Sender<(usize, String)>,
    state: Vec<HashMap<String, String>>,
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().flatten() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

fn name(i: usize) -> String {
    format!("node{i:02}")
}

impl Cluster {
    fn spawn(&mut self, i: usize, how: &str) {
        let dir = self.dir.path().join(name(i));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "meta_node_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                "MARS_META_NODE",
                format!("{}|{}|{how}", dir.display(), name(i)),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((i, line)).is_err() {
                    break;
                }
            }
        });
        self.procs[i] = Some(Proc {
            child,
            stdin,
            addr: String::new(),
        });
        // Wait for its "ready" line.
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.procs[i].as_ref().unwrap().addr.is_empty() {
            assert!(Instant::now() < deadline, "node {i} did not start");
            self.pump(Duration::from_millis(100));
        }
    }

    fn pump(&mut self, wait: Duration) {
        let Ok((i, line)) = self.events.recv_timeout(wait) else {
            return;
        };
        // libtest prints "test meta_node_child ... " without a newline before our first line.
        let line = line.rsplit_once("... ").map_or(line.as_str(), |(_, l)| l);
        let mut it = line.splitn(3, ' ');
        match (it.next(), it.next(), it.next()) {
            (Some("ready"), Some(a), None) => {
                if let Some(p) = self.procs[i].as_mut() {
                    p.addr = a.to_string();
                }
            }
            (Some("changed"), Some(k), Some(v)) => {
                self.state[i].insert(k.to_string(), v.to_string());
            }
            _ => {}
        }
    }

    fn send(&mut self, i: usize, cmd: &str) {
        let p = self.procs[i].as_mut().unwrap();
        writeln!(p.stdin, "{cmd}").unwrap();
        p.stdin.flush().unwrap();
    }

    fn kill(&mut self, i: usize) {
        let mut p = self.procs[i].take().unwrap();
        p.child.kill().unwrap(); // SIGKILL
        p.child.wait().unwrap();
        self.state[i].clear();
    }

    /// Wait until every live node satisfies `ok`; returns the time it took.
    fn wait_all(
        &mut self,
        what: &str,
        limit: Duration,
        ok: impl Fn(&HashMap<String, String>) -> bool,
    ) -> Duration {
        let t0 = Instant::now();
        loop {
            let live: Vec<usize> = (0..N).filter(|&i| self.procs[i].is_some()).collect();
            if live.iter().all(|&i| ok(&self.state[i])) {
                return t0.elapsed();
            }
            if t0.elapsed() > limit {
                let missing: Vec<String> = live
                    .iter()
                    .filter(|&&i| !ok(&self.state[i]))
                    .map(|&i| format!("{} (knows {} keys)", name(i), self.state[i].len()))
                    .collect();
                panic!("{what}: not reached within {limit:?} on {missing:?}");
            }
            self.pump(Duration::from_millis(20));
        }
    }
}

#[test]
fn twelve_processes_converge_and_survive_restarts() {
    if std::env::var("MARS_META_NODE").is_ok() {
        return;
    }
    let (tx, events) = mpsc::channel();
    let mut c = Cluster {
        procs: (0..N).map(|_| None).collect(),
        events,
        tx,
        state: vec![HashMap::new(); N],
        dir: tempfile::tempdir().unwrap(),
    };
    c.spawn(0, "create");
    let contact = format!("{}@{}", name(0), c.procs[0].as_ref().unwrap().addr);
    for i in 1..N {
        c.spawn(i, &contact);
    }
    let all_ips = |s: &HashMap<String, String>| {
        (0..N).all(|j| s.contains_key(&format!("ips/ip-{}", name(j))))
    };
    let t = c.wait_all(
        "every node knows all 12 members",
        Duration::from_secs(30),
        all_ips,
    );
    println!("12 nodes joined and know each other after {t:?}");

    // One change, measured.
    c.send(5, "set defaults/sync-limit 111");
    let t = c.wait_all("change 1", Duration::from_secs(10), |s| {
        s.get("defaults/sync-limit").map(String::as_str) == Some("111")
    });
    println!("change from node05 reached all 12 nodes in {t:?}");
    assert!(
        t < Duration::from_secs(5),
        "convergence took {t:?} (goal < 5 s)"
    );

    // kill -9 three nodes; change while they are down.
    for i in [2, 7, 11] {
        c.kill(i);
    }
    c.send(0, "set userspace/during-outage yes");
    let t = c.wait_all(
        "change during outage (9 nodes)",
        Duration::from_secs(10),
        |s| s.contains_key("userspace/during-outage"),
    );
    println!("change with 3 nodes down reached the 9 others in {t:?}");

    // Restart them from their stores: they catch up on what they missed.
    for i in [2, 7, 11] {
        c.spawn(i, &contact);
    }
    let t = c.wait_all("restarted nodes catch up", Duration::from_secs(20), |s| {
        s.contains_key("userspace/during-outage")
    });
    println!("restarted nodes caught up on the missed change in {t:?}");

    // A change made by a restarted node converges again.
    c.send(7, "set defaults/sync-limit 222");
    let t = c.wait_all("change 2", Duration::from_secs(10), |s| {
        s.get("defaults/sync-limit").map(String::as_str) == Some("222")
    });
    println!("change from restarted node07 reached all 12 nodes in {t:?}");
    assert!(
        t < Duration::from_secs(5),
        "convergence after restarts took {t:?} (goal < 5 s)"
    );
    // A restarted node still has its pre-crash state (persisted) and the new one.
    assert!(c.state[2].contains_key("defaults/sync-limit"));
}
