//! The client brick: reads a peer's device or log file over a bundle of mars-net connections.
//!
//! - Several connections per peer ("socket bundling"); a request goes to the live link with the
//!   fewest requests in flight.
//! - Every request stays in the pending table until its reply arrives. When a link dies, its
//!   requests move to another live link, or wait (unassigned) until a link reconnects, and are
//!   resubmitted there (reads are idempotent, so a duplicate reply is harmless and ignored).
//! - Each link reconnects by itself with exponential backoff and jitter.
//! - If requests are pending and no reply at all arrives for `timeout`, every pending request
//!   fails with a clear timeout error ([`RemoteError::Timeout`] / `brick_core::Error::Timeout`).
//!
//! [`RemoteClient`] implements [`brick_core::Output`] (reads only) so that the copy brick can
//! use it as its source, plus direct calls for stat, checksums and compare-reads.

use super::error::{RemoteError, Result};
use super::proto::{ChunkSum, RemoteReply, RemoteReq, Target, MAX_READ};
use super::watchdog::{self, Watch};
use brick_core::{Aio, Brick, Info, Op, Output, Power, PowerState, Rejected, Stats, StatsSnapshot};
use mars_net::{connect, Backoff, ChannelKind, ConnSender, Message, NetConfig};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Completion callback of a raw request; runs on a link thread, must not block.
pub type Done = Box<dyn FnOnce(Result<(RemoteReply, Vec<u8>)>) + Send>;

/// How to reach what.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Transport identity and secret.
    pub net: NetConfig,
    /// The serving node.
    pub peer: SocketAddr,
    /// Channel kind (fetch for logs, sync for devices).
    pub kind: ChannelKind,
    /// What to read.
    pub target: Target,
    /// Connections in the bundle.
    pub connections: usize,
    /// Fail pending requests after this long without any reply.
    pub timeout: Duration,
    /// Most requests in flight; more are rejected with `Busy`.
    pub max_inflight: usize,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
}

impl ClientConfig {
    /// Defaults: 2 connections, 30 s timeout, 1024 in flight, backoff 20 ms .. 2 s.
    pub fn new(net: NetConfig, peer: SocketAddr, kind: ChannelKind, target: Target) -> Self {
        ClientConfig {
            net,
            peer,
            kind,
            target,
            connections: 2,
            timeout: Duration::from_secs(30),
            max_inflight: 1024,
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_secs(2),
        }
    }
}

struct Pending {
    body: Vec<u8>,
    link: Option<usize>,
    done: Done,
}

struct State {
    pending: HashMap<u64, Pending>,
    next_id: u64,
    links: Vec<Option<ConnSender>>,
    load: Vec<usize>,
    last_progress: Instant,
    stopped: bool,
}

struct Shared {
    name: String,
    cfg: ClientConfig,
    state: Mutex<State>,
    stop: AtomicBool,
    power: Power,
    stats: Stats,
    reconnects: AtomicU64,
    resubmitted: AtomicU64,
}

/// A remote device or log file as a read-only brick.
pub struct RemoteClient {
    shared: Arc<Shared>,
}

