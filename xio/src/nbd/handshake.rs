//! The handshake phase: fixed newstyle greeting and option haggling (`NBD_OPT_EXPORT_NAME`,
//! `INFO`, `GO`, `LIST`, `ABORT`, `STRUCTURED_REPLY`; everything else gets `NBD_REP_ERR_UNSUP`
//! with its data skipped, so the next option still parses).
//!
//! Invariants: option data longer than [`MAX_OPTION_LEN`] is skipped without allocating and
//! answered with `NBD_REP_ERR_TOO_BIG`; a wrong magic, unknown client flags or an unknown
//! export after `NBD_OPT_EXPORT_NAME` (which cannot be answered with an error) close the
//! connection with a reason; more than [`MAX_OPTIONS`] options is treated as abuse.

use super::error::{NbdError, Result};
use super::export::{Export, Geometry};
use super::proto::{self, be16, be32, be64, info, opt, rep};
use std::io::{Read, Write};
use std::sync::Arc;

/// Longest option payload the server reads into memory.
pub const MAX_OPTION_LEN: u32 = 64 << 10;
/// Most options one connection may send before the server gives up on it.
pub const MAX_OPTIONS: usize = 4096;

/// What the handshake agreed on.
#[derive(Debug)]
pub struct Negotiated {
    /// The chosen export.
    pub export: Arc<Export>,
    /// Its geometry at the time of the choice.
    pub geometry: Geometry,
    /// Whether structured replies were negotiated.
    pub structured: bool,
}

/// Run the handshake on `s`. `exports` is the server's export table (the first one is the
/// default export, chosen by an empty name). `shutting_down` makes `INFO`/`GO` fail with
/// `NBD_REP_ERR_SHUTDOWN`.
pub fn negotiate<S: Read + Write>(
    s: &mut S,
    exports: &[Arc<Export>],
    shutting_down: &dyn Fn() -> bool,
) -> Result<Negotiated> {
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&proto::NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&proto::IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(proto::FLAG_FIXED_NEWSTYLE | proto::FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello)
        .map_err(NbdError::io("sending the greeting"))?;
    let mut b4 = [0u8; 4];
    read_at_boundary(s, &mut b4, "reading the client flags")?;
    let cflags = be32(&b4);
    let known = proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES;
    if cflags & !known != 0 {
        return Err(NbdError::protocol(format!(
            "unknown client flags {cflags:#x}"
        )));
    }
    let no_zeroes = cflags & proto::FLAG_C_NO_ZEROES != 0;
    let mut structured = false;

    for _ in 0..MAX_OPTIONS {
        let mut hdr = [0u8; 16];
        read_at_boundary(s, &mut hdr, "reading an option header")?;
        let magic = be64(&hdr[0..8]);
        if magic != proto::IHAVEOPT {
            return Err(NbdError::protocol(format!(
                "bad option magic {magic:#018x}"
            )));
        }
        let option = be32(&hdr[8..12]);
        let len = be32(&hdr[12..16]);
        if len > MAX_OPTION_LEN {
            skip(s, u64::from(len))?;
            reply_err(s, option, rep::ERR_TOO_BIG, "option data too long")?;
            continue;
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data).map_err(truncated("option data"))?;
        match option {
            opt::EXPORT_NAME => {
                let export = find(exports, &data).ok_or_else(|| {
                    NbdError::protocol(format!(
                        "NBD_OPT_EXPORT_NAME for unknown export {:?}",
                        String::from_utf8_lossy(&data)
                    ))
                })?;
                let geometry = export.geometry()?;
                let mut out = Vec::with_capacity(10 + 124);
                out.extend_from_slice(&geometry.size.to_be_bytes());
                out.extend_from_slice(&geometry.flags.to_be_bytes());
                if !no_zeroes {
                    out.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&out)
                    .map_err(NbdError::io("answering NBD_OPT_EXPORT_NAME"))?;
                return Ok(Negotiated {
                    export: export.clone(),
                    geometry,
                    structured,
                });
            }
            opt::ABORT => {
                // The client may close without reading the ACK: ignore a failed write.
                let _ = reply(s, option, rep::ACK, &[]);
                return Err(NbdError::Closed);
            }
            opt::LIST => {
                if len != 0 {
                    reply_err(s, option, rep::ERR_INVALID, "NBD_OPT_LIST takes no data")?;
                    continue;
                }
                for e in exports {
                    let mut d = Vec::with_capacity(4 + e.name.len());
                    d.extend_from_slice(&(e.name.len() as u32).to_be_bytes());
                    d.extend_from_slice(e.name.as_bytes());
                    reply(s, option, rep::SERVER, &d)?;
                }
                reply(s, option, rep::ACK, &[])?;
            }
            opt::INFO | opt::GO => {
                if let Some(n) = info_or_go(s, option, &data, exports, structured, shutting_down)? {
                    return Ok(n);
                }
            }
            opt::STRUCTURED_REPLY => {
                if len != 0 {
                    reply_err(
                        s,
                        option,
                        rep::ERR_INVALID,
                        "NBD_OPT_STRUCTURED_REPLY takes no data",
                    )?;
                    continue;
                }
                structured = true;
                reply(s, option, rep::ACK, &[])?;
            }
            opt::STARTTLS => {
                reply_err(s, option, rep::ERR_POLICY, "this server does not offer TLS")?;
            }
            _ => reply_err(s, option, rep::ERR_UNSUP, "option not supported")?,
        }
    }
    Err(NbdError::protocol(format!(
        "more than {MAX_OPTIONS} options without choosing an export"
    )))
}

