//! The listener of a node ([`Node`]) with one [`Handler`] per channel kind, and the client-side
//! [`connect`] / [`connect_retry`].

use crate::backoff::Backoff;
use crate::config::NetConfig;
use crate::conn::Connection;
use crate::error::{NetError, Result};
use crate::handshake;
use crate::message::ChannelKind;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Serves authenticated connections of one channel kind.
pub trait Handler: Send + Sync + 'static {
    /// Serve `conn` until done; runs on the connection's own thread. Returning closes it.
    fn serve(&self, conn: Connection);
}

impl<F: Fn(Connection) + Send + Sync + 'static> Handler for F {
    fn serve(&self, conn: Connection) {
        self(conn)
    }
}

/// Which handler serves which channel kind.
#[derive(Default, Clone)]
pub struct Handlers {
    map: HashMap<ChannelKind, Arc<dyn Handler>>,
}

impl Handlers {
    /// No handlers yet.
    pub fn new() -> Handlers {
        Handlers::default()
    }

    /// Serve channel `kind` with `handler` (replaces an earlier one).
    pub fn on(mut self, kind: ChannelKind, handler: impl Handler) -> Handlers {
        self.map.insert(kind, Arc::new(handler));
        self
    }
}

/// Counters of a listening node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Connections that passed the handshake.
    pub accepted: u64,
    /// Connections refused or failed during the handshake.
    pub refused: u64,
    /// Connections currently being served.
    pub active: usize,
}

struct Inner {
    cfg: NetConfig,
    handlers: Handlers,
    stop: AtomicBool,
    accepted: AtomicU64,
    refused: AtomicU64,
    active: AtomicUsize,
    next_conn: AtomicU64,
    live: Mutex<HashMap<u64, TcpStream>>,
    refusals: Mutex<VecDeque<String>>,
}

/// A listening node: one TCP listener, a thread per connection.
pub struct Node {
    inner: Arc<Inner>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Node {
    /// Bind `addr` and serve every channel kind that has a handler. Other kinds are refused in
    /// the handshake.
    pub fn listen(addr: impl ToSocketAddrs, cfg: NetConfig, handlers: Handlers) -> Result<Node> {
        let listener = TcpListener::bind(addr).map_err(NetError::io("binding the listener"))?;
        // Polled accept: a blocking accept cannot be woken portably without unsafe code (a
        // connect to ourselves fails when the caller sits in another network namespace).
        listener
            .set_nonblocking(true)
            .map_err(NetError::io("making the listener non-blocking"))?;
        let addr = listener
            .local_addr()
            .map_err(NetError::io("reading the listener address"))?;
        let inner = Arc::new(Inner {
            cfg,
            handlers,
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            next_conn: AtomicU64::new(0),
            live: Mutex::new(HashMap::new()),
            refusals: Mutex::new(VecDeque::new()),
        });
        let i2 = inner.clone();
        let thread = std::thread::Builder::new()
            .name(format!("mars-net-listen-{addr}"))
            .spawn(move || accept_loop(listener, i2))
            .map_err(NetError::io("spawning the listener thread"))?;
        tracing::info!(%addr, node = %inner.cfg.node, "mars-net listening");
        Ok(Node {
            inner,
            addr,
            thread: Some(thread),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Counters.
    pub fn stats(&self) -> NodeStats {
        NodeStats {
            accepted: self.inner.accepted.load(Ordering::Relaxed),
            refused: self.inner.refused.load(Ordering::Relaxed),
            active: self.inner.active.load(Ordering::Relaxed),
        }
    }

    /// The last (up to 32) refusal reasons, oldest first, as logged.
    pub fn recent_refusals(&self) -> Vec<String> {
        self.inner.refusals.lock().iter().cloned().collect()
    }

    /// Cut every connection currently served (the handlers see errors) without stopping the
    /// listener: simulates a peer crash in tests.
    pub fn cut_connections(&self) {
        for s in self.inner.live.lock().values() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Stop listening and cut every connection.
    pub fn shutdown(&mut self) {
        if self.inner.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        self.cut_connections();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(500));
    let mut idle = Duration::from_millis(1);
    loop {
        if inner.stop.load(Ordering::Acquire) {
            return;
        }
        let (stream, addr) = match listener.accept() {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Poll quickly right after activity, slower when idle (at most 20 ms).
                std::thread::sleep(idle);
                idle = (idle * 2).min(Duration::from_millis(20));
                continue;
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(backoff.next_delay());
                continue;
            }
        };
        backoff.reset();
        idle = Duration::from_millis(1);
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        if inner.active.load(Ordering::Acquire) >= inner.cfg.max_connections {
            refused(
                &inner,
                &addr,
                "too many connections (max_connections reached)".into(),
            );
            continue;
        }
        inner.active.fetch_add(1, Ordering::AcqRel);
        let i2 = inner.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("mars-net-conn-{addr}"))
            .spawn(move || serve_one(stream, addr, i2));
        if let Err(e) = spawned {
            inner.active.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%addr, "cannot spawn a connection thread: {e}");
        }
    }
}

fn refused(inner: &Inner, addr: &SocketAddr, reason: String) {
    tracing::warn!(peer = %addr, "refused connection: {reason}");
    inner.refused.fetch_add(1, Ordering::Relaxed);
    let mut r = inner.refusals.lock();
    if r.len() == 32 {
        r.pop_front();
    }
    r.push_back(format!("{addr}: {reason}"));
}

fn serve_one(stream: TcpStream, addr: SocketAddr, inner: Arc<Inner>) {
    let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
    if let Ok(c) = stream.try_clone() {
        inner.live.lock().insert(id, c);
    }
    let wanted = |k: ChannelKind| inner.handlers.map.contains_key(&k);
    match handshake::server(stream, addr, &inner.cfg, &wanted) {
        Ok(conn) => {
            inner.accepted.fetch_add(1, Ordering::Relaxed);
            let kind = conn.peer().kind;
            tracing::debug!(peer = %addr, node = %conn.peer().node, kind = kind.name(), "connection accepted");
            if let Some(h) = inner.handlers.map.get(&kind) {
                h.serve(conn);
            }
        }
        Err(e) => refused(&inner, &addr, e.to_string()),
    }
    inner.live.lock().remove(&id);
    inner.active.fetch_sub(1, Ordering::AcqRel);
}

/// Connect to `addr`, run the handshake for channel `kind`, and return the authenticated
/// connection. Connecting and the handshake are bounded by `cfg.handshake_timeout` each.
pub fn connect(addr: SocketAddr, cfg: &NetConfig, kind: ChannelKind) -> Result<Connection> {
    let s = TcpStream::connect_timeout(&addr, cfg.handshake_timeout)
        .map_err(NetError::io("connecting"))?;
    handshake::client(s, cfg, kind)
}

/// [`connect`] with retries after retryable errors, waiting `backoff` between attempts, until
/// `give_up` has passed. Authentication and configuration errors return at once.
pub fn connect_retry(
    addr: SocketAddr,
    cfg: &NetConfig,
    kind: ChannelKind,
    backoff: &mut Backoff,
    give_up: Duration,
) -> Result<Connection> {
    let start = Instant::now();
    loop {
        match connect(addr, cfg, kind) {
            Ok(c) => {
                backoff.reset();
                return Ok(c);
            }
            Err(e) if e.is_retryable() && start.elapsed() < give_up => {
                let d = backoff.next_delay();
                tracing::debug!(%addr, "connect failed ({e}), retrying in {d:?}");
                std::thread::sleep(d.min(give_up.saturating_sub(start.elapsed())));
            }
            Err(e) => return Err(e),
        }
    }
}