impl RemoteClient {
    /// Start the bundle's link threads (they connect in the background); the process's
    /// watchdog thread watches it.
    pub fn start(name: impl Into<String>, cfg: ClientConfig) -> Arc<RemoteClient> {
        let n = cfg.connections.max(1);
        let shared = Arc::new(Shared {
            name: name.into(),
            state: Mutex::new(State {
                pending: HashMap::new(),
                next_id: 1,
                links: vec![None; n],
                load: vec![0; n],
                last_progress: Instant::now(),
                stopped: false,
            }),
            cfg,
            stop: AtomicBool::new(false),
            power: Power::on(),
            stats: Stats::new(),
            reconnects: AtomicU64::new(0),
            resubmitted: AtomicU64::new(0),
        });
        for i in 0..n {
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("remote-link-{i}"))
                .spawn(move || link_loop(&s, i))
                .expect("spawning a remote link thread");
        }
        let watched: Arc<dyn Watch> = shared.clone();
        watchdog::watch(&watched);
        Arc::new(RemoteClient { shared })
    }

    /// Send a raw request; `done` runs once with the reply (or the error).
    pub fn start_request(&self, req: &RemoteReq, done: Done) -> Result<()> {
        let mut slot = Some(done);
        self.shared
            .enqueue(encode(req), || slot.take().expect("called once"))
            .inspect_err(|_| drop(slot.take()))
    }

    /// Send a request and wait for its reply.
    pub fn call(&self, req: &RemoteReq) -> Result<(RemoteReply, Vec<u8>)> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.start_request(
            req,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        )?;
        rx.recv()
            .map_err(|_| RemoteError::Off(self.shared.name.clone()))?
    }

    /// Size of the target now, and whether it is finished.
    pub fn stat(&self) -> Result<(u64, bool)> {
        let target = self.shared.cfg.target.clone();
        match self.call(&RemoteReq::Stat { target })? {
            (RemoteReply::Stat { size, finished }, _) => Ok((size, finished)),
            (other, _) => Err(self.unexpected(&other)),
        }
    }

    /// Read up to `len` bytes at `pos`, waiting up to `wait_ms` at the end of a growing log.
    /// Returns the data, the size and whether the target is finished.
    pub fn read_at(&self, pos: u64, len: u32, wait_ms: u32) -> Result<(Vec<u8>, u64, bool)> {
        let target = self.shared.cfg.target.clone();
        match self.call(&RemoteReq::Read {
            target,
            pos,
            len,
            wait_ms,
        })? {
            (RemoteReply::Data { size, finished }, data) => Ok((data, size, finished)),
            (other, _) => Err(self.unexpected(&other)),
        }
    }

    /// Per-chunk checksums of `[pos, pos+len)`.
    pub fn checksums(&self, pos: u64, len: u64, chunk: u32) -> Result<Vec<ChunkSum>> {
        let target = self.shared.cfg.target.clone();
        match self.call(&RemoteReq::Checksums {
            target,
            pos,
            len,
            chunk,
        })? {
            (RemoteReply::Sums { sums }, _) => Ok(sums),
            (other, _) => Err(self.unexpected(&other)),
        }
    }

    /// The remote bytes of `[pos, pos+len)` if their checksum differs from `sum`, else `None`.
    pub fn read_if_differs(&self, pos: u64, len: u32, sum: ChunkSum) -> Result<Option<Vec<u8>>> {
        let target = self.shared.cfg.target.clone();
        match self.call(&RemoteReq::ReadIfDiffers {
            target,
            pos,
            len,
            sum,
        })? {
            (RemoteReply::Same, _) => Ok(None),
            (RemoteReply::Data { .. }, data) => Ok(Some(data)),
            (other, _) => Err(self.unexpected(&other)),
        }
    }

    /// Links that are connected now.
    pub fn connected_links(&self) -> usize {
        self.shared
            .state
            .lock()
            .links
            .iter()
            .filter(|l| l.is_some())
            .count()
    }

    /// Reconnects so far (after the first connection of each link).
    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    /// Requests resubmitted on another or a new connection so far.
    pub fn resubmitted(&self) -> u64 {
        self.shared.resubmitted.load(Ordering::Relaxed)
    }

    /// Cut every link now (tests: simulate a network failure; the links reconnect).
    pub fn cut_links(&self) {
        for l in self.shared.state.lock().links.iter().flatten() {
            l.abort();
        }
    }

    /// Stop: fail pending requests, cut the links, end the threads.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }

    fn unexpected(&self, r: &RemoteReply) -> RemoteError {
        RemoteError::Protocol {
            peer: self.shared.cfg.peer.to_string(),
            what: format!("reply {r:?} does not answer the request"),
        }
    }
}

impl Drop for RemoteClient {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

fn encode(req: &RemoteReq) -> Vec<u8> {
    postcard::to_allocvec(req).expect("encoding plain data into a Vec cannot fail")
}

impl Shared {
    /// Register a request and send it on the least loaded live link (or park it until a link
    /// is up). `make` builds the callback only once the request is accepted.
    fn enqueue(&self, body: Vec<u8>, make: impl FnOnce() -> Done) -> Result<()> {
        let mut st = self.state.lock();
        if st.stopped {
            return Err(RemoteError::Off(self.name.clone()));
        }
        if st.pending.len() >= self.cfg.max_inflight {
            return Err(RemoteError::Protocol {
                peer: self.cfg.peer.to_string(),
                what: format!("{} requests in flight: busy", st.pending.len()),
            });
        }
        if st.pending.is_empty() {
            st.last_progress = Instant::now();
        }
        let id = st.next_id;
        st.next_id += 1;
        let link = (0..st.links.len())
            .filter(|&i| st.links[i].is_some())
            .min_by_key(|&i| st.load[i]);
        let sender = link.and_then(|i| {
            st.load[i] += 1;
            st.links[i].clone()
        });
        st.pending.insert(
            id,
            Pending {
                body: body.clone(),
                link,
                done: make(),
            },
        );
        drop(st);
        if let Some(s) = sender {
            // A send error means the link is dying; its thread moves the request elsewhere.
            let _ = s.request(id, body, &[]);
        }
        Ok(())
    }

