//! A flush that may block runs on the submitting thread of an io_uring file brick, so it never
//! needs an io-wq worker (io_uring runs every fsync on one, and the last worker of a ring stays
//! for the ring's life: one kernel thread per idle device). Its own test binary: it counts the
//! process's threads.

use brick_core::{Aio, Flags, Op};
use xio::file::{self, Backend, FileOptions};

fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .count()
}

#[test]
fn a_flush_that_may_block_starts_no_io_wq_worker() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FileOptions {
        create_size: Some(1 << 20),
        ..FileOptions::default()
    };
    let f = file::open(dir.path().join("disk.img"), Backend::IoUring, &opts).unwrap();
    if std::env::var_os("MARS_IO_URING").is_some_and(|v| v == "off") {
        eprintln!("io_uring is off: nothing to test");
        return;
    }
    for i in 0..8u64 {
        let mut w = Aio::write(i * 4096, vec![i as u8 + 1; 4096]);
        w.flags = Flags::MAY_BLOCK;
        brick_core::run(&*f, w).unwrap();
        let mut flush = Aio::new(Op::Flush, 0, 0);
        flush.flags = Flags::MAY_BLOCK;
        brick_core::run(&*f, flush).unwrap();
    }
    assert_eq!(threads_named("iou-wrk"), 0, "an io-wq worker ran a flush");
    assert_eq!(
        brick_core::read_all(&*f, 7 * 4096, 4096).unwrap(),
        vec![8u8; 4096]
    );
}
