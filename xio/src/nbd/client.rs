//! A small blocking NBD client (fixed newstyle, `NBD_OPT_GO`, optional structured replies,
//! pipelined requests). It exists to test the server in-process and to script malformed
//! traffic; real users attach with qemu, nbd-client or libnbd.

use super::proto::{self, be16, be32, be64, chunk, cmd, info, opt, rep, Request};
use super::socket::Stream;
use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// One reply as the client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The request's cookie.
    pub cookie: u64,
    /// 0 on success, else the protocol error value.
    pub error: u32,
    /// Data of a successful read (reassembled from structured chunks).
    pub data: Vec<u8>,
}

/// A connected client in the transmission phase.
pub struct Client {
    rd: BufReader<Stream>,
    wr: Stream,
    /// Export size.
    pub size: u64,
    /// Transmission flags.
    pub flags: u16,
    /// Whether structured replies were negotiated.
    pub structured: bool,
    /// Minimum, preferred and maximum block sizes, if the server sent them.
    pub block_size: Option<(u32, u32, u32)>,
    pending: HashMap<u64, (u16, u64, u32)>,
    next_cookie: u64,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Client {
    /// Connect over a Unix socket and choose `name` with `NBD_OPT_GO`.
    pub fn unix(path: impl AsRef<Path>, name: &str, structured: bool) -> io::Result<Client> {
        Client::handshake(Stream::Unix(UnixStream::connect(path)?), name, structured)
    }

    /// Connect over TCP and choose `name` with `NBD_OPT_GO`.
    pub fn tcp(addr: impl ToSocketAddrs, name: &str, structured: bool) -> io::Result<Client> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Client::handshake(Stream::Tcp(s), name, structured)
    }

    /// Bound every wait for a reply: a server that stops answering is a `WouldBlock` /
    /// `TimedOut` error after `timeout` instead of a hang (tests use it).
    pub fn set_reply_timeout(&self, timeout: std::time::Duration) -> io::Result<()> {
        self.rd.get_ref().set_read_timeout(Some(timeout))
    }

    /// List the export names of the server at `path` (`NBD_OPT_LIST`), then abort.
    pub fn list_unix(path: impl AsRef<Path>) -> io::Result<Vec<String>> {
        let s = Stream::Unix(UnixStream::connect(path)?);
        let (mut rd, mut wr) = greet(s)?;
        send_option(&mut wr, opt::LIST, &[])?;
        let mut names = Vec::new();
        loop {
            let (kind, data) = read_option_reply(&mut rd, opt::LIST)?;
            match kind {
                rep::SERVER => {
                    let n = be32(data.get(0..4).ok_or_else(|| bad("short REP_SERVER"))?) as usize;
                    let name = data.get(4..4 + n).ok_or_else(|| bad("short REP_SERVER"))?;
                    names.push(String::from_utf8_lossy(name).into_owned());
                }
                rep::ACK => break,
                k => return Err(bad(format!("LIST failed with reply {k:#x}"))),
            }
        }
        send_option(&mut wr, opt::ABORT, &[])?;
        Ok(names)
    }

