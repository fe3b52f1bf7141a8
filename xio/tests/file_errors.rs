//! Error paths of both file backends: out-of-range and malformed requests (checked before any
//! IO), short reads on a file truncated underneath, ENOSPC (on `/dev/full`), read-only bricks,
//! back-pressure (`Busy` hands the request back), power-off draining and thread shutdown.

use brick_core::{run, Aio, Brick, Completer, CompletionQueue, Error, Op, Output, PowerState};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use xio::file::{self, Backend, FileBrick, FileOptions};

const BACKENDS: [Backend; 2] = [Backend::Sync, Backend::IoUring];

fn fresh(dir: &tempfile::TempDir, backend: Backend, opts: FileOptions) -> Arc<FileBrick> {
    let path = dir.path().join("disk.img");
    std::fs::write(&path, vec![7u8; 64 * 1024]).unwrap();
    file::open(&path, backend, &opts).unwrap()
}

#[test]
fn out_of_range_is_checked_before_io() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let f = fresh(&dir, backend, FileOptions::default());
        let size = 64 * 1024u64;
        for (op, pos, len) in [
            (Op::Read, size - 1, 2),
            (Op::Read, size, 1),
            (Op::Write, size - 100, 101),
            (Op::Discard, 0, size as usize + 1),
            (Op::WriteZeroes, size + 4096, 4096),
        ] {
            let mut req = Aio::new(op, pos, len);
            if op == Op::Write {
                req.data = vec![1; len];
            }
            let err = run(&*f, req).unwrap_err();
            assert_eq!(
                err,
                Error::OutOfRange {
                    pos,
                    len: len as u64,
                    size
                },
                "{backend:?} {op:?}"
            );
        }
        let err = run(&*f, Aio::read(u64::MAX - 10, 100)).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        let mut bad = Aio::write(0, vec![1; 10]);
        bad.len = 20;
        assert!(matches!(run(&*f, bad).unwrap_err(), Error::Invalid(_)));
        assert_eq!(
            std::fs::read(dir.path().join("disk.img")).unwrap(),
            vec![7u8; 64 * 1024],
            "a refused request touched the file"
        );
        assert_eq!(f.stats().errors, 7);
    }
}

#[test]
fn read_of_a_file_truncated_underneath_is_a_short_read() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let f = fresh(&dir, backend, FileOptions::default());
        let outside = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("disk.img"))
            .unwrap();
        outside.set_len(10_000).unwrap();
        // The brick still believes in 64 KiB: the range check passes, the read comes up short.
        let done = brick_core::submit_wait(&*f, Aio::read(8000, 8192)).unwrap();
        assert_eq!(
            done.error,
            Some(Error::ShortRead {
                pos: 8000,
                got: 2000,
                want: 8192
            }),
            "{backend:?}"
        );
        assert_eq!(
            done.data,
            vec![7u8; 2000],
            "{backend:?}: the bytes that were read"
        );
        let done = brick_core::submit_wait(&*f, Aio::read(20_000, 10)).unwrap();
        assert!(matches!(done.error, Some(Error::ShortRead { got: 0, .. })));
        assert_eq!(f.refresh_size().unwrap(), 10_000);
        assert!(matches!(
            run(&*f, Aio::read(8000, 8192)).unwrap_err(),
            Error::OutOfRange { size: 10_000, .. }
        ));
    }
}

#[test]
fn enospc_is_no_space() {
    // /dev/full fails every write with ENOSPC: a real kernel ENOSPC without root.
    if !std::path::Path::new("/dev/full").exists() {
        eprintln!("skipped: /dev/full does not exist");
        return;
    }
    for backend in BACKENDS {
        let opts = FileOptions {
            growable: true,
            ..FileOptions::default()
        };
        let f = file::open("/dev/full", backend, &opts).unwrap();
        let err = run(&*f, Aio::write(0, vec![1; 4096])).unwrap_err();
        assert_eq!(err, Error::NoSpace { context: "writing" }, "{backend:?}");
        assert_eq!(err.errno(), libc::ENOSPC);
    }
}

#[test]
fn read_only_refuses_mutations() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        fresh(&dir, backend, FileOptions::default());
        let opts = FileOptions {
            read_only: true,
            ..FileOptions::default()
        };
        let f = file::open(dir.path().join("disk.img"), backend, &opts).unwrap();
        assert!(f.info().unwrap().read_only);
        let err = run(&*f, Aio::write(0, vec![1; 10])).unwrap_err();
        assert_eq!(err.errno(), libc::EROFS, "{err}");
        assert!(run(&*f, Aio::new(Op::Discard, 0, 10)).is_err());
        assert_eq!(run(&*f, Aio::read(0, 3)).unwrap().data, vec![7; 3]);
    }
}

