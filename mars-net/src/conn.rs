//! An authenticated connection: a cloneable [`ConnSender`] and a [`ConnReceiver`] that answers
//! keepalive pings by itself. Blocking, thread-based.
//!
//! Timeouts: the socket's read timeout is a short tick; the receiver uses it to send pings when
//! idle and to declare the peer dead after `dead_after` of silence. Inside a frame, reads and
//! writes fail after `io_timeout` without a single byte of progress.

use crate::config::NetConfig;
use crate::error::{NetError, Result};
use crate::frame::{self, Frame, Header, Limits, HEADER_LEN};
use crate::message::{ChannelKind, Message, ProtocolVersion};
use parking_lot::Mutex;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Who is at the other end of an authenticated connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's node name (authenticated by the handshake).
    pub node: String,
    /// Its socket address.
    pub addr: SocketAddr,
    /// What the channel is for.
    pub kind: ChannelKind,
    /// The protocol version both sides speak.
    pub version: ProtocolVersion,
}

struct SendHalf {
    stream: Mutex<TcpStream>,
    limits: Limits,
    compress: bool,
    closed: AtomicBool,
    sent_bytes: AtomicU64,
}

/// The sending side of a connection. Clones share the socket; each frame is written whole under
/// a lock, so frames from several threads never interleave.
#[derive(Clone)]
pub struct ConnSender {
    inner: Arc<SendHalf>,
}

