//! Framing: a fixed 24-byte header, a postcard control message, an optional raw bulk payload
//! (optionally lz4-compressed), all covered by one crc32c. Layout in `FORMAT.md`.
//!
//! Invariant: every length from the wire is checked against [`Limits`] **before** anything is
//! allocated for it, so a hostile peer can make us allocate at most the limits.

use crate::error::{NetError, Result};
use crate::message::Message;
use std::io::{self, Read, Write};

/// Frame magic: the bytes `MRSF` (little-endian u32).
pub const MAGIC: u32 = u32::from_le_bytes(*b"MRSF");
/// Layout version of the frame header (not the protocol version).
pub const FRAME_VERSION: u8 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 24;
/// Header flag: the payload is lz4 block-compressed.
pub const FLAG_LZ4: u8 = 1;
/// Payloads smaller than this are never compressed (not worth the CPU).
pub const COMPRESS_MIN: usize = 512;

/// Hard size limits for incoming frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest control message (postcard bytes).
    pub max_control: u32,
    /// Largest payload, on the wire and after decompression.
    pub max_payload: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_control: 4 << 20,
            max_payload: 16 << 20,
        }
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The control message.
    pub msg: Message,
    /// The bulk payload (decompressed), empty if none.
    pub payload: Vec<u8>,
}

/// The fixed header, decoded and checked against the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Flags ([`FLAG_LZ4`]).
    pub flags: u8,
    /// Control message length.
    pub ctrl_len: u32,
    /// Payload length on the wire.
    pub payload_len: u32,
    /// Payload length after decompression.
    pub raw_len: u32,
    /// crc32c over header bytes 0..20, control bytes and wire payload.
    pub crc: u32,
}

impl Header {
    /// Parse and validate a header. Rejects bad magic, unknown versions/flags, nonzero reserved
    /// bytes and lengths above `limits`.
    pub fn parse(b: &[u8; HEADER_LEN], limits: &Limits) -> Result<Header> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let magic = u32_at(0);
        if magic != MAGIC {
            return Err(NetError::BadMagic {
                found: magic,
                expected: MAGIC,
            });
        }
        if b[4] != FRAME_VERSION {
            return Err(NetError::Malformed(format!(
                "frame layout version {} (this node knows {FRAME_VERSION})",
                b[4]
            )));
        }
        let flags = b[5];
        if flags & !FLAG_LZ4 != 0 || b[6] != 0 || b[7] != 0 {
            return Err(NetError::Malformed(format!(
                "unknown frame flags {flags:#04x} or nonzero reserved bytes"
            )));
        }
        let h = Header {
            flags,
            ctrl_len: u32_at(8),
            payload_len: u32_at(12),
            raw_len: u32_at(16),
            crc: u32_at(20),
        };
        let check = |what, len: u32, limit: u32| {
            if len > limit {
                Err(NetError::FrameTooLarge {
                    what,
                    len: len as u64,
                    limit: limit as u64,
                })
            } else {
                Ok(())
            }
        };
        check("control", h.ctrl_len, limits.max_control)?;
        check("payload", h.payload_len, limits.max_payload)?;
        check("uncompressed payload", h.raw_len, limits.max_payload)?;
        if h.flags & FLAG_LZ4 == 0 && h.raw_len != h.payload_len {
            return Err(NetError::Malformed(
                "uncompressed payload with raw length different from wire length".into(),
            ));
        }
        if h.ctrl_len == 0 {
            return Err(NetError::Malformed("empty control message".into()));
        }
        Ok(h)
    }

    fn bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4] = FRAME_VERSION;
        b[5] = self.flags;
        b[8..12].copy_from_slice(&self.ctrl_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.payload_len.to_le_bytes());
        b[16..20].copy_from_slice(&self.raw_len.to_le_bytes());
        b[20..24].copy_from_slice(&self.crc.to_le_bytes());
        b
    }
}

/// An encoded frame ready to write: header + control bytes, then the wire payload.
pub struct Encoded<'a> {
    /// Header followed by the control message.
    pub head: Vec<u8>,
    /// Payload as it goes on the wire (compressed or borrowed).
    pub payload: std::borrow::Cow<'a, [u8]>,
}

