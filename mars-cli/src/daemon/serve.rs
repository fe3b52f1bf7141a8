//! The control socket: one thread per connection reads request lines, hands each to the
//! owner thread and writes its response; an `events` request turns the connection into a
//! stream of event lines fed from the subscriber's bounded queue.

use super::ControlMsg;
use crate::control::{self, Response};
use crate::events::{Event, EventType};
use crossbeam_channel::{Receiver, Sender};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

/// The owner's answer: the response, and the event queue of a new subscriber.
pub(super) type Reply = (Response, Option<Receiver<Event>>);

/// A subscriber whose socket takes no bytes for this long is given up (its queue then
/// fills and the owner drops it).
const EVENT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn accept_control(listener: UnixListener, tx: Sender<ControlMsg>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let tx = tx.clone();
        let _ = std::thread::Builder::new()
            .name("marsd-client".into())
            .spawn(move || serve_control(conn, &tx));
    }
}

/// One control connection: request lines in, response lines out.
fn serve_control(conn: UnixStream, tx: &Sender<ControlMsg>) {
    let Ok(mut w) = conn.try_clone() else { return };
    let mut r = std::io::BufReader::new(conn);
    loop {
        let line = match control::read_line(&mut r) {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                let _ =
                    control::write_line(&mut w, &Response::bad(format!("unreadable request: {e}")));
                return;
            }
        };
        let resp = match control::parse_request(&line) {
            Ok(req) => {
                let (rtx, rrx) = crossbeam_channel::bounded(1);
                if tx.send((req, rtx)).is_err() {
                    return;
                }
                match rrx.recv() {
                    Ok((r, Some(events))) => {
                        if control::write_line(&mut w, &r).is_ok() {
                            stream_events(&mut w, &events);
                        }
                        return;
                    }
                    Ok((r, None)) => r,
                    Err(_) => Response::failed("marsd is shutting down"),
                }
            }
            Err(r) => r,
        };
        if control::write_line(&mut w, &resp).is_err() {
            return;
        }
    }
}

/// Write events until the subscriber goes away, is dropped, or the daemon stops.
fn stream_events(w: &mut UnixStream, events: &Receiver<Event>) {
    let _ = w.set_write_timeout(Some(EVENT_WRITE_TIMEOUT));
    for e in events.iter() {
        if control::write_line(w, &e).is_err() || e.kind == EventType::Dropped {
            return;
        }
    }
}
