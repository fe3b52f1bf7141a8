//! The reply side of one connection: the [`Writer`] collects completed pieces of each request,
//! writes the reply (simple or structured) when the last piece is in, recycles the requests and
//! frees the request's in-flight slot.
//!
//! A completion hook replies at once when the writer is idle (at most two requests in flight,
//! nothing queued for the reply thread, its lock free, no bytes left unsent): it sends without
//! blocking and leaves what
//! the socket does not take to the reply thread. Otherwise it only sends the piece into the
//! reply thread's channel. Either way a hook never blocks, so a slow client never stalls the
//! brick's completion thread, and the common case costs no thread hand-off. Replies are
//! written in completion order (out of order with respect to requests) and batched: the
//! reply thread writes the socket when its channel is momentarily empty.

use super::out::Out;
use super::proto::{self, chunk, cmd, errno};
use super::socket::Stream;
use brick_core::{Aio, AioPool, Completer};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use std::sync::Arc;

/// Messages to the writer thread.
pub(crate) enum ToWriter {
    /// One piece of a request came back from the brick (`tag` is the slot).
    Piece(Box<Aio>),
    /// All pieces of the request in `slot` have been submitted.
    Seal {
        slot: u32,
        cookie: u64,
        kind: u16,
        pieces: u32,
        /// `false` when the request was abandoned (truncated payload): no reply.
        reply: bool,
    },
    /// Answer with an error without any IO.
    Refuse {
        slot: u32,
        cookie: u64,
        errno: u32,
        reason: &'static str,
    },
    /// The reader stopped; exit once every slot is free.
    ReaderDone,
    /// A hook left reply bytes that the socket did not take: send them.
    Flush,
}

/// A hook replies itself only while at most this many requests of the connection are in
/// flight: a write and the flush behind it (`fsync=1`), or one read. Beyond, replies are due
/// together and the reply thread batches them.
const INLINE_MAX_INFLIGHT: usize = 2;

/// The completion hook of one connection: replies at once when the writer is idle, else
/// forwards the finished piece to the reply thread.
pub(crate) struct Hook {
    pub(crate) tx: Sender<ToWriter>,
    pub(crate) writer: Arc<Mutex<Writer>>,
}

impl Completer for Hook {
    fn complete(&self, req: Box<Aio>) {
        self.send(ToWriter::Piece(req));
    }
}

impl Hook {
    /// Handle `msg` (a piece, a seal or a refusal) on this thread if the writer is idle, else
    /// pass it to the reply thread. Never blocks.
    pub(crate) fn send(&self, msg: ToWriter) {
        if let Some(msg) = self.try_inline(msg) {
            // The writer outlives every in-flight request (it waits for all slots), so this
            // only fails after a bug elsewhere; a request is then dropped, not leaked.
            let _ = self.tx.send(msg);
        }
    }

    /// Handle `msg` without blocking if the writer is idle; else hand it back.
    fn try_inline(&self, msg: ToWriter) -> Option<ToWriter> {
        if !self.tx.is_empty() {
            return Some(msg);
        }
        let Some(mut w) = self.writer.try_lock() else {
            return Some(msg);
        };
        // With other requests in flight their replies are due soon: the reply thread writes
        // them together (one `send`, one wake-up of the client, none on this thread, which
        // may be the logger's commit thread acknowledging a whole batch).
        if w.reader_done || w.broken || w.out.pending() > 0 || w.inflight() > INLINE_MAX_INFLIGHT {
            return Some(msg);
        }
        w.inline = true;
        w.handle(msg);
        w.inline = false;
        match w.out.flush_nowait() {
            Ok(true) => {}
            Ok(false) => {
                drop(w);
                let _ = self.tx.send(ToWriter::Flush);
            }
            Err(e) => w.fail(&e),
        }
        None
    }
}

#[derive(Default)]
struct Slot {
    busy: bool,
    cookie: u64,
    kind: u16,
    expected: Option<u32>,
    reply: bool,
    received: u32,
    error: Option<(u32, String)>,
    pieces: Vec<Box<Aio>>,
}

/// The writer thread's state.
pub(crate) struct Writer {
    out: Out,
    slots: Vec<Slot>,
    free: Sender<u32>,
    pool: Arc<AioPool>,
    structured: bool,
    broken: bool,
    busy: usize,
    reader_done: bool,
    /// A hook holds the writer: queue bytes, never block.
    inline: bool,
    /// Replies written while `inline`.
    replied_inline: u64,
}

impl Writer {
    pub(crate) fn new(
        stream: Stream,
        slots: usize,
        free: Sender<u32>,
        pool: Arc<AioPool>,
        structured: bool,
    ) -> Writer {
        Writer {
            out: Out::new(stream),
            slots: (0..slots).map(|_| Slot::default()).collect(),
            free,
            pool,
            structured,
            broken: false,
            busy: 0,
            reader_done: false,
            inline: false,
            replied_inline: 0,
        }
    }

    /// Requests of this connection in flight (slots taken).
    fn inflight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Replies written without the reply thread so far.
    pub(crate) fn replied_inline(&self) -> u64 {
        self.replied_inline
    }

    fn fail(&mut self, e: &std::io::Error) {
        tracing::debug!(error = %e, "nbd: writing a reply failed; dropping further replies");
        self.broken = true;
        // Wake the reader so that the connection ends.
        self.out.stream().shutdown(std::net::Shutdown::Both);
    }

