//! Record encoding and decoding (FORMAT.md, "Records"): a 64-byte header with its own CRC, the
//! payload (optionally lz4), an 8-byte trailer with a CRC over header and payload.

use super::header::{u32_at, u64_at};
use std::borrow::Cow;

/// Record header length.
pub const REC_HEADER_LEN: usize = 64;
/// Trailer length.
pub const TRAILER_LEN: usize = 8;
/// Bytes a record adds on top of its payload.
pub const REC_OVERHEAD: usize = REC_HEADER_LEN + TRAILER_LEN;
/// Record magic `MREC`.
pub const REC_MAGIC: [u8; 4] = *b"MREC";
/// Trailer magic `CERM`.
pub const END_MAGIC: [u8; 4] = *b"CERM";
/// Sanity bound for one record's payload and data length (64 MiB).
pub const MAX_RECORD_DATA: u32 = 64 << 20;

/// Record flag: the payload is an lz4 block.
pub const FLAG_LZ4: u8 = 1;
/// Record flag: last record of its batch.
pub const FLAG_BATCH_END: u8 = 2;
/// Record flag: the write carried FUA (informational).
pub const FLAG_FUA: u8 = 4;
/// Record flag: write-zeroes must keep the range allocated.
pub const FLAG_NO_HOLE: u8 = 8;
/// Record flag (format v2 only): the last record of one write; the next record starts at the
/// next multiple of the file's alignment (the bytes in between are padding).
pub const FLAG_PAD: u8 = 16;
const KNOWN_FLAGS: u8 = FLAG_LZ4 | FLAG_BATCH_END | FLAG_FUA | FLAG_NO_HOLE | FLAG_PAD;

/// What a record does to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordOp {
    /// Write the payload.
    Write = 1,
    /// Discard the range.
    Discard = 2,
    /// Zero the range.
    WriteZeroes = 3,
    /// Commit marker: closes a batch that had no record left to carry `BATCH_END`; no device
    /// effect.
    Commit = 4,
    /// End of file: the writer rotated away; nothing after this record belongs to the file
    /// (a recycled file holds stale bytes there). No device effect, no payload, always
    /// `BATCH_END` (a batch of its own).
    End = 5,
}

impl RecordOp {
    fn from_u8(v: u8) -> Option<RecordOp> {
        match v {
            1 => Some(RecordOp::Write),
            2 => Some(RecordOp::Discard),
            3 => Some(RecordOp::WriteZeroes),
            4 => Some(RecordOp::Commit),
            5 => Some(RecordOp::End),
            _ => None,
        }
    }
}

/// A decoded (or to-be-encoded) record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Operation.
    pub op: RecordOp,
    /// Flag bits (`FLAG_*`).
    pub flags: u8,
    /// Payload bytes in the file.
    pub stored_len: u32,
    /// Device bytes affected.
    pub data_len: u32,
    /// The file's nonce.
    pub nonce: u64,
    /// Record sequence number in the file (1-based).
    pub rec_seq: u64,
    /// Batch sequence number in the file (1-based).
    pub batch: u64,
    /// Lamport stamp.
    pub stamp: u64,
    /// Device offset.
    pub pos: u64,
}

impl RecordHeader {
    /// Encode the 64 header bytes (including the header CRC).
    pub fn encode(&self) -> [u8; REC_HEADER_LEN] {
        let mut b = [0u8; REC_HEADER_LEN];
        b[0..4].copy_from_slice(&REC_MAGIC);
        b[4] = self.op as u8;
        b[5] = self.flags;
        b[6..8].copy_from_slice(&(REC_HEADER_LEN as u16).to_le_bytes());
        b[8..12].copy_from_slice(&self.stored_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.data_len.to_le_bytes());
        b[16..24].copy_from_slice(&self.nonce.to_le_bytes());
        b[24..32].copy_from_slice(&self.rec_seq.to_le_bytes());
        b[32..40].copy_from_slice(&self.batch.to_le_bytes());
        b[40..48].copy_from_slice(&self.stamp.to_le_bytes());
        b[48..56].copy_from_slice(&self.pos.to_le_bytes());
        let crc = crc32c::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decode and check a header on its own (magic, CRC, field plausibility).
    pub fn decode(b: &[u8]) -> Result<RecordHeader, &'static str> {
        if b.len() < REC_HEADER_LEN {
            return Err("record header cut off by the end of the file");
        }
        if b[0..4] != REC_MAGIC {
            return Err("bad record magic");
        }
        if crc32c::crc32c(&b[..60]) != u32_at(b, 60) {
            return Err("record header checksum mismatch");
        }
        if u16::from_le_bytes([b[6], b[7]]) as usize != REC_HEADER_LEN {
            return Err("unexpected record header length");
        }
        let op = RecordOp::from_u8(b[4]).ok_or("unknown record operation")?;
        let flags = b[5];
        if flags & !KNOWN_FLAGS != 0 {
            return Err("unknown record flags");
        }
        let h = RecordHeader {
            op,
            flags,
            stored_len: u32_at(b, 8),
            data_len: u32_at(b, 12),
            nonce: u64_at(b, 16),
            rec_seq: u64_at(b, 24),
            batch: u64_at(b, 32),
            stamp: u64_at(b, 40),
            pos: u64_at(b, 48),
        };
        if h.data_len > MAX_RECORD_DATA || h.stored_len > MAX_RECORD_DATA {
            return Err("record length out of range");
        }
        let lz4 = flags & FLAG_LZ4 != 0;
        let ok = match op {
            RecordOp::Write if lz4 => h.stored_len < h.data_len,
            RecordOp::Write => h.stored_len == h.data_len,
            RecordOp::Commit | RecordOp::End => {
                h.stored_len == 0 && h.data_len == 0 && flags & FLAG_BATCH_END != 0
            }
            _ => h.stored_len == 0 && !lz4,
        };
        if !ok || h.pos.checked_add(h.data_len as u64).is_none() {
            return Err("inconsistent record lengths");
        }
        Ok(h)
    }

