//! The main demo: two MARS nodes (`marsd` daemons, in this process) replicate one resource,
//! driven only through the control protocol that `marsadm` speaks.
//!
//! 1. alice creates a cluster, bob joins it (authenticated; a peer with a wrong secret is
//!    refused), alice creates resource `r0` on a 64 MiB file and becomes its primary.
//! 2. An NBD client writes random 4 KiB blocks with periodic flushes; meanwhile bob joins
//!    `r0`: a fast full sync, then he fetches alice's logs and replays them.
//! 3. bob's device equals what the client wrote, byte for byte.
//! 4. Planned handover: bob becomes primary (nothing lost), the client writes to him, alice
//!    replays his log, and both devices are equal again.
//!
//! Run: `cargo run --release --example demo-cluster` (takes a few seconds). The same steps
//! with separate processes: `marsd --mars-dir DIR ...` on each node, then `marsadm`.

// The binaries' allocator: see ARCHITECTURE.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{bail, Context, Result};
use mars_cli::control::{call, Outcome, Request, Response};
use mars_cli::daemon::{Daemon, Options};
use mars_cli::view::{render, NodeStatus, ReplicaStatus};
use mars_net::ChannelKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use xio::nbd::client::Client;

const SIZE: u64 = 64 << 20;
const BLOCK: usize = 4096;
const SECRET: &str = "demo cluster secret, at least 16 bytes";

