//! Gather writes on file bricks (`Output::write_gather`, the log writer's path): the pieces land
//! back to back, more of them than one `pwritev` takes (`IOV_MAX`), buffered and with
//! `O_DIRECT`; and they are checked like a plain write.

use brick_core::{read_all, Error, Output};
use std::io::IoSlice;
use xio::file::{self, Backend, FileOptions};

/// Pieces of 1..=97 bytes (headers, payloads and trailers have all sorts of lengths), more
/// than `IOV_MAX` (1024) of them, `multiple` bytes in all.
fn pieces(multiple: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..3000u32)
        .map(|i| vec![(i % 251) as u8 + 1; 1 + (i as usize * 37) % 97])
        .collect();
    let total: usize = out.iter().map(Vec::len).sum();
    out.push(vec![0xee; total.next_multiple_of(multiple) - total]);
    out
}

#[test]
fn a_gather_write_puts_its_pieces_back_to_back() {
    for direct in [false, true] {
        // Not the system temp dir: tmpfs has no O_DIRECT.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let opts = FileOptions {
            create_size: Some(0),
            growable: true,
            threads: 0,
            direct,
            start_writeback: !direct,
            ..FileOptions::default()
        };
        let f = file::open(dir.path().join("log"), Backend::Sync, &opts).unwrap();
        let bs = f.info().unwrap().block_size as usize;
        let parts = pieces(bs);
        let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let want = parts.concat();
        let at = bs as u64;
        f.write_gather(at, &slices)
            .expect("a file brick has a gather write")
            .unwrap();
        assert_eq!(
            f.info().unwrap().size,
            at + want.len() as u64,
            "direct {direct}"
        );
        assert!(
            read_all(&*f, at, want.len()).unwrap() == want,
            "direct {direct}: the file holds the pieces in order"
        );
    }
}

/// The io_uring backend has a gather write on buffered files (logger writeback writes its runs
/// from the payloads with it) and none with `O_DIRECT` (its submit path keeps requests in
/// flight in parallel; a gather write would copy into a bounce buffer all the same).
#[test]
fn an_io_uring_file_gathers_when_buffered_and_not_with_o_direct() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let open = |name: &str, direct: bool| {
        let opts = FileOptions {
            create_size: Some(1 << 20),
            direct,
            ..FileOptions::default()
        };
        file::open(dir.path().join(name), Backend::IoUring, &opts).unwrap()
    };
    let buffered = open("buffered", false);
    let parts = pieces(4096);
    let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let want = parts.concat();
    buffered
        .write_gather(8192, &slices)
        .expect("a buffered io_uring file has a gather write")
        .unwrap();
    assert!(read_all(&*buffered, 8192, want.len()).unwrap() == want);
    assert!(
        open("direct", true).write_gather(0, &slices).is_none(),
        "O_DIRECT: no gather write, requests go through submit"
    );
}

#[test]
fn a_gather_write_is_checked_like_a_write() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let open = |name: &str, opts: FileOptions| {
        file::open(dir.path().join(name), Backend::Sync, &opts).unwrap()
    };
    let piece = [7u8; 100];
    let one = [IoSlice::new(&piece)];
    let fixed = open(
        "fixed",
        FileOptions {
            create_size: Some(4096),
            ..FileOptions::default()
        },
    );
    match fixed.write_gather(4000, &one).unwrap() {
        Err(Error::OutOfRange { size: 4096, .. }) => {}
        other => panic!("expected OutOfRange, got {other:?}"),
    }
    let direct = open(
        "direct",
        FileOptions {
            create_size: Some(1 << 20),
            direct: true,
            ..FileOptions::default()
        },
    );
    let err = direct.write_gather(0, &one).unwrap().unwrap_err();
    assert!(err.to_string().contains("O_DIRECT"), "{err}");
    let read_only = open(
        "direct",
        FileOptions {
            read_only: true,
            ..FileOptions::default()
        },
    );
    let err = read_only.write_gather(0, &one).unwrap().unwrap_err();
    assert_eq!(err.errno(), libc::EROFS, "{err}");
    // Nothing was written by the refused ones; the stats count each of them as failed.
    assert_eq!(read_all(&*fixed, 4000, 96).unwrap(), vec![0u8; 96]);
    assert_eq!(brick_core::Brick::stats(&*fixed).errors, 1);
}
