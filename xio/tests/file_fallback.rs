//! Where this process cannot use io_uring, a file opened with `Backend::IoUring` opens with the
//! thread backend instead, works, and the process says so once (a warning). Forced here with
//! `MARS_IO_URING=off`; this binary holds this one test, so the variable is set before
//! anything in the process probes.

use brick_core::{Aio, Flags, Op};
use parking_lot::Mutex;
use std::io::Write;
use std::sync::Arc;
use xio::file::{self, Backend, FileOptions};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn without_io_uring_files_fall_back_to_threads_and_say_so_once() {
    std::env::set_var(file::IO_URING_ENV, "off");
    let logs = Capture::default();
    let w = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = FileOptions {
        create_size: Some(1 << 20),
        ..FileOptions::default()
    };
    for name in ["a", "b"] {
        let f = file::open(dir.path().join(name), Backend::IoUring, &opts).unwrap();
        assert_eq!(f.backend(), Backend::Sync);
        let mut w = Aio::write(4096, vec![7; 8192]);
        w.flags = Flags::FUA;
        brick_core::run(&*f, w).unwrap();
        brick_core::run(&*f, Aio::new(Op::Flush, 0, 0)).unwrap();
        assert_eq!(
            brick_core::read_all(&*f, 4096, 8192).unwrap(),
            vec![7; 8192]
        );
    }
    assert_eq!(file::io_uring_unavailable(), Some("MARS_IO_URING=off"));
    let text = String::from_utf8_lossy(&logs.0.lock()).into_owned();
    assert_eq!(
        text.matches("io_uring is not used in this process").count(),
        1,
        "{text}"
    );
    assert!(text.contains("WARN"), "{text}");
}
