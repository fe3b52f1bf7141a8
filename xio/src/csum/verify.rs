//! Comparing two replicas' checksum tables (`marsadm verify`): pure functions over the
//! tables, the encoding a table travels in, and the blocks to leave out because they may
//! legitimately differ (written on one side after the common log position).

use super::brick::CsumDisk;
use super::format::BLOCK;
use super::store::Entry;

/// A table as it travels: one little-endian u32 per block, 0 where not known.
pub fn encode_table(sums: &[u32]) -> Vec<u8> {
    sums.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// The inverse of [`encode_table`] (a trailing partial entry is dropped).
pub fn decode_table(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

/// What comparing two tables found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyDiff {
    /// Runs of differing blocks: `(first block, blocks)`.
    pub ranges: Vec<(u64, u64)>,
    /// Blocks compared (known on both sides, not skipped).
    pub compared: u64,
    /// Blocks not judged: unknown on a side, or skipped (written after the common position).
    pub unjudged: u64,
}

impl VerifyDiff {
    /// Differing blocks in all.
    pub fn blocks(&self) -> u64 {
        self.ranges.iter().map(|r| r.1).sum()
    }
}

/// Compare `a` and `b` block by block, leaving out blocks where `skip` holds; blocks beyond the
/// shorter table are not judged.
pub fn compare(a: &[u32], b: &[u32], skip: impl Fn(u64) -> bool) -> VerifyDiff {
    let mut d = VerifyDiff::default();
    let n = a.len().min(b.len());
    d.unjudged += (a.len().max(b.len()) - n) as u64;
    for i in 0..n {
        let blk = i as u64;
        if a[i] == 0 || b[i] == 0 || skip(blk) {
            d.unjudged += 1;
            continue;
        }
        d.compared += 1;
        if a[i] != b[i] {
            match d.ranges.last_mut() {
                Some((first, len)) if *first + *len == blk => *len += 1,
                _ => d.ranges.push((blk, 1)),
            }
        }
    }
    d
}

/// The blocks covered by byte extents `(pos, len)`, as a sorted list of block runs.
pub fn blocks_of(extents: impl IntoIterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = extents
        .into_iter()
        .filter(|&(_, len)| len > 0)
        .map(|(pos, len)| (pos / BLOCK, (pos + len).div_ceil(BLOCK)))
        .collect();
    runs.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in runs {
        match out.last_mut() {
            Some((_, end)) if s <= *end => *end = (*end).max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Whether block `b` lies in one of the sorted, disjoint `[start, end)` runs.
pub fn in_runs(runs: &[(u64, u64)], b: u64) -> bool {
    let i = runs.partition_point(|&(_, end)| end <= b);
    runs.get(i).is_some_and(|&(s, _)| s <= b)
}

impl CsumDisk {
    /// The checksums now, one per block (0 where not known or on a damaged checksum page).
    pub fn snapshot(&self) -> Vec<u32> {
        let st = self.core().state.lock();
        let (_, blocks) = st.table.known();
        (0..blocks)
            .map(|b| match st.table.get(b) {
                Entry::Known(s) => s,
                _ => 0,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_finds_runs_and_leaves_out_unknown_and_skipped_blocks() {
        let a = [1, 2, 3, 4, 5, 6, 0, 8];
        let b = [1, 9, 9, 4, 9, 6, 7, 9];
        let d = compare(&a, &b, |blk| blk == 7);
        assert_eq!(d.ranges, vec![(1, 2), (4, 1)]);
        assert_eq!((d.compared, d.unjudged, d.blocks()), (6, 2, 3));
        assert_eq!(decode_table(&encode_table(&a)), a.to_vec());
    }

    #[test]
    fn block_runs_merge_and_membership() {
        let runs = blocks_of([(0, 1), (4096, 4096), (100 * 4096, 1), (8191, 2), (0, 0)]);
        assert_eq!(runs, vec![(0, 3), (100, 101)]);
        assert!(in_runs(&runs, 2) && in_runs(&runs, 100));
        assert!(!in_runs(&runs, 3) && !in_runs(&runs, 99) && !in_runs(&runs, 101));
    }
}
