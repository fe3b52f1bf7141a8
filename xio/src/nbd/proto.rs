//! NBD wire constants and the fixed-size headers of the transmission phase (request, simple
//! reply, structured reply chunk), encoded and decoded big-endian as `doc/proto.md` of the NBD
//! project specifies. No IO here: callers read and write the bytes.

/// `NBDMAGIC`, the first 8 bytes the server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: the newstyle magic, also the prefix of every option the client sends.
pub const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
/// Magic of every option reply.
pub const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of a transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Magic of a structured reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Handshake flag: fixed newstyle.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// Handshake flag: the server can omit the 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flag: fixed newstyle.
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
/// Client flag: omit the 124 zero bytes.
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

/// Transmission flags.
pub mod tflag {
    /// Always set.
    pub const HAS_FLAGS: u16 = 1 << 0;
    /// The export refuses writes.
    pub const READ_ONLY: u16 = 1 << 1;
    /// `NBD_CMD_FLUSH` is supported.
    pub const SEND_FLUSH: u16 = 1 << 2;
    /// `NBD_CMD_FLAG_FUA` is supported.
    pub const SEND_FUA: u16 = 1 << 3;
    /// `NBD_CMD_TRIM` is supported.
    pub const SEND_TRIM: u16 = 1 << 5;
    /// `NBD_CMD_WRITE_ZEROES` (and `NO_HOLE`) is supported.
    pub const SEND_WRITE_ZEROES: u16 = 1 << 6;
    /// Flush and FUA on one connection cover writes completed on every connection.
    pub const CAN_MULTI_CONN: u16 = 1 << 8;
}

/// Option numbers.
pub mod opt {
    /// Choose an export and enter transmission (no error reply possible).
    pub const EXPORT_NAME: u32 = 1;
    /// Abort the negotiation.
    pub const ABORT: u32 = 2;
    /// List exports.
    pub const LIST: u32 = 3;
    /// Start TLS (not supported: NOTLS mode).
    pub const STARTTLS: u32 = 5;
    /// Describe an export.
    pub const INFO: u32 = 6;
    /// Describe an export and enter transmission.
    pub const GO: u32 = 7;
    /// Use structured replies.
    pub const STRUCTURED_REPLY: u32 = 8;
    /// List metadata contexts (not supported).
    pub const LIST_META_CONTEXT: u32 = 9;
    /// Select metadata contexts (not supported).
    pub const SET_META_CONTEXT: u32 = 10;
}

/// Option reply types.
pub mod rep {
    /// Success / end of list.
    pub const ACK: u32 = 1;
    /// One export in a list.
    pub const SERVER: u32 = 2;
    /// One information item.
    pub const INFO: u32 = 3;
    /// The option is unknown.
    pub const ERR_UNSUP: u32 = (1 << 31) + 1;
    /// Refused by policy.
    pub const ERR_POLICY: u32 = (1 << 31) + 2;
    /// Syntactically or semantically invalid.
    pub const ERR_INVALID: u32 = (1 << 31) + 3;
    /// No such export.
    pub const ERR_UNKNOWN: u32 = (1 << 31) + 6;
    /// The server is shutting down.
    pub const ERR_SHUTDOWN: u32 = (1 << 31) + 7;
    /// The request is too large.
    pub const ERR_TOO_BIG: u32 = (1 << 31) + 9;
}

/// Information types of `NBD_REP_INFO`.
pub mod info {
    /// Size and transmission flags.
    pub const EXPORT: u16 = 0;
    /// Canonical name.
    pub const NAME: u16 = 1;
    /// Human-readable description.
    pub const DESCRIPTION: u16 = 2;
    /// Block size constraints.
    pub const BLOCK_SIZE: u16 = 3;
}

/// Command types.
pub mod cmd {
    /// Read.
    pub const READ: u16 = 0;
    /// Write (payload follows).
    pub const WRITE: u16 = 1;
    /// Disconnect (no reply).
    pub const DISC: u16 = 2;
    /// Flush.
    pub const FLUSH: u16 = 3;
    /// Trim (discard).
    pub const TRIM: u16 = 4;
    /// Cache hint (not advertised).
    pub const CACHE: u16 = 5;
    /// Write zeroes.
    pub const WRITE_ZEROES: u16 = 6;
    /// Block status (not advertised).
    pub const BLOCK_STATUS: u16 = 7;
}

/// Command flags.
pub mod cflag {
    /// Force unit access.
    pub const FUA: u16 = 1 << 0;
    /// Write zeroes must not punch a hole.
    pub const NO_HOLE: u16 = 1 << 1;
    /// Don't fragment (not advertised).
    pub const DF: u16 = 1 << 2;
    /// One extent only (block status; not advertised).
    pub const REQ_ONE: u16 = 1 << 3;
    /// Fast zero (not advertised).
    pub const FAST_ZERO: u16 = 1 << 4;
}

/// Structured reply chunk types and flags.
pub mod chunk {
    /// Flag: the last chunk of a reply.
    pub const FLAG_DONE: u16 = 1 << 0;
    /// No payload; final chunk of a successful reply.
    pub const NONE: u16 = 0;
    /// Offset + data.
    pub const OFFSET_DATA: u16 = 1;
    /// Error code + message.
    pub const ERROR: u16 = (1 << 15) + 1;
}