    fn handle(&mut self, msg: ToWriter) {
        match msg {
            ToWriter::Piece(mut req) => {
                let i = req.tag as usize;
                let Some(slot) = self.slots.get_mut(i) else {
                    tracing::error!(tag = req.tag, "nbd: completion with an unknown slot");
                    return;
                };
                if !slot.busy {
                    slot.busy = true;
                    self.busy += 1;
                }
                slot.received += 1;
                let short = req.op == brick_core::Op::Read
                    && req.error.is_none()
                    && req.data.len() < req.len;
                if short && slot.error.is_none() {
                    slot.error = Some((errno::EIO, "the device returned a short read".into()));
                }
                if let Some(e) = req.error.take() {
                    if slot.error.is_none() {
                        slot.error = Some((errno::from_brick(&e), e.to_string()));
                    }
                }
                if req.op == brick_core::Op::Read {
                    slot.pieces.push(req);
                } else {
                    self.pool.put(req);
                }
                self.maybe_finish(i);
            }
            ToWriter::Seal {
                slot,
                cookie,
                kind,
                pieces,
                reply,
            } => {
                let i = slot as usize;
                let s = &mut self.slots[i];
                if !s.busy {
                    s.busy = true;
                    self.busy += 1;
                }
                s.cookie = cookie;
                s.kind = kind;
                s.expected = Some(pieces);
                s.reply = reply;
                self.maybe_finish(i);
            }
            ToWriter::Refuse {
                slot,
                cookie,
                errno,
                reason,
            } => {
                self.write_error(cookie, errno, reason);
                let _ = self.free.send(slot);
            }
            ToWriter::ReaderDone => self.reader_done = true,
            ToWriter::Flush => {}
        }
    }

    fn maybe_finish(&mut self, i: usize) {
        let s = &mut self.slots[i];
        if s.expected != Some(s.received) {
            return;
        }
        let mut s = std::mem::take(s);
        self.busy -= 1;
        if s.reply && s.error.is_none() && crate::fail_point!(crate::failpoint::NBD_BEFORE_ACK) {
            // The connection is lost after the request was done, before its acknowledgement.
            self.fail(&std::io::Error::other("fail point nbd-before-ack"));
        }
        if s.reply {
            self.replied_inline += u64::from(self.inline);
            match &s.error {
                Some((e, msg)) => self.write_error(s.cookie, *e, msg),
                None if s.kind == cmd::READ => self.write_read(s.cookie, &mut s.pieces),
                None => self.write(&proto::simple_reply(0, s.cookie)),
            }
        }
        for p in s.pieces.drain(..) {
            self.pool.put(p);
        }
        // Keep the (now empty) pieces vector's capacity for the next request in this slot.
        self.slots[i].pieces = s.pieces;
        let _ = self.free.send(i as u32);
    }

    fn write_read(&mut self, cookie: u64, pieces: &mut [Box<Aio>]) {
        pieces.sort_unstable_by_key(|p| p.pos);
        if !self.structured {
            self.write(&proto::simple_reply(0, cookie));
            for p in pieces.iter() {
                self.write(&p.data[..p.len]);
            }
            return;
        }
        if pieces.is_empty() {
            self.write(&proto::chunk_header(
                chunk::FLAG_DONE,
                chunk::NONE,
                cookie,
                0,
            ));
            return;
        }
        let last = pieces.len() - 1;
        for (k, p) in pieces.iter().enumerate() {
            let flags = if k == last { chunk::FLAG_DONE } else { 0 };
            let hdr = proto::chunk_header(flags, chunk::OFFSET_DATA, cookie, 8 + p.len as u32);
            self.write(&hdr);
            self.write(&p.pos.to_be_bytes());
            self.write(&p.data[..p.len]);
        }
    }

    fn write_error(&mut self, cookie: u64, errno: u32, msg: &str) {
        let errno = if errno == 0 { errno::EIO } else { errno };
        // Structured replies are mandatory for reads once negotiated, and carry a message.
        if self.structured {
            let mut m = msg.as_bytes();
            if m.len() > 4096 {
                m = &m[..4096];
            }
            let hdr =
                proto::chunk_header(chunk::FLAG_DONE, chunk::ERROR, cookie, 6 + m.len() as u32);
            self.write(&hdr);
            self.write(&errno.to_be_bytes());
            self.write(&(m.len() as u16).to_be_bytes());
            self.write(m);
        } else {
            self.write(&proto::simple_reply(errno, cookie));
        }
    }

    fn write(&mut self, b: &[u8]) {
        if self.broken {
            return;
        }
        if self.inline {
            self.out.queue(b);
        } else if let Err(e) = self.out.write_blocking(b) {
            self.fail(&e);
        }
    }
}

/// The reply thread: run until the reader is done and every slot is free. Returns whether the
/// socket broke.
pub(crate) fn run(writer: Arc<Mutex<Writer>>, rx: Receiver<ToWriter>) -> bool {
    loop {
        let Ok(msg) = rx.recv() else { break };
        let mut w = writer.lock();
        w.handle(msg);
        while let Ok(msg) = rx.try_recv() {
            w.handle(msg);
        }
        if !w.broken {
            if let Err(e) = w.out.flush() {
                w.fail(&e);
            }
        }
        if w.reader_done && w.busy == 0 {
            break;
        }
    }
    let mut w = writer.lock();
    if !w.broken {
        let _ = w.out.flush();
    }
    w.broken
}
