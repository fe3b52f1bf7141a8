//! A cluster of real `marsd` processes on loopback, each with its own mars directory, driven
//! only through `marsadm` (and the control socket for status).
#![allow(dead_code)]

use mars_cli::control::{call, Outcome, Request};
use mars_cli::view::{NodeStatus, ReplicaStatus};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use xio::nbd::client::Client;

mod artifacts;
mod campaign;
pub mod logimage;
mod tmpfs;
pub use artifacts::keep_artifacts;
#[allow(unused_imports)]
pub use tmpfs::Tmpfs;
// Not every suite uses every helper.
#[allow(unused_imports)]
pub use campaign::*;

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
    /// The IP marsd listens on (`127.0.0.1` unless set with `in_netns`).
    ip: String,
    /// The network namespace marsd runs in (`ip netns exec NS`), if any.
    netns: Option<String>,
    /// Extra marsd arguments (e.g. `--nbd-listen`).
    pub extra: Vec<String>,
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
            ip: "127.0.0.1".to_string(),
            netns: None,
            extra: Vec::new(),
        }
    }

    /// Run marsd inside the network namespace `ns` (via `ip netns exec`), listening on `ip`.
    /// Its control and NBD sockets are Unix sockets in its dir: reachable from the host.
    pub fn in_netns(mut self, ns: &str, ip: &str) -> Node {
        self.netns = Some(ns.to_string());
        self.ip = ip.to_string();
        self
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
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} runs already", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = match &self.netns {
            None => Command::new(env!("CARGO_BIN_EXE_marsd")),
            Some(ns) => {
                // `ip netns exec` execs marsd: the child's pid is marsd's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_marsd")]);
                c
            }
        };
        let child = cmd
            .args(["--mars-dir", self.dir.to_str().unwrap()])
            .args(["--listen", &self.addr()])
            .args(["--node", &self.name])
            .args(["--secret-file", self.secret.to_str().unwrap()])
            .args(&self.extra)
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

    /// The process id of this node's marsd.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("marsd runs").id()
    }

    /// The threads of this node's marsd whose names start with `prefix`.
    pub fn threads_named(&self, prefix: &str) -> usize {
        let pid = self.pid();
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                    .filter(|c| c.trim().starts_with(prefix))
                    .count()
            })
            .unwrap_or(0)
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

    /// marsadm must succeed within `limit` (retried while it is refused: the state it needs
    /// is still propagating); returns its stdout.
    pub fn ok_within(&self, args: &[&str], limit: Duration, what: &str) -> String {
        let mut out = String::new();
        wait_until(limit, what, || {
            let o = self.adm(args);
            if o.status.success() {
                out = String::from_utf8_lossy(&o.stdout).into_owned();
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&o.stderr).into_owned())
            }
        });
        out
    }

    /// `cron` on this primary until it leaves emergency mode (Primary and UpToDate again), at
    /// most `limit`.
    pub fn cron_until_logging(&self, res: &str, limit: Duration) {
        wait_until(
            limit,
            &format!("{} to leave emergency mode", self.name),
            || {
                let out = self.ok(&["cron"]);
                match self.replica(res) {
                    Some(m) if m.role == "Primary" && m.disk == "UpToDate" => Ok(()),
                    m => Err(format!("{out} / {m:?}")),
                }
            },
        );
    }

    /// Wait until this node has no metadata connection to `other` (its replica of `res`
    /// shows `UnResponsive`).
    pub fn wait_unresponsive(&self, res: &str, other: &str, limit: Duration) {
        wait_until(
            limit,
            &format!("{} to see {other} UnResponsive", self.name),
            || {
                let m = self
                    .status()
                    .resources
                    .iter()
                    .find(|r| r.name == res)
                    .and_then(|r| r.replicas.iter().find(|m| m.host == other).cloned());
                match m {
                    Some(m) if m.repl == "UnResponsive" => Ok(()),
                    m => Err(format!("{m:?}")),
                }
            },
        );
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

    /// `wait_state` with a time limit of its own.
    pub fn wait_state_for(
        &self,
        res: &str,
        what: &str,
        limit: Duration,
        f: impl Fn(&ReplicaStatus) -> bool,
    ) {
        wait_until(
            limit,
            &format!("{res} on {}: {what}", self.name),
            || match self.replica(res) {
                Some(m) if f(&m) => Ok(()),
                m => Err(format!("{m:?}")),
            },
        );
    }

    /// How many NBD clients this node believes `host` (a primary) has for `res`.
    pub fn clients_of(&self, res: &str, host: &str) -> Option<u64> {
        self.status()
            .resources
            .iter()
            .find(|r| r.name == res)?
            .replicas
            .iter()
            .find(|m| m.host == host)
            .map(|m| m.clients)
    }

    /// The `nbd+unix://` URI of the export of `res` on this node (qemu-io, qemu-img, fio).
    pub fn nbd_uri(&self, res: &str) -> String {
        format!("nbd+unix:///{res}?socket={}", self.nbd_sock(res).display())
    }

    pub fn wait_uptodate(&self, res: &str) {
        self.wait_state(res, "UpToDate", |m| m.up_to_date);
    }

    /// Everything its marsd logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

impl Drop for Cluster {
    /// A failing test keeps every node's marsd log and `view --json` (printed path).
    fn drop(&mut self) {
        if std::thread::panicking() {
            keep_artifacts(&self.nodes);
        }
    }
}

impl Cluster {
    /// `names` started, the first creates the cluster, the others join it.
    pub fn new(names: &[&str]) -> Cluster {
        Cluster::new_with(names, |_, n| n)
    }

    /// Like `new`, each node shaped by `setup(index, node)` before it starts (e.g.
    /// `Node::in_netns`).
    pub fn new_with(names: &[&str], setup: impl Fn(usize, Node) -> Node) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let secret = root.path().join("secret");
        std::fs::write(&secret, SECRET).unwrap();
        let mut nodes = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let mut node = setup(i, Node::new(root.path(), n, &secret));
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

    /// Resource `res` of `size` bytes: created on the first node (device file `devs[0]`),
    /// which becomes primary, then joined by the next nodes (device files `devs[1..]`).
    pub fn replicate(&self, res: &str, devs: &[&str], size: u64) {
        let first = &self.nodes[0];
        first.ok(&["create-resource", res, &self.device(devs[0], size)]);
        first.wait_state(res, "Primary", |m| m.role == "Primary");
        for (n, d) in self.nodes[1..].iter().zip(&devs[1..]) {
            n.ok(&["join-resource", res, &self.device(d, size)]);
        }
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
    // Injective in `seed` (and never 0, which xorshift cannot leave).
    let mut x = seed
        .wrapping_mul(2)
        .wrapping_add(1)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
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

/// Run an external tool (`qemu-io`, `qemu-img`, `fio`, `ip`, `tc`) with a time limit: killed
/// and a panic past `limit`. Returns its output whatever its exit status.
pub fn run_tool(prog: &str, args: &[&str], limit: Duration) -> Output {
    run_bounded(prog, args, limit).unwrap_or_else(|e| panic!("{e}"))
}

/// `run_tool` that never panics (for use while a test is already failing): an error says
/// why it did not finish.
pub fn run_bounded(prog: &str, args: &[&str], limit: Duration) -> Result<Output, String> {
    use std::io::Read;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning {prog}: {e}"))?;
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{prog} {args:?} did not finish within {limit:?} ({other:?})"
                ));
            }
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// `run_tool` that must exit 0; returns its stdout.
pub fn tool_ok(prog: &str, args: &[&str], limit: Duration) -> String {
    let o = run_tool(prog, args, limit);
    assert!(
        o.status.success(),
        "{prog} {args:?} failed ({}): {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A child process killed (and reaped) when dropped, e.g. a qemu-io holding an NBD
/// connection open while its stdin stays open.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// Close its stdin and wait (at most `limit`) until it exits; killed past that.
    pub fn close_and_wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.0.take()?;
        drop(c.stdin.take());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "child {} did not exit within {limit:?} of closing stdin",
                    c.id()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Two network namespaces joined by a veth pair, `10.77.<x>.1/24` in the first and
/// `10.77.<x>.2/24` in the second; names unique per process and pair. Deleted on drop
/// (drop it after the marsd processes running inside: declare it before the cluster).
pub struct NetnsPair {
    pub ns: [String; 2],
    pub veth: [String; 2],
    pub ip: [String; 2],
}

impl NetnsPair {
    pub fn new() -> NetnsPair {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let x = (pid.wrapping_mul(7) + k) % 250 + 1;
        let tag = format!("{pid}{}", (b'a' + (k % 26) as u8) as char);
        let pair = NetnsPair {
            ns: [format!("mars-t{tag}-a"), format!("mars-t{tag}-b")],
            // interface names: at most 15 bytes
            veth: [format!("mt{tag}a"), format!("mt{tag}b")],
            ip: [format!("10.77.{x}.1"), format!("10.77.{x}.2")],
        };
        let t = Duration::from_secs(20);
        for ns in &pair.ns {
            tool_ok("ip", &["netns", "add", ns], t);
            tool_ok(
                "ip",
                &["netns", "exec", ns, "ip", "link", "set", "lo", "up"],
                t,
            );
        }
        tool_ok(
            "ip",
            &[
                "link",
                "add",
                &pair.veth[0],
                "netns",
                &pair.ns[0],
                "type",
                "veth",
                "peer",
                "name",
                &pair.veth[1],
                "netns",
                &pair.ns[1],
            ],
            t,
        );
        for i in 0..2 {
            let cidr = format!("{}/24", pair.ip[i]);
            pair.exec_in(i, &["ip", "addr", "add", &cidr, "dev", &pair.veth[i]]);
            pair.exec_in(i, &["ip", "link", "set", &pair.veth[i], "up"]);
        }
        pair
    }

    /// Run `cmd` inside namespace `i` (0 or 1); it must succeed.
    pub fn exec_in(&self, i: usize, cmd: &[&str]) -> String {
        let mut args = vec!["netns", "exec", self.ns[i].as_str()];
        args.extend_from_slice(cmd);
        tool_ok("ip", &args, Duration::from_secs(20))
    }

    /// A token bucket on both ends of the veth pair, e.g. `"200mbit"`.
    pub fn shape(&self, rate: &str) {
        for i in 0..2 {
            self.exec_in(
                i,
                &[
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    &self.veth[i],
                    "root",
                    "tbf",
                    "rate",
                    rate,
                    "burst",
                    "256kb",
                    "latency",
                    "50ms",
                ],
            );
        }
    }

    /// `ip link set <veth i> up|down`.
    pub fn link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        self.exec_in(i, &["ip", "link", "set", &self.veth[i], state]);
    }
}

impl Default for NetnsPair {
    fn default() -> Self {
        NetnsPair::new()
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it (and so the pair).
        for ns in &self.ns {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// One qemu-io run writing each `(pattern, offset, length)` and flushing at the end.
pub fn qemu_write(uri: &str, writes: &[(u8, u64, u64)]) {
    let cmds: Vec<String> = writes
        .iter()
        .map(|(p, off, len)| format!("write -P 0x{p:02x} {off} {len}"))
        .chain(std::iter::once("flush".to_string()))
        .collect();
    let mut args = vec!["-f", "raw", uri];
    for c in &cmds {
        args.extend_from_slice(&["-c", c]);
    }
    let out = tool_ok("qemu-io", &args, Duration::from_secs(300));
    assert!(
        !out.contains("failed") && !out.contains("error"),
        "qemu-io {args:?}: {out}"
    );
}

/// `qemu-img compare` of the export `uri` and the file `file` until identical (exit 0), at
/// most `limit` (a secondary's replay may be a moment behind what its status said); returns
/// how many runs said "differ" first.
pub fn wait_compare_equal(uri: &str, file: &str, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    let mut differed = 0;
    loop {
        let o = run_tool(
            "qemu-img",
            &["compare", "-f", "raw", "-F", "raw", uri, file],
            Duration::from_secs(300),
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        match o.status.code() {
            Some(0) => return differed,
            Some(1) if Instant::now() < deadline => {
                differed += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            _ => panic!("qemu-img compare {uri} {file} ({}): {text}", o.status),
        }
    }
}

/// Scrape `http://addr/metrics` and parse it with a Prometheus text-format parser.
pub fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    use std::io::{Read, Write};
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).unwrap()
}

pub fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref h) => {
                h.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}
