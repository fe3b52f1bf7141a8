//! A demo node: a `marsd` (the daemon's own code, `mars_cli::daemon::Daemon`) on a thread of
//! this process, with its own mars directory, driven only through the control socket that
//! `marsadm` speaks.

use anyhow::{bail, Context, Result};
use mars_cli::control::{call, Outcome, Request, Response};
use mars_cli::daemon::{Daemon, Options};
use mars_cli::view::{NodeStatus, ReplicaStatus};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use xio::nbd::client::Client;

pub const SECRET: &str = "demo cluster secret, at least 16 bytes";
/// The demo's one resource.
pub const RES: &str = "r0";

pub struct Node {
    pub name: &'static str,
    pub dir: PathBuf,
    /// Where it listens for peers (kept over a restart: the others know it by this).
    pub addr: String,
    run: Option<(Arc<AtomicBool>, JoinHandle<Result<()>>)>,
}

impl Node {
    /// Start a marsd on loopback with the mars directory `root/name`.
    pub fn start(root: &Path, name: &'static str) -> Result<Node> {
        let mut n = Node {
            name,
            dir: root.join(name),
            addr: "127.0.0.1:0".into(),
            run: None,
        };
        n.restart()?;
        Ok(n)
    }

    /// Start (again) on the same directory and address: marsd resumes from its directory.
    pub fn restart(&mut self) -> Result<()> {
        let d = Daemon::open(Options {
            dir: self.dir.clone(),
            listen: self.addr.clone(),
            node: self.name.into(),
            secret: SECRET.into(),
            nbd_listen: None,
            mem_budget: mars_cli::daemon::DEFAULT_MEM_BUDGET,
            mem_floor: mars_cli::daemon::DEFAULT_MEM_FLOOR,
            direct_io: xio::file::DirectIo::Auto,
            log_direct_io: xio::file::DirectIo::Auto,
            log_spares: xio::logger::DEFAULT_SPARES,
            log_rotate_size: mars_cli::daemon::DEFAULT_LOG_ROTATE_SIZE,
        })
        .with_context(|| format!("starting marsd {}", self.name))?;
        self.addr = d.local_addr().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("marsd-{}", self.name))
            .spawn(move || d.run(&s2))?;
        self.run = Some((stop, thread));
        println!(
            "{}: marsd on {}, mars dir {}",
            self.name,
            self.addr,
            self.dir.display()
        );
        Ok(())
    }

    /// Stop the daemon (SIGTERM in a real deployment): peers see it unreachable.
    pub fn stop(&mut self) -> Result<()> {
        if let Some((stop, thread)) = self.run.take() {
            stop.store(true, Ordering::Release);
            match thread.join() {
                Ok(r) => r.with_context(|| format!("marsd {} failed", self.name))?,
                Err(_) => bail!("marsd {} panicked", self.name),
            }
            println!("{}: marsd stopped", self.name);
        }
        Ok(())
    }

    /// One `marsadm` command (`shown` is how an operator would type it): it must succeed.
    pub fn adm(&self, shown: &str, r: Request) -> Result<Response> {
        let resp = self.call(r)?;
        let msg = resp.message.trim_end();
        println!("{}$ marsadm {shown}{}", self.name, indent(msg));
        if resp.status != Outcome::Ok {
            bail!("{}: marsadm {shown} was refused: {msg}", self.name);
        }
        Ok(resp)
    }

    fn call(&self, r: Request) -> Result<Response> {
        call(&self.dir.join("marsd.sock"), r)
            .with_context(|| format!("talking to marsd {}", self.name))
    }

    pub fn status(&self) -> Result<NodeStatus> {
        let r = self.call(Request::Status { res: None })?;
        if r.status != Outcome::Ok {
            bail!("{}: status: {}", self.name, r.message);
        }
        Ok(serde_json::from_value(r.data)?)
    }

    /// The state of `host`'s replica of the resource, as this node sees it.
    pub fn replica_of(&self, host: &str) -> Result<Option<ReplicaStatus>> {
        Ok(self
            .status()?
            .resources
            .iter()
            .find(|r| r.name == RES)
            .and_then(|r| r.replicas.iter().find(|m| m.host == host).cloned()))
    }

    /// Wait until this node's own replica satisfies `f`.
    pub fn wait(&self, what: &str, f: impl Fn(&ReplicaStatus) -> bool) -> Result<()> {
        self.wait_of(self.name, what, f)
    }

    /// Wait until `host`'s replica, as this node sees it, satisfies `f`.
    pub fn wait_of(
        &self,
        host: &str,
        what: &str,
        f: impl Fn(&ReplicaStatus) -> bool,
    ) -> Result<()> {
        let mut last = None;
        wait_for(Duration::from_secs(60), || {
            last = self.replica_of(host)?;
            Ok(last.as_ref().is_some_and(&f))
        })
        .with_context(|| {
            format!(
                "{RES} on {host} (seen from {}) did not become {what}; last state: {last:?}",
                self.name
            )
        })
    }

    /// A client of this node's NBD export (it appears once the node is primary).
    pub fn nbd(&self) -> Result<Client> {
        let sock = self.dir.join("nbd").join(format!("{RES}.sock"));
        let mut c = None;
        wait_for(Duration::from_secs(10), || {
            c = Client::unix(&sock, RES, true).ok();
            Ok(c.is_some())
        })
        .with_context(|| format!("connecting to the NBD export {}", sock.display()))?;
        Ok(c.expect("connected"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn indent(msg: &str) -> String {
    if msg.is_empty() {
        String::new()
    } else {
        format!("\n    {}", msg.replace('\n', "\n    "))
    }
}

/// Poll `cond` every 20 ms until it holds or `limit` passed.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !cond()? {
        if Instant::now() > deadline {
            bail!("timed out after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
