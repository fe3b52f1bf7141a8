//! The checksum file's layout (`FORMAT.md` beside this file): pure encoding and decoding of
//! its 4 KiB pages. Page 0 is the header, then the intent bitmap pages, then the table pages.
//! Every page ends in a crc32c of the rest, so a damaged page is found (and reported as a
//! checksum-file error) instead of being taken for damaged data.

/// Bytes of data one checksum covers.
pub const BLOCK: u64 = 4096;
/// Size of every page of the checksum file.
pub const PAGE: usize = 4096;
/// Checksums per table page (4092 bytes of entries, then the page crc).
pub const ENTRIES_PER_PAGE: u64 = ((PAGE - 4) / 4) as u64;
/// Intent bits per bitmap page.
pub const BITS_PER_PAGE: u64 = ((PAGE - 4) * 8) as u64;
/// Default bytes of data per intent bit.
pub const REGION: u64 = 4 << 20;

const MAGIC: [u8; 8] = *b"MARSCSM\0";
const VERSION: u32 = 1;
/// The hash: the low 32 bits of xxh3-64 of the block (0 means "not known").
const HASH_XXH3_32: u32 = 1;

/// The checksum of one block's data. Never 0: 0 marks a block whose checksum is not known.
pub fn block_sum(data: &[u8]) -> u32 {
    match xxhash_rust::xxh3::xxh3_64(data) as u32 {
        0 => 1,
        s => s,
    }
}

/// The header (page 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Size of the data device the table covers.
    pub device_size: u64,
    /// Bytes of data per intent bit.
    pub region: u64,
}

impl Header {
    /// Number of data blocks (the last one may be partial).
    pub fn blocks(&self) -> u64 {
        self.device_size.div_ceil(BLOCK)
    }

    /// Number of intent regions.
    pub fn regions(&self) -> u64 {
        self.device_size.div_ceil(self.region).max(1)
    }

    /// Bitmap pages after the header.
    pub fn bitmap_pages(&self) -> u64 {
        self.regions().div_ceil(BITS_PER_PAGE)
    }

    /// Table pages after the bitmap.
    pub fn table_pages(&self) -> u64 {
        self.blocks().div_ceil(ENTRIES_PER_PAGE).max(1)
    }

    /// File offset of bitmap page `i`.
    pub fn bitmap_page_offset(&self, i: u64) -> u64 {
        (1 + i) * PAGE as u64
    }

    /// File offset of table page `i`.
    pub fn table_page_offset(&self, i: u64) -> u64 {
        (1 + self.bitmap_pages() + i) * PAGE as u64
    }

    /// Length of the whole file.
    pub fn file_len(&self) -> u64 {
        self.table_page_offset(self.table_pages())
    }

