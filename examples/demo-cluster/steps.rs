//! The demo's steps, each as an operator would do it with `marsadm` (the commands are
//! printed as typed), and what it waits for before the next one.

use super::node::{wait_for, Node, RES};
use super::workload::{hash_file, Background, Model, BLOCK};
use super::{Moved, SIZE};
use anyhow::{bail, Context, Result};
use mars_cli::control::Request;
use mars_cli::view::{render, ReplicaStatus};
use mars_net::ChannelKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xio::nbd::client::Client;

/// Writes per foreground batch (4 KiB each).
const BATCH: u64 = 6000;
/// The background writer stops by itself after this many writes (bounds the demo).
const BACKGROUND_MAX: u64 = 200_000;
/// The background writer's pace while carol joins (bytes per second).
const BACKGROUND_RATE: u64 = 32 << 20;

pub struct Demo {
    root: PathBuf,
    alice: Node,
    bob: Node,
    carol: Node,
    pub model: Model,
    client: Option<Client>,
}

fn switch(switch: &str, on: bool) -> Request {
    Request::Switch {
        res: RES.into(),
        switch: switch.into(),
        on,
    }
}

fn primary(force: bool, dry_run: bool) -> Request {
    Request::Primary {
        res: RES.into(),
        force,
        dry_run,
    }
}

fn up_to_date(m: &ReplicaStatus) -> bool {
    m.up_to_date
}

impl Demo {
    /// Three daemons, one cluster, resource `r0` on alice (primary), a client of her export.
    pub fn setup(root: &Path) -> Result<Demo> {
        let alice = Node::start(root, "alice")?;
        let bob = Node::start(root, "bob")?;
        let carol = Node::start(root, "carol")?;
        alice.adm("create-cluster", Request::CreateCluster)?;
        for n in [&bob, &carol] {
            n.adm(
                &format!("join-cluster {}", alice.addr),
                Request::JoinCluster {
                    peer: alice.addr.clone(),
                },
            )?;
            wait_for(Duration::from_secs(10), || {
                Ok(n.status()?.cluster.is_some())
            })
            .with_context(|| format!("{} was not welcomed into the cluster", n.name))?;
        }
        // A peer with the wrong secret is refused at the handshake.
        let wrong = mars_strategy::net::net_config("mallory", b"not the cluster secret at all")?;
        match mars_net::connect(alice.addr.parse()?, &wrong, ChannelKind::Meta) {
            Ok(_) => bail!("a peer with the wrong secret was accepted"),
            Err(e) => println!("mallory (wrong secret): refused as expected: {e}"),
        }
        for n in ["alice", "bob", "carol"] {
            std::fs::File::create(root.join(format!("{n}.img")))?.set_len(SIZE)?;
        }
        let dev = root.join("alice.img").display().to_string();
        alice.adm(
            &format!("create-resource {RES} {dev}"),
            Request::CreateResource {
                res: RES.into(),
                dev,
                size: None,
            },
        )?;
        alice.wait("Primary", |m| m.role == "Primary")?;
        let client = alice.nbd()?;
        Ok(Demo {
            root: root.to_path_buf(),
            alice,
            bob,
            carol,
            model: Model::new(SIZE),
            client: Some(client),
        })
    }

    fn client(&mut self) -> Result<&mut Client> {
        self.client.as_mut().context("no NBD client connected")
    }

    /// A foreground batch through the connected client.
    fn write_batch(&mut self) -> Result<Moved> {
        let mut c = self.client.take().context("no NBD client connected")?;
        let r = self.model.write(&mut c, BATCH);
        self.client = Some(c);
        r?;
        Ok(Moved {
            written: BATCH * BLOCK as u64,
            synced: 0,
        })
    }

    pub fn write_alice(&mut self) -> Result<Moved> {
        self.write_batch()
    }

    fn join(&self, n: &Node) -> Result<()> {
        let dev = self
            .root
            .join(format!("{}.img", n.name))
            .display()
            .to_string();
        n.adm(
            &format!("join-resource {RES} {dev}"),
            Request::JoinResource {
                res: RES.into(),
                dev,
            },
        )?;
        Ok(())
    }

    pub fn bob_joins(&mut self) -> Result<Moved> {
        self.join(&self.bob)?;
        self.bob.wait("UpToDate", up_to_date)?;
        Ok(Moved {
            written: 0,
            synced: SIZE,
        })
    }

    /// carol joins while a client writes to alice; `view` every second until she synced.
    pub fn carol_joins_under_load(&mut self) -> Result<Moved> {
        let before = self.model.written;
        let client = self.client.take().context("no NBD client connected")?;
        let model = std::mem::replace(&mut self.model, Model::new(0));
        let writer = Background::start(client, model, BACKGROUND_MAX, BACKGROUND_RATE);
        let joined = self
            .join(&self.carol)
            .and_then(|()| self.watch_carol_sync());
        let (client, model) = writer.finish()?;
        (self.client, self.model) = (Some(client), model);
        joined?;
        for n in [&self.bob, &self.carol] {
            n.wait("UpToDate", up_to_date)?;
        }
        println!("after the writes stopped, carol on `marsadm view`:");
        print!("{}", render(&self.carol.status()?));
        Ok(Moved {
            written: self.model.written - before,
            synced: SIZE,
        })
    }

