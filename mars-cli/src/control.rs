//! The control protocol between `marsadm` (or any script) and the local `marsd`, over the
//! Unix socket `DIR/marsd.sock`: one JSON object per line each way, request then response,
//! several requests per connection allowed. Documented in `FORMAT.md` next to this file.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// Longest request or response line accepted (checked before the line is buffered whole).
pub const MAX_LINE: usize = 1 << 20;

/// A request: `{"version":1,"cmd":"<name>", ...arguments}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version of the sender.
    pub version: u32,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

/// The commands (`cmd` field; arguments as fields beside it).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    CreateCluster,
    JoinCluster {
        peer: String,
    },
    LeaveCluster,
    /// Merge this node's cluster with the cluster of the node at `peer`.
    MergeCluster {
        peer: String,
    },
    CreateResource {
        res: String,
        dev: String,
        size: Option<u64>,
    },
    JoinResource {
        res: String,
        dev: String,
    },
    /// Move a replica of `res` to node `to` (from `from`, default: the primary).
    MigrateResource {
        res: String,
        to: String,
        #[serde(default)]
        from: Option<String>,
        #[serde(default)]
        dev: Option<String>,
    },
    LeaveResource {
        res: String,
        #[serde(default)]
        dry_run: bool,
    },
    DeleteResource {
        res: String,
        #[serde(default)]
        dry_run: bool,
    },
    /// Set `todo-<me>/<switch>` (attach, connect, sync, allow-replay) of a resource.
    Switch {
        res: String,
        switch: String,
        on: bool,
    },
    Primary {
        res: String,
        /// Forced failover (after pause-fetch, with the old primary unreachable).
        #[serde(default)]
        force: bool,
        #[serde(default)]
        dry_run: bool,
    },
    /// Discard this replica's data and history and full-sync it from the primary.
    Invalidate {
        res: String,
        #[serde(default)]
        dry_run: bool,
    },
    /// Compare the local data device of `res` with its stored checksums (`rate`: bytes/s, 0
    /// unlimited); `repair` re-syncs damaged blocks from the primary and rebuilds damaged
    /// checksum-file pages; `restart` ignores the restart point of an interrupted scrub.
    Scrub {
        res: String,
        #[serde(default)]
        repair: bool,
        #[serde(default)]
        rate: u64,
        #[serde(default)]
        restart: bool,
    },
    /// Compare the checksums of every secondary of `res` with the primary's at the
    /// secondary's replay position (`rate`: data bytes/s, 0 unlimited); `repair` re-syncs a
    /// secondary that differs.
    Verify {
        res: String,
        #[serde(default)]
        repair: bool,
        #[serde(default)]
        rate: u64,
    },
    Secondary {
        res: String,
    },
    /// Grow `res` online to `size` bytes (default: the smallest member device).
    Resize {
        res: String,
        #[serde(default)]
        size: Option<u64>,
    },
    LogRotate {
        res: String,
    },
    LogDelete {
        res: String,
    },
    Cron,
    /// `res`: that resource, or `"all"`: every resource of the cluster; `null`: those with
    /// a replica here.
    Status {
        res: Option<String>,
    },
    /// Stream state changes (of `res`, or of every resource here): after the response,
    /// one [`crate::events::Event`] per line until the client closes the connection.
    Events {
        #[serde(default)]
        res: Option<String>,
    },
    GetLink {
        key: String,
    },
    SetLink {
        key: String,
        value: String,
    },
    Ls {
        prefix: String,
    },
}

/// How a request ended (`status` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused: a precondition failed (the message says which and what to do). Exit code 1.
    Refused,
    /// The request could not be understood (bad JSON, unknown command, newer version).
    BadRequest,
    /// Something failed while doing it. Exit code 1.
    Failed,
}

/// A response: `{"version":1,"status":"ok","message":"...","data":...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version of the daemon.
    pub version: u32,
    /// How it ended.
    pub status: Outcome,
    /// For people: what happened, or what is wrong and what to do.
    pub message: String,
    /// For machines: command-specific (status, link values).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Response {
    /// Done.
    pub fn ok(message: impl Into<String>) -> Response {
        Response::with(Outcome::Ok, message)
    }
    /// Refused.
    pub fn refused(message: impl Into<String>) -> Response {
        Response::with(Outcome::Refused, message)
    }
    /// Failed.
    pub fn failed(message: impl Into<String>) -> Response {
        Response::with(Outcome::Failed, message)
    }
    /// Not understood.
    pub fn bad(message: impl Into<String>) -> Response {
        Response::with(Outcome::BadRequest, message)
    }
    fn with(status: Outcome, message: impl Into<String>) -> Response {
        Response {
            version: VERSION,
            status,
            message: message.into(),
            data: serde_json::Value::Null,
        }
    }
    /// Attach data.
    pub fn data(mut self, data: serde_json::Value) -> Response {
        self.data = data;
        self
    }
}

/// Read one line of at most [`MAX_LINE`] bytes. `Ok(None)` at a clean end of stream.
pub fn read_line<R: BufRead>(r: &mut R) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = std::io::Read::take(&mut *r, MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        let what = if buf.len() > MAX_LINE {
            format!("line longer than {MAX_LINE} bytes")
        } else {
            "truncated line (no newline before the end of the stream)".to_string()
        };
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, what));
    }
    buf.pop();
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "line is not UTF-8"))
}

