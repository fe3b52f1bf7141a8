//! `marsd`: one owner thread holds the node's state. It loops: wait for an event (metadata
//! message, control request, tick), apply it, then for every resource derive the actions
//! from the metadata and the local facts and execute them; the changes of one round are
//! persisted in one transaction and propagated.

mod checksums;
mod failover;
mod migrate;
mod serve;
mod status;
mod verify;

use crate::control::{Request, Response};
use crate::runtime::{Env, LinkWrite, ResourceRt};
use anyhow::{bail, Context, Result};
use brick_core::TimeSource;
use crossbeam_channel::{Receiver, Sender};
use mars_net::ChannelKind;
use mars_strategy::names::check_node;
use mars_strategy::net::Runner;
use mars_strategy::strategy::{derive, Action, Snapshot};
use mars_strategy::views::{ReplayLink, Switch};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use xio::nbd::{NbdServer, ServerConfig};
use xio::remote::Exports;

/// How often the owner thread wakes without events.
const ROUND: Duration = Duration::from_millis(100);
/// The resource name that means every resource (upstream's `marsadm view all`).
pub const ALL: &str = "all";
/// Smallest resource accepted (upstream: more than 64 KiB).
const MIN_SIZE: u64 = 64 << 10;
/// How long `cron` waits for a logger to leave emergency bypass (in-flight bypass writes, a
/// data-device flush and a new log file).
const RESUME_LIMIT: Duration = Duration::from_secs(20);

/// How to run a node.
#[derive(Debug, Clone)]
pub struct Options {
    /// The mars directory: metadata, logs, sockets.
    pub dir: PathBuf,
    /// Where the node listens for peers.
    pub listen: String,
    /// The node's name.
    pub node: String,
    /// The cluster secret.
    pub secret: Vec<u8>,
    /// Also export primaries' devices over NBD on TCP here.
    pub nbd_listen: Option<String>,
    /// The memory all primaries' loggers of this node share (bytes written but not yet
    /// written back); writers wait beyond it.
    pub mem_budget: u64,
    /// What each primary can always get of `mem_budget`, however busy the others are.
    pub mem_floor: u64,
    /// `O_DIRECT` on primaries' data devices and log files (`auto`: for block devices).
    pub direct_io: xio::file::DirectIo,
    /// `O_DIRECT` on primary log files (`--log-direct-io`; auto: as the data device).
    pub log_direct_io: xio::file::DirectIo,
    /// Deleted log files a primary keeps to reuse (`xio::logger::LoggerConfig::log_spares`).
    pub log_spares: usize,
    /// A primary's log file is rotated at this size ([`DEFAULT_LOG_ROTATE_SIZE`]).
    pub log_rotate_size: u64,
}

/// The default of [`Options::log_rotate_size`]: 256 MiB.
pub const DEFAULT_LOG_ROTATE_SIZE: u64 = 256 << 20;

/// The default of [`Options::mem_budget`]: 1 GiB.
pub const DEFAULT_MEM_BUDGET: u64 = 1 << 30;
/// The default of [`Options::mem_floor`]: 8 MiB (eight of the longest writes; 128 resources'
/// floors fit in the default budget).
pub const DEFAULT_MEM_FLOOR: u64 = 8 << 20;

/// A control request and where its answer goes: the response and, for `events`, the
/// subscriber's queue.
type ControlMsg = (Request, Sender<serve::Reply>);

/// The running node.
pub struct Daemon {
    opts: Options,
    _lock: File,
    runner: Runner,
    exports: Exports,
    live_ends: xio::log::LiveEnds,
    tcp_nbd: Option<Arc<NbdServer>>,
    rts: BTreeMap<String, ResourceRt>,
    control: Receiver<ControlMsg>,
    sock: PathBuf,
    merge: Option<String>,
    space_at: Option<std::time::Instant>,
    /// When this daemon started (node clock, ns).
    started: u64,
    join_tried: HashMap<String, std::time::Instant>,
    /// Rates and time lag measured over the last rounds (`view`'s progress lines).
    tracker: crate::progress::Tracker,
    /// Since when (node clock, ns) each unreachable peer is unreachable.
    peer_down: HashMap<String, u64>,
    /// `marsadm events` subscribers.
    subscribers: crate::events::Subscribers,
    /// `--metrics-listen`: the text scrapes get, and when it was last rendered.
    metrics: Option<(crate::metrics::Published, std::time::Instant)>,
    /// Verifies this node runs as the primary, per resource.
    verifies: HashMap<String, verify::PrimaryVerify>,
    /// The memory budget of the node, shared by the primaries' loggers.
    budget: brick_core::NodeBudget,
}