    fn complete(&self, id: u64, body: &[u8], payload: Vec<u8>) {
        let p = {
            let mut st = self.state.lock();
            st.last_progress = Instant::now();
            let p = st.pending.remove(&id);
            if let Some(Pending { link: Some(i), .. }) = &p {
                st.load[*i] = st.load[*i].saturating_sub(1);
            }
            p
        };
        // A duplicate reply after a resubmission finds nothing: ignored.
        let Some(p) = p else { return };
        let r = match postcard::from_bytes::<RemoteReply>(body) {
            Ok(RemoteReply::Error { message, errno }) => {
                Err(RemoteError::Server { message, errno })
            }
            Ok(reply) => Ok((reply, payload)),
            Err(e) => Err(RemoteError::Protocol {
                peer: self.cfg.peer.to_string(),
                what: format!("undecodable reply: {e}"),
            }),
        };
        (p.done)(r);
    }

    fn fail_all(&self, err: impl Fn() -> RemoteError) {
        let all: Vec<Pending> = {
            let mut st = self.state.lock();
            st.load.iter_mut().for_each(|l| *l = 0);
            st.pending.drain().map(|(_, p)| p).collect()
        };
        for p in all {
            (p.done)(Err(err()));
        }
    }

    fn shutdown(&self) {
        if self.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let mut st = self.state.lock();
            st.stopped = true;
            for l in st.links.iter().flatten() {
                l.abort();
            }
        }
        let name = self.name.clone();
        self.fail_all(|| RemoteError::Off(name.clone()));
    }

    fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        while !self.stop.load(Ordering::Acquire) && Instant::now() < end {
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(20)));
        }
    }
}

