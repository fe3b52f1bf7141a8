//! Real-network shell: [`NetTransport`] carries [`Envelope`]s as mars-net `Notify` frames on
//! the `Meta` channel (authenticated by the cluster secret), and [`Runner`] is the daemon's
//! metadata loop: "select, then apply" over incoming messages, local commands and the tick
//! deadline, persisting the changes of each step in one redb transaction.

use crate::disk::DiskStore;
use crate::error::{Error, Result};
use crate::names::NodeName;
use crate::node::{MetaNode, PropConfig};
use crate::proto::Envelope;
use crate::store::{Change, ClockSource};
use crate::transport::{flush, Transport};
use crossbeam_channel::{Receiver, Sender};
use mars_net::{ChannelKind, ClusterId, ConnSender, Connection, Message, NetConfig, Secret};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a peer that could not be reached is left alone before the next attempt.
const RETRY_AFTER: Duration = Duration::from_millis(300);

struct Peer {
    sender: Option<ConnSender>,
    retry_at: Instant,
}

/// Metadata transport over mars-net.
pub struct NetTransport {
    cfg: NetConfig,
    listener: mars_net::Node,
    inbox: Receiver<Envelope>,
    addrs: HashMap<NodeName, SocketAddr>,
    peers: HashMap<NodeName, Peer>,
    /// Messages that could not be sent (peer down); anti-entropy repairs them later.
    pub dropped: u64,
    /// Messages sent.
    pub sent: u64,
    /// Bytes of the messages sent (encoded).
    pub sent_bytes: u64,
}