    fn handshake(s: Stream, name: &str, structured: bool) -> io::Result<Client> {
        let (mut rd, mut wr) = greet(s)?;
        if structured {
            send_option(&mut wr, opt::STRUCTURED_REPLY, &[])?;
            let (kind, _) = read_option_reply(&mut rd, opt::STRUCTURED_REPLY)?;
            if kind != rep::ACK {
                return Err(bad(format!("structured replies refused: {kind:#x}")));
            }
        }
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&2u16.to_be_bytes());
        d.extend_from_slice(&info::BLOCK_SIZE.to_be_bytes());
        d.extend_from_slice(&info::NAME.to_be_bytes());
        send_option(&mut wr, opt::GO, &d)?;
        let (mut size, mut flags, mut block_size) = (None, 0, None);
        loop {
            let (kind, data) = read_option_reply(&mut rd, opt::GO)?;
            match kind {
                rep::INFO if data.len() >= 2 => match be16(&data) {
                    info::EXPORT if data.len() == 12 => {
                        size = Some(be64(&data[2..]));
                        flags = be16(&data[10..]);
                    }
                    info::BLOCK_SIZE if data.len() == 14 => {
                        block_size = Some((be32(&data[2..]), be32(&data[6..]), be32(&data[10..])))
                    }
                    _ => {}
                },
                rep::ACK => break,
                k => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "GO failed with reply {k:#x}: {}",
                            String::from_utf8_lossy(&data)
                        ),
                    ))
                }
            }
        }
        Ok(Client {
            rd,
            wr,
            size: size.ok_or_else(|| bad("GO succeeded without NBD_INFO_EXPORT"))?,
            flags,
            structured,
            block_size,
            pending: HashMap::new(),
            next_cookie: 1,
        })
    }

    /// Send a request (and the payload of a write) without waiting for the reply.
    pub fn send(
        &mut self,
        kind: u16,
        flags: u16,
        offset: u64,
        data_or_len: Payload<'_>,
    ) -> io::Result<u64> {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        let length = match data_or_len {
            Payload::Data(d) => d.len() as u32,
            Payload::Len(n) => n,
        };
        let req = Request {
            flags,
            kind,
            cookie,
            offset,
            length,
        };
        let mut buf = req.encode().to_vec();
        if let Payload::Data(d) = data_or_len {
            buf.extend_from_slice(d);
        }
        self.wr.write_all(&buf)?;
        if kind != cmd::DISC {
            self.pending.insert(cookie, (kind, offset, length));
        }
        Ok(cookie)
    }

    /// Receive the next reply (any pending request).
    pub fn recv(&mut self) -> io::Result<Reply> {
        let mut m = [0u8; 4];
        self.rd.read_exact(&mut m)?;
        match be32(&m) {
            proto::SIMPLE_REPLY_MAGIC => {
                let mut b = [0u8; 12];
                self.rd.read_exact(&mut b)?;
                let (error, cookie) = (be32(&b), be64(&b[4..]));
                let (kind, _, len) = self
                    .pending
                    .remove(&cookie)
                    .ok_or_else(|| bad(format!("reply for unknown cookie {cookie}")))?;
                let mut data = Vec::new();
                if kind == cmd::READ && error == 0 {
                    if self.structured {
                        return Err(bad("simple reply to a read after structured replies"));
                    }
                    data.resize(len as usize, 0);
                    self.rd.read_exact(&mut data)?;
                }
                Ok(Reply {
                    cookie,
                    error,
                    data,
                })
            }
            proto::STRUCTURED_REPLY_MAGIC => self.recv_structured(),
            x => Err(bad(format!("bad reply magic {x:#x}"))),
        }
    }

    fn recv_structured(&mut self) -> io::Result<Reply> {
        let mut first = true;
        let mut data = Vec::new();
        let mut error = 0;
        loop {
            if !first {
                let mut m = [0u8; 4];
                self.rd.read_exact(&mut m)?;
                if be32(&m) != proto::STRUCTURED_REPLY_MAGIC {
                    return Err(bad("chunks of one reply interleaved with another reply"));
                }
            }
            first = false;
            let mut b = [0u8; 16];
            self.rd.read_exact(&mut b)?;
            let (flags, kind, cookie, len) =
                (be16(&b), be16(&b[2..]), be64(&b[4..]), be32(&b[12..]));
            let &(_, offset, rlen) = self
                .pending
                .get(&cookie)
                .ok_or_else(|| bad(format!("chunk for unknown cookie {cookie}")))?;
            let mut payload = vec![0u8; len as usize];
            self.rd.read_exact(&mut payload)?;
            match kind {
                chunk::NONE => {}
                chunk::OFFSET_DATA if len >= 8 => {
                    let at = be64(&payload);
                    let rel = at
                        .checked_sub(offset)
                        .filter(|r| r + (len as u64 - 8) <= u64::from(rlen))
                        .ok_or_else(|| bad("data chunk outside the request"))?;
                    if data.is_empty() {
                        data.resize(rlen as usize, 0);
                    }
                    data[rel as usize..rel as usize + payload.len() - 8]
                        .copy_from_slice(&payload[8..]);
                }
                k if k & 0x8000 != 0 && len >= 6 => error = be32(&payload).max(1),
                k => return Err(bad(format!("unexpected chunk type {k}"))),
            }
            if flags & chunk::FLAG_DONE != 0 {
                self.pending.remove(&cookie);
                return Ok(Reply {
                    cookie,
                    error,
                    data: if error == 0 { data } else { Vec::new() },
                });
            }
        }
    }

    /// Send one request and wait for its reply (no other requests may be pending).
    pub fn call(
        &mut self,
        kind: u16,
        flags: u16,
        offset: u64,
        p: Payload<'_>,
    ) -> io::Result<Reply> {
        let c = self.send(kind, flags, offset, p)?;
        let r = self.recv()?;
        if r.cookie != c {
            return Err(bad("reply for another request"));
        }
        Ok(r)
    }

    /// Read `len` bytes; `Err(errno)` inside `Ok` for a protocol error reply.
    pub fn read(&mut self, offset: u64, len: u32) -> io::Result<Result<Vec<u8>, u32>> {
        let r = self.call(cmd::READ, 0, offset, Payload::Len(len))?;
        Ok(if r.error == 0 {
            Ok(r.data)
        } else {
            Err(r.error)
        })
    }

    /// Write `data`; returns the reply's error value.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<u32> {
        Ok(self.call(cmd::WRITE, 0, offset, Payload::Data(data))?.error)
    }

    /// Flush; returns the reply's error value.
    pub fn flush(&mut self) -> io::Result<u32> {
        Ok(self.call(cmd::FLUSH, 0, 0, Payload::Len(0))?.error)
    }

    /// Send `NBD_CMD_DISC` and close.
    pub fn disconnect(mut self) -> io::Result<()> {
        self.send(cmd::DISC, 0, 0, Payload::Len(0))?;
        Ok(())
    }

    /// The raw socket, to send arbitrary bytes.
    pub fn raw(&mut self) -> &mut Stream {
        &mut self.wr
    }

    /// Forget pending requests (after raw traffic that the server will not answer).
    pub fn forget(&mut self, cookie: u64) {
        self.pending.remove(&cookie);
    }
}

