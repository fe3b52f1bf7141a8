//! Record and batch validation, the one piece of code every reader of a log file uses (the
//! [`Scanner`](super::Scanner) and the remote verifier): a record belongs to the file (nonce),
//! carries the next record number and the right batch number (FORMAT.md, "Batches"), uses
//! padding only in format v2, and passes its trailer check; where the next record starts.
//!
//! The nonce (random per file) is what keeps stale bytes from being taken for records: bytes
//! left over from an earlier file (a recycled or rewritten file) carry that file's nonce.

use super::header::FileHeader;
use super::record::{check_trailer, RecordHeader, REC_HEADER_LEN, TRAILER_LEN};

/// The expected next record of one file.
#[derive(Debug, Clone)]
pub struct Chain {
    nonce: u64,
    header: FileHeader,
    next_rec: u64,
    last_batch: u64,
    last_closed: bool,
}

impl Chain {
    /// The chain of a file with header `header`, before its first record.
    pub fn new(header: &FileHeader) -> Chain {
        Chain {
            nonce: header.nonce,
            header: header.clone(),
            next_rec: 1,
            last_batch: 0,
            last_closed: true,
        }
    }

    /// The batch the next record must belong to: the damaged batch if it fails.
    pub fn expected_batch(&self) -> u64 {
        if self.last_closed {
            self.last_batch + 1
        } else {
            self.last_batch
        }
    }

    /// The batch of the last accepted record (0: none yet).
    pub fn last_batch(&self) -> u64 {
        self.last_batch
    }

    /// Whether the last accepted record closed its batch (true before the first record).
    pub fn last_closed(&self) -> bool {
        self.last_closed
    }

    /// Check a decoded record header against the chain: nonce, numbering, padding.
    pub fn check(&self, h: &RecordHeader) -> Result<(), String> {
        if h.nonce != self.nonce {
            return Err("record belongs to another file (nonce)".into());
        }
        let want_batch = self.expected_batch();
        if h.rec_seq != self.next_rec || h.batch != want_batch {
            return Err(format!(
                "record {} of batch {} where record {} of batch {want_batch} was expected",
                h.rec_seq, h.batch, self.next_rec
            ));
        }
        if h.padded() && self.header.align == 0 {
            return Err("padding flag in a format v1 file".into());
        }
        Ok(())
    }

    /// Check a whole record given as its header bytes (at least [`REC_HEADER_LEN`]), its
    /// stored payload and its trailer; returns the decoded header.
    pub fn check_record(
        &self,
        header: &[u8],
        payload: &[u8],
        trailer: &[u8],
    ) -> Result<RecordHeader, String> {
        let h = RecordHeader::decode(header).map_err(str::to_string)?;
        self.check(&h)?;
        if payload.len() != h.stored_len as usize || trailer.len() != TRAILER_LEN {
            return Err("record cut off".into());
        }
        check_trailer(&header[..REC_HEADER_LEN], payload, trailer).map_err(str::to_string)?;
        Ok(h)
    }

    /// Take the checked record `h` that starts at `offset`; returns where the next one starts
    /// (after the padding in v2).
    pub fn accept(&mut self, h: &RecordHeader, offset: u64) -> u64 {
        self.next_rec += 1;
        self.last_batch = h.batch;
        self.last_closed = h.batch_end();
        let end = offset + h.total_len();
        if h.padded() {
            self.header.align_up(end)
        } else {
            end
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record::{encode_record, RecordIn, RecordOp, FLAG_PAD};

    fn header(align: u32) -> FileHeader {
        FileHeader {
            seq: 1,
            nonce: 77,
            created: 0,
            resource: "r".into(),
            node: "n".into(),
            align,
            prev_end: 0,
        }
    }

    fn rec(nonce: u64, rec_seq: u64, batch: u64, end: bool, flags: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let r = RecordIn {
            op: RecordOp::Write,
            pos: 0,
            len: 100,
            data: &[1; 100],
            stamp: 1,
            flags,
            data_crc: None,
        };
        encode_record(&mut out, &r, nonce, rec_seq, batch, end, false);
        out
    }

    fn check(c: &Chain, b: &[u8]) -> Result<RecordHeader, String> {
        let n = b.len();
        c.check_record(&b[..64], &b[64..n - 8], &b[n - 8..])
    }

    #[test]
    fn numbering_nonce_and_padding_are_checked_in_one_place() {
        let mut c = Chain::new(&header(4096));
        let first = rec(77, 1, 1, false, FLAG_PAD);
        let h = check(&c, &first).unwrap();
        assert_eq!(c.accept(&h, 4096), 8192, "padding moves to the next block");
        assert!(check(&c, &rec(78, 2, 1, true, 0))
            .unwrap_err()
            .contains("nonce"));
        assert!(
            check(&c, &rec(77, 3, 1, true, 0)).is_err(),
            "record number skipped"
        );
        assert!(
            check(&c, &rec(77, 2, 2, true, 0)).is_err(),
            "batch not closed yet"
        );
        let h = check(&c, &rec(77, 2, 1, true, 0)).unwrap();
        assert_eq!(c.accept(&h, 8192), 8192 + 172);
        assert_eq!(c.expected_batch(), 2);
        let mut bad = rec(77, 3, 2, true, 0);
        bad[70] ^= 1;
        assert!(check(&c, &bad).unwrap_err().contains("checksum"));
        let v1 = Chain::new(&header(0));
        assert!(check(&v1, &rec(77, 1, 1, true, FLAG_PAD))
            .unwrap_err()
            .contains("v1"));
    }
}
