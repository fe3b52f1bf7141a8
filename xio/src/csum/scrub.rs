//! Scrubbing: re-read the device and compare every block with its stored checksum. A chunk
//! is one table page's worth of blocks, so that a damaged page can be rebuilt in one go.

use super::brick::CsumDisk;
use super::format::{block_sum, BLOCK, ENTRIES_PER_PAGE};
use super::store::Entry;
use brick_core::Result;

/// Bytes of data one scrub chunk covers (the blocks of one table page).
pub const SCRUB_CHUNK: u64 = ENTRIES_PER_PAGE * BLOCK;

/// What scrubbing one chunk found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubChunk {
    /// Blocks whose data does not match their checksum (damaged data).
    pub bad: Vec<u64>,
    /// Blocks whose checksum-file page is damaged (not judged; rebuilt with `relearn`).
    pub csum_file_errors: u64,
    /// Blocks whose checksum was unknown and is now learnt from the data.
    pub learned: u64,
    /// Blocks written while they were being read (judged at the next scrub).
    pub skipped: u64,
    /// Damaged checksum-file pages rebuilt from the data.
    pub relearned_pages: u64,
    /// Bytes read.
    pub bytes: u64,
}

impl CsumDisk {
    /// Scrub the chunk starting at `pos` (a multiple of [`SCRUB_CHUNK`]). With `relearn`, a
    /// damaged checksum-file page covering the chunk is rebuilt from the data (the data
    /// itself is never changed from checksums).
    pub fn scrub_chunk(&self, pos: u64, relearn: bool) -> Result<ScrubChunk> {
        let core = self.core();
        let (epoch, size) = {
            let st = core.state.lock();
            (st.epoch_now(), st.table.header.device_size)
        };
        let mut out = ScrubChunk::default();
        if pos >= size {
            return Ok(out);
        }
        let len = (size - pos).min(SCRUB_CHUNK) as usize;
        let data = brick_core::read_all(&*core.inner, pos, len)?;
        out.bytes = len as u64;
        let first = pos / BLOCK;
        let sums: Vec<u32> = data.chunks(BLOCK as usize).map(block_sum).collect();
        let mut st = core.state.lock();
        let page = first / ENTRIES_PER_PAGE;
        if st.table.bad_pages().contains(&page) {
            let racy = (0..sums.len() as u64).any(|i| st.racy(first + i, epoch));
            if relearn && !racy && first.is_multiple_of(ENTRIES_PER_PAGE) {
                st.table.relearn_page(page, &sums);
                out.relearned_pages = 1;
            } else {
                out.csum_file_errors = sums.len() as u64;
            }
            return Ok(out);
        }
        for (i, &sum) in sums.iter().enumerate() {
            let b = first + i as u64;
            match st.table.get(b) {
                Entry::Known(want) if want == sum => {}
                _ if st.racy(b, epoch) => out.skipped += 1,
                Entry::Known(_) => out.bad.push(b),
                Entry::Unknown => {
                    st.table.set(b, sum);
                    out.learned += 1;
                }
                Entry::BadPage => out.csum_file_errors += 1,
            }
        }
        Ok(out)
    }

    /// Persist what scrubbing learnt (a flush of the device and the checksum file).
    pub fn persist(&self) -> Result<()> {
        self.core().flush(false)
    }
}