/// The mars-net settings of node `me` in the cluster of `secret`: the same for the metadata
/// channel and for the daemon's fetch and sync clients.
pub fn net_config(me: &str, secret: &[u8]) -> Result<NetConfig> {
    let id = net_cluster_id(secret);
    let secret = Secret::new(secret).map_err(|e| Error::Io {
        context: "the cluster secret".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let mut cfg = NetConfig::new(id, me, secret);
    cfg.handshake_timeout = Duration::from_secs(1);
    // A peer is declared dead after 10 s without a frame (5 missed pings): this is how long
    // `view` takes to show a cut link as UnResponsive, and so how long an operator waits
    // before `primary --force` is allowed. Bulk transfers are not affected: a frame that
    // makes progress keeps the connection alive (`io_timeout`).
    cfg.keepalive = Duration::from_secs(2);
    cfg.dead_after = Duration::from_secs(10);
    Ok(cfg)
}

/// The transport-level cluster id: one constant for every MARS node. Membership is proven by
/// the HMAC over the cluster secret (a wrong secret fails as "authentication failed"), and the
/// metadata cluster uuid is checked on every message by [`MetaNode`] (a joining node does not
/// know it yet). An id derived from the secret would put a hash of the secret on the wire.
fn net_cluster_id(_secret: &[u8]) -> ClusterId {
    ClusterId(*b"mars-rs:meta:v1\0")
}

impl NetTransport {
    /// Listen on `listen` as node `me`, authenticating peers with `secret`.
    pub fn start(listen: &str, me: &str, secret: &[u8]) -> Result<NetTransport> {
        NetTransport::start_with(listen, me, secret, mars_net::Handlers::new())
    }

    /// [`NetTransport::start`] on a listener that also serves the channels of `others` (the
    /// daemon's log and device server: one TCP listener per node).
    pub fn start_with(
        listen: &str,
        me: &str,
        secret: &[u8],
        others: mars_net::Handlers,
    ) -> Result<NetTransport> {
        let net_err = |e: mars_net::NetError| Error::Io {
            context: format!("listening on {listen}"),
            source: std::io::Error::other(e.to_string()),
        };
        let cfg = net_config(me, secret)?;
        let (tx, inbox) = crossbeam_channel::bounded::<Envelope>(65536);
        let handlers = others.on(ChannelKind::Meta, move |conn: Connection| serve(conn, &tx));
        let listener = mars_net::Node::listen(listen, cfg.clone(), handlers).map_err(net_err)?;
        Ok(NetTransport {
            cfg,
            listener,
            inbox,
            addrs: HashMap::new(),
            peers: HashMap::new(),
            dropped: 0,
            sent: 0,
            sent_bytes: 0,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Incoming messages.
    pub fn inbox(&self) -> &Receiver<Envelope> {
        &self.inbox
    }

    /// Whether a metadata connection to `name` is open now.
    pub fn connected(&self, name: &str) -> bool {
        self.peers
            .get(name)
            .and_then(|p| p.sender.as_ref())
            .is_some_and(|s| !s.is_closed())
    }

    /// The transport settings (for other channels to the same peers).
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// Where node `name` listens, as learnt from `ips/ip-<name>`.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.get(name).copied()
    }

    /// Where node `name` listens (from `ips/ip-<name>`).
    pub fn set_addr(&mut self, name: &NodeName, addr: SocketAddr) {
        if self.addrs.insert(name.clone(), addr) != Some(addr) {
            self.peers.remove(name);
        }
    }

    fn sender(&mut self, to: &NodeName) -> Option<ConnSender> {
        let now = Instant::now();
        let peer = self.peers.entry(to.clone()).or_insert(Peer {
            sender: None,
            retry_at: now,
        });
        if let Some(s) = &peer.sender {
            if !s.is_closed() {
                return Some(s.clone());
            }
            peer.sender = None;
        }
        if now < peer.retry_at {
            return None;
        }
        let addr = *self.addrs.get(to)?;
        match mars_net::connect(addr, &self.cfg, ChannelKind::Meta) {
            Ok(conn) => {
                let (s, mut r) = conn.split();
                // Drain the receiving side so keepalives are answered and a close is noticed.
                std::thread::spawn(move || while r.recv().is_ok() {});
                peer.sender = Some(s.clone());
                Some(s)
            }
            Err(e) => {
                tracing::debug!(peer = %to, %addr, "metadata peer unreachable: {e}");
                peer.retry_at = now + RETRY_AFTER;
                None
            }
        }
    }
}

fn serve(mut conn: Connection, tx: &Sender<Envelope>) {
    let peer = conn.peer().node.clone();
    loop {
        match conn.recv() {
            Ok(f) => {
                if let Message::Notify { body } = f.msg {
                    match Envelope::decode(&body) {
                        Ok(env) => {
                            if tx.send(env).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(%peer, "undecodable metadata message, disconnecting: {e}");
                            conn.close("undecodable metadata message");
                            return;
                        }
                    }
                }
            }
            Err(_) => return,
        }
    }
}

impl Transport for NetTransport {
    fn send(&mut self, to: &NodeName, msg: Envelope) {
        let Some(s) = self.sender(to) else {
            self.dropped += 1;
            return;
        };
        let body = msg.encode();
        self.sent += 1;
        self.sent_bytes += body.len() as u64;
        if s.notify(body, &[]).is_err() {
            self.dropped += 1;
            self.peers.remove(to);
        }
    }
}

/// A local command for the metadata loop.
#[derive(Debug, Clone)]
pub enum Command {
    /// Write a key.
    Set(String, String),
    /// Delete a key.
    Delete(String),
}

/// The metadata loop of one node: store, persistence, propagation and transport.
pub struct Runner {
    node: MetaNode,
    disk: DiskStore,
    net: NetTransport,
    tick: Duration,
    next_tick: Instant,
    ticks: u64,
}

impl Runner {
    /// Open the store at `dir/meta.redb` and start listening.
    pub fn open(
        dir: &Path,
        me: &str,
        listen: &str,
        secret: &[u8],
        tick: Duration,
    ) -> Result<Runner> {
        Runner::open_with(dir, me, listen, secret, tick, mars_net::Handlers::new())
    }

    /// [`Runner::open`] whose listener also serves the channels of `others`.
    pub fn open_with(
        dir: &Path,
        me: &str,
        listen: &str,
        secret: &[u8],
        tick: Duration,
        others: mars_net::Handlers,
    ) -> Result<Runner> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let (disk, store) = DiskStore::open(&dir.join("meta.redb"), me, ClockSource::System)?;
        let seed = crate::names::fnv64(me.as_bytes()) ^ std::process::id() as u64;
        let node = MetaNode::new(store, PropConfig::default(), seed);
        let net = NetTransport::start_with(listen, me, secret, others)?;
        let mut r = Runner {
            node,
            disk,
            net,
            tick,
            next_tick: Instant::now(),
            ticks: 0,
        };
        r.learn_addrs();
        Ok(r)
    }

    /// The node (read access).
    pub fn node(&self) -> &MetaNode {
        &self.node
    }

    /// The node, for membership operations; call [`Runner::commit`] afterwards.
    pub fn node_mut(&mut self) -> &mut MetaNode {
        &mut self.node
    }

    /// The transport (addresses of contacts for join/merge).
    pub fn net_mut(&mut self) -> &mut NetTransport {
        &mut self.net
    }

    /// Where this node listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.net.local_addr()
    }

    fn learn_addrs(&mut self) {
        for (k, v) in self.node.store().list("ips/ip-") {
            if let Ok(a) = v.parse::<SocketAddr>() {
                let name: NodeName = Arc::from(&k["ips/ip-".len()..]);
                if &name != self.node.me() {
                    self.net.set_addr(&name, a);
                }
            }
        }
    }

    /// Handle one incoming message. A merge request comes from a node of another cluster
    /// whose address this node does not know yet: it is learnt from the request's own
    /// `ips/ip-<sender>` entry, so that the answer (also a refusal) can reach it.
    pub fn handle(&mut self, env: Envelope) {
        if let crate::proto::Body::MergeRequest { entries, .. } = &env.body {
            let key = format!("ips/ip-{}", env.from);
            let addr = entries
                .iter()
                .find(|(k, e)| **k == *key && e.origin == env.from)
                .and_then(|(_, e)| e.live())
                .and_then(|v| v.parse::<SocketAddr>().ok());
            if let Some(a) = addr {
                self.net.set_addr(&env.from, a);
            }
        }
        self.node.handle(env);
    }

    /// Propagation rounds (ticks) run since start.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// The transport (read access).
    pub fn net(&self) -> &NetTransport {
        &self.net
    }

    /// Run the propagation tick if it is due.
    pub fn tick_if_due(&mut self) {
        if Instant::now() >= self.next_tick {
            self.ticks += 1;
            self.node.tick();
            self.next_tick = Instant::now() + self.tick;
        }
    }

    /// Persist what changed (one transaction) and send what was queued. Returns the changes.
    pub fn commit(&mut self) -> Result<Vec<Change>> {
        let changes = self.node.store_mut().take_changes();
        self.disk.apply(&changes)?;
        if changes
            .iter()
            .any(|c| matches!(c, Change::Put(k, _) if k.starts_with("ips/")))
        {
            self.learn_addrs();
        }
        flush(&mut self.node, &mut self.net);
        Ok(changes)
    }

    /// Wait for one message, command or the tick deadline (at most `max_wait`), apply it,
    /// persist and send. Returns the changes it made.
    pub fn step(
        &mut self,
        commands: &Receiver<Command>,
        max_wait: Duration,
    ) -> Result<Vec<Change>> {
        let now = Instant::now();
        let wait = self.next_tick.saturating_duration_since(now).min(max_wait);
        crossbeam_channel::select! {
            recv(self.net.inbox) -> m => if let Ok(env) = m { self.handle(env) },
            recv(commands) -> c => match c {
                Ok(Command::Set(k, v)) => if let Err(e) = self.node.set(&k, &v) {
                    tracing::warn!("set {k}: {e}");
                },
                Ok(Command::Delete(k)) => if let Err(e) = self.node.delete(&k) {
                    tracing::warn!("delete {k}: {e}");
                },
                Err(_) => std::thread::sleep(wait),
            },
            default(wait) => {},
        }
        if Instant::now() >= self.next_tick {
            self.node.tick();
            self.next_tick = Instant::now() + self.tick;
        }
        self.commit()
    }
}

/// Options of a line-protocol node process ([`serve_stdio`]).
#[derive(Debug, Clone)]
pub struct StdioNode {
    /// Data directory (holds `meta.redb`).
    pub dir: std::path::PathBuf,
    /// Node name.
    pub node: String,
    /// Listen address (`127.0.0.1:0` picks a port).
    pub listen: String,
    /// Cluster secret.
    pub secret: Vec<u8>,
    /// create-cluster if the store is not in a cluster yet.
    pub create: bool,
    /// join-cluster via (contact name, contact address) if not in a cluster yet.
    pub join: Option<(String, SocketAddr)>,
    /// Tick interval.
    pub tick: Duration,
}

/// Run a metadata node driven by lines on stdin (`set KEY VALUE`, `del KEY`, `quit`) that
/// reports on stdout (`ready ADDR`, `cluster UUID`, `changed KEY VALUE|<deleted>` after each
/// change is persisted). Used by the multi-process tests and the `meta-node` example.
pub fn serve_stdio(o: StdioNode) -> Result<()> {
    use std::io::{BufRead, Write};
    let mut r = Runner::open(&o.dir, &o.node, &o.listen, &o.secret, o.tick)?;
    let addr = r.local_addr().to_string();
    let say = |line: String| {
        let out = std::io::stdout();
        let mut l = out.lock();
        let _ = writeln!(l, "{line}");
        let _ = l.flush();
    };
    if r.node().cluster().is_none() {
        if o.create {
            r.node_mut().create_cluster(&addr)?;
        } else if let Some((name, caddr)) = &o.join {
            r.net_mut().set_addr(&Arc::from(name.as_str()), *caddr);
            r.node_mut().join_cluster(name, &addr)?;
        }
    } else {
        // Restarted: announce where we listen now.
        let key = format!("ips/ip-{}", o.node);
        if r.node().store().get(&key) != Some(addr.as_str()) {
            r.node_mut().set(&key, &addr)?;
        }
        if let Some(u) = r.node().cluster() {
            say(format!("cluster {u}"));
        }
    }
    let first = r.commit()?;
    say(format!("ready {addr}"));
    for c in first {
        if let Change::Put(k, e) = c {
            say(format!("changed {k} {}", e.live().unwrap_or("<deleted>")));
        }
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done2 = done.clone();
    std::thread::spawn(move || {
        let _flag = SetOnDrop(done2);
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let mut it = line.splitn(3, ' ');
            let cmd = match (it.next(), it.next(), it.next()) {
                (Some("set"), Some(k), Some(v)) => Command::Set(k.into(), v.into()),
                (Some("del"), Some(k), None) => Command::Delete(k.into()),
                (Some("quit"), ..) => break,
                _ => {
                    tracing::warn!("unknown command {line:?}");
                    continue;
                }
            };
            if tx.send(cmd).is_err() {
                break;
            }
        }
    });
    loop {
        if done.load(std::sync::atomic::Ordering::Acquire) && rx.is_empty() {
            return Ok(());
        }
        for c in r.step(&rx, Duration::from_millis(100))? {
            if let Change::Put(k, e) = c {
                say(format!("changed {k} {}", e.live().unwrap_or("<deleted>")));
            }
        }
        for ev in r.node_mut().take_events() {
            if let crate::node::NodeEvent::Joined(u) = ev {
                say(format!("cluster {u}"));
            }
        }
    }
}

/// Sets the flag when the command thread ends (stdin closed or `quit`).
struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}