/// Parse a request line into a request or the response that refuses it.
pub fn parse_request(line: &str) -> Result<Request, Response> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| Response::bad(format!("not JSON: {e}")))?;
    let version = v.get("version").and_then(|x| x.as_u64());
    match version {
        Some(x) if x == u64::from(VERSION) => {}
        Some(x) => {
            return Err(Response::bad(format!(
                "protocol version {x} is not supported (this marsd speaks {VERSION}): use the marsadm of the same release"
            )))
        }
        None => return Err(Response::bad("missing \"version\" field")),
    }
    serde_json::from_value::<Envelope>(v)
        .map(|e| e.request)
        .map_err(|e| Response::bad(format!("not a valid request: {e}")))
}

/// Write one JSON line.
pub fn write_line<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    let mut s = serde_json::to_string(msg).map_err(std::io::Error::other)?;
    s.push('\n');
    w.write_all(s.as_bytes())?;
    w.flush()
}

/// Send one request to the daemon at `sock` and read its response; the connection stays
/// open for what follows (events).
fn request(
    sock: &std::path::Path,
    request: Request,
) -> anyhow::Result<(std::io::BufReader<std::os::unix::net::UnixStream>, Response)> {
    use anyhow::Context;
    let s = std::os::unix::net::UnixStream::connect(sock).with_context(|| {
        format!(
            "cannot reach marsd at {} (is it running for this --mars-dir? start it with `marsd --mars-dir ...`)",
            sock.display()
        )
    })?;
    let mut w = s.try_clone()?;
    write_line(
        &mut w,
        &Envelope {
            version: VERSION,
            request,
        },
    )?;
    let mut r = std::io::BufReader::new(s);
    let line = read_line(&mut r)?.context("marsd closed the connection without answering")?;
    let resp =
        serde_json::from_str(&line).context("marsd sent a response that is not valid JSON")?;
    Ok((r, resp))
}

/// Send one request to the daemon at `sock` and read its response.
pub fn call(sock: &std::path::Path, r: Request) -> anyhow::Result<Response> {
    request(sock, r).map(|(_, resp)| resp)
}

/// An `events` subscription: the daemon's event lines, read one at a time.
pub struct EventStream {
    r: std::io::BufReader<std::os::unix::net::UnixStream>,
}

impl EventStream {
    /// Subscribe at the daemon at `sock` (to `res`, or every resource of the node).
    pub fn open(sock: &std::path::Path, res: Option<String>) -> anyhow::Result<EventStream> {
        let (r, resp) = request(sock, Request::Events { res })?;
        if resp.status != Outcome::Ok {
            anyhow::bail!("{}", resp.message);
        }
        Ok(EventStream { r })
    }

    /// The next event, waiting at most `limit` (forever when `None`); `None` when the time
    /// is up or the daemon closed the stream.
    pub fn next(
        &mut self,
        limit: Option<std::time::Duration>,
    ) -> anyhow::Result<Option<crate::events::Event>> {
        use anyhow::Context;
        self.r.get_ref().set_read_timeout(limit)?;
        match read_line(&mut self.r) {
            Ok(Some(line)) => Ok(Some(
                serde_json::from_str(&line)
                    .context("marsd sent an event that is not valid JSON")?,
            )),
            Ok(None) => Ok(None),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_roundtrip_and_bad_ones_are_refused() {
        let e = Envelope {
            version: VERSION,
            request: Request::CreateResource {
                res: "r0".into(),
                dev: "/d".into(),
                size: Some(4096),
            },
        };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"version":1,"cmd":"create-resource","res":"r0","dev":"/d","size":4096}"#
        );
        assert_eq!(parse_request(&line).unwrap(), e.request);
        for (bad, why) in [
            ("{", "not JSON"),
            (r#"{"cmd":"cron"}"#, "missing \"version\""),
            (r#"{"version":9,"cmd":"cron"}"#, "version 9"),
            (
                r#"{"version":1,"cmd":"format-disk"}"#,
                "not a valid request",
            ),
            (
                r#"{"version":1,"cmd":"join-resource","res":"r0"}"#,
                "not a valid request",
            ),
        ] {
            let r = parse_request(bad).unwrap_err();
            assert_eq!(r.status, Outcome::BadRequest);
            assert!(r.message.contains(why), "{bad}: {}", r.message);
        }
    }

    #[test]
    fn lines_are_bounded_and_must_be_complete() {
        let mut r = std::io::Cursor::new(b"abc\ndef".to_vec());
        assert_eq!(read_line(&mut r).unwrap().as_deref(), Some("abc"));
        let e = read_line(&mut r).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let long = vec![b'x'; MAX_LINE + 10];
        let e = read_line(&mut std::io::Cursor::new(long)).unwrap_err();
        assert!(e.to_string().contains("longer"), "{e}");
        assert_eq!(
            read_line(&mut std::io::Cursor::new(Vec::new())).unwrap(),
            None
        );
    }
}
