//! The checksum table in memory and its file: load (checking every page), persist the pages
//! that changed, the intent bitmap, growth. IO is plain `pread`/`pwrite`/`fdatasync` on the
//! calling thread.

use super::format::{self, Header, BITS_PER_PAGE, ENTRIES_PER_PAGE, PAGE};
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// What the table knows of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The checksum of its data.
    Known(u32),
    /// Never written through the checksum brick (or written partially, or by two writes at
    /// once): not verifiable until written again or learnt by `scrub`.
    Unknown,
    /// Its table page is damaged: a checksum-file error, never a data error.
    BadPage,
}

/// The table of one device. Pages are allocated when they first hold a checksum, so memory
/// follows what was written (0.1% of it), not the device size.
pub struct Table {
    pub(crate) header: Header,
    pages: Vec<Option<Box<[u32]>>>,
    bad_pages: BTreeSet<u64>,
    dirty: BTreeSet<u64>,
}

impl Table {
    fn new(header: Header) -> Table {
        Table {
            header,
            pages: vec![None; header.table_pages() as usize],
            bad_pages: BTreeSet::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// Entries of table page `p` (the last page may be shorter).
    fn page_len(&self, p: u64) -> usize {
        (self.header.blocks().saturating_sub(p * ENTRIES_PER_PAGE)).min(ENTRIES_PER_PAGE) as usize
    }

    /// What is known of block `b`.
    pub fn get(&self, b: u64) -> Entry {
        let (p, i) = (b / ENTRIES_PER_PAGE, (b % ENTRIES_PER_PAGE) as usize);
        if self.bad_pages.contains(&p) {
            return Entry::BadPage;
        }
        match self.pages.get(p as usize).and_then(|x| x.as_ref()) {
            Some(page) if b < self.header.blocks() && page[i] != 0 => Entry::Known(page[i]),
            _ => Entry::Unknown,
        }
    }

    /// Set block `b`'s checksum (0: unknown). A damaged page stays damaged until
    /// [`Table::relearn_page`] rebuilds all of it.
    pub fn set(&mut self, b: u64, sum: u32) {
        if b >= self.header.blocks() {
            return;
        }
        let (p, i) = (b / ENTRIES_PER_PAGE, (b % ENTRIES_PER_PAGE) as usize);
        let len = self.page_len(p);
        let slot = &mut self.pages[p as usize];
        if slot.is_none() && sum == 0 {
            return;
        }
        let page = slot.get_or_insert_with(|| vec![0u32; len].into_boxed_slice());
        if page[i] != sum {
            page[i] = sum;
            if !self.bad_pages.contains(&p) {
                self.dirty.insert(p);
            }
        }
    }

    /// Rebuild damaged page `page` from `sums` (one per block of the page, in order).
    pub fn relearn_page(&mut self, page: u64, sums: &[u32]) {
        let len = self.page_len(page);
        let mut entries = vec![0u32; len];
        let n = sums.len().min(len);
        entries[..n].copy_from_slice(&sums[..n]);
        self.pages[page as usize] = Some(entries.into_boxed_slice());
        self.bad_pages.remove(&page);
        self.dirty.insert(page);
    }

    /// Table pages whose crc did not match when loaded.
    pub fn bad_pages(&self) -> &BTreeSet<u64> {
        &self.bad_pages
    }

    /// Blocks whose checksum is known, and all blocks.
    pub fn known(&self) -> (u64, u64) {
        let known = self
            .pages
            .iter()
            .flatten()
            .map(|p| p.iter().filter(|&&e| e != 0).count() as u64)
            .sum();
        (known, self.header.blocks())
    }

    /// The encoded pages that changed since the last call (and forget them).
    pub fn take_dirty(&mut self) -> Vec<(u64, Vec<u8>)> {
        let pages = std::mem::take(&mut self.dirty);
        pages
            .into_iter()
            .map(|p| (p, self.encode_page(p)))
            .collect()
    }

    fn encode_page(&self, p: u64) -> Vec<u8> {
        match &self.pages[p as usize] {
            Some(entries) => format::encode_table_page(entries),
            None => format::encode_table_page(&[]),
        }
    }

    /// Take table page `p` as read from the file: all zero bytes is a page never written
    /// (every checksum unknown); otherwise its crc must match (else it is a damaged page).
    fn load_page(&mut self, p: u64, bytes: &[u8]) -> bool {
        if bytes.iter().all(|&x| x == 0) {
            return true;
        }
        let mut entries = vec![0u32; self.page_len(p)];
        if format::decode_table_page(bytes, &mut entries).is_none() {
            self.bad_pages.insert(p);
            return false;
        }
        if entries.iter().any(|&e| e != 0) {
            self.pages[p as usize] = Some(entries.into_boxed_slice());
        }
        true
    }
}

/// The open checksum file.
pub struct CsumFile {
    file: File,
    path: PathBuf,
    header: Header,
}

/// What opening a checksum file found.
pub struct Opened {
    /// The file.
    pub file: CsumFile,
    /// Its table.
    pub table: Table,
    /// Regions whose intent bit was set (written when the last run ended: their checksums
    /// must be recomputed from the data before they are trusted).
    pub dirty_regions: Vec<u64>,
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> String {
    format!("{what} the checksum file {}: {e}", path.display())
}

/// One opener at a time: a second one (a previous role of the resource still closing) would
/// later persist a stale table over this one's.
fn lock(file: &File, path: &Path) -> Result<(), String> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "the checksum file {} is in use by another opener (the resource's previous role on this node is still closing): try again in a moment",
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(path, "locking", e)),
    }
}

