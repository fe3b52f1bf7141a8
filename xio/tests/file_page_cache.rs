//! `FileBrick::drop_page_cache`: what a full sync leaves in the page cache is written out and
//! dropped, and nothing written is lost.

use brick_core::{read_all, write_all};
use xio::file::{self, Backend, FileOptions};

fn cached_pages(path: &std::path::Path) -> usize {
    file::cached_pages(&std::fs::File::open(path).unwrap()).unwrap()
}

#[test]
fn dropping_the_page_cache_writes_dirty_pages_out_and_leaves_no_page_cached() {
    // Not tmpfs (its pages are the file): the target directory is on the build's disk.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for backend in [Backend::Sync, Backend::IoUring] {
        let path = dir.path().join(format!("{backend:?}.img"));
        let size = 8u64 << 20;
        let opts = FileOptions {
            create_size: Some(size),
            ..FileOptions::default()
        };
        let f = file::open(&path, backend, &opts).unwrap();
        // What a sync does: large sequential writes, left dirty in the page cache.
        let data: Vec<u8> = (0..size as usize).map(|i| (i % 253) as u8 + 1).collect();
        for (k, chunk) in data.chunks(1 << 20).enumerate() {
            write_all(&*f, (k << 20) as u64, chunk).unwrap();
        }
        let before = cached_pages(&path);
        assert!(
            before > 1000,
            "{backend:?}: {before} pages cached after 8 MiB of writes"
        );
        f.drop_page_cache().unwrap();
        let after = cached_pages(&path);
        assert_eq!(
            after, 0,
            "{backend:?}: pages still cached ({before} before)"
        );
        // Written out before it was dropped: the bytes come back from the disk.
        assert!(
            read_all(&*f, 0, size as usize).unwrap() == data,
            "{backend:?}"
        );
        assert!(std::fs::read(&path).unwrap() == data, "{backend:?}");
    }
}
