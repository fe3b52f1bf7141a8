//! Dropping a file brick joins its threads (no leaked completion thread or worker); an io_uring
//! brick starts its completion thread with the first request through its ring, and never for
//! driven or inline IO. Its own test binary: it counts the process's threads, which other tests
//! would disturb.

use brick_core::{Aio, CompletionQueue};
use std::time::{Duration, Instant};
use xio::file::{self, Backend, FileOptions};

fn threads_named(prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(comm) = std::fs::read_to_string(task.path().join("comm")) {
            let comm = comm.trim().to_string();
            if comm.starts_with(prefix) {
                names.push(comm);
            }
        }
    }
    names
}

/// Threads start naming themselves after `spawn` returns, and an io_uring worker carries its
/// creator's name for a moment before it names itself `iou-wrk-*`: poll until exactly `n` are
/// visible.
fn wait_for_threads(prefix: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let names = threads_named(prefix);
        if names.len() == n || Instant::now() > deadline {
            return names;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn dropping_a_brick_joins_its_threads() {
    for backend in [Backend::Sync, Backend::IoUring] {
        let dir = tempfile::tempdir().unwrap();
        assert!(threads_named("xio-").is_empty());
        let path = dir.path().join("disk.img");
        let opts = FileOptions {
            create_size: Some(1 << 20),
            ..FileOptions::default()
        };
        let f = file::open(&path, backend, &opts).unwrap();
        if backend == Backend::IoUring {
            // Driven IO and an inline (MAY_BLOCK) flush start no completion thread.
            file::drive(|| brick_core::write_all(&*f, 0, &[7; 4096])).unwrap();
            let mut flush = Aio::new(brick_core::Op::Flush, 0, 0);
            flush.flags = brick_core::Flags::MAY_BLOCK;
            brick_core::run(&*f, flush).unwrap();
            let none = threads_named("xio-");
            assert!(none.is_empty(), "driven and inline IO: {none:?}");
        }
        let cq = CompletionQueue::new();
        for i in 0..50 {
            cq.submit(&*f, Aio::write(i * 100, vec![1; 100])).unwrap();
        }
        let expected = if backend == Backend::Sync { 4 } else { 1 };
        let ours = wait_for_threads("xio-", expected);
        assert_eq!(ours.len(), expected, "{backend:?}: {ours:?}");
        // Dropped with IO in flight: drop waits for it, then the threads are gone.
        drop(f);
        let mut n = 0;
        while cq.try_recv().is_some() {
            n += 1;
        }
        assert_eq!(
            n, 50,
            "{backend:?}: completions delivered before drop returned"
        );
        let left = threads_named("xio-");
        assert!(left.is_empty(), "{backend:?}: leaked threads {left:?}");
    }
}
