//! Tests that need requests held in flight: a [`Gate`] brick parks every request until the test
//! releases them in an order of its choosing, so reply order and shutdown with requests in flight
//! are asserted on the wire, not hoped for.

use super::client::Payload;
use super::proto::{cflag, cmd};
use super::tests::client;
use super::{Export, NbdServer, ServerConfig};
use brick_core::bricks::{MemDisk, MemDiskMode};
use brick_core::{Aio, Info, Output, Rejected};
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Parks requests (in submission order) until released; then forwards them to an inline
/// `MemDisk`, so that a request completes exactly when it is released.
struct Gate {
    inner: Arc<MemDisk>,
    held: Mutex<Vec<Box<Aio>>>,
    arrived: Condvar,
}

impl Output for Gate {
    fn info(&self) -> brick_core::Result<Info> {
        self.inner.info()
    }
    fn submit(&self, req: Box<Aio>) -> Result<(), Rejected> {
        self.held.lock().push(req);
        self.arrived.notify_all();
        Ok(())
    }
}

impl Gate {
    /// Wait (bounded) until `n` requests are parked.
    fn wait_held(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut held = self.held.lock();
        while held.len() < n {
            if self.arrived.wait_until(&mut held, deadline).timed_out() {
                panic!(
                    "only {} of {n} requests reached the device: the server is not \
                     keeping them in flight together",
                    held.len()
                );
            }
        }
    }

    /// Complete the parked requests in the order given (indices in submission order).
    fn release(&self, order: &[usize]) {
        let mut held: Vec<Option<Box<Aio>>> = self.held.lock().drain(..).map(Some).collect();
        assert_eq!(held.len(), order.len(), "release every parked request");
        for &i in order {
            let req = held[i].take().expect("each request released once");
            if let Err(rej) = self.inner.submit(req) {
                rej.req.finish(Err(rej.error));
            }
        }
    }
}

struct GatedRig {
    server: NbdServer,
    gate: Arc<Gate>,
    disk: Arc<MemDisk>,
    sock: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn gated_rig(max_inflight: usize) -> GatedRig {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nbd.sock");
    let disk = MemDisk::new("disk", 1 << 20, MemDiskMode::Inline);
    let gate = Arc::new(Gate {
        inner: disk.clone(),
        held: Mutex::new(Vec::new()),
        arrived: Condvar::new(),
    });
    let server = NbdServer::new(ServerConfig {
        max_inflight,
        ..ServerConfig::default()
    });
    server
        .add_export(Export::new("gated", gate.clone()).unwrap())
        .unwrap();
    server.listen_unix(&sock).unwrap();
    GatedRig {
        server,
        gate,
        disk,
        sock,
        _dir: dir,
    }
}

/// Completion order 7, 6, ..., 0 (then a shuffled order for reads): the replies on the wire
/// must come in exactly that order, for both reply kinds, with the right data. A trailing flush,
/// released last, proves the server had finished reading (sealed) the requests before them: a
/// reply is written once the request is both sealed and complete.
#[test]
fn pipelined_requests_complete_out_of_order_with_both_reply_kinds() {
    let r = gated_rig(16);
    let n = 8usize;
    for structured in [false, true] {
        let mut c = client(&r.sock, "gated", structured).unwrap();
        assert_eq!(c.structured, structured);
        let seed = u8::from(structured) * 100;
        let cookies: Vec<u64> = (0..n)
            .map(|i| {
                let d = vec![seed + i as u8; 4096];
                c.send(cmd::WRITE, 0, i as u64 * 4096, Payload::Data(&d))
                    .unwrap()
            })
            .collect();
        let sentinel = c.send(cmd::FLUSH, 0, 0, Payload::Len(0)).unwrap();
        r.gate.wait_held(n + 1);
        let mut order: Vec<usize> = (0..n).rev().collect();
        order.push(n);
        r.gate.release(&order);
        let got: Vec<u64> = (0..=n)
            .map(|_| {
                let rep = c.recv().unwrap();
                assert_eq!(rep.error, 0);
                rep.cookie
            })
            .collect();
        let mut want: Vec<u64> = (0..n).rev().map(|i| cookies[i]).collect();
        want.push(sentinel);
        assert_eq!(got, want, "replies must follow completion order");

        let reads: Vec<u64> = (0..n)
            .map(|i| {
                c.send(cmd::READ, 0, i as u64 * 4096, Payload::Len(4096))
                    .unwrap()
            })
            .collect();
        let sentinel = c.send(cmd::FLUSH, 0, 0, Payload::Len(0)).unwrap();
        r.gate.wait_held(n + 1);
        let shuffled = [3, 0, 7, 5, 1, 6, 2, 4, n];
        r.gate.release(&shuffled);
        for &i in &shuffled[..n] {
            let rep = c.recv().unwrap();
            assert_eq!((rep.cookie, rep.error), (reads[i], 0));
            assert_eq!(rep.data, vec![seed + i as u8; 4096], "read {i}");
        }
        assert_eq!(c.recv().unwrap().cookie, sentinel);
        c.disconnect().unwrap();
    }
}

/// Shutdown with requests parked in the device: the server stops reading, yet every request
/// in flight completes and its reply reaches the client before the connection closes.
#[test]
fn shutdown_finishes_in_flight_requests() {
    let r = gated_rig(4);
    let mut c = client(&r.sock, "gated", true).unwrap();
    let size = c.size;
    let cookies: Vec<u64> = (0..4u8)
        .map(|i| {
            c.send(
                cmd::WRITE,
                cflag::FUA,
                u64::from(i) * 512,
                Payload::Data(&[i + 1; 512]),
            )
            .unwrap()
        })
        .collect();
    r.gate.wait_held(4);
    let server = Arc::new(r.server);
    let stopper = {
        let s = server.clone();
        std::thread::spawn(move || s.shutdown(Duration::from_secs(20)))
    };
    // Wait for the event "the server shut down the read side of our connection": on a Unix
    // socket our sends then fail with EPIPE. Probes sent before that are out-of-range reads,
    // refused without touching the device, and answered later.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut probes = 0;
    while c.send(cmd::READ, 0, size, Payload::Len(512)).is_ok() {
        probes += 1;
        assert!(Instant::now() < deadline, "shutdown never stopped reading");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        !stopper.is_finished(),
        "shutdown returned while requests were still held in the device"
    );
    r.gate.release(&[0, 1, 2, 3]);
    let mut answered = Vec::new();
    for _ in 0..cookies.len() + probes {
        let rep = c.recv().expect("a reply for every request in flight");
        if rep.error == 0 {
            answered.push(rep.cookie);
        }
    }
    answered.sort_unstable();
    assert_eq!(answered, cookies);
    assert!(stopper.join().unwrap(), "every connection ended");
    assert!(!r.sock.exists());
    let disk = r.disk.contents();
    for i in 0..4 {
        assert_eq!(disk[i * 512], i as u8 + 1);
    }
}
