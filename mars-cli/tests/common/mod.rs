//! A cluster of real `marsd` processes on loopback, each with its own mars directory, driven
//! only through `marsadm` (and the control socket for status).
#![allow(dead_code)]

use mars_cli::control::{call, Outcome, Request};
use mars_cli::view::{NodeStatus, ReplicaStatus};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use xio::nbd::client::Client;

pub const SECRET: &str = "scenario cluster secret, long enough";

/// A free loopback port (bound and released: good enough on a test machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until `f` holds, at most `limit`; panics naming `what` and the last state.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(()) => return,
            Err(state) if Instant::now() >= deadline => {
                panic!("timed out after {limit:?} waiting for {what}; last state: {state}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    secret: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    /// A node (not started) with its dir under `root` and the secret in `secret`.
    pub fn new(root: &Path, name: &str, secret: &Path) -> Node {
        Node {
            name: name.to_string(),
            dir: root.join(name),
            port: free_port(),
            secret: secret.to_path_buf(),
            child: None,
            log: root.join(format!("{name}.log")),
        }
    }

    /// Start marsd and expect it to refuse: returns its exit code and stderr.
    pub fn start_refused(&self) -> (Option<i32>, String) {
        let o = Command::new(env!("CARGO_BIN_EXE_marsd"))
            .args(["--mars-dir", self.dir.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--node", &self.name])
            .args(["--secret-file", self.secret.to_str().unwrap()])
            .output()
            .expect("running marsd");
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} runs already", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_marsd"))
            .args(["--mars-dir", self.dir.to_str().unwrap()])
            .args(["--listen", &self.addr()])
            .args(["--node", &self.name])
            .args(["--secret-file", self.secret.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning marsd");
        self.child = Some(child);
        let sock = self.dir.join("marsd.sock");
        wait_until(Duration::from_secs(10), "marsd to listen", || {
            match call(&sock, Request::Status { res: None }) {
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        });
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    c.kill().unwrap();
                    panic!("marsd {} did not stop within 20 s of SIGTERM", self.name);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn adm(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_marsadm"))
            .args(["--mars-dir", self.dir.to_str().unwrap(), "--timeout", "60"])
            .args(args)
            .output()
            .expect("running marsadm")
    }

    /// marsadm must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.adm(args);
        assert!(
            o.status.success(),
            "marsadm {args:?} on {} failed ({}): {}{}\n--- marsd log tail ---\n{}",
            self.name,
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// marsadm must be refused with exit code 1 and a message containing `want`; returns it.
    pub fn refused(&self, args: &[&str], want: &str) -> String {
        let o = self.adm(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(
            o.status.code(),
            Some(1),
            "marsadm {args:?} should be refused: {err}"
        );
        assert!(
            err.contains(want),
            "marsadm {args:?}: {err:?} should mention {want:?}"
        );
        err
    }

    pub fn status(&self) -> NodeStatus {
        let r = call(&self.dir.join("marsd.sock"), Request::Status { res: None }).unwrap();
        assert_eq!(r.status, Outcome::Ok);
        serde_json::from_value(r.data).unwrap()
    }

    pub fn replica(&self, res: &str) -> Option<ReplicaStatus> {
        let s = self.status();
        s.resources
            .iter()
            .find(|r| r.name == res)?
            .replicas
            .iter()
            .find(|m| m.host == self.name)
            .cloned()
    }

    pub fn nbd_sock(&self, res: &str) -> PathBuf {
        self.dir.join("nbd").join(format!("{res}.sock"))
    }

    pub fn nbd(&self, res: &str) -> Client {
        let sock = self.nbd_sock(res);
        let mut last = None;
        for _ in 0..100 {
            match Client::unix(&sock, res, true) {
                Ok(c) => return c,
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cannot connect to {}: {last:?}", sock.display());
    }

    pub fn wait_state(&self, res: &str, what: &str, f: impl Fn(&ReplicaStatus) -> bool) {
        wait_until(
            Duration::from_secs(60),
            &format!("{res} on {}: {what}", self.name),
            || match self.replica(res) {
                Some(m) if f(&m) => Ok(()),
                m => Err(format!("{m:?}")),
            },
        );
    }

    pub fn wait_uptodate(&self, res: &str) {
        self.wait_state(res, "UpToDate", |m| m.up_to_date);
    }

    pub fn log_tail(&self) -> String {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Cluster {
    pub root: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// `names` started, the first creates the cluster, the others join it.
    pub fn new(names: &[&str]) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let secret = root.path().join("secret");
        std::fs::write(&secret, SECRET).unwrap();
        let mut nodes = Vec::new();
        for n in names {
            let mut node = Node::new(root.path(), n, &secret);
            node.start();
            nodes.push(node);
        }
        nodes[0].ok(&["create-cluster"]);
        let first = nodes[0].addr();
        for n in &nodes[1..] {
            n.ok(&["join-cluster", &first]);
        }
        Cluster { root, nodes }
    }

    /// A sparse device file of `size` bytes.
    pub fn device(&self, name: &str, size: u64) -> String {
        let p = self.root.path().join(name);
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(size).unwrap();
        p.display().to_string()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }
}

/// Read a whole device through an NBD export.
pub fn read_export(c: &mut Client, size: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size as usize);
    let mut pos = 0;
    while pos < size {
        let n = (size - pos).min(4 << 20) as u32;
        out.extend(c.read(pos, n).unwrap().expect("NBD read"));
        pos += n as u64;
    }
    out
}

/// Random 4 KiB writes (deterministic from `seed`) through `c`, mirrored into `model`,
/// with a flush every `flush_every` writes and at the end.
pub fn write_blocks(c: &mut Client, model: &mut [u8], seed: u64, count: usize, flush_every: usize) {
    let mut x = seed | 1;
    let blocks = model.len() as u64 / 4096;
    for i in 0..count {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = (x % blocks) * 4096;
        let fill = (x >> 32) as u8 | 1;
        let block = vec![fill; 4096];
        model[off as usize..off as usize + 4096].copy_from_slice(&block);
        assert_eq!(c.write(off, &block).unwrap(), 0, "NBD write at {off}");
        if (i + 1) % flush_every == 0 {
            assert_eq!(c.flush().unwrap(), 0);
        }
    }
    assert_eq!(c.flush().unwrap(), 0);
}

/// Compare a secondary's data device with the expected bytes (polling: replay may be a
/// moment behind what `view` last said).
pub fn wait_equal(path: &Path, want: &[u8], what: &str) {
    wait_until(Duration::from_secs(30), what, || {
        let got = std::fs::read(path).map_err(|e| e.to_string())?;
        if got.len() < want.len() {
            return Err(format!(
                "{} is {} bytes, want {}",
                path.display(),
                got.len(),
                want.len()
            ));
        }
        match got[..want.len()].iter().zip(want).position(|(a, b)| a != b) {
            None => Ok(()),
            Some(i) => Err(format!("first difference at byte {i}")),
        }
    });
}
