//! The driven mode of the io_uring backend (`xio::file::drive`): a thread that submits and
//! waits reaps its own completions. Each request completes exactly once and on that thread
//! (continuations too: partial IO, the FUA tail, errors); leaving the scope or dropping the
//! brick reaps what is still in flight; a full queue of its own requests is reaped to make
//! room, a queue held by someone else still ends in `Busy` with the request handed back.
//! Buffered and `O_DIRECT` alike.

use brick_core::{Aio, Completer, CompletionQueue, Error, Flags, Op, Output};
use std::collections::HashMap;
use std::sync::{Arc, Barrier, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};
use xio::file::{self, Backend, FileBrick, FileOptions};

const SIZE: u64 = 1 << 20;

fn open(dir: &tempfile::TempDir, opts: FileOptions) -> Option<Arc<FileBrick>> {
    if let Some(why) = file::io_uring_unavailable() {
        eprintln!("skipped: no io_uring ({why})");
        return None;
    }
    let path = dir.path().join("disk.img");
    let opts = FileOptions {
        create_size: Some(SIZE),
        ..opts
    };
    let f = file::open(&path, Backend::IoUring, &opts).unwrap();
    assert_eq!(f.backend(), Backend::IoUring);
    Some(f)
}

fn modes() -> [FileOptions; 2] {
    [
        FileOptions::default(),
        FileOptions {
            direct: true,
            ..FileOptions::default()
        },
    ]
}

/// Records which thread completed each request (by tag), and how often.
#[derive(Default)]
struct Seen(Mutex<HashMap<u64, Vec<ThreadId>>>);

impl Completer for Seen {
    fn complete(&self, req: Box<Aio>) {
        let mut m = self.0.lock().unwrap();
        m.entry(req.tag)
            .or_default()
            .push(std::thread::current().id());
        assert!(req.error.is_none(), "{:?}", req.error);
        drop(m);
        req.complete();
    }
}

impl Seen {
    /// Every tag in `0..n` completed exactly once, on `on`.
    fn assert_once_on(&self, n: u64, on: ThreadId) {
        let m = self.0.lock().unwrap();
        assert_eq!(m.len() as u64, n, "completed: {:?}", m.keys());
        for (tag, threads) in m.iter() {
            assert_eq!(threads, &vec![on], "request {tag} completed on {threads:?}");
        }
    }
}

/// Records each completion's error and thread.
#[derive(Default)]
struct Errors(Mutex<Vec<(Option<Error>, ThreadId)>>);

impl Completer for Errors {
    fn complete(&self, req: Box<Aio>) {
        let mut v = self.0.lock().unwrap();
        v.push((req.error.clone(), std::thread::current().id()));
        drop(v);
        req.complete();
    }
}

fn write(tag: u64, flags: Flags) -> Box<Aio> {
    let mut w = Aio::write(tag * 4096, vec![tag as u8 + 1; 4096]);
    w.tag = tag;
    w.flags = flags;
    w
}

#[test]
fn driven_requests_complete_once_on_the_driving_thread() {
    for opts in modes() {
        let dir = tempfile::tempdir().unwrap();
        let Some(f) = open(&dir, opts) else { return };
        let seen = Arc::new(Seen::default());
        let me = std::thread::current().id();
        xio::file::drive(|| {
            let cq = CompletionQueue::new();
            // FUA: a write, then its fdatasync: a continuation that must stay on this thread.
            for tag in 0..32 {
                let flags = if tag % 4 == 0 {
                    Flags::FUA
                } else {
                    Flags::NONE
                };
                let mut w = write(tag, flags);
                w.push_hook(cq.hook());
                w.push_hook(seen.clone());
                f.submit(w).unwrap();
            }
            for _ in 0..32 {
                assert!(cq.recv().error.is_none());
            }
            assert!(cq.try_recv().is_none(), "a request completed twice");
        });
        seen.assert_once_on(32, me);
        for tag in 0..32u64 {
            let back = brick_core::read_all(&*f, tag * 4096, 4096).unwrap();
            assert_eq!(back, vec![tag as u8 + 1; 4096]);
        }
        assert_eq!(f.inflight(), 0);
    }
}