impl CsumFile {
    /// Open the checksum file at `path` for a device of `size` bytes, creating it (every
    /// checksum unknown) when missing, and growing it when the device grew.
    pub fn open(path: &Path, size: u64) -> Result<Opened, String> {
        if !path.exists() {
            return CsumFile::create(path, size, None);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_err(path, "opening", e))?;
        lock(&file, path)?;
        CsumFile::load(file, path, size)
    }

    /// The same file grown for a device of `size` bytes (this opener keeps its lock).
    pub fn grown(&self, size: u64) -> Result<Opened, String> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| io_err(&self.path, "reopening", e))?;
        CsumFile::load(file, &self.path, size)
    }

    /// Read an open (and locked) checksum file.
    fn load(file: File, path: &Path, size: u64) -> Result<Opened, String> {
        let mut page = vec![0u8; PAGE];
        file.read_exact_at(&mut page, 0)
            .map_err(|e| io_err(path, "reading the header of", e))?;
        let header = Header::decode(&page).map_err(|why| {
            format!(
                "the checksum file {} is unusable: {why}; move it away (a new one starts with every checksum unknown, and `marsadm scrub` learns them)",
                path.display()
            )
        })?;
        let me = CsumFile {
            file,
            path: path.to_path_buf(),
            header,
        };
        let mut table = Table::new(header);
        // Read in 1 MiB pieces, and only where the file has data: a large device's table is
        // many pages, most of them never written (reserved, reading as zeros).
        const PIECE_PAGES: u64 = 256;
        let mut piece = vec![0u8; PIECE_PAGES as usize * PAGE];
        let mut p = 0;
        while p < header.table_pages() {
            let at = header.table_page_offset(p);
            let data = crate::file::sys::seek_data(&me.file, at, true)
                .unwrap_or(Some(at))
                .unwrap_or(header.file_len());
            if data > at {
                // Skip the hole, to the page the data starts in.
                p = ((data - header.table_page_offset(0)) / PAGE as u64).max(p + 1);
                continue;
            }
            let n = (header.table_pages() - p).min(PIECE_PAGES);
            let buf = &mut piece[..n as usize * PAGE];
            me.file
                .read_exact_at(buf, at)
                .map_err(|e| io_err(path, "reading", e))?;
            for (i, bytes) in buf.chunks(PAGE).enumerate() {
                if !table.load_page(p + i as u64, bytes) {
                    tracing::error!(file = %path.display(), page = p + i as u64,
                        "checksum file page damaged: its blocks are reported as checksum-file errors until `marsadm scrub --repair` relearns them");
                }
            }
            p += n;
        }
        let mut dirty_regions = Vec::new();
        for p in 0..header.bitmap_pages() {
            me.file
                .read_exact_at(&mut page, header.bitmap_page_offset(p))
                .map_err(|e| io_err(path, "reading", e))?;
            let first = p * BITS_PER_PAGE;
            let n = (header.regions() - first).min(BITS_PER_PAGE) as usize;
            // A damaged bitmap page: every region it covers counts as written (recomputing
            // too much is safe, too little is not).
            let bits = format::decode_bitmap_page(&page, n).unwrap_or_else(|| vec![true; n]);
            dirty_regions.extend((0..n).filter(|&i| bits[i]).map(|i| first + i as u64));
        }
        if header.device_size < size {
            return CsumFile::create(path, size, Some((table, dirty_regions)));
        }
        Ok(Opened {
            file: me,
            table,
            dirty_regions,
        })
    }

    /// Write a complete file (to a temporary name, then renamed into place), carrying over
    /// `old`'s table and dirty regions when growing.
    fn create(path: &Path, size: u64, old: Option<(Table, Vec<u64>)>) -> Result<Opened, String> {
        let region = old
            .as_ref()
            .map_or(format::REGION, |(t, _)| t.header.region);
        let header = Header {
            device_size: size,
            region,
        };
        let mut table = Table::new(header);
        let mut dirty_regions = Vec::new();
        if let Some((t, d)) = old {
            let n = t.pages.len().min(table.pages.len());
            for (i, page) in t.pages.into_iter().take(n).enumerate() {
                // A page that was the old last (shorter) page is widened.
                table.pages[i] = page.map(|e| {
                    let mut v = vec![0u32; table.page_len(i as u64)];
                    v[..e.len()].copy_from_slice(&e);
                    v.into_boxed_slice()
                });
            }
            table.bad_pages = t.bad_pages;
            dirty_regions = d;
        }
        let tmp = path.with_extension("csum-new");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, "creating", e))?;
        lock(&file, &tmp)?;
        let me = CsumFile {
            file,
            path: path.to_path_buf(),
            header,
        };
        let mut head = header.encode();
        let set: BTreeSet<u64> = dirty_regions.iter().copied().collect();
        for p in 0..header.bitmap_pages() {
            head.extend(me.bitmap_page(p, |r| set.contains(&r)));
        }
        // The table's space is reserved up front (a full file system never fails an update)
        // without writing it: a page of zeros reads as "every checksum unknown".
        let table_at = header.table_page_offset(0);
        let table_len = header.file_len() - table_at;
        let written = me
            .file
            .write_all_at(&head, 0)
            .and_then(|()| me.file.set_len(header.file_len()))
            .and_then(|()| {
                crate::file::sys::fallocate(&me.file, 0, table_at, table_len).or_else(|e| {
                    // Without fallocate (some file systems) the table stays sparse.
                    tracing::debug!(file = %tmp.display(), "no fallocate for the checksum table: {e}");
                    Ok(())
                })
            })
            .and_then(|()| {
                // Only pages holding checksums are written (a damaged page reads as unknown).
                let held = (0..header.table_pages()).filter(|&p| {
                    table.pages[p as usize].is_some() && !table.bad_pages.contains(&p)
                });
                for p in held {
                    me.file
                        .write_all_at(&table.encode_page(p), header.table_page_offset(p))?;
                }
                Ok(())
            })
            .and_then(|()| me.file.sync_data());
        written.map_err(|e| io_err(&tmp, "writing", e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_err(path, "renaming into place", e))?;
        if let Some(dir) = path.parent() {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(Opened {
            file: me,
            table,
            dirty_regions,
        })
    }

    fn bitmap_page(&self, p: u64, set: impl Fn(u64) -> bool) -> Vec<u8> {
        let first = p * BITS_PER_PAGE;
        let n = (self.header.regions() - first).min(BITS_PER_PAGE);
        format::encode_bitmap_page((0..n).map(|i| set(first + i)))
    }

    /// Write table pages (not synced).
    pub fn write_table_pages(&self, pages: &[(u64, Vec<u8>)]) -> Result<(), String> {
        for (p, bytes) in pages {
            self.file
                .write_all_at(bytes, self.header.table_page_offset(*p))
                .map_err(|e| io_err(&self.path, "writing", e))?;
        }
        Ok(())
    }

    /// Write the bitmap page holding `region` with bits from `set` (not synced).
    pub fn write_bitmap_for(&self, region: u64, set: impl Fn(u64) -> bool) -> Result<(), String> {
        let p = region / BITS_PER_PAGE;
        self.file
            .write_all_at(&self.bitmap_page(p, set), self.header.bitmap_page_offset(p))
            .map_err(|e| io_err(&self.path, "writing", e))
    }

    /// Write every bitmap page (not synced).
    pub fn write_bitmap(&self, set: impl Fn(u64) -> bool) -> Result<(), String> {
        for p in 0..self.header.bitmap_pages() {
            self.write_bitmap_for(p * BITS_PER_PAGE, &set)?;
        }
        Ok(())
    }

    /// `fdatasync` the file.
    pub fn sync(&self) -> Result<(), String> {
        self.file
            .sync_data()
            .map_err(|e| io_err(&self.path, "syncing", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_persist_and_a_damaged_page_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csum");
        let size = 3 * ENTRIES_PER_PAGE * format::BLOCK;
        let mut o = CsumFile::open(&path, size).unwrap();
        assert_eq!(o.table.known(), (0, 3 * ENTRIES_PER_PAGE));
        o.table.set(5, 77);
        o.table.set(ENTRIES_PER_PAGE + 1, 88);
        let pages = o.table.take_dirty();
        assert_eq!(pages.len(), 2);
        o.file.write_table_pages(&pages).unwrap();
        o.file.write_bitmap(|r| r == 0).unwrap();
        o.file.sync().unwrap();
        drop(o);
        let o2 = CsumFile::open(&path, size).unwrap();
        assert_eq!(o2.table.get(5), Entry::Known(77));
        assert_eq!(o2.table.get(6), Entry::Unknown);
        assert_eq!(o2.dirty_regions, vec![0]);
        // Flip a bit in the second table page: its blocks are checksum-file errors.
        let f = OpenOptions::new()
            .write(true)
            .read(true)
            .open(&path)
            .unwrap();
        let off = o2.table.header.table_page_offset(1) + 100;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, off).unwrap();
        f.write_all_at(&[b[0] ^ 0x10], off).unwrap();
        drop(o2);
        let o3 = CsumFile::open(&path, size).unwrap();
        assert_eq!(o3.table.get(ENTRIES_PER_PAGE + 1), Entry::BadPage);
        assert_eq!(o3.table.get(5), Entry::Known(77));
        assert_eq!(o3.table.bad_pages().len(), 1);
    }

    #[test]
    fn a_second_opener_is_refused_while_the_first_holds_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csum");
        let first = CsumFile::open(&path, 1 << 20).unwrap();
        let err = CsumFile::open(&path, 1 << 20).err().unwrap();
        assert!(err.contains("in use"), "{err}");
        let grown = first.file.grown(2 << 20).unwrap();
        drop(first);
        drop(grown);
        assert!(CsumFile::open(&path, 2 << 20).is_ok());
    }

    #[test]
    fn growing_keeps_the_old_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csum");
        let mut o = CsumFile::open(&path, 1 << 20).unwrap();
        o.table.set(3, 9);
        let pages = o.table.take_dirty();
        o.file.write_table_pages(&pages).unwrap();
        o.file.sync().unwrap();
        drop(o);
        let o2 = CsumFile::open(&path, 64 << 20).unwrap();
        assert_eq!(o2.table.header.device_size, 64 << 20);
        assert_eq!(o2.table.get(3), Entry::Known(9));
        assert_eq!(o2.table.get((64 << 20) / 4096 - 1), Entry::Unknown);
        drop(o2);
        assert_eq!(
            CsumFile::open(&path, 64 << 20).unwrap().table.get(3),
            Entry::Known(9)
        );
    }
}