/// Encode `msg` with `payload`; compress the payload with lz4 if `compress` and it pays.
pub fn encode<'a>(
    msg: &Message,
    payload: &'a [u8],
    compress: bool,
    limits: &Limits,
) -> Result<Encoded<'a>> {
    let ctrl = postcard::to_allocvec(msg)
        .map_err(|e| NetError::Malformed(format!("cannot encode {}: {e}", msg.name())))?;
    if ctrl.len() > limits.max_control as usize {
        return Err(NetError::FrameTooLarge {
            what: "control",
            len: ctrl.len() as u64,
            limit: limits.max_control as u64,
        });
    }
    if payload.len() > limits.max_payload as usize {
        return Err(NetError::FrameTooLarge {
            what: "payload",
            len: payload.len() as u64,
            limit: limits.max_payload as u64,
        });
    }
    let mut flags = 0;
    let mut wire = std::borrow::Cow::Borrowed(payload);
    if compress && payload.len() >= COMPRESS_MIN {
        let c = lz4_flex::block::compress(payload);
        if c.len() < payload.len() {
            wire = std::borrow::Cow::Owned(c);
            flags |= FLAG_LZ4;
        }
    }
    let mut h = Header {
        flags,
        ctrl_len: ctrl.len() as u32,
        payload_len: wire.len() as u32,
        raw_len: payload.len() as u32,
        crc: 0,
    };
    let hb = h.bytes();
    let mut crc = crc32c::crc32c(&hb[..20]);
    crc = crc32c::crc32c_append(crc, &ctrl);
    crc = crc32c::crc32c_append(crc, &wire);
    h.crc = crc;
    let mut head = Vec::with_capacity(HEADER_LEN + ctrl.len());
    head.extend_from_slice(&h.bytes());
    head.extend_from_slice(&ctrl);
    Ok(Encoded {
        head,
        payload: wire,
    })
}

/// Write one frame. Small frames go out in one write call.
pub fn write_frame<W: Write>(
    w: &mut W,
    msg: &Message,
    payload: &[u8],
    compress: bool,
    limits: &Limits,
) -> Result<usize> {
    let mut e = encode(msg, payload, compress, limits)?;
    let total = e.head.len() + e.payload.len();
    if e.payload.len() <= 64 << 10 {
        e.head.extend_from_slice(&e.payload);
        w.write_all(&e.head).map_err(write_err)?;
    } else {
        w.write_all(&e.head).map_err(write_err)?;
        w.write_all(&e.payload).map_err(write_err)?;
    }
    Ok(total)
}

fn write_err(e: io::Error) -> NetError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => NetError::Timeout {
            context: "sending a frame",
            millis: 0,
        },
        _ => NetError::Io {
            context: "sending a frame",
            source: e,
        },
    }
}

/// Decode the body of a frame whose header was already parsed: read control and payload from
/// `r`, verify the checksum, decompress, decode the message.
pub fn read_body<R: Read>(r: &mut R, hb: &[u8; HEADER_LEN], h: &Header) -> Result<Frame> {
    // Lengths were checked against the limits in `Header::parse`.
    let mut ctrl = vec![0u8; h.ctrl_len as usize];
    read_exact(r, &mut ctrl)?;
    let mut wire = vec![0u8; h.payload_len as usize];
    read_exact(r, &mut wire)?;
    let mut crc = crc32c::crc32c(&hb[..20]);
    crc = crc32c::crc32c_append(crc, &ctrl);
    crc = crc32c::crc32c_append(crc, &wire);
    if crc != h.crc {
        return Err(NetError::Checksum {
            expected: h.crc,
            found: crc,
        });
    }
    let msg: Message = postcard::from_bytes(&ctrl)
        .map_err(|e| NetError::Malformed(format!("control message does not decode: {e}")))?;
    let payload = if h.flags & FLAG_LZ4 != 0 {
        let mut out = vec![0u8; h.raw_len as usize];
        let n = lz4_flex::block::decompress_into(&wire, &mut out)
            .map_err(|e| NetError::Malformed(format!("lz4 payload does not decompress: {e}")))?;
        if n != out.len() {
            return Err(NetError::Malformed(format!(
                "lz4 payload decompressed to {n} bytes, header says {}",
                out.len()
            )));
        }
        out
    } else {
        wire
    };
    Ok(Frame { msg, payload })
}

/// Read and decode one whole frame from `r`.
pub fn read_frame<R: Read>(r: &mut R, limits: &Limits) -> Result<Frame> {
    let mut hb = [0u8; HEADER_LEN];
    read_exact(r, &mut hb)?;
    let h = Header::parse(&hb, limits)?;
    read_body(r, &hb, &h)
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => NetError::Closed {
            reason: "end of stream inside a frame".into(),
        },
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => NetError::Timeout {
            context: "receiving a frame",
            millis: 0,
        },
        _ => NetError::Io {
            context: "receiving a frame",
            source: e,
        },
    })
}