/// Handle `NBD_OPT_INFO` / `NBD_OPT_GO`; `Some` when GO succeeded.
fn info_or_go<S: Read + Write>(
    s: &mut S,
    option: u32,
    data: &[u8],
    exports: &[Arc<Export>],
    structured: bool,
    shutting_down: &dyn Fn() -> bool,
) -> Result<Option<Negotiated>> {
    // Layout: u32 name length, name, u16 count, count × u16 info requests.
    let parsed = (|| {
        let name_len = be32(data.get(0..4)?) as usize;
        let name = data.get(4..4usize.checked_add(name_len)?)?;
        let rest = &data[4 + name_len..];
        let count = be16(rest.get(0..2)?) as usize;
        let reqs = rest.get(2..)?;
        if reqs.len() != count * 2 {
            return None;
        }
        Some((name, reqs.chunks(2).map(be16).collect::<Vec<u16>>()))
    })();
    let Some((name, requests)) = parsed else {
        reply_err(s, option, rep::ERR_INVALID, "malformed INFO/GO request")?;
        return Ok(None);
    };
    if shutting_down() {
        reply_err(s, option, rep::ERR_SHUTDOWN, "the server is shutting down")?;
        return Ok(None);
    }
    let Some(export) = find(exports, name) else {
        reply_err(s, option, rep::ERR_UNKNOWN, "no export of that name")?;
        return Ok(None);
    };
    let geometry = match export.geometry() {
        Ok(g) => g,
        Err(e) => {
            reply_err(
                s,
                option,
                rep::ERR_SHUTDOWN,
                &format!("export unavailable: {e}"),
            )?;
            return Ok(None);
        }
    };
    let mut d = Vec::with_capacity(12);
    d.extend_from_slice(&info::EXPORT.to_be_bytes());
    d.extend_from_slice(&geometry.size.to_be_bytes());
    d.extend_from_slice(&geometry.flags.to_be_bytes());
    reply(s, option, rep::INFO, &d)?;
    // Block sizes are sent whether asked for or not: clients ignore what they do not know.
    let mut d = Vec::with_capacity(14);
    d.extend_from_slice(&info::BLOCK_SIZE.to_be_bytes());
    d.extend_from_slice(&geometry.min_block.to_be_bytes());
    d.extend_from_slice(&geometry.pref_block.to_be_bytes());
    d.extend_from_slice(&geometry.max_payload.to_be_bytes());
    reply(s, option, rep::INFO, &d)?;
    if requests.contains(&info::NAME) {
        let mut d = info::NAME.to_be_bytes().to_vec();
        d.extend_from_slice(export.name.as_bytes());
        reply(s, option, rep::INFO, &d)?;
    }
    if requests.contains(&info::DESCRIPTION) && !export.description.is_empty() {
        let mut d = info::DESCRIPTION.to_be_bytes().to_vec();
        d.extend_from_slice(export.description.as_bytes());
        reply(s, option, rep::INFO, &d)?;
    }
    reply(s, option, rep::ACK, &[])?;
    if option == opt::GO {
        return Ok(Some(Negotiated {
            export: export.clone(),
            geometry,
            structured,
        }));
    }
    Ok(None)
}

fn find<'a>(exports: &'a [Arc<Export>], name: &[u8]) -> Option<&'a Arc<Export>> {
    if name.is_empty() {
        return exports.first();
    }
    exports.iter().find(|e| e.name.as_bytes() == name)
}

fn reply<S: Write>(s: &mut S, option: u32, kind: u32, data: &[u8]) -> Result<()> {
    let mut out = Vec::with_capacity(20 + data.len());
    out.extend_from_slice(&proto::OPT_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    s.write_all(&out)
        .map_err(NbdError::io("sending an option reply"))
}

fn reply_err<S: Write>(s: &mut S, option: u32, kind: u32, msg: &str) -> Result<()> {
    reply(s, option, kind, msg.as_bytes())
}

/// Read exactly `buf`; EOF before the first byte is a clean close, EOF later a truncation.
pub(crate) fn read_at_boundary<S: Read>(
    s: &mut S,
    buf: &mut [u8],
    context: &'static str,
) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Err(NbdError::Closed),
            Ok(0) => {
                return Err(NbdError::protocol(format!(
                    "truncated message: EOF after {got} of {} bytes while {context}",
                    buf.len()
                )))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(NbdError::Io { context, source: e }),
        }
    }
    Ok(())
}

/// Map EOF inside a message to a protocol violation ("truncated"), other errors to IO errors.
pub(crate) fn truncated(what: &'static str) -> impl FnOnce(std::io::Error) -> NbdError {
    move |e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            NbdError::protocol(format!("truncated message: EOF inside {what}"))
        } else {
            NbdError::Io {
                context: what,
                source: e,
            }
        }
    }
}

/// Read and drop `n` bytes without allocating more than a small scratch buffer.
pub(crate) fn skip<S: Read>(s: &mut S, mut n: u64) -> Result<()> {
    let mut scratch = [0u8; 8192];
    while n > 0 {
        let k = n.min(scratch.len() as u64) as usize;
        s.read_exact(&mut scratch[..k])
            .map_err(truncated("skipped payload"))?;
        n -= k as u64;
    }
    Ok(())
}