/// The error values the protocol allows in replies.
pub mod errno {
    /// Operation not permitted (write to a read-only export).
    pub const EPERM: u32 = 1;
    /// Input/output error.
    pub const EIO: u32 = 5;
    /// Cannot allocate memory.
    pub const ENOMEM: u32 = 12;
    /// Invalid argument.
    pub const EINVAL: u32 = 22;
    /// No space left (write past the end).
    pub const ENOSPC: u32 = 28;
    /// Value too large.
    pub const EOVERFLOW: u32 = 75;
    /// Operation not supported.
    pub const ENOTSUP: u32 = 95;
    /// Server shutting down.
    pub const ESHUTDOWN: u32 = 108;

    /// Map a brick error to the closest value the protocol allows (`doc/proto.md`, "Error
    /// values": EDQUOT and EFBIG become ENOSPC; anything unknown becomes EIO).
    pub fn from_brick(err: &brick_core::Error) -> u32 {
        match err.errno() {
            1 | 13 => EPERM,
            12 => ENOMEM,
            22 => EINVAL,
            27 | 28 | 122 => ENOSPC,
            75 => EOVERFLOW,
            95 => ENOTSUP,
            108 => ESHUTDOWN,
            _ => EIO,
        }
    }
}

/// Size of a request header on the wire.
pub const REQUEST_LEN: usize = 28;
/// Size of a simple reply header.
pub const SIMPLE_REPLY_LEN: usize = 16;
/// Size of a structured reply chunk header.
pub const CHUNK_HEADER_LEN: usize = 20;

/// A decoded request header (the payload of a write follows it on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Command flags.
    pub flags: u16,
    /// Command type.
    pub kind: u16,
    /// Opaque cookie echoed in the reply.
    pub cookie: u64,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub length: u32,
}

impl Request {
    /// Decode a header. `None` if the magic is wrong (a protocol violation).
    pub fn decode(b: &[u8; REQUEST_LEN]) -> Option<Request> {
        if be32(&b[0..4]) != REQUEST_MAGIC {
            return None;
        }
        Some(Request {
            flags: be16(&b[4..6]),
            kind: be16(&b[6..8]),
            cookie: be64(&b[8..16]),
            offset: be64(&b[16..24]),
            length: be32(&b[24..28]),
        })
    }

    /// Encode a header (used by the test client).
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.kind.to_be_bytes());
        b[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.length.to_be_bytes());
        b
    }
}

/// Encode a simple reply header.
pub fn simple_reply(error: u32, cookie: u64) -> [u8; SIMPLE_REPLY_LEN] {
    let mut b = [0u8; SIMPLE_REPLY_LEN];
    b[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b
}

/// Encode a structured reply chunk header.
pub fn chunk_header(flags: u16, kind: u16, cookie: u64, length: u32) -> [u8; CHUNK_HEADER_LEN] {
    let mut b = [0u8; CHUNK_HEADER_LEN];
    b[0..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&flags.to_be_bytes());
    b[6..8].copy_from_slice(&kind.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b[16..20].copy_from_slice(&length.to_be_bytes());
    b
}

/// Big-endian u16 from the first two bytes of `b`.
pub fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Big-endian u32 from the first four bytes of `b`.
pub fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Big-endian u64 from the first eight bytes of `b`.
pub fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_and_matches_the_spec_layout() {
        let r = Request {
            flags: cflag::FUA,
            kind: cmd::WRITE,
            cookie: 0x0102_0304_0506_0708,
            offset: 4096,
            length: 512,
        };
        let b = r.encode();
        // Golden bytes: magic, flags, type, cookie, offset, length (all big-endian).
        assert_eq!(
            b,
            [
                0x25, 0x60, 0x95, 0x13, 0, 1, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0x10,
                0, 0, 0, 2, 0
            ]
        );
        assert_eq!(Request::decode(&b), Some(r));
        let mut bad = b;
        bad[0] ^= 1;
        assert_eq!(Request::decode(&bad), None);
    }

    #[test]
    fn reply_headers_have_the_spec_layout() {
        assert_eq!(
            simple_reply(22, 7),
            [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 22, 0, 0, 0, 0, 0, 0, 0, 7]
        );
        let c = chunk_header(chunk::FLAG_DONE, chunk::OFFSET_DATA, 9, 8 + 512);
        assert_eq!(&c[0..4], &[0x66, 0x8e, 0x33, 0xef]);
        assert_eq!(&c[4..8], &[0, 1, 0, 1]);
        assert_eq!(be64(&c[8..16]), 9);
        assert_eq!(be32(&c[16..20]), 520);
        assert_eq!(
            OPT_REPLY_MAGIC.to_be_bytes(),
            [0, 3, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9]
        );
    }

    #[test]
    fn brick_errors_map_to_protocol_errnos() {
        use brick_core::Error;
        assert_eq!(errno::from_brick(&Error::Invalid("x")), errno::EINVAL);
        assert_eq!(
            errno::from_brick(&Error::NoSpace { context: "x" }),
            errno::ENOSPC
        );
        assert_eq!(
            errno::from_brick(&Error::Os {
                errno: 122,
                context: "x"
            }),
            errno::ENOSPC
        );
        assert_eq!(
            errno::from_brick(&Error::Os {
                errno: 61,
                context: "x"
            }),
            errno::EIO
        );
        assert_eq!(
            errno::from_brick(&Error::Off { brick: "b".into() }),
            errno::ESHUTDOWN
        );
    }
}