    /// Total bytes of the record in the file.
    pub fn total_len(&self) -> u64 {
        (REC_OVERHEAD as u64) + self.stored_len as u64
    }

    /// Whether the record closes its batch.
    pub fn batch_end(&self) -> bool {
        self.flags & FLAG_BATCH_END != 0
    }

    /// Whether padding follows the record (format v2).
    pub fn padded(&self) -> bool {
        self.flags & FLAG_PAD != 0
    }
}

/// A record to append: what the writer gets from the logger.
#[derive(Debug, Clone, Copy)]
pub struct RecordIn<'a> {
    /// Operation.
    pub op: RecordOp,
    /// Device offset.
    pub pos: u64,
    /// Device bytes affected.
    pub len: u32,
    /// Payload for writes (`len` bytes), empty otherwise.
    pub data: &'a [u8],
    /// Lamport stamp.
    pub stamp: u64,
    /// Extra flags (`FLAG_FUA`, `FLAG_NO_HOLE`; the writer adds `FLAG_PAD`).
    pub flags: u8,
    /// CRC32C of `data`, if the caller computed it already (the logger does on the client's
    /// thread, so that the log thread, which writes the records of all clients, does not
    /// read every payload once more). Must be right: a wrong one makes the record corrupt.
    pub data_crc: Option<u32>,
}

/// One record's encoding in its three pieces, so that a writer can write the payload from
/// where it already is (a gather write) instead of copying it next to its header first.
#[derive(Debug)]
pub struct EncodedRecord<'a> {
    /// The 64 header bytes.
    pub header: [u8; REC_HEADER_LEN],
    /// The stored payload: the caller's bytes, or their lz4 block.
    pub payload: Cow<'a, [u8]>,
    /// CRC and end magic.
    pub trailer: [u8; TRAILER_LEN],
}

/// Encode `rec` in pieces. With `compress`, a write's payload is lz4-compressed when that
/// makes it smaller.
pub fn encode_parts<'a>(
    rec: &RecordIn<'a>,
    nonce: u64,
    rec_seq: u64,
    batch: u64,
    batch_end: bool,
    compress: bool,
) -> EncodedRecord<'a> {
    let mut flags = rec.flags & (FLAG_FUA | FLAG_NO_HOLE | FLAG_PAD);
    if batch_end {
        flags |= FLAG_BATCH_END;
    }
    let compressed = if compress && rec.op == RecordOp::Write && rec.data.len() >= 64 {
        let c = lz4_flex::block::compress(rec.data);
        (c.len() < rec.data.len()).then_some(c)
    } else {
        None
    };
    let plain = compressed.is_none();
    let payload: Cow<'a, [u8]> = match (compressed, rec.op) {
        (Some(c), _) => {
            flags |= FLAG_LZ4;
            Cow::Owned(c)
        }
        (None, RecordOp::Write) => Cow::Borrowed(rec.data),
        (None, _) => Cow::Borrowed(&[]),
    };
    let h = RecordHeader {
        op: rec.op,
        flags,
        stored_len: payload.len() as u32,
        data_len: rec.len,
        nonce,
        rec_seq,
        batch,
        stamp: rec.stamp,
        pos: rec.pos,
    };
    let header = h.encode();
    let crc = match rec.data_crc {
        Some(data_crc) if plain && !payload.is_empty() => {
            super::crc::combine(crc32c::crc32c(&header), data_crc, payload.len())
        }
        _ => crc32c::crc32c_append(crc32c::crc32c(&header), &payload),
    };
    let mut trailer = [0u8; TRAILER_LEN];
    trailer[..4].copy_from_slice(&crc.to_le_bytes());
    trailer[4..].copy_from_slice(&END_MAGIC);
    EncodedRecord {
        header,
        payload,
        trailer,
    }
}

