//! Incremental verification of a log file while it is being fetched: every complete record is
//! checked as it arrives (file header, record header CRC, nonce, record and batch numbering,
//! trailer CRC and magic, per `xio/src/log/FORMAT.md`). An incomplete record at the end just
//! waits for more bytes. Use it as [`super::fetch::FetchConfig::verify`].

use super::fetch::VerifyFn;
use crate::log::header::{FileHeader, HeaderProblem, HEADER_LEN};
use crate::log::record::{RecordHeader, REC_HEADER_LEN, TRAILER_LEN};
use crate::log::Chain;
use parking_lot::Mutex;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// Between calls: the chain of the file (after its header) and where the next record starts
/// when that lies beyond the bytes that had arrived (v2 padding).
#[derive(Default)]
struct State {
    chain: Option<Chain>,
    resume: u64,
}

/// A verifier for log files of format v1 and v2 (`expect_seq`: the sequence number the file
/// header must carry, if known). It returns how far the file verifies: the end of the last
/// complete record, or the start of the next one once its padding (v2) has arrived.
pub fn log_verifier(expect_seq: Option<u64>) -> VerifyFn {
    let state = Mutex::new(State::default());
    Arc::new(move |path: &Path, from: u64, local: u64| {
        let mut st = state.lock();
        let f = File::open(path).map_err(|e| format!("cannot open the local copy: {e}"))?;
        let read = |pos: u64, len: usize| -> Result<Vec<u8>, String> {
            let mut b = vec![0u8; len];
            f.read_exact_at(&mut b, pos)
                .map_err(|e| format!("reading the local copy at {pos}: {e}"))?;
            Ok(b)
        };
        let mut p = from;
        if p == 0 {
            if local < HEADER_LEN as u64 {
                return Ok(0);
            }
            let h = match FileHeader::decode(&read(0, HEADER_LEN)?) {
                Ok(h) => h,
                Err(HeaderProblem::Damaged(why)) => return Err(format!("file header: {why}")),
                Err(HeaderProblem::Version(v)) => {
                    return Err(format!("unknown log format version {v}"))
                }
            };
            if let Some(seq) = expect_seq {
                if h.seq != seq {
                    return Err(format!(
                        "file header says log {} where {seq} was expected",
                        h.seq
                    ));
                }
            }
            st.resume = h.data_start();
            st.chain = Some(Chain::new(&h));
        }
        if st.resume > p {
            // The header block, or the padding after the last record, ends at `resume`.
            if local < st.resume {
                return Ok(p);
            }
            p = st.resume;
        }
        let Some(chain) = st.chain.as_mut() else {
            return Err("verification resumed without the file header".into());
        };
        while local - p >= REC_HEADER_LEN as u64 {
            let hb = read(p, REC_HEADER_LEN)?;
            let h = RecordHeader::decode(&hb).map_err(|why| format!("record at {p}: {why}"))?;
            let end = p + h.total_len();
            if end > local {
                break; // the rest of this record has not arrived yet
            }
            let payload = read(p + REC_HEADER_LEN as u64, h.stored_len as usize)?;
            let trailer = read(end - TRAILER_LEN as u64, TRAILER_LEN)?;
            chain
                .check_record(&hb, &payload, &trailer)
                .map_err(|why| format!("record at {p}: {why}"))?;
            let next = chain.accept(&h, p);
            if next > local {
                st.resume = next;
                return Ok(end);
            }
            p = next;
        }
        Ok(p)
    })
}
