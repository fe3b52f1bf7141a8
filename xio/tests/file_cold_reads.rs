//! Reads of pages that are not cached complete asynchronously inside the kernel (io_uring's
//! async buffered reads post their completion as task work of the *submitting* thread). The
//! aio ring must never use a setup that leaves such task work pending (COOP_TASKRUN without a
//! single issuing thread would): this test makes sure a
//! submitter that then sleeps waiting for its completions still gets every one of them.
#![allow(unsafe_code)]

use brick_core::{Aio, CompletionQueue};
use std::os::unix::io::AsRawFd;
use std::time::Duration;
use xio::file::{self, Backend, FileOptions};

#[test]
fn cold_reads_from_a_sleeping_submitter_complete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cold.img");
    let size: u64 = 64 << 20;
    let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    for round in 0..3 {
        {
            let f = std::fs::File::open(&path).unwrap();
            f.sync_all().unwrap();
            // SAFETY: plain syscall on a valid descriptor; evicts the file's pages.
            let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            assert_eq!(rc, 0);
        }
        let disk = file::open(&path, Backend::IoUring, &FileOptions::default()).unwrap();
        let cq = CompletionQueue::new();
        let n = 128u64;
        for i in 0..n {
            let pos = ((i * 7919 + round * 13) % (size / 4096)) * 4096;
            let mut req = Aio::read(pos, 4096);
            req.tag = pos;
            cq.submit(&*disk, req).unwrap();
        }
        for _ in 0..n {
            // This thread sleeps here (a futex wait), never entering io_uring itself.
            let done = cq
                .recv_timeout(Duration::from_secs(20))
                .expect("a cold read never completed while its submitter slept");
            assert!(done.error.is_none(), "{:?}", done.error);
            let pos = done.tag as usize;
            assert_eq!(&done.data[..], &data[pos..pos + 4096]);
        }
        // One at a time: the submitter is surely asleep when each completion arrives.
        for i in 0..32u64 {
            let pos = ((i * 104_729 + round * 31) % (size / 4096)) * 4096;
            cq.submit(&*disk, Aio::read(pos, 4096)).unwrap();
            let done = cq
                .recv_timeout(Duration::from_secs(20))
                .expect("a cold read never completed while its submitter slept");
            assert!(done.error.is_none(), "{:?}", done.error);
            assert_eq!(&done.data[..], &data[pos as usize..pos as usize + 4096]);
        }
        drop(disk);
    }
}
