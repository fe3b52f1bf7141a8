//! One thread (`nbd-accept`) accepts on every Unix listener of the process, woken by epoll
//! (mio): a node with a hundred idle exports has one accept thread, not a hundred (measured:
//! one per resource before).
//!
//! A listener is registered with a callback that takes each accepted connection; dropping the
//! [`Registration`] removes it synchronously: once `drop` returns, nothing more is accepted on
//! it (the thread accepts under the same lock).

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

type OnAccept = Box<dyn Fn(UnixStream) + Send + Sync>;

struct Entry {
    listener: UnixListener,
    on_accept: OnAccept,
}

struct Acceptor {
    registry: Registry,
    listeners: Mutex<HashMap<Token, Entry>>,
    next: AtomicUsize,
}

static ACCEPTOR: OnceLock<io::Result<Acceptor>> = OnceLock::new();

/// The process's acceptor, started on first use.
fn acceptor() -> io::Result<&'static Acceptor> {
    let a = ACCEPTOR.get_or_init(|| {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        std::thread::Builder::new()
            .name("nbd-accept".into())
            .spawn(move || run(poll))?;
        Ok(Acceptor {
            registry,
            listeners: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(0),
        })
    });
    a.as_ref()
        .map_err(|e| io::Error::new(e.kind(), format!("starting the NBD accept thread: {e}")))
}

/// A listener served by the acceptor; removed on drop.
pub(crate) struct Registration {
    token: Token,
}

/// Accept connections on `listener` from now on, handing each to `on_accept` (on the accept
/// thread: it must not block).
pub(crate) fn register(
    listener: UnixListener,
    on_accept: impl Fn(UnixStream) + Send + Sync + 'static,
) -> io::Result<Registration> {
    let a = acceptor()?;
    listener.set_nonblocking(true)?;
    let token = Token(a.next.fetch_add(1, Relaxed));
    let mut map = a.listeners.lock();
    a.registry.register(
        &mut SourceFd(&listener.as_raw_fd()),
        token,
        Interest::READABLE,
    )?;
    map.insert(
        token,
        Entry {
            listener,
            on_accept: Box::new(on_accept),
        },
    );
    Ok(Registration { token })
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Ok(a) = acceptor() else { return };
        if let Some(e) = a.listeners.lock().remove(&self.token) {
            let _ = a
                .registry
                .deregister(&mut SourceFd(&e.listener.as_raw_fd()));
        }
    }
}

/// The accept thread: runs for the life of the process.
fn run(mut poll: Poll) {
    let mut events = Events::with_capacity(64);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!("nbd: the accept thread cannot wait for connections: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        }
        for ev in &events {
            let a = match acceptor() {
                Ok(a) => a,
                Err(_) => return,
            };
            let map = a.listeners.lock();
            let Some(e) = map.get(&ev.token()) else {
                continue; // removed meanwhile
            };
            // Edge-triggered: accept until the queue is empty (after an error, what is still
            // queued waits for the next connection's event).
            loop {
                match e.listener.accept() {
                    Ok((s, _)) => {
                        if let Err(err) = s.set_nonblocking(false) {
                            tracing::warn!(
                                "nbd: dropping a connection: cannot make it blocking: {err}"
                            );
                            continue;
                        }
                        (e.on_accept)(s);
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) => {
                        accept_failed(&err);
                        break;
                    }
                }
            }
        }
    }
}

/// An accept that failed (EMFILE and friends): logged, and a short pause so as not to spin.
pub(super) fn accept_failed(e: &std::io::Error) {
    tracing::warn!("nbd: accept failed: {e}");
    // EMFILE and friends: do not spin.
    std::thread::sleep(Duration::from_millis(10));
}