/// What follows a request header: a write's data, or just the length for other commands.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// Write data (its length is the request length).
    Data(&'a [u8]),
    /// Length of a request without payload.
    Len(u32),
}

fn greet(s: Stream) -> io::Result<(BufReader<Stream>, Stream)> {
    let mut wr = s.try_clone()?;
    let mut rd = BufReader::new(s);
    let mut b = [0u8; 18];
    rd.read_exact(&mut b)?;
    if be64(&b) != proto::NBDMAGIC || be64(&b[8..]) != proto::IHAVEOPT {
        return Err(bad("not an NBD newstyle server"));
    }
    let hflags = be16(&b[16..]);
    let mut c = proto::FLAG_C_FIXED_NEWSTYLE;
    if hflags & proto::FLAG_NO_ZEROES != 0 {
        c |= proto::FLAG_C_NO_ZEROES;
    }
    wr.write_all(&c.to_be_bytes())?;
    Ok((rd, wr))
}

fn send_option(wr: &mut Stream, option: u32, data: &[u8]) -> io::Result<()> {
    let mut b = proto::IHAVEOPT.to_be_bytes().to_vec();
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    wr.write_all(&b)
}

fn read_option_reply(rd: &mut BufReader<Stream>, option: u32) -> io::Result<(u32, Vec<u8>)> {
    let mut b = [0u8; 20];
    rd.read_exact(&mut b)?;
    if be64(&b) != proto::OPT_REPLY_MAGIC || be32(&b[8..]) != option {
        return Err(bad("bad option reply header"));
    }
    let (kind, len) = (be32(&b[12..]), be32(&b[16..]));
    if len > 1 << 20 {
        return Err(bad("option reply too long"));
    }
    let mut data = vec![0u8; len as usize];
    rd.read_exact(&mut data)?;
    Ok((kind, data))
}
