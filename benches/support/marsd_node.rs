//! Real `marsd` processes for the benches: build or find the binaries, start a node on a free
//! loopback port (killed on drop), drive it with `marsadm`, read its status.
// Each bench uses a part of this.
#![allow(dead_code)]

use mars_cli::control::{call, Outcome, Request};
use mars_cli::view::{NodeStatus, ReplicaStatus};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

pub fn fallocate(path: &Path, size: u64) {
    let st = Command::new("fallocate")
        .args(["-l", &size.to_string()])
        .arg(path)
        .status()
        .expect("running fallocate");
    assert!(st.success(), "fallocate {} failed", path.display());
}

/// The directory holding `marsd` and `marsadm`: built now with the cargo running the bench.
pub fn binaries() -> PathBuf {
    if let Ok(d) = std::env::var("MARS_BENCH_BIN_DIR") {
        return PathBuf::from(d);
    }
    // The bench runs as target/<profile>/deps/marsd-<hash>: the binaries of `--release` land
    // in target/release (the bench profile inherits release and shares its directory).
    let exe = std::env::current_exe().expect("the bench's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let t = Instant::now();
    let st = Command::new(cargo)
        .args(["build", "--release", "-p", "mars-cli", "--bins"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("running cargo build");
    assert!(st.success(), "cargo build --release -p mars-cli failed");
    eprintln!("marsd bench: built marsd/marsadm in {:?}", t.elapsed());
    for b in ["marsd", "marsadm"] {
        assert!(dir.join(b).exists(), "no {b} in {}", dir.display());
    }
    dir
}

/// How a node's marsd is scheduled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[allow(dead_code)] // `Idle` is used by the marsd bench only
pub enum Priority {
    Normal,
    /// `SCHED_IDLE` and the idle IO class: it runs only on CPU and disk time nobody else wants,
    /// which is what a node on a machine of its own takes from the others (nothing).
    Idle,
}

/// One marsd process (killed on drop) and marsadm against it.
pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    port: u16,
    bin: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    pub fn start(root: &Path, bin: &Path, name: &str, secret: &Path) -> Node {
        Node::start_with_priority(root, bin, name, secret, Priority::Normal)
    }

    /// [`Node::start`], with the process's CPU and IO priority (every thread inherits it).
    pub fn start_with_priority(
        root: &Path,
        bin: &Path,
        name: &str,
        secret: &Path,
        priority: Priority,
    ) -> Node {
        let dir = root.join(name);
        let log = root.join(format!("{name}.log"));
        let port = free_port();
        let marsd = bin.join("marsd");
        let mut cmd = match priority {
            Priority::Normal => Command::new(&marsd),
            // `chrt` and `ionice` exec marsd: the child's pid is marsd's.
            Priority::Idle => {
                let mut c = Command::new("chrt");
                c.args(["--idle", "0", "ionice", "-c", "3"]).arg(&marsd);
                c
            }
        };
        let child = cmd
            .args(["--mars-dir", dir.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--node", name])
            .args(["--secret-file", secret.to_str().unwrap()])
            // `MARS_BENCH_DIRECT_IO=on` measures primaries with O_DIRECT data devices and logs,
            // `MARS_BENCH_LOG_DIRECT_IO=on` with O_DIRECT logs.
            .args([
                "--direct-io",
                &std::env::var("MARS_BENCH_DIRECT_IO").unwrap_or_else(|_| "auto".into()),
            ])
            .args([
                "--log-direct-io",
                &std::env::var("MARS_BENCH_LOG_DIRECT_IO").unwrap_or_else(|_| "auto".into()),
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawning marsd");
        let n = Node {
            name: name.to_string(),
            dir,
            port,
            bin: bin.to_path_buf(),
            child: Some(child),
            log,
        };
        wait_until(Duration::from_secs(10), "marsd to listen", || {
            n.status_raw().map(drop)
        });
        n
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn adm(&self, args: &[&str]) -> Output {
        Command::new(self.bin.join("marsadm"))
            .args(["--mars-dir", self.dir.to_str().unwrap(), "--timeout", "120"])
            .args(args)
            .output()
            .expect("running marsadm")
    }

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

    pub fn status_raw(&self) -> Result<NodeStatus, String> {
        let r = call(&self.dir.join("marsd.sock"), Request::Status { res: None })
            .map_err(|e| e.to_string())?;
        if r.status != Outcome::Ok {
            return Err(r.message);
        }
        serde_json::from_value(r.data).map_err(|e| e.to_string())
    }

    /// `host`'s replica of `res` as this node sees it.
    pub fn replica_of(&self, res: &str, host: &str) -> Option<ReplicaStatus> {
        let s = self.status_raw().ok()?;
        s.resources
            .iter()
            .find(|r| r.name == res)?
            .replicas
            .iter()
            .find(|m| m.host == host)
            .cloned()
    }

    pub fn wait_state(
        &self,
        res: &str,
        what: &str,
        limit: Duration,
        f: impl Fn(&ReplicaStatus) -> bool,
    ) {
        wait_until(
            limit,
            &format!("{res} on {}: {what}", self.name),
            || match self.replica_of(res, &self.name) {
                Some(m) if f(&m) => Ok(()),
                m => Err(format!("{m:?}")),
            },
        );
    }

    pub fn nbd_uri(&self, res: &str) -> String {
        format!(
            "nbd+unix:///{res}?socket={}",
            self.dir.join("nbd").join(format!("{res}.sock")).display()
        )
    }

    pub fn log_tail(&self) -> String {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