impl ConnSender {
    /// Send one message with an optional bulk payload.
    pub fn send(&self, msg: &Message, payload: &[u8]) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(NetError::Closed {
                reason: "connection already closed locally".into(),
            });
        }
        let mut s = self.inner.stream.lock();
        match frame::write_frame(
            &mut *s,
            msg,
            payload,
            self.inner.compress,
            &self.inner.limits,
        ) {
            Ok(n) => {
                self.inner.sent_bytes.fetch_add(n as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                // A half-written frame leaves the stream unusable: close it.
                if !matches!(e, NetError::FrameTooLarge { .. }) {
                    self.inner.closed.store(true, Ordering::Release);
                    let _ = s.shutdown(Shutdown::Both);
                }
                Err(e)
            }
        }
    }

    /// Send an application request with id `id`.
    pub fn request(&self, id: u64, body: Vec<u8>, payload: &[u8]) -> Result<()> {
        self.send(&Message::Request { id, body }, payload)
    }

    /// Send the reply to request `id`.
    pub fn reply(&self, id: u64, body: Vec<u8>, payload: &[u8]) -> Result<()> {
        self.send(&Message::Reply { id, body }, payload)
    }

    /// Send a one-way message.
    pub fn notify(&self, body: Vec<u8>, payload: &[u8]) -> Result<()> {
        self.send(&Message::Notify { body }, payload)
    }

    /// Say why, then close both directions (the receiver on either side gets an error).
    pub fn close(&self, reason: &str) {
        if !self.inner.closed.swap(true, Ordering::AcqRel) {
            let mut s = self.inner.stream.lock();
            let _ = frame::write_frame(
                &mut *s,
                &Message::Close {
                    reason: reason.into(),
                },
                &[],
                false,
                &self.inner.limits,
            );
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Cut the connection without a message (both directions).
    pub fn abort(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let _ = self.inner.stream.lock().shutdown(Shutdown::Both);
    }

    /// Whether the connection was closed locally or after a send error.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Bytes sent so far (frames, on the wire).
    pub fn sent_bytes(&self) -> u64 {
        self.inner.sent_bytes.load(Ordering::Relaxed)
    }
}

/// The receiving side of a connection. Answers pings and swallows pongs; everything else is
/// returned by [`ConnReceiver::recv`].
pub struct ConnReceiver {
    stream: TcpStream,
    tx: ConnSender,
    limits: Limits,
    io_timeout: Duration,
    keepalive: Duration,
    dead_after: Duration,
    last_rx: Instant,
    last_ping: Instant,
    ping_seq: u64,
    peer: String,
}

impl ConnReceiver {
    /// Wait for the next application frame (request, reply, notify). Fails with
    /// [`NetError::Closed`] on EOF or a peer's close, [`NetError::Timeout`] when the peer is
    /// silent for `dead_after`, and with a decode error on garbage (then the connection is cut
    /// and the reason logged).
    pub fn recv(&mut self) -> Result<Frame> {
        loop {
            let r = self.recv_any();
            let f = match r {
                Ok(f) => f,
                Err(e) => {
                    if matches!(
                        e,
                        NetError::BadMagic { .. }
                            | NetError::Checksum { .. }
                            | NetError::Malformed(_)
                            | NetError::FrameTooLarge { .. }
                    ) {
                        tracing::warn!(peer = %self.peer, "disconnecting peer that sent a bad frame: {e}");
                    }
                    self.tx.abort();
                    return Err(e);
                }
            };
            match f.msg {
                Message::Ping { seq } => self.tx.send(&Message::Pong { seq }, &[])?,
                Message::Pong { .. } => {}
                Message::Close { reason } => {
                    self.tx.abort();
                    return Err(NetError::Closed { reason });
                }
                Message::Request { .. } | Message::Reply { .. } | Message::Notify { .. } => {
                    return Ok(f)
                }
                other => {
                    let e = NetError::Protocol {
                        peer: self.peer.clone(),
                        what: format!("unexpected {} message after the handshake", other.name()),
                    };
                    tracing::warn!(peer = %self.peer, "disconnecting: {e}");
                    self.tx.close("protocol violation");
                    return Err(e);
                }
            }
        }
    }

    /// The matching sender.
    pub fn sender(&self) -> &ConnSender {
        &self.tx
    }

    /// Read one frame of any kind, sending keepalive pings while idle.
    pub(crate) fn recv_any(&mut self) -> Result<Frame> {
        let mut hb = [0u8; HEADER_LEN];
        let mut got = 0;
        // Frame boundary: idle ticks are fine, only total silence kills the connection.
        while got == 0 {
            match self.stream.read(&mut hb) {
                Ok(0) => {
                    return Err(NetError::Closed {
                        reason: "end of stream".into(),
                    })
                }
                Ok(n) => got = n,
                Err(e) if is_tick(&e) => {
                    let now = Instant::now();
                    if now.duration_since(self.last_rx) >= self.dead_after {
                        return Err(NetError::Timeout {
                            context: "waiting for the peer (no frame and no keepalive)",
                            millis: self.dead_after.as_millis() as u64,
                        });
                    }
                    if now.duration_since(self.last_rx) >= self.keepalive
                        && now.duration_since(self.last_ping) >= self.keepalive
                    {
                        self.last_ping = now;
                        self.ping_seq += 1;
                        self.tx.send(&Message::Ping { seq: self.ping_seq }, &[])?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(NetError::io("receiving a frame")(e)),
            }
        }
        let mut pr = ProgressReader {
            stream: &self.stream,
            timeout: self.io_timeout,
            last: Instant::now(),
        };
        pr.read_exact(&mut hb[got..]).map_err(map_read)?;
        let h = Header::parse(&hb, &self.limits)?;
        let f = frame::read_body(&mut pr, &hb, &h)?;
        self.last_rx = Instant::now();
        Ok(f)
    }
}

fn is_tick(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn map_read(e: io::Error) -> NetError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => NetError::Closed {
            reason: "end of stream inside a frame".into(),
        },
        io::ErrorKind::TimedOut => NetError::Timeout {
            context: "receiving a frame",
            millis: 0,
        },
        _ => NetError::io("receiving a frame")(e),
    }
}

/// Reads that retry on the socket's short timeout tick and fail only after `timeout` without a
/// single byte.
struct ProgressReader<'a> {
    stream: &'a TcpStream,
    timeout: Duration,
    last: Instant,
}

impl Read for ProgressReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match (&*self.stream).read(buf) {
                Ok(n) => {
                    self.last = Instant::now();
                    return Ok(n);
                }
                Err(e) if is_tick(&e) => {
                    if self.last.elapsed() >= self.timeout {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no progress inside a frame",
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// An authenticated connection. Use it directly for simple request/response, or
/// [`Connection::split`] it to receive on one thread and send from others.
pub struct Connection {
    rx: ConnReceiver,
    peer: PeerInfo,
    next_id: u64,
}

impl Connection {
    pub(crate) fn new(stream: TcpStream, cfg: &NetConfig, peer: PeerInfo) -> Result<Connection> {
        stream
            .set_read_timeout(Some(cfg.tick()))
            .map_err(NetError::io("setting the read timeout"))?;
        stream
            .set_write_timeout(Some(cfg.io_timeout))
            .map_err(NetError::io("setting the write timeout"))?;
        let _ = stream.set_nodelay(true);
        let write = stream
            .try_clone()
            .map_err(NetError::io("cloning the socket"))?;
        let name = format!("{}@{}", peer.node, peer.addr);
        let tx = ConnSender {
            inner: Arc::new(SendHalf {
                stream: Mutex::new(write),
                limits: cfg.limits,
                compress: cfg.compress,
                closed: AtomicBool::new(false),
                sent_bytes: AtomicU64::new(0),
            }),
        };
        let now = Instant::now();
        Ok(Connection {
            rx: ConnReceiver {
                stream,
                tx,
                limits: cfg.limits,
                io_timeout: cfg.io_timeout,
                keepalive: cfg.keepalive,
                dead_after: cfg.dead_after,
                last_rx: now,
                last_ping: now,
                ping_seq: 0,
                peer: name,
            },
            peer,
            next_id: 1,
        })
    }

    /// Who is at the other end.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// A sender for this connection (cheap clone).
    pub fn sender(&self) -> ConnSender {
        self.rx.tx.clone()
    }

    /// Send a message (see [`ConnSender::send`]).
    pub fn send(&self, msg: &Message, payload: &[u8]) -> Result<()> {
        self.rx.tx.send(msg, payload)
    }

    /// Receive the next application frame (see [`ConnReceiver::recv`]).
    pub fn recv(&mut self) -> Result<Frame> {
        self.rx.recv()
    }

    /// Send the reply to request `id`.
    pub fn reply(&self, id: u64, body: Vec<u8>, payload: &[u8]) -> Result<()> {
        self.rx.tx.reply(id, body, payload)
    }

    /// Synchronous request/response: send a request and wait for the reply with the same id.
    /// For a connection used by one thread at a time (notifications arriving meanwhile are
    /// dropped with a debug log); split the connection for pipelined use.
    pub fn request(&mut self, body: Vec<u8>, payload: &[u8]) -> Result<Frame> {
        let id = self.next_id;
        self.next_id += 1;
        self.rx.tx.request(id, body, payload)?;
        loop {
            let f = self.rx.recv()?;
            match &f.msg {
                Message::Reply { id: got, .. } if *got == id => return Ok(f),
                other => {
                    tracing::debug!(peer = %self.rx.peer, "ignoring {} while waiting for reply {id}", other.name())
                }
            }
        }
    }

    /// Close with a reason.
    pub fn close(&self, reason: &str) {
        self.rx.tx.close(reason)
    }

    /// Split into a receiver (one thread) and a cloneable sender.
    pub fn split(self) -> (ConnSender, ConnReceiver) {
        (self.rx.tx.clone(), self.rx)
    }
}