#[test]
fn open_errors_name_the_path() {
    for backend in BACKENDS {
        let err = match file::open("/nonexistent/xio/disk", backend, &FileOptions::default()) {
            Ok(_) => panic!("opened a missing file"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("/nonexistent/xio/disk"), "{err}");
        assert!(err.contains("No such file"), "{err}");
    }
}

/// A hook that parks the completing thread until released (keeps the backend's completion
/// thread, or its only worker, busy).
struct Parking {
    gate: Mutex<()>,
    parked: AtomicUsize,
    inner: Arc<dyn Completer>,
}

impl Completer for Parking {
    fn complete(&self, req: Box<Aio>) {
        self.parked.fetch_add(1, SeqCst);
        drop(self.gate.lock().unwrap());
        self.inner.complete(req);
    }
}

#[test]
fn a_full_queue_hands_the_request_back_busy() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let opts = FileOptions {
            queue_depth: 1,
            threads: 1,
            busy_wait: Duration::from_millis(20),
            ..FileOptions::default()
        };
        let f = fresh(&dir, backend, opts);
        let cq = CompletionQueue::new();
        let park = Arc::new(Parking {
            gate: Mutex::new(()),
            parked: AtomicUsize::new(0),
            inner: cq.hook(),
        });
        let gate = park.gate.lock().unwrap();
        // 1st request: completes, its hook parks the only completing thread.
        let mut r1 = Aio::read(0, 10);
        r1.push_hook(park.clone());
        f.submit(r1).unwrap();
        while park.parked.load(SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // 2nd: admitted, but its completion cannot be processed: it holds the only slot.
        cq.submit(&*f, Aio::read(10, 10)).unwrap();
        // 3rd: no slot within busy_wait -> handed back untouched.
        let mut r3 = Aio::write(100, vec![5; 3]);
        r3.tag = 33;
        let rej = f.submit(r3).unwrap_err();
        assert!(
            matches!(rej.error, Error::Busy { inflight: 1, .. }),
            "{:?}",
            rej.error
        );
        assert!(rej.error.is_retryable());
        assert_eq!((rej.req.tag, rej.req.hook_depth()), (33, 0));
        assert_eq!(rej.req.data, vec![5; 3]);
        drop(gate);
        let mut tags = 0;
        for _ in 0..2 {
            let c = cq
                .recv_timeout(Duration::from_secs(10))
                .expect("completion");
            assert!(c.error.is_none());
            tags += 1;
        }
        assert_eq!(tags, 2);
        // The handed-back request can simply be resubmitted.
        run(&*f, rej.req).unwrap();
        assert_eq!(f.inflight(), 0);
    }
}

#[test]
fn power_off_drains_inflight_io() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let f = fresh(&dir, backend, FileOptions::default());
        let cq = CompletionQueue::new();
        let n = 100;
        for i in 0..n {
            cq.submit(&*f, Aio::write(i * 512, vec![i as u8; 512]))
                .unwrap();
        }
        // Off: new IO is refused at once (and handed back), in-flight IO completes.
        let _ = f.switch(false);
        assert_ne!(f.power(), PowerState::On);
        let rej = f.submit(Aio::read(0, 1)).unwrap_err();
        assert!(matches!(rej.error, Error::Off { .. }), "{:?}", rej.error);
        f.switch_off_wait(Duration::from_secs(30)).unwrap();
        assert_eq!(f.power(), PowerState::Off);
        assert_eq!(f.inflight(), 0);
        let mut seen = 0;
        while let Some(c) = cq.recv_timeout(Duration::from_millis(200)) {
            assert!(c.error.is_none());
            seen += 1;
        }
        assert_eq!(
            seen, n,
            "{backend:?}: every in-flight request completed once"
        );
        f.switch(true).unwrap();
        assert_eq!(run(&*f, Aio::read(512 * 9, 3)).unwrap().data, vec![9; 3]);
    }
}

/// A hook that resubmits its request (on the completion thread) for `tag` more rounds and
/// counts its completions.
struct Again {
    me: Weak<Again>,
    out: Arc<FileBrick>,
    completions: AtomicUsize,
    done: CompletionQueue,
}

impl Completer for Again {
    fn complete(&self, mut req: Box<Aio>) {
        assert!(req.error.is_none(), "{:?}", req.error);
        self.completions.fetch_add(1, SeqCst);
        // `tag` counts the rounds this request still has to go.
        if req.tag > 0 {
            req.tag -= 1;
            req.pos = (req.pos + 4096) % (60 * 1024);
            req.push_hook(self.me.upgrade().expect("the test holds it"));
            if let Err(rej) = self.out.submit(req) {
                panic!("resubmit refused: {:?}", rej.error);
            }
        } else {
            self.done.hook().complete(req);
        }
    }
}

#[test]
fn completion_hooks_may_resubmit() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let f = fresh(&dir, backend, FileOptions::default());
        let again = Arc::new_cyclic(|me| Again {
            me: me.clone(),
            out: f.clone(),
            completions: AtomicUsize::new(0),
            done: CompletionQueue::new(),
        });
        for i in 0..8u64 {
            let mut req = Aio::write(i * 512, vec![3; 4096]);
            req.tag = 60;
            req.push_hook(again.clone());
            f.submit(req).unwrap();
        }
        for _ in 0..8 {
            let last = again
                .done
                .recv_timeout(Duration::from_secs(30))
                .expect("a chain of resubmissions finished");
            assert!(last.error.is_none());
        }
        assert_eq!(again.completions.load(SeqCst), 8 * 61, "{backend:?}");
        assert_eq!(f.stats().completed, 8 * 61, "{backend:?}");
        assert_eq!(f.inflight(), 0);
    }
}

struct Boom;

impl Completer for Boom {
    fn complete(&self, _req: Box<Aio>) {
        panic!("a buggy completion hook (expected by the test)");
    }
}

#[test]
fn a_panicking_hook_does_not_stop_the_brick() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let opts = FileOptions {
            threads: 1,
            ..FileOptions::default()
        };
        let f = fresh(&dir, backend, opts);
        let mut req = Aio::read(0, 10);
        req.push_hook(Arc::new(Boom));
        f.submit(req).unwrap();
        // The same completing thread serves the next requests.
        for i in 0..10u64 {
            assert_eq!(run(&*f, Aio::read(i, 1)).unwrap().data, vec![7]);
        }
        assert_eq!(f.inflight(), 0);
    }
}