/// Take the directory's lock: one marsd per DIR.
fn lock_dir(dir: &Path) -> Result<File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the mars directory {}", dir.display()))?;
    let path = dir.join("marsd.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another marsd already runs on {} (it holds {}): stop it first, or give this one another --mars-dir",
            dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

impl Daemon {
    /// Lock DIR, open the metadata store, listen for peers and on the control socket.
    pub fn open(opts: Options) -> Result<Daemon> {
        let lock = lock_dir(&opts.dir)?;
        check_node(&opts.node).map_err(|e| anyhow::anyhow!("--node: {e}"))?;
        // The loggers publish their durable ends here: the log server never serves a
        // fetcher bytes that are not synced yet, nor a recycled file's stale bytes.
        let live_ends = xio::log::LiveEnds::new();
        let exports = Exports::new(Some(opts.dir.clone())).with_live_ends(live_ends.clone());
        let mut runner = Runner::open_with(
            &opts.dir,
            &opts.node,
            &opts.listen,
            &opts.secret,
            Duration::from_millis(500),
            exports.handlers(),
        )
        .with_context(|| format!("starting node {} on {}", opts.node, opts.listen))?;
        let addr = runner.local_addr().to_string();
        if runner.node().cluster().is_some() {
            let key = format!("ips/ip-{}", opts.node);
            if runner.node().store().get(&key) != Some(addr.as_str()) {
                runner.node_mut().set(&key, &addr)?;
            }
        }
        runner.commit()?;
        let tcp_nbd = match &opts.nbd_listen {
            Some(a) => {
                let s = Arc::new(NbdServer::new(ServerConfig::default()));
                s.listen_tcp(a.as_str())
                    .with_context(|| format!("--nbd-listen {a}"))?;
                Some(s)
            }
            None => None,
        };
        let sock = opts.dir.join("marsd.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock)
            .with_context(|| format!("binding the control socket {}", sock.display()))?;
        let (tx, control) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("marsd-control".into())
            .spawn(move || serve::accept_control(listener, tx))?;
        tracing::info!(node = %opts.node, %addr, dir = %opts.dir.display(), "marsd ready");
        let budget = brick_core::NodeBudget::new(opts.mem_budget);
        Ok(Daemon {
            opts,
            _lock: lock,
            runner,
            exports,
            live_ends,
            tcp_nbd,
            rts: BTreeMap::new(),
            control,
            sock,
            merge: None,
            space_at: None,
            started: brick_core::SystemTimeSource.now_ns(),
            join_tried: HashMap::new(),
            tracker: crate::progress::Tracker::default(),
            peer_down: HashMap::new(),
            subscribers: crate::events::Subscribers::default(),
            metrics: None,
            verifies: HashMap::new(),
            budget,
        })
    }

    /// Where the node listens for peers.
    pub fn local_addr(&self) -> SocketAddr {
        self.runner.local_addr()
    }

    /// Run until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) -> Result<()> {
        let inbox = self.runner.net().inbox().clone();
        while !stop.load(Ordering::Acquire) {
            crossbeam_channel::select! {
                recv(inbox) -> m => if let Ok(env) = m { self.runner.handle(env) },
                recv(self.control) -> c => if let Ok((req, reply)) = c {
                    let r = match req {
                        Request::Events { res } => self.subscribe(res),
                        req => (self.handle(req), None),
                    };
                    let _ = reply.send(r);
                },
                default(ROUND) => {},
            }
            // Drain what else queued up before deriving once.
            while let Ok(env) = inbox.try_recv() {
                self.runner.handle(env);
            }
            self.runner.tick_if_due();
            for ev in self.runner.node_mut().take_events() {
                match ev {
                    mars_strategy::NodeEvent::MergedWith(n) => {
                        tracing::info!("merge-cluster: merged with the cluster of {n}");
                        self.merge = Some(format!("merged with the cluster of {n}"));
                    }
                    mars_strategy::NodeEvent::MergeRefused(c) => {
                        tracing::warn!(
                            "merge-cluster refused: resource names exist in both clusters: {c:?}"
                        );
                        self.merge = Some(format!(
                            "refused: resource names exist in both clusters: {}; rename or delete them on one side first",
                            c.join(", ")
                        ));
                    }
                    mars_strategy::NodeEvent::Joined(u) => tracing::info!("joined cluster {u}"),
                }
            }
            self.publish_space();
            self.migrate_round();
            self.watch_peers();
            self.round();
            self.publish_status();
            if let Err(e) = self.runner.commit() {
                tracing::error!("persisting metadata: {e}");
            }
        }
        tracing::info!("marsd stopping");
        for rt in self.rts.values_mut() {
            rt.shutdown();
        }
        let _ = self.runner.commit();
        let _ = std::fs::remove_file(&self.sock);
        Ok(())
    }

    fn me(&self) -> String {
        self.opts.node.clone()
    }

    /// Note when each peer became unreachable (`view`: "unreachable for N s").
    fn watch_peers(&mut self) {
        let now = brick_core::SystemTimeSource.now_ns();
        let store = self.runner.node().store();
        let names: Vec<String> = store
            .list("ips/ip-")
            .into_iter()
            .map(|(k, _)| k["ips/ip-".len()..].to_string())
            .filter(|n| *n != self.opts.node)
            .collect();
        let started = self.started;
        self.peer_down.retain(|n, _| names.contains(n));
        for n in names {
            if self.runner.net().connected(&n) {
                self.peer_down.remove(&n);
            } else {
                self.peer_down.entry(n).or_insert(now.max(started));
            }
        }
        let rts = &self.rts;
        let store = self.runner.node().store();
        let me = &self.opts.node;
        self.tracker.retain(&|r| {
            rts.contains_key(r) || store.get(&format!("resource-{r}/data-{me}")).is_some()
        });
    }

    fn write(&mut self, key: &str, value: Option<&str>) {
        let node = self.runner.node_mut();
        let r = match value {
            Some(v) if node.store().get(key) == Some(v) => Ok(()),
            Some(v) => node.set(key, v),
            None if node.store().get(key).is_none() => Ok(()),
            None => node.delete(key),
        };
        if let Err(e) = r {
            tracing::warn!("writing {key}: {e}");
        }
    }

    fn apply(&mut self, res: &str, links: Vec<LinkWrite>) {
        for (k, v) in links {
            self.write(&format!("resource-{res}/{k}"), v.as_deref());
        }
    }

    /// One round of derive-and-execute over every resource this node is (or was) part of.
    fn round(&mut self) {
        let me = self.me();
        let store = self.runner.node().store();
        let mut names: BTreeSet<String> = store
            .resources()
            .iter()
            .filter(|r| store.get(&format!("resource-{r}/data-{me}")).is_some())
            .map(|r| r.to_string())
            .collect();
        names.extend(self.rts.keys().cloned());
        let addrs: HashMap<String, SocketAddr> = store
            .list("ips/ip-")
            .into_iter()
            .filter_map(|(k, v)| Some((k["ips/ip-".len()..].to_string(), v.parse().ok()?)))
            .collect();
        let net = self.runner.net().config().clone();
        let space = self.space();
        let mut repairs = Vec::new();
        for res in names {
            let now = brick_core::SystemTimeSource.now_ns();
            let mut rt = self
                .rts
                .remove(&res)
                .unwrap_or_else(|| ResourceRt::new(&self.opts.dir, &res, &self.live_ends));
            let links = rt.poll(&me, now);
            self.apply(&res, links);
            let mut snap = Snapshot::from_store(self.runner.node().store(), &res, &me);
            if self.complete_join(&snap) {
                snap = Snapshot::from_store(self.runner.node().store(), &res, &me);
            }
            if self.checksum_round(&res, &mut rt, &snap) | self.verify_round(&res, &mut rt, &snap) {
                repairs.push(res.clone());
            }
            let facts = rt.facts(&snap, now, self.started, &space);
            self.observe(&snap, &facts, now);
            let actions = derive(&snap, &facts);
            let addr = |h: &str| addrs.get(h).copied();
            let env = Env {
                me: &me,
                dir: &self.opts.dir,
                net: &net,
                addr: &addr,
                exports: &self.exports,
                tcp_nbd: self.tcp_nbd.as_ref(),
                budget: &self.budget,
                mem_floor: self.opts.mem_floor,
                direct_io: self.opts.direct_io,
                log_direct_io: self.opts.log_direct_io,
                log_spares: self.opts.log_spares,
                log_rotate_size: self.opts.log_rotate_size,
                live_ends: &self.live_ends,
                now,
            };
            let mut links = Vec::new();
            for a in &actions {
                tracing::debug!(%res, "action: {a}");
                links.extend(rt.execute(a, &snap, &env));
            }
            let reported = actions.iter().any(|a| matches!(a, Action::Report { .. }));
            links.extend(rt.end_round(&me, reported));
            self.apply(&res, links);
            if !(snap.mine().is_none() && rt.is_idle()) {
                self.rts.insert(res, rt);
            }
        }
        for res in repairs {
            self.repair_from_primary(&res);
        }
    }

    /// A joined member without a replay link starts at the primary's current log (its full
    /// sync covers everything before), with the primary's version link of the log before it
    /// as the start of its own chain (upstream's join-resource).
    /// Returns whether it wrote the links.
    fn complete_join(&mut self, snap: &Snapshot) -> bool {
        let (me, res) = (snap.me.as_str(), snap.res.as_str());
        let Some(m) = snap.mine() else { return false };
        if m.replay.is_some() || snap.designated_me() {
            return false;
        }
        let Some(p) = snap.primary.clone() else {
            return false;
        };
        let Some(link) = snap.members.get(&p).and_then(|x| x.replay.clone()) else {
            return false;
        };
        let start = ReplayLink {
            log: link.log.clone(),
            pos: 0,
            len: 0,
        };
        let seq = link.log.seq;
        let prev = snap
            .version_value(seq.wrapping_sub(1), &p)
            .map(|v| (seq - 1, v.to_string()))
            .or_else(|| {
                snap.versions
                    .keys()
                    .find(|(q, _)| *q + 1 == seq)
                    .and_then(|(q, h)| snap.version_value(*q, h).map(|v| (*q, v.to_string())))
            });
        if let Some((q, v)) = prev {
            self.write(&format!("resource-{res}/version-{q:09}-{me}"), Some(&v));
        }
        self.write(&format!("resource-{res}/syncstatus-{me}"), Some("0"));
        self.write(
            &format!("resource-{res}/replay-{me}"),
            Some(&start.to_string()),
        );
        tracing::info!(%res, "joined: full sync from {p}, then replay from {start}");
        true
    }

    /// `events [RES]`: a new subscriber, told the current state first.
    fn subscribe(&mut self, res: Option<String>) -> serve::Reply {
        if let Some(r) = &res {
            if let Err(e) = self.known(r) {
                return (e, None);
            }
        }
        let now = self.status(None, false);
        let rx = self.subscribers.subscribe(res, &now);
        (
            Response::ok("subscribed: one event per line follows"),
            Some(rx),
        )
    }

    fn handle(&mut self, req: Request) -> Response {
        let r = match req {
            Request::Status { res } => {
                let st = match res.as_deref() {
                    Some(ALL) => self.status(None, true),
                    only => self.status(only, false),
                };
                return Response::ok("status").data(serde_json::to_value(st).unwrap_or_default());
            }
            other => self.command(other),
        };
        // Make what the command wrote durable and propagated before answering.
        if let Err(e) = self.runner.commit() {
            return Response::failed(format!(
                "the command's metadata could not be persisted: {e}"
            ));
        }
        r
    }

    /// Reach the node at `peer` (authenticated), learn its name and remember its address.
    fn contact(&mut self, peer: &str, what: &str) -> Result<mars_strategy::NodeName, Response> {
        let addr: SocketAddr = peer.parse().map_err(|_| {
            Response::refused(format!(
                "{peer} is not an address: give HOST:PORT of a cluster member (e.g. 10.0.0.1:7777)"
            ))
        })?;
        let conn = mars_net::connect(addr, self.runner.net().config(), ChannelKind::Meta).map_err(|e| {
            let hint = match &e {
                mars_net::NetError::AuthFailed { .. } | mars_net::NetError::Refused { .. } => {
                    "authentication failed: this node's --secret-file differs from the cluster's; use the cluster's secret"
                }
                _ => "nothing answers there: check the address and that marsd runs on that node",
            };
            Response::refused(format!("cannot {what} via {peer}: {e} ({hint})"))
        })?;
        let name: mars_strategy::NodeName = Arc::from(conn.peer().node.as_str());
        drop(conn);
        self.runner.net_mut().set_addr(&name, addr);
        Ok(name)
    }

    fn in_cluster(&self) -> Result<(), Response> {
        match self.runner.node().cluster() {
            Some(_) => Ok(()),
            None => Err(Response::refused(format!(
                "node {} is not in a cluster: run `marsadm create-cluster` (first node) or `marsadm join-cluster HOST:PORT`",
                self.opts.node
            ))),
        }
    }

    fn snapshot(&self, res: &str) -> Snapshot {
        Snapshot::from_store(self.runner.node().store(), res, &self.opts.node)
    }

    fn known(&self, res: &str) -> Result<Snapshot, Response> {
        self.in_cluster()?;
        if self
            .runner
            .node()
            .store()
            .get(&format!("resources/{res}"))
            .is_none()
        {
            return Err(Response::refused(format!(
                "no resource {res} in this cluster: `marsadm view` lists the resources, `marsadm create-resource {res} DEV` makes one"
            )));
        }
        Ok(self.snapshot(res))
    }

    fn member(&self, res: &str) -> Result<Snapshot, Response> {
        let s = self.known(res)?;
        if s.mine().is_none() {
            return Err(Response::refused(format!(
                "node {} is not a member of {res}: run `marsadm join-resource {res} DEV` first",
                self.opts.node
            )));
        }
        Ok(s)
    }

    /// Check a device for a new member: it exists, is big enough, and no other resource of
    /// this node uses it. Returns its canonical path and size.
    fn check_dev(&self, dev: &str, need: Option<u64>) -> Result<(String, u64), Response> {
        let path = std::fs::canonicalize(dev).map_err(|e| {
            Response::refused(format!("device {dev} cannot be used: {e} (create it first, e.g. `truncate -s 10G {dev}` for a file)"))
        })?;
        let size = device_size(&path)
            .map_err(|e| Response::refused(format!("cannot read the size of {dev}: {e}")))?;
        if let Some(n) = need {
            if size < n {
                return Err(Response::refused(format!(
                    "device {dev} has {size} bytes, less than the resource's {n}: use a device of at least {n} bytes"
                )));
            }
        }
        let p = path.display().to_string();
        let me = &self.opts.node;
        let store = self.runner.node().store();
        for r in store.resources() {
            if store.get(&format!("resource-{r}/data-{me}")) == Some(p.as_str()) {
                return Err(Response::refused(format!(
                    "device {dev} is already the data device of resource {r} on this node: use another device"
                )));
            }
        }
        Ok((p, size))
    }

    fn command(&mut self, req: Request) -> Response {
        match self.command_inner(req) {
            Ok(r) | Err(r) => r,
        }
    }

    fn command_inner(&mut self, req: Request) -> Result<Response, Response> {
        let me = self.me();
        let failed = |e: mars_strategy::Error| Response::failed(e.to_string());
        match req {
            Request::Status { .. } | Request::Events { .. } => unreachable!("handled before"),
            Request::CreateCluster => {
                if let Some(u) = self.runner.node().cluster() {
                    return Err(Response::refused(format!(
                        "node {me} is already in cluster {u}: nothing to do"
                    )));
                }
                let addr = self.runner.local_addr().to_string();
                let u = self
                    .runner
                    .node_mut()
                    .create_cluster(&addr)
                    .map_err(failed)?;
                Ok(Response::ok(format!(
                    "created cluster {u} with node {me} at {addr}"
                )))
            }
            Request::JoinCluster { peer } => {
                if let Some(u) = self.runner.node().cluster() {
                    return Err(Response::refused(format!(
                        "node {me} is already in cluster {u}: run `marsadm leave-cluster` first"
                    )));
                }
                let name = self.contact(&peer, "join")?;
                let mine = self.runner.local_addr().to_string();
                self.runner
                    .node_mut()
                    .join_cluster(&name, &mine)
                    .map_err(failed)?;
                Ok(Response::ok(format!(
                    "join request sent to {name} at {peer}"
                )))
            }
            Request::MergeCluster { peer } => {
                self.in_cluster()?;
                let name = self.contact(&peer, "merge")?;
                self.merge = None;
                self.runner
                    .node_mut()
                    .merge_cluster(&name)
                    .map_err(failed)?;
                Ok(Response::ok(format!(
                    "merge request sent to {name} at {peer}"
                )))
            }
            Request::LeaveCluster => {
                self.in_cluster()?;
                self.runner
                    .node_mut()
                    .leave_cluster()
                    .map_err(|e| Response::refused(e.to_string()))?;
                Ok(Response::ok(format!("node {me} left the cluster")))
            }
            Request::CreateResource { res, dev, size } => {
                self.in_cluster()?;
                check_node(&res).map_err(|e| Response::refused(format!("resource name: {e}")))?;
                if res == ALL {
                    return Err(Response::refused(format!(
                        "{ALL} is reserved: it means every resource (`marsadm view {ALL}`); pick another name"
                    )));
                }
                if let Some(creator) = self.runner.node().store().get(&format!("resources/{res}")) {
                    return Err(Response::refused(format!(
                        "resource {res} exists already (created by {creator}): pick another name, or delete-resource it first"
                    )));
                }
                let (path, devsize) = self.check_dev(&dev, size)?;
                let size = size.unwrap_or(devsize);
                if size < MIN_SIZE {
                    return Err(Response::refused(format!(
                        "a resource needs more than {MIN_SIZE} bytes; {size} is too small"
                    )));
                }
                self.forget_checksums(&res);
                let node = self.runner.node_mut();
                node.create_resource(&res, size).map_err(failed)?;
                for (k, v) in [
                    (format!("sizes/{res}"), size.to_string()),
                    (format!("resource-{res}/data-{me}"), path.clone()),
                    (format!("resource-{res}/syncstatus-{me}"), size.to_string()),
                    (format!("resource-{res}/actsize-{me}"), devsize.to_string()),
                ] {
                    node.set(&k, &v).map_err(failed)?;
                }
                Ok(Response::ok(format!(
                    "created resource {res} ({size} bytes on {path}); {me} is its primary"
                )))
            }
            Request::JoinResource { res, dev } => {
                let s = self.known(&res)?;
                if s.mine().is_some() {
                    return Err(Response::refused(format!(
                        "node {me} is already a member of {res}"
                    )));
                }
                let size = self
                    .runner
                    .node()
                    .store()
                    .get(&format!("sizes/{res}"))
                    .and_then(|v| v.parse().ok());
                let (path, devsize) = self.check_dev(&dev, size)?;
                let contact = self
                    .runner
                    .node()
                    .store()
                    .get(&format!("resources/{res}"))
                    .unwrap_or_default()
                    .to_string();
                self.forget_checksums(&res);
                let node = self.runner.node_mut();
                node.join_resource(&res, &contact).map_err(failed)?;
                node.set(&format!("resource-{res}/data-{me}"), &path)
                    .map_err(failed)?;
                node.set(
                    &format!("resource-{res}/actsize-{me}"),
                    &devsize.to_string(),
                )
                .map_err(failed)?;
                Ok(Response::ok(format!(
                    "joining {res} with {path}: full sync, then fetch and replay"
                )))
            }
            Request::LeaveResource { res, dry_run } => {
                let s = self.member(&res)?;
                if s.designated_me() {
                    return Err(Response::refused(format!(
                        "node {me} is the primary of {res}: hand over first (`marsadm primary {res}` on another member), or delete-resource"
                    )));
                }
                let m = s.mine().expect("member");
                if m.switch(Switch::Attach) {
                    return Err(Response::refused(format!(
                        "{res} is attached here: run `marsadm down {res}` first"
                    )));
                }
                if self.rts.get(&res).is_some_and(|rt| !rt.is_idle()) {
                    return Err(Response::refused(format!("{res} is still detaching here: wait for `marsadm view {res}` to say Detached, then retry")));
                }
                let (files, bytes) = local_logs(&self.opts.dir, &res);
                if dry_run {
                    return Ok(Response::ok(format!(
                        "dry run: leave-resource {res} would remove {me} from {res}; its data device {} stays as it is (no longer replicated: usable under another name), {files} local log file(s) ({bytes} bytes) would be deleted",
                        m.data
                    )));
                }
                self.forget_member(&res, &s);
                Ok(Response::ok(format!(
                    "node {me} left {res}; {} keeps the data as of now",
                    m.data
                )))
            }
            Request::DeleteResource { res, dry_run } => {
                let s = self.known(&res)?;
                let others: Vec<&String> = s.members.keys().filter(|h| **h != me).collect();
                if !others.is_empty() {
                    return Err(Response::refused(format!(
                        "{res} still has members {others:?}: run `marsadm down {res}` and `marsadm leave-resource {res}` on them first"
                    )));
                }
                if s.mine().is_some_and(|m| m.switch(Switch::Attach))
                    || self.rts.get(&res).is_some_and(|rt| !rt.is_idle())
                {
                    return Err(Response::refused(format!("{res} is attached here: run `marsadm down {res}` first and wait until it is Detached")));
                }
                let keys = self.resource_keys(&res);
                if dry_run {
                    let (files, bytes) = local_logs(&self.opts.dir, &res);
                    return Ok(Response::ok(format!(
                        "dry run: delete-resource {res} would delete its {} metadata keys and {files} local log file(s) ({bytes} bytes); data devices are not touched",
                        keys.len()
                    )));
                }
                for k in keys {
                    self.write(&k, None);
                }
                self.write(&format!("resources/{res}"), None);
                self.write(&format!("sizes/{res}"), None);
                let _ = std::fs::remove_dir_all(self.opts.dir.join(format!("resource-{res}")));
                self.forget_checksums(&res);
                Ok(Response::ok(format!("deleted resource {res}")))
            }
            Request::Switch { res, switch, on } => {
                self.member(&res)?;
                let switches: Vec<Switch> = if switch == "all" {
                    vec![
                        Switch::Attach,
                        Switch::Connect,
                        Switch::Sync,
                        Switch::AllowReplay,
                    ]
                } else {
                    vec![Switch::from_name(&switch)
                        .ok_or_else(|| Response::bad(format!("unknown switch {switch}")))?]
                };
                for sw in switches {
                    self.write(
                        &format!("resource-{res}/todo-{me}/{}", sw.name()),
                        Some(if on { "1" } else { "0" }),
                    );
                }
                Ok(Response::ok(format!(
                    "{res}: {switch} {}",
                    if on { "on" } else { "off" }
                )))
            }
            Request::Primary {
                res,
                force,
                dry_run,
            } if force => self.force_primary(&res, dry_run),
            Request::Invalidate { res, dry_run } => self.invalidate(&res, dry_run),
            Request::Verify { res, repair, rate } => self.verify_request(&res, repair, rate),
            Request::Scrub {
                res,
                repair,
                rate,
                restart,
            } => self.scrub_request(&res, repair, rate, restart),
            Request::Resize { res, size } => self.resize(&res, size),
            Request::MigrateResource { res, to, from, dev } => {
                self.migrate_request(&res, &to, from, dev)
            }
            Request::Primary { res, dry_run, .. } => {
                let s = self.member(&res)?;
                let m = s.mine().expect("member");
                let size = s.size.unwrap_or(0);
                if s.designated_me() {
                    return Ok(Response::ok(format!(
                        "{me} is already the designated primary of {res}"
                    )));
                }
                if m.syncstatus < size {
                    return Err(Response::refused(format!(
                        "{res} on {me} is not a complete replica (full sync at {} of {size} bytes): wait for `marsadm wait-resource {res} is-uptodate`",
                        m.syncstatus
                    )));
                }
                if !m.switch(Switch::Attach) {
                    return Err(Response::refused(format!(
                        "{res} is detached here: run `marsadm up {res}` first"
                    )));
                }
                if let Some(old) = &s.primary {
                    let clients = s.members.get(old).map_or(0, |o| o.count("open-count"));
                    if clients > 0 {
                        return Err(Response::refused(format!(
                            "{old} still serves {clients} NBD client(s) on {res}: disconnect them (stop the application or unmount) on {old}, then retry"
                        )));
                    }
                }
                if dry_run {
                    return Ok(Response::ok(format!(
                        "dry run: primary {res} would make {me} the designated primary; it would take over once {} stopped and its logs are replayed here (planned handover: nothing is lost)",
                        s.primary.as_deref().unwrap_or("(none)")
                    )));
                }
                self.write(&format!("resource-{res}/primary"), Some(&me));
                Ok(Response::ok(format!(
                    "{me} is now the designated primary of {res}; it takes over once {} stopped and its logs are replayed here",
                    s.primary.as_deref().unwrap_or("(none)")
                )))
            }
            Request::Secondary { res } => {
                let s = self.member(&res)?;
                if !s.designated_me() {
                    return Ok(Response::ok(format!(
                        "{me} is not the designated primary of {res}: nothing to do"
                    )));
                }
                self.write(&format!("resource-{res}/primary"), Some("(none)"));
                Ok(Response::ok(format!("{res}: no designated primary now; the export on {me} stops once its clients disconnect")))
            }
            Request::LogRotate { res } => {
                let s = self.member(&res)?;
                match self.rts.get(&res).and_then(|rt| rt.primary()) {
                    Some(p) => {
                        p.logger().rotate();
                        Ok(Response::ok(format!("{res}: rotating away from {}", p.current_log())))
                    }
                    None => Err(Response::refused(format!(
                        "{me} is not the running primary of {res} (the primary is {}): run log-rotate there",
                        s.primary.as_deref().unwrap_or("(none)")
                    ))),
                }
            }
            Request::LogDelete { res } => {
                let s = self.member(&res)?;
                Ok(self.log_delete(&res, &s))
            }
            Request::Cron => {
                self.in_cluster()?;
                let mut done = Vec::new();
                let names: Vec<String> = self.rts.keys().cloned().collect();
                let space = self.space();
                for res in names {
                    if let Some(msg) = self.leave_emergency(&res, &space) {
                        done.push(msg);
                        continue;
                    }
                    if let Some(p) = self.rts.get(&res).and_then(|rt| rt.primary()) {
                        p.logger().rotate();
                        done.push(format!("{res}: log rotated"));
                    }
                    let s = self.snapshot(&res);
                    if s.mine().is_some() {
                        done.push(self.log_delete(&res, &s).message);
                    }
                }
                Ok(Response::ok(if done.is_empty() {
                    "cron: nothing to do".to_string()
                } else {
                    done.join("; ")
                }))
            }
            Request::GetLink { key } => match self.runner.node().store().get(&key) {
                Some(v) => Ok(Response::ok(v.to_string()).data(serde_json::json!(v))),
                None => Err(Response::refused(format!(
                    "no key {key} (`marsadm lowlevel-ls` lists them)"
                ))),
            },
            Request::SetLink { key, value } => {
                self.runner
                    .node_mut()
                    .set(&key, &value)
                    .map_err(|e| Response::refused(e.to_string()))?;
                Ok(Response::ok(format!("{key} = {value}")))
            }
            Request::Ls { prefix } => {
                let list: Vec<(String, String)> = self
                    .runner
                    .node()
                    .store()
                    .list(&prefix)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let text = list
                    .iter()
                    .map(|(k, v)| format!("{k} -> {v}"))
                    .collect::<Vec<_>>()
                    .join("\n");
                Ok(Response::ok(text).data(serde_json::to_value(list).unwrap_or_default()))
            }
        }
    }

    /// `cron` on a primary in emergency mode: once there is space again, the logger logs
    /// again into a new file without interrupting the export (its clients keep their
    /// connections; the hole stays recorded until every secondary was invalidated). `None`:
    /// not in emergency.
    fn leave_emergency(&mut self, res: &str, space: &crate::runtime::Space) -> Option<String> {
        let p = self.rts.get(res).and_then(|rt| rt.primary())?;
        let st = p.logger().status();
        if !st.mode.is_emergency() {
            return None;
        }
        let free = space.free.unwrap_or(0);
        let needed = space.emergency_below.saturating_mul(2);
        if free < needed {
            return Some(format!(
                "{res}: still in emergency mode: {free} bytes free in the mars directory, at least {needed} needed to log again; free more space, then run cron again"
            ));
        }
        if st.mode != xio::logger::LoggerMode::Bypass {
            return Some(format!(
                "{res}: still {} (writing the index back to the data device); run cron again in a few seconds",
                st.mode
            ));
        }
        match p.logger().resume_logging(RESUME_LIMIT) {
            Ok(start) => {
                tracing::warn!(%res, log = %start, "left emergency mode: logging again");
                Some(format!(
                    "{res}: left emergency mode, logging again from log {} (the export kept running); run `marsadm invalidate {res}` on every secondary that shows Orphan",
                    start.seq
                ))
            }
            Err(e) => Some(format!(
                "{res}: still in emergency mode: logging could not resume ({e}); writes keep going to the data device; fix that, then run cron again"
            )),
        }
    }

    /// Ask every member to delete the logs below what all members still need.
    fn log_delete(&mut self, res: &str, s: &Snapshot) -> Response {
        let Some(keep) = s.min_needed_seq() else {
            return Response::ok(format!("{res}: no replay positions yet, nothing deleted"));
        };
        let lagging: Vec<String> = s
            .members
            .iter()
            .filter(|(_, m)| m.replay.as_ref().is_some_and(|r| r.log.seq == keep))
            .map(|(h, _)| h.clone())
            .collect();
        self.write(
            &format!("resource-{res}/logdelete-below"),
            Some(&keep.to_string()),
        );
        Response::ok(format!(
            "{res}: logs below {keep} are deleted on every member; {} still need log {keep}",
            lagging.join(", ")
        ))
    }

    /// Every live key of resource `res` (full names).
    fn resource_keys(&self, res: &str) -> Vec<String> {
        self.runner
            .node()
            .store()
            .list(&format!("resource-{res}/"))
            .into_iter()
            .map(|(k, _)| k.to_string())
            .collect()
    }

    fn forget_member(&mut self, res: &str, s: &Snapshot) {
        let me = self.me();
        let mut keys: Vec<String> = self
            .resource_keys(res)
            .into_iter()
            .filter(|k| {
                let rel = &k[format!("resource-{res}/").len()..];
                rel.starts_with(&format!("actual-{me}/"))
                    || rel.starts_with(&format!("todo-{me}/"))
                    || (rel.starts_with("version-") && rel.ends_with(&format!("-{me}")))
            })
            .collect();
        for k in ["replay", "syncstatus", "syncpos", "actsize"] {
            keys.push(format!("resource-{res}/{k}-{me}"));
        }
        for k in keys {
            self.write(&k, None);
        }
        if let Err(e) = self.runner.node_mut().leave_resource(res) {
            tracing::warn!("leave-resource {res}: {e}");
        }
        let _ = s;
        if let Some(mut rt) = self.rts.remove(res) {
            rt.shutdown();
        }
        let _ = std::fs::remove_dir_all(self.opts.dir.join(format!("resource-{res}")));
        self.forget_checksums(res);
    }
}

/// Seconds since the epoch (for the records `view` says "N ago" of).
fn unix_secs() -> u64 {
    brick_core::SystemTimeSource.now_ns() / 1_000_000_000
}

/// Log files of a resource in the local log directory: how many, how many bytes.
fn local_logs(dir: &Path, res: &str) -> (usize, u64) {
    let logs = xio::replica::local_log_state(&dir.join(format!("resource-{res}")));
    (logs.len(), logs.values().sum())
}

/// The size of a file or block device.
pub(super) fn device_size(path: &Path) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path)?;
    f.seek(SeekFrom::End(0))
}
