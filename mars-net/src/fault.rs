//! A fault-injecting TCP proxy for tests (`tc netem` is not available on the test machines):
//! put it between a client and a server and it forwards bytes with added latency, a bandwidth
//! cap, a connection drop after N bytes, a corrupted byte at a given offset, or on demand cuts
//! every connection or refuses new ones (a link that is down).
//!
//! Offsets and counts are per connection and per direction.

use parking_lot::Mutex;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which way bytes flow through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the connecting client to the target server.
    ToServer,
    /// From the target server back to the client.
    ToClient,
}

/// What the proxy does to the traffic. The default forwards faithfully.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// Added one-way latency per forwarded chunk.
    pub delay: Duration,
    /// Bandwidth cap per direction and connection in bytes/s (0: none).
    pub bytes_per_sec: u64,
    /// Cut the connection once this many bytes went through in one direction.
    pub drop_after: Option<(Direction, u64)>,
    /// Flip the bits of the byte at this offset in one direction.
    pub corrupt_at: Option<(Direction, u64)>,
}

struct Shared {
    target: SocketAddr,
    plan: Mutex<FaultPlan>,
    down: AtomicBool,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    forwarded: AtomicU64,
    accepted: AtomicU64,
}

/// A running fault proxy (stops on drop).
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl FaultProxy {
    /// Listen on an ephemeral loopback port and forward to `target` according to `plan`.
    pub fn start(target: SocketAddr, plan: FaultPlan) -> io::Result<FaultProxy> {
        let bind: SocketAddr = if target.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        }
        .parse()
        .expect("literal address");
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            plan: Mutex::new(plan),
            down: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            forwarded: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        });
        let s2 = shared.clone();
        std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(listener, s2))?;
        Ok(FaultProxy { shared, addr })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replace the plan (applies to new connections and, for delay/bandwidth, to live ones).
    pub fn set_plan(&self, plan: FaultPlan) {
        *self.shared.plan.lock() = plan;
    }

    /// Cut every live connection (both directions, like a crashed router).
    pub fn cut_all(&self) {
        let mut conns = self.shared.conns.lock();
        for c in conns.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Link down: cut everything and refuse new connections until `set_down(false)`.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::Release);
        if down {
            self.cut_all();
        }
    }

    /// Bytes forwarded so far (both directions).
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        self.cut_all();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let Ok(client) = conn else { continue };
        if shared.down.load(Ordering::Acquire) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(2)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        {
            let mut conns = shared.conns.lock();
            if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
                conns.push(a);
                conns.push(b);
            }
        }
        for (dir, from, to) in [
            (Direction::ToServer, client.try_clone(), server.try_clone()),
            (Direction::ToClient, server.try_clone(), client.try_clone()),
        ] {
            if let (Ok(from), Ok(to)) = (from, to) {
                let s = shared.clone();
                let _ = std::thread::Builder::new()
                    .name("fault-pump".into())
                    .spawn(move || pump(dir, from, to, s));
            }
        }
    }
}

fn pump(dir: Direction, mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 64 << 10];
    let mut offset = 0u64;
    // Virtual time at which the bytes sent so far have "left" under the cap.
    let mut tat = Instant::now();
    loop {
        let plan = shared.plan.lock().clone();
        // Small reads under a bandwidth cap keep the pacing smooth.
        let max = if plan.bytes_per_sec > 0 {
            (plan.bytes_per_sec / 100).clamp(1024, buf.len() as u64) as usize
        } else {
            buf.len()
        };
        let n = match from.read(&mut buf[..max]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &mut buf[..n];
        if let Some((d, at)) = plan.corrupt_at {
            if d == dir && at >= offset && at < offset + n as u64 {
                chunk[(at - offset) as usize] ^= 0xff;
            }
        }
        let mut send = n;
        let mut cut = false;
        if let Some((d, after)) = plan.drop_after {
            if d == dir && offset + n as u64 >= after {
                send = after.saturating_sub(offset) as usize;
                cut = true;
            }
        }
        if !plan.delay.is_zero() {
            std::thread::sleep(plan.delay);
        }
        if plan.bytes_per_sec > 0 {
            // Pace to the cap (no credit saved up while idle).
            let now = Instant::now();
            tat = tat.max(now) + Duration::from_secs_f64(send as f64 / plan.bytes_per_sec as f64);
            if tat > now {
                std::thread::sleep(tat - now);
            }
        }
        if to.write_all(&chunk[..send]).is_err() {
            break;
        }
        offset += send as u64;
        shared.forwarded.fetch_add(send as u64, Ordering::Relaxed);
        if cut {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
