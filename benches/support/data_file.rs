//! The data file the write-path benches share (included with `#[path]`: benches cannot
//! depend on each other).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use xio::file::{self, Backend, FileBrick, FileOptions};

/// Open a `file_size`-byte data file whose first `region` bytes are written once first, with
/// `O_DIRECT` (a provisioned device, as a block device or an image in use would be). Two
/// traps: writes into a sparse file allocate blocks, and with ext4's `data=ordered` every
/// journal commit then waits for those data pages, so any `fdatasync` (the log's too) measures
/// the allocator; and provisioning through the page cache with large writes leaves large folios
/// behind, on which every 4 KiB buffered write costs ~10x more (`ext4_block_write_begin` walks
/// the whole folio: measured 14k instead of 150k+ IOPS for aio).
pub fn open_data(path: &Path, region: u64, file_size: u64) -> Arc<FileBrick> {
    provision(path, region);
    let opts = FileOptions {
        create_size: Some(file_size),
        ..FileOptions::default()
    };
    file::open(path, Backend::IoUring, &opts).expect("opening the data file")
}

/// Write the first `region` bytes of `path` once with `O_DIRECT` (see [`open_data`]).
pub fn provision(path: &Path, region: u64) {
    let status = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", path.display()),
            "bs=1M",
            &format!("count={}", region >> 20),
            "oflag=direct",
            "conv=fsync",
            "status=none",
        ])
        .status()
        .expect("running dd to provision the data file");
    assert!(status.success(), "dd failed to provision the data file");
}
