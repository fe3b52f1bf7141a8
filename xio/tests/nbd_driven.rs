//! The connection thread drives its own io_uring IO: reads of an io_uring export complete on
//! the connection thread (not on the backend's completion thread), and a client that sends a
//! window of reads and then only waits for their replies gets them all (the reader reaps its
//! IO while it waits for the socket; a reader blocked in `read` with its IO unreaped would
//! hang it). Buffered and `O_DIRECT`.

use brick_core::{Aio, Completer, Info, Output, Rejected, Result};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use xio::nbd::client::{Client, Payload};
use xio::nbd::proto::cmd;
use xio::nbd::{Export, NbdServer, ServerConfig};

/// Counts by thread name where the requests it passes on complete.
struct WhereDone {
    inner: Arc<dyn Output>,
    seen: Arc<Seen>,
}

#[derive(Default)]
struct Seen(Mutex<BTreeMap<String, u64>>);

impl Completer for Seen {
    fn complete(&self, req: Box<Aio>) {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        *self.0.lock().entry(name).or_default() += 1;
        req.complete();
    }
}

impl Output for WhereDone {
    fn info(&self) -> Result<Info> {
        self.inner.info()
    }
    fn prepare(&self, req: &mut Aio) -> Result<()> {
        self.inner.prepare(req)
    }
    fn submit(&self, mut req: Box<Aio>) -> std::result::Result<(), Rejected> {
        req.push_hook(self.seen.clone());
        self.inner.submit(req).map_err(|mut rej| {
            rej.req.pop_hook();
            rej
        })
    }
}

#[test]
fn io_uring_reads_complete_on_the_connection_thread_and_a_waiting_client_gets_every_reply() {
    if let Some(why) = xio::file::io_uring_unavailable() {
        eprintln!("skipped: no io_uring ({why})");
        return;
    }
    const N: u64 = 256;
    for direct in [false, true] {
        // Not the system temp dir: tmpfs has no O_DIRECT.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let opts = xio::file::FileOptions {
            create_size: Some(N * 4096),
            direct,
            ..xio::file::FileOptions::default()
        };
        let disk = xio::file::open(
            dir.path().join("disk.img"),
            xio::file::Backend::IoUring,
            &opts,
        )
        .unwrap();
        let want: Vec<u8> = (0..N * 4096)
            .map(|i| (i / 4096) as u8 ^ (i as u8))
            .collect();
        brick_core::write_all(&*disk, 0, &want).unwrap();
        let seen = Arc::new(Seen::default());
        let server = NbdServer::new(ServerConfig {
            max_inflight: 32,
            ..ServerConfig::default()
        });
        let out = Arc::new(WhereDone {
            inner: disk,
            seen: seen.clone(),
        });
        server.add_export(Export::new("d", out).unwrap()).unwrap();
        let sock = dir.path().join("nbd.sock");
        server.listen_unix(&sock).unwrap();
        let mut c = Client::unix(&sock, "d", false).unwrap();
        c.raw()
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        // Windows of 32 reads: each sent whole, then only its replies awaited.
        for window in 0..N / 32 {
            for i in window * 32..(window + 1) * 32 {
                c.send(cmd::READ, 0, i * 4096, Payload::Len(4096)).unwrap();
            }
            for _ in 0..32 {
                let rep = c.recv().expect("every reply of the window arrives");
                assert_eq!(rep.error, 0);
                let i = (rep.cookie - 1) as usize;
                assert!(rep.data == want[i * 4096..(i + 1) * 4096], "read {i}");
            }
        }
        c.disconnect().unwrap();
        let seen = seen.0.lock().clone();
        assert_eq!(
            seen.get("nbd-conn").copied(),
            Some(N),
            "direct {direct}: where the reads completed: {seen:?}"
        );
    }
}
