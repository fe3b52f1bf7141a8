//! A metadata cluster of separate processes on loopback (mars-net transport, redb persistence),
//! shared by `tests/meta_cluster.rs` (correctness) and `benches/metacluster.rs` (figures).
//!
//! Each node is the calling binary re-executed with `MARS_META_NODE=<dir>|<name>|<join>` set
//! (and the arguments the caller names: the test passes libtest's `--ignored --exact <child>`),
//! running `mars_strategy::net::serve_stdio`: "ready <addr>" and "changed <key> <value>" lines
//! on stdout, commands on stdin.
#![allow(dead_code)]

use mars_strategy::net::{serve_stdio, StdioNode};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const N: usize = 12;
const SECRET: &str = "meta-cluster-test-secret-0123456789";

/// The environment variable that makes a re-executed binary a node.
pub const NODE_ENV: &str = "MARS_META_NODE";

/// Run one node as described by `spec` (the value of [`NODE_ENV`]); exits the process.
pub fn node_main(spec: &str) -> ! {
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

pub struct Proc {
    child: Child,
    stdin: ChildStdin,
    pub addr: String,
}

/// Kills every child on drop (also when the test fails).
pub struct Cluster {
    pub procs: Vec<Option<Proc>>,
    events: mpsc::Receiver<(usize, String)>,
    tx: mpsc::Sender<(usize, String)>,
    pub state: Vec<HashMap<String, String>>,
    dir: tempfile::TempDir,
    /// Arguments for the re-executed binary.
    child_args: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().flatten() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

pub fn name(i: usize) -> String {
    format!("node{i:02}")
}

impl Cluster {
    /// No nodes yet; nodes are this binary re-executed with `child_args`.
    pub fn new(child_args: &[&str]) -> Cluster {
        let (tx, events) = mpsc::channel();
        Cluster {
            procs: (0..N).map(|_| None).collect(),
            events,
            tx,
            state: vec![HashMap::new(); N],
            dir: tempfile::tempdir().unwrap(),
            child_args: child_args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Start node `i`: `how` is "create" or the contact `name@addr` to join.
    pub fn spawn(&mut self, i: usize, how: &str) {
        let dir = self.dir.path().join(name(i));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(&self.child_args)
            .env(NODE_ENV, format!("{}|{}|{how}", dir.display(), name(i)))
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

    pub fn send(&mut self, i: usize, cmd: &str) {
        let p = self.procs[i].as_mut().unwrap();
        writeln!(p.stdin, "{cmd}").unwrap();
        p.stdin.flush().unwrap();
    }

    pub fn kill(&mut self, i: usize) {
        let mut p = self.procs[i].take().unwrap();
        p.child.kill().unwrap(); // SIGKILL
        p.child.wait().unwrap();
        self.state[i].clear();
    }

    /// Wait until every live node satisfies `ok`; returns the time it took.
    pub fn wait_all(
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