/// Append the encoding of `rec` to `out` (see [`encode_parts`]).
pub fn encode_record(
    out: &mut Vec<u8>,
    rec: &RecordIn<'_>,
    nonce: u64,
    rec_seq: u64,
    batch: u64,
    batch_end: bool,
    compress: bool,
) {
    let e = encode_parts(rec, nonce, rec_seq, batch, batch_end, compress);
    out.extend_from_slice(&e.header);
    out.extend_from_slice(&e.payload);
    out.extend_from_slice(&e.trailer);
}

/// Check the trailer of a record whose header bytes, payload and trailer are given.
pub fn check_trailer(header: &[u8], payload: &[u8], trailer: &[u8]) -> Result<(), &'static str> {
    if trailer[4..8] != END_MAGIC {
        return Err("bad record end magic");
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[..REC_HEADER_LEN]), payload);
    if crc != u32_at(trailer, 0) {
        return Err("record checksum mismatch");
    }
    Ok(())
}

/// The device bytes of a write record (decompressed when needed).
pub fn decode_payload(h: &RecordHeader, stored: &[u8]) -> Result<Vec<u8>, &'static str> {
    if h.op != RecordOp::Write {
        return Ok(Vec::new());
    }
    if h.flags & FLAG_LZ4 == 0 {
        return Ok(stored.to_vec());
    }
    let out = lz4_flex::block::decompress(stored, h.data_len as usize)
        .map_err(|_| "lz4 payload does not decompress")?;
    if out.len() != h.data_len as usize {
        return Err("lz4 payload decompresses to the wrong length");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(data: &[u8], compress: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let rec = RecordIn {
            op: RecordOp::Write,
            pos: 4096,
            len: data.len() as u32,
            data,
            stamp: 9,
            flags: 0,
            data_crc: None,
        };
        encode_record(&mut out, &rec, 5, 1, 1, true, compress);
        out
    }

    #[test]
    fn roundtrip_plain_and_lz4() {
        for compress in [false, true] {
            let data = vec![7u8; 4096];
            let b = one(&data, compress);
            let h = RecordHeader::decode(&b).unwrap();
            assert_eq!(h.total_len() as usize, b.len());
            assert_eq!(h.flags & FLAG_LZ4 != 0, compress);
            let payload = &b[REC_HEADER_LEN..REC_HEADER_LEN + h.stored_len as usize];
            check_trailer(&b, payload, &b[b.len() - TRAILER_LEN..]).unwrap();
            assert_eq!(decode_payload(&h, payload).unwrap(), data);
        }
    }

    #[test]
    fn a_precomputed_payload_crc_gives_the_same_record() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        for compress in [false, true] {
            let mut rec = RecordIn {
                op: RecordOp::Write,
                pos: 0,
                len: data.len() as u32,
                data: &data,
                stamp: 3,
                flags: 0,
                data_crc: None,
            };
            let (mut plain, mut pre) = (Vec::new(), Vec::new());
            encode_record(&mut plain, &rec, 5, 1, 1, true, compress);
            rec.data_crc = Some(crc32c::crc32c(&data));
            encode_record(&mut pre, &rec, 5, 1, 1, true, compress);
            assert!(plain == pre, "compress {compress}");
        }
    }

    #[test]
    fn incompressible_stays_plain() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let data: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let b = one(&data, true);
        assert_eq!(RecordHeader::decode(&b).unwrap().flags & FLAG_LZ4, 0);
    }

    #[test]
    fn any_flip_is_detected() {
        let b = one(&[3u8; 100], false);
        for i in 0..b.len() * 8 {
            let mut c = b.clone();
            c[i / 8] ^= 1 << (i % 8);
            let ok = RecordHeader::decode(&c).ok().and_then(|h| {
                let end = REC_HEADER_LEN + h.stored_len as usize;
                (end + TRAILER_LEN <= c.len())
                    .then(|| check_trailer(&c, &c[REC_HEADER_LEN..end], &c[end..end + 8]).ok())
                    .flatten()
            });
            assert!(ok.is_none(), "flip of bit {i} went unnoticed");
        }
    }
}