struct Node {
    name: &'static str,
    dir: PathBuf,
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Node {
    fn start(root: &Path, name: &'static str) -> Result<Node> {
        let dir = root.join(name);
        let d = Daemon::open(Options {
            dir: dir.clone(),
            listen: "127.0.0.1:0".into(),
            node: name.into(),
            secret: SECRET.into(),
            nbd_listen: None,
        })?;
        let addr = d.local_addr().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || d.run(&s2));
        println!("{name}: marsd on {addr}, mars dir {}", dir.display());
        Ok(Node {
            name,
            dir,
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// One `marsadm` command: the daemon must say ok.
    fn adm(&self, r: Request) -> Result<Response> {
        let resp = call(&self.dir.join("marsd.sock"), r)?;
        if resp.status != Outcome::Ok {
            bail!("{}: {}", self.name, resp.message);
        }
        println!("{}$ marsadm ... -> {}", self.name, resp.message);
        Ok(resp)
    }

    fn status(&self) -> Result<NodeStatus> {
        let r = self.adm_quiet(Request::Status { res: None })?;
        Ok(serde_json::from_value(r.data)?)
    }

    fn adm_quiet(&self, r: Request) -> Result<Response> {
        call(&self.dir.join("marsd.sock"), r)
    }

    fn replica(&self, res: &str) -> Result<Option<ReplicaStatus>> {
        let s = self.status()?;
        Ok(s.resources
            .iter()
            .find(|r| r.name == res)
            .and_then(|r| r.replicas.iter().find(|m| m.host == self.name).cloned()))
    }

    fn wait(&self, what: &str, f: impl Fn(&ReplicaStatus) -> bool) -> Result<()> {
        wait_for(Duration::from_secs(60), || {
            Ok(self.replica("r0")?.as_ref().is_some_and(&f))
        })
        .with_context(|| format!("{} did not become {what}", self.name))
    }

    fn nbd(&self) -> Result<Client> {
        Client::unix(self.dir.join("nbd/r0.sock"), "r0", true)
            .context("connecting to the NBD export")
    }

    fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().expect("marsd thread panicked")?;
        }
        Ok(())
    }
}

pub fn main() -> Result<()> {
    let started = Instant::now();
    let root = tempfile::tempdir().context("creating a temp dir")?;
    let alice = Node::start(root.path(), "alice")?;
    let bob = Node::start(root.path(), "bob")?;
    alice.adm(Request::CreateCluster)?;
    bob.adm(Request::JoinCluster {
        peer: alice.addr.clone(),
    })?;
    wait_for(Duration::from_secs(10), || {
        Ok(bob.status()?.cluster.is_some())
    })?;

    // An intruder with the wrong secret is refused.
    let wrong = mars_strategy::net::net_config("mallory", b"not the cluster secret at all")?;
    match mars_net::connect(alice.addr.parse()?, &wrong, ChannelKind::Meta) {
        Ok(_) => bail!("a peer with the wrong secret was accepted"),
        Err(e) => println!("mallory: refused as expected: {e}"),
    }

    let (a_img, b_img) = (root.path().join("alice.img"), root.path().join("bob.img"));
    for p in [&a_img, &b_img] {
        std::fs::File::create(p)?.set_len(SIZE)?;
    }
    alice.adm(Request::CreateResource {
        res: "r0".into(),
        dev: a_img.display().to_string(),
        size: None,
    })?;
    alice.wait("primary", |m| m.role == "Primary")?;

    // The workload, with bob joining while it runs.
    let mut model = vec![0u8; SIZE as usize];
    let mut client = alice.nbd()?;
    let t0 = Instant::now();
    write_random(&mut client, &mut model, 1, 6000)?;
    bob.adm(Request::JoinResource {
        res: "r0".into(),
        dev: b_img.display().to_string(),
    })?;
    write_random(&mut client, &mut model, 2, 6000)?;
    println!(
        "client: 12000 writes (47 MiB) in {:.2?}, all acknowledged",
        t0.elapsed()
    );
    let t1 = Instant::now();
    bob.wait("UpToDate", |m| m.up_to_date)?;
    wait_equal(&b_img, &model, "bob's device")?;
    println!(
        "bob: synced and replayed in {:.2?}; bob == client model (blake3 {})",
        t1.elapsed(),
        &blake3::hash(&model).to_hex()[..16]
    );
    print!("{}", render(&alice.status()?));

    // Planned handover: the client leaves alice, bob takes over, nothing is lost.
    client.disconnect()?;
    wait_for(Duration::from_secs(10), || {
        Ok(bob.status()?.resources[0]
            .replicas
            .iter()
            .all(|m| m.clients == 0))
    })?;
    let t2 = Instant::now();
    bob.adm(Request::Primary {
        res: "r0".into(),
        force: false,
        dry_run: false,
    })?;
    bob.wait("primary", |m| m.role == "Primary")?;
    println!("handover to bob in {:.2?}", t2.elapsed());
    let mut client = bob.nbd()?;
    write_random(&mut client, &mut model, 3, 3000)?;
    client.disconnect()?;
    alice.wait("UpToDate", |m| m.up_to_date)?;
    wait_equal(&a_img, &model, "alice's device after the handover")?;
    print!("{}", render(&bob.status()?));
    println!(
        "consistent: alice == bob == client model ({} MiB), demo took {:.1?}",
        SIZE >> 20,
        started.elapsed()
    );
    alice.stop()?;
    bob.stop()?;
    Ok(())
}

fn write_random(c: &mut Client, model: &mut [u8], seed: u64, n: u64) -> Result<()> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ seed;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = (x % (SIZE / BLOCK as u64)) * BLOCK as u64;
        let block = vec![(i % 251) as u8 + 1; BLOCK];
        model[off as usize..off as usize + BLOCK].copy_from_slice(&block);
        if c.write(off, &block)? != 0 {
            bail!("NBD write at {off} failed");
        }
        if i % 256 == 255 && c.flush()? != 0 {
            bail!("NBD flush failed");
        }
    }
    if c.flush()? != 0 {
        bail!("NBD flush failed");
    }
    Ok(())
}

fn wait_equal(path: &Path, want: &[u8], what: &str) -> Result<()> {
    wait_for(Duration::from_secs(30), || Ok(std::fs::read(path)? == want))
        .with_context(|| format!("{what} does not equal the client's model"))
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !cond()? {
        if Instant::now() > deadline {
            bail!("timed out after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