fn link_loop(s: &Arc<Shared>, i: usize) {
    let mut backoff = Backoff::new(s.cfg.backoff_initial, s.cfg.backoff_max);
    let mut first = true;
    while !s.stop.load(Ordering::Acquire) {
        let conn = match connect(s.cfg.peer, &s.cfg.net, s.cfg.kind) {
            Ok(c) => c,
            Err(e) => {
                if !e.is_retryable() {
                    tracing::warn!(brick = %s.name, peer = %s.cfg.peer, "remote link {i}: {e}");
                } else {
                    tracing::debug!(brick = %s.name, peer = %s.cfg.peer, "remote link {i}: {e}");
                }
                s.sleep(backoff.next_delay());
                continue;
            }
        };
        backoff.reset();
        if !first {
            s.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let (tx, mut rx) = conn.split();
        // Install the link and take over every parked request.
        let resend: Vec<(u64, Vec<u8>)> = {
            let mut st = s.state.lock();
            if st.stopped {
                tx.abort();
                return;
            }
            st.links[i] = Some(tx.clone());
            let mut v = Vec::new();
            for (id, p) in st.pending.iter_mut() {
                if p.link.is_none() {
                    p.link = Some(i);
                    v.push((*id, p.body.clone()));
                }
            }
            st.load[i] += v.len();
            v
        };
        s.resubmitted
            .fetch_add(resend.len() as u64, Ordering::Relaxed);
        for (id, body) in resend {
            if tx.request(id, body, &[]).is_err() {
                break;
            }
        }
        loop {
            match rx.recv() {
                Ok(f) => {
                    if let Message::Reply { id, body } = &f.msg {
                        s.complete(*id, body, f.payload);
                    }
                }
                Err(e) => {
                    if !s.stop.load(Ordering::Acquire) {
                        tracing::info!(brick = %s.name, peer = %s.cfg.peer, "remote link {i} lost: {e}; reconnecting");
                    }
                    break;
                }
            }
        }
        tx.abort();
        // Move this link's requests to another live link, or park them.
        let moved: Vec<(ConnSender, u64, Vec<u8>)> = {
            let mut st = s.state.lock();
            st.links[i] = None;
            st.load[i] = 0;
            let live: Vec<usize> = (0..st.links.len())
                .filter(|&j| st.links[j].is_some())
                .collect();
            let mut v = Vec::new();
            let ids: Vec<u64> = st
                .pending
                .iter()
                .filter(|(_, p)| p.link == Some(i))
                .map(|(id, _)| *id)
                .collect();
            for (k, id) in ids.into_iter().enumerate() {
                let target = live.get(k % live.len().max(1)).copied();
                if let Some(j) = target {
                    st.load[j] += 1;
                }
                let sender = target.and_then(|j| st.links[j].clone());
                let p = st.pending.get_mut(&id).expect("id taken from the table");
                p.link = target;
                if let Some(sender) = sender {
                    v.push((sender, id, p.body.clone()));
                }
            }
            v
        };
        s.resubmitted
            .fetch_add(moved.len() as u64, Ordering::Relaxed);
        for (sender, id, body) in moved {
            let _ = sender.request(id, body, &[]);
        }
        s.sleep(backoff.next_delay());
    }
}

impl Watch for Shared {
    fn tick(&self) -> Duration {
        (self.cfg.timeout / 10).clamp(Duration::from_millis(5), Duration::from_millis(100))
    }

    /// Fail the pending requests when none made progress for the timeout.
    fn check(&self) {
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        let expired = {
            let st = self.state.lock();
            !st.pending.is_empty() && st.last_progress.elapsed() >= self.cfg.timeout
        };
        if expired {
            let millis = self.cfg.timeout.as_millis() as u64;
            tracing::warn!(brick = %self.name, peer = %self.cfg.peer, "no progress for {millis} ms: failing pending requests");
            let peer = self.cfg.peer.to_string();
            self.fail_all(|| RemoteError::Timeout {
                peer: peer.clone(),
                millis,
            });
        }
    }
}

impl Output for RemoteClient {
    fn info(&self) -> brick_core::Result<Info> {
        let (size, _) = self.stat().map_err(|e| e.to_brick(&self.shared.name))?;
        let mut info = Info::new(size);
        info.max_len = MAX_READ;
        info.read_only = true;
        info.can_discard = false;
        info.can_write_zeroes = false;
        Ok(info)
    }

    fn prepare(&self, req: &mut Aio) -> brick_core::Result<()> {
        if req.len > MAX_READ {
            req.shorten(MAX_READ);
        }
        Ok(())
    }

    fn submit(&self, req: Box<Aio>) -> std::result::Result<(), Rejected> {
        if req.op != Op::Read {
            let brick = self.shared.name.clone();
            return Err(Rejected::new(
                req,
                brick_core::Error::Unsupported {
                    op: "remote write",
                    brick,
                },
            ));
        }
        if req.len > MAX_READ {
            return Err(Rejected::new(
                req,
                brick_core::Error::Invalid("remote read longer than max_len: call prepare"),
            ));
        }
        if let Err(e) = self.shared.power.enter(&self.shared.name) {
            return Err(Rejected::new(req, e));
        }
        self.shared.stats.on_submit();
        let body = encode(&RemoteReq::Read {
            target: self.shared.cfg.target.clone(),
            pos: req.pos,
            len: req.len as u32,
            wait_ms: 0,
        });
        let started = Instant::now();
        let mut slot = Some(req);
        let shared = self.shared.clone();
        let r = self.shared.enqueue(body, || {
            let mut req = slot.take().expect("called once");
            Box::new(move |r: Result<(RemoteReply, Vec<u8>)>| {
                let result = match r {
                    Ok((RemoteReply::Data { .. }, data)) if data.len() == req.len => {
                        req.data = data;
                        Ok(())
                    }
                    Ok((RemoteReply::Data { .. }, data)) => Err(brick_core::Error::ShortRead {
                        pos: req.pos,
                        got: data.len(),
                        want: req.len,
                    }),
                    Ok((other, _)) => Err(brick_core::Error::Brick {
                        brick: shared.name.clone(),
                        message: format!("unexpected reply {other:?} to a read"),
                    }),
                    Err(e) => Err(e.to_brick(&shared.name)),
                };
                shared
                    .stats
                    .on_complete(req.len as u64, started.elapsed(), result.is_err());
                shared.power.leave();
                req.finish(result);
            })
        });
        match r {
            Ok(()) => Ok(()),
            Err(e) => {
                self.shared.power.leave();
                let req = slot.take().expect("not consumed on error");
                let err = match e {
                    RemoteError::Protocol { .. } => brick_core::Error::Busy {
                        brick: self.shared.name.clone(),
                        inflight: self.shared.cfg.max_inflight,
                    },
                    other => other.to_brick(&self.shared.name),
                };
                Err(Rejected::new(req, err))
            }
        }
    }
}

impl Brick for RemoteClient {
    fn name(&self) -> &str {
        &self.shared.name
    }
    fn switch(&self, on: bool) -> brick_core::Result<()> {
        if on {
            if self.shared.stop.load(Ordering::Acquire) {
                return Err(brick_core::Error::PowerOrder {
                    brick: self.shared.name.clone(),
                    on: true,
                    reason: "a shut-down remote client cannot restart: start a new one".into(),
                });
            }
            self.shared.power.switch_on(|| Ok(()))
        } else {
            self.shared.shutdown();
            self.shared.power.switch_off(&self.shared.name, || Ok(()))
        }
    }
    fn power(&self) -> PowerState {
        self.shared.power.state()
    }
    fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }
}