/// A read that the kernel ends early (the file was truncated underneath) is continued for the
/// rest and then completes with `ShortRead`; a write to `/dev/full` fails with `NoSpace`:
/// both on the driving thread.
#[test]
fn driven_partial_io_is_continued_and_errors_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let Some(f) = open(&dir, FileOptions::default()) else {
        return;
    };
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("disk.img"))
        .unwrap()
        .set_len(10_000)
        .unwrap();
    let me = std::thread::current().id();
    let seen = Arc::new(Errors::default());
    let done = xio::file::drive(|| {
        let cq = CompletionQueue::new();
        let mut r = Aio::read(8000, 8192);
        r.push_hook(cq.hook());
        r.push_hook(seen.clone());
        f.submit(r).unwrap();
        cq.recv()
    });
    let short = Error::ShortRead {
        pos: 8000,
        got: 2000,
        want: 8192,
    };
    assert_eq!(*seen.0.lock().unwrap(), vec![(Some(short.clone()), me)]);
    assert_eq!(done.error, Some(short));
    assert_eq!(done.data.len(), 2000);

    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("skipped: /dev/full does not exist");
        return;
    }
    let opts = FileOptions {
        growable: true,
        ..FileOptions::default()
    };
    let full = file::open("/dev/full", Backend::IoUring, &opts).unwrap();
    let errors = Arc::new(Errors::default());
    xio::file::drive(|| {
        let mut w = Aio::write(0, vec![1; 4096]);
        w.push_hook(errors.clone());
        full.submit(w).unwrap();
    });
    let seen = errors.0.lock().unwrap();
    assert_eq!(seen.len(), 1, "completed once, before drive returned");
    assert!(matches!(seen[0].0, Some(Error::NoSpace { .. })), "{seen:?}");
    assert_eq!(seen[0].1, me);
}

/// Leaving `drive` reaps every request still in flight (nobody waited for them); dropping the
/// last handle of the brick inside the scope does too (its completion thread can only stop
/// once they are reaped).
#[test]
fn driven_requests_in_flight_at_scope_end_or_drop_complete() {
    for opts in modes() {
        let dir = tempfile::tempdir().unwrap();
        let Some(f) = open(&dir, opts) else {
            return;
        };
        let seen = Arc::new(Seen::default());
        let me = std::thread::current().id();
        xio::file::drive(|| {
            for tag in 0..64 {
                let mut w = write(tag, Flags::NONE);
                w.push_hook(seen.clone());
                f.submit(w).unwrap();
            }
        });
        seen.assert_once_on(64, me);
        assert_eq!(f.inflight(), 0);

        let seen = Arc::new(Seen::default());
        xio::file::drive(|| {
            for tag in 0..64 {
                let mut w = write(tag, Flags::FUA);
                w.push_hook(seen.clone());
                f.submit(w).unwrap();
            }
            let started = Instant::now();
            drop(f);
            assert!(started.elapsed() < Duration::from_secs(20), "drop hung");
            seen.assert_once_on(64, me);
        });
    }
}

/// Back-pressure: a driven thread whose own requests fill the queue reaps them to make room
/// (no `Busy`); a queue held by another thread's unreaped requests still refuses with `Busy`
/// after `busy_wait`, handing the request back intact.
#[test]
fn driven_back_pressure_reaps_own_requests_and_refuses_when_held_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FileOptions {
        queue_depth: 2,
        busy_wait: Duration::from_millis(50),
        ..FileOptions::default()
    };
    let Some(f) = open(&dir, opts) else { return };
    let seen = Arc::new(Seen::default());
    xio::file::drive(|| {
        for tag in 0..16 {
            let mut w = write(tag, Flags::NONE);
            w.push_hook(seen.clone());
            f.submit(w).expect("own requests are reaped to make room");
        }
    });
    seen.assert_once_on(16, std::thread::current().id());

    // Another driven thread takes both slots and does not reap until told to.
    let (hold, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let holder = {
        let (f, hold, release) = (f.clone(), hold.clone(), release.clone());
        std::thread::spawn(move || {
            xio::file::drive(|| {
                for tag in 0..2 {
                    f.submit(write(tag, Flags::NONE)).unwrap();
                }
                hold.wait();
                release.wait();
            })
        })
    };
    hold.wait();
    let refused = xio::file::drive(|| f.submit(write(5, Flags::NONE)));
    release.wait();
    holder.join().unwrap();
    let rej = refused.expect_err("the queue is held by another thread's requests");
    assert!(matches!(rej.error, Error::Busy { .. }), "{:?}", rej.error);
    assert_eq!(
        (rej.req.op, rej.req.pos, rej.req.tag),
        (Op::Write, 5 * 4096, 5)
    );
    assert_eq!(rej.req.data, vec![6u8; 4096]);
    assert_eq!(f.inflight(), 0);
}