    /// Print carol's `view` every second until her full sync is done and she is consistent.
    fn watch_carol_sync(&self) -> Result<()> {
        let mut shown: Option<Instant> = None;
        let mut last = None;
        wait_for(Duration::from_secs(60), || {
            if shown.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                shown = Some(Instant::now());
                println!("carol$ marsadm view");
                print!("{}", render(&self.carol.status()?));
            }
            last = self.carol.replica_of("carol")?;
            Ok(last
                .as_ref()
                .is_some_and(|m| m.syncstatus >= SIZE && m.consistent))
        })
        .with_context(|| format!("carol did not finish her full sync; last state: {last:?}"))
    }

    /// Planned handover: the client leaves alice, bob becomes primary, the client writes to him.
    pub fn handover(&mut self) -> Result<Moved> {
        self.client.take().context("no client")?.disconnect()?;
        self.bob
            .wait_of("alice", "without NBD clients", |m| m.clients == 0)?;
        self.bob
            .adm(&format!("primary {RES}"), primary(false, false))?;
        self.bob.wait("Primary", |m| m.role == "Primary")?;
        self.client = Some(self.bob.nbd()?);
        self.write_batch()
    }

    /// alice and carol stop fetching; bob writes a tail nobody gets and stops; carol takes
    /// over by force and writes.
    pub fn forced_failover(&mut self) -> Result<Moved> {
        for n in [&self.alice, &self.carol] {
            n.wait("UpToDate", up_to_date)?;
            n.adm(&format!("pause-fetch {RES}"), switch("connect", false))?;
        }
        // The tail bob writes now is lost: the model does not follow it.
        let mut lost = self.model.fork(0xdead);
        lost.write(self.client()?, BATCH)?;
        println!("client: {BATCH} writes to bob that nobody fetched (they will be lost)");
        self.client.take().context("no client")?.disconnect()?;
        self.bob.stop()?;
        self.carol
            .wait_of("bob", "UnResponsive", |m| m.repl == "UnResponsive")?;
        self.carol.adm(
            &format!("primary --force --dry-run {RES}"),
            primary(true, true),
        )?;
        self.carol
            .adm(&format!("primary --force {RES}"), primary(true, false))?;
        self.carol.wait("Primary", |m| m.role == "Primary")?;
        self.client = Some(self.carol.nbd()?);
        let moved = self.write_batch()?;
        self.alice
            .adm(&format!("resume-fetch {RES}"), switch("connect", true))?;
        Ok(moved)
    }

    /// bob restarts: every node reports the split brain; `invalidate` on bob resolves it.
    pub fn resolve_split_brain(&mut self) -> Result<Moved> {
        self.bob.restart()?;
        for n in [&self.carol, &self.bob] {
            wait_for(Duration::from_secs(30), || Ok(split_brain(n)?.is_some()))
                .with_context(|| format!("{} did not report the split brain", n.name))?;
        }
        println!("bob$ marsadm view");
        print!("{}", render(&self.bob.status()?));
        self.bob.adm(
            &format!("invalidate --dry-run {RES}"),
            Request::Invalidate {
                res: RES.into(),
                dry_run: true,
            },
        )?;
        self.bob.adm(
            &format!("invalidate {RES}"),
            Request::Invalidate {
                res: RES.into(),
                dry_run: false,
            },
        )?;
        self.bob.wait("UpToDate", up_to_date)?;
        for n in [&self.alice, &self.bob, &self.carol] {
            wait_for(Duration::from_secs(30), || Ok(split_brain(n)?.is_none()))
                .with_context(|| format!("{} still reports a split brain", n.name))?;
        }
        self.carol
            .adm(&format!("resume-fetch {RES}"), switch("connect", true))?;
        Ok(Moved {
            written: 0,
            synced: SIZE,
        })
    }

    /// Every device hashes equal to the client's model.
    pub fn verify(&mut self) -> Result<Moved> {
        self.client.take().context("no client")?.disconnect()?;
        for n in [&self.alice, &self.bob] {
            n.wait("UpToDate", up_to_date)?;
        }
        println!("carol$ marsadm view");
        print!("{}", render(&self.carol.status()?));
        let want = self.model.hash();
        let mut got = Vec::new();
        // Replay may be a moment behind what `view` last said: poll, bounded.
        wait_for(Duration::from_secs(30), || {
            got = ["alice", "bob", "carol"]
                .iter()
                .map(|n| Ok((*n, hash_file(&self.root.join(format!("{n}.img")))?)))
                .collect::<Result<Vec<_>>>()?;
            Ok(got.iter().all(|(_, h)| *h == want))
        })
        .with_context(|| {
            let list: Vec<String> = got
                .iter()
                .map(|(n, h)| format!("{n}: {}", &h.to_hex()[..16]))
                .collect();
            format!(
                "the replicas differ from the client's model {}: {}",
                &want.to_hex()[..16],
                list.join(", ")
            )
        })?;
        for (n, h) in &got {
            println!("{n:<6} {}.img  blake3 {}", n, &h.to_hex()[..16]);
        }
        Ok(Moved::default())
    }
}

fn split_brain(n: &Node) -> Result<Option<String>> {
    Ok(n.status()?
        .resources
        .iter()
        .find(|r| r.name == RES)
        .and_then(|r| r.split_brain.clone()))
}