    /// Encode page 0.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = vec![0u8; PAGE];
        p[0..8].copy_from_slice(&MAGIC);
        p[8..12].copy_from_slice(&VERSION.to_le_bytes());
        p[12..16].copy_from_slice(&(BLOCK as u32).to_le_bytes());
        p[16..20].copy_from_slice(&HASH_XXH3_32.to_le_bytes());
        p[24..32].copy_from_slice(&self.device_size.to_le_bytes());
        p[32..40].copy_from_slice(&self.region.to_le_bytes());
        seal(&mut p);
        p
    }

    /// Decode page 0, saying what is wrong.
    pub fn decode(p: &[u8]) -> Result<Header, String> {
        if p.len() != PAGE || p[0..8] != MAGIC {
            return Err("not a MARS checksum file (bad magic)".into());
        }
        if !sealed(p) {
            return Err("its header page is damaged (crc mismatch)".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes(p[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(p[o..o + 8].try_into().expect("8 bytes"));
        let (version, block, hash) = (u32_at(8), u32_at(12), u32_at(16));
        if version != VERSION || u64::from(block) != BLOCK || hash != HASH_XXH3_32 {
            return Err(format!(
                "unknown layout (version {version}, block {block}, hash {hash}): upgrade mars-rs"
            ));
        }
        let h = Header {
            device_size: u64_at(24),
            region: u64_at(32),
        };
        if h.region == 0 || !h.region.is_multiple_of(BLOCK) {
            return Err(format!("bad region size {}", h.region));
        }
        Ok(h)
    }
}

/// Write the crc of a page into its last 4 bytes.
pub fn seal(page: &mut [u8]) {
    let n = page.len() - 4;
    let crc = crc32c::crc32c(&page[..n]);
    page[n..].copy_from_slice(&crc.to_le_bytes());
}

/// Whether a page's crc matches.
pub fn sealed(page: &[u8]) -> bool {
    let n = page.len() - 4;
    crc32c::crc32c(&page[..n]).to_le_bytes() == page[n..]
}

/// Encode a table page from its entries (at most [`ENTRIES_PER_PAGE`]; missing ones are 0).
pub fn encode_table_page(entries: &[u32]) -> Vec<u8> {
    let mut p = vec![0u8; PAGE];
    for (i, e) in entries.iter().enumerate() {
        p[i * 4..i * 4 + 4].copy_from_slice(&e.to_le_bytes());
    }
    seal(&mut p);
    p
}

/// Decode a table page into `out` (`None` if its crc does not match).
pub fn decode_table_page(p: &[u8], out: &mut [u32]) -> Option<()> {
    if !sealed(p) {
        return None;
    }
    for (i, e) in out.iter_mut().enumerate() {
        *e = u32::from_le_bytes(p[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    }
    Some(())
}

/// Encode a bitmap page from its bits (bit `i` of the page is region `i` of its range).
pub fn encode_bitmap_page(bits: impl Iterator<Item = bool>) -> Vec<u8> {
    let mut p = vec![0u8; PAGE];
    for (i, b) in bits.enumerate().filter(|(_, b)| *b) {
        let _ = b;
        p[i / 8] |= 1 << (i % 8);
    }
    seal(&mut p);
    p
}

/// Decode a bitmap page: the set bits among the first `n` (`None` if its crc does not match).
pub fn decode_bitmap_page(p: &[u8], n: usize) -> Option<Vec<bool>> {
    sealed(p).then(|| (0..n).map(|i| p[i / 8] & (1 << (i % 8)) != 0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_geometry() {
        let h = Header {
            device_size: (1 << 30) + 512,
            region: REGION,
        };
        assert_eq!(Header::decode(&h.encode()), Ok(h));
        assert_eq!(h.blocks(), (1 << 18) + 1);
        assert_eq!(h.regions(), 257);
        assert_eq!((h.bitmap_pages(), h.table_pages()), (1, 257));
        assert_eq!(h.file_len(), (1 + 1 + 257) * PAGE as u64);
        let mut bad = h.encode();
        bad[30] ^= 1;
        assert!(Header::decode(&bad).unwrap_err().contains("damaged"));
        assert!(Header::decode(&[0u8; PAGE]).unwrap_err().contains("magic"));
    }

    #[test]
    fn pages_roundtrip_and_a_flipped_bit_is_detected() {
        let entries: Vec<u32> = (0..ENTRIES_PER_PAGE as u32).map(|i| i * 7 + 1).collect();
        let p = encode_table_page(&entries);
        let mut out = vec![0u32; entries.len()];
        assert_eq!(decode_table_page(&p, &mut out), Some(()));
        assert_eq!(out, entries);
        for bit in [0usize, 4091 * 8 + 7, 4095 * 8] {
            let mut q = p.clone();
            q[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode_table_page(&q, &mut out), None, "bit {bit}");
        }
        let bits: Vec<bool> = (0..100).map(|i| i % 3 == 0).collect();
        let b = encode_bitmap_page(bits.iter().copied());
        assert_eq!(decode_bitmap_page(&b, 100), Some(bits));
    }

    #[test]
    fn block_sum_is_never_zero() {
        assert_ne!(block_sum(&[0u8; 4096]), 0);
        assert_ne!(block_sum(&[1u8; 4096]), block_sum(&[2u8; 4096]));
    }
}
