//! The connection handshake (client and server side): version, cluster, channel kind and the
//! mutual HMAC proof. Sequence and bytes in `FORMAT.md`.

use crate::auth;
use crate::config::NetConfig;
use crate::conn::{Connection, PeerInfo};
use crate::error::{NetError, Result};
use crate::frame::{self, Frame};
use crate::message::{Challenge, ChannelKind, Hello, Message, ProtocolVersion};
use std::net::{SocketAddr, TcpStream};

fn send(s: &mut TcpStream, cfg: &NetConfig, msg: &Message) -> Result<()> {
    frame::write_frame(s, msg, &[], false, &cfg.limits).map(|_| ())
}

fn recv(s: &mut TcpStream, cfg: &NetConfig) -> Result<Frame> {
    // During the handshake nothing legitimate is large.
    let limits = frame::Limits {
        max_control: cfg.limits.max_control.min(64 << 10),
        max_payload: 0,
    };
    frame::read_frame(s, &limits)
}

fn set_handshake_timeouts(s: &TcpStream, cfg: &NetConfig) -> Result<()> {
    s.set_read_timeout(Some(cfg.handshake_timeout))
        .and_then(|()| s.set_write_timeout(Some(cfg.handshake_timeout)))
        .map_err(NetError::io("setting handshake timeouts"))
}

/// Run the client side on a connected stream.
pub(crate) fn client(mut s: TcpStream, cfg: &NetConfig, kind: ChannelKind) -> Result<Connection> {
    let addr = s
        .peer_addr()
        .map_err(NetError::io("reading the peer address"))?;
    let peer = addr.to_string();
    set_handshake_timeouts(&s, cfg)?;
    let hello = Hello {
        version: ProtocolVersion::CURRENT.wire(),
        cluster: cfg.cluster,
        node: cfg.node.clone(),
        kind,
        nonce: auth::nonce(),
    };
    send(&mut s, cfg, &Message::Hello(hello.clone()))?;
    let chal = match recv(&mut s, cfg)?.msg {
        Message::Challenge(c) => c,
        Message::Refused { reason } => return Err(NetError::Refused { peer, reason }),
        other => {
            return Err(NetError::Protocol {
                peer,
                what: format!("expected challenge, got {}", other.name()),
            })
        }
    };
    let refuse = |s: &mut TcpStream, e: NetError| -> NetError {
        tracing::warn!(peer = %addr, "refusing server: {e}");
        let _ = send(
            s,
            cfg,
            &Message::Refused {
                reason: e.to_string(),
            },
        );
        e
    };
    if chal.cluster != cfg.cluster {
        let e = NetError::ClusterMismatch {
            peer: format!("{}@{addr}", chal.node),
            ours: cfg.cluster.to_string(),
            theirs: chal.cluster.to_string(),
        };
        return Err(refuse(&mut s, e));
    }
    let Some(version) = ProtocolVersion::from_wire(chal.version) else {
        let e = NetError::Version {
            peer,
            theirs: chal.version,
            min: ProtocolVersion::OLDEST.wire(),
            max: ProtocolVersion::CURRENT.wire(),
        };
        return Err(refuse(&mut s, e));
    };
    if !auth::verify_server(&cfg.secret, &hello, &chal) {
        let e = NetError::AuthFailed {
            peer: format!("{}@{addr}", chal.node),
            reason: "the server's proof does not match: the cluster secrets differ (or the answer was replayed)".into(),
        };
        return Err(refuse(&mut s, e));
    }
    let mac = auth::client_mac(&cfg.secret, &hello, &chal);
    send(&mut s, cfg, &Message::Proof { mac })?;
    match recv(&mut s, cfg)?.msg {
        Message::Welcome => {}
        Message::Refused { reason } => return Err(NetError::Refused { peer, reason }),
        other => {
            return Err(NetError::Protocol {
                peer,
                what: format!("expected welcome, got {}", other.name()),
            })
        }
    }
    Connection::new(
        s,
        cfg,
        PeerInfo {
            node: chal.node,
            addr,
            kind,
            version,
        },
    )
}

/// Run the server side on an accepted stream. `wanted` says whether a channel kind is served.
/// Every refusal is logged with its reason and also returned.
pub(crate) fn server(
    mut s: TcpStream,
    addr: SocketAddr,
    cfg: &NetConfig,
    wanted: &dyn Fn(ChannelKind) -> bool,
) -> Result<Connection> {
    set_handshake_timeouts(&s, cfg)?;
    let peer = addr.to_string();
    let hello = match recv(&mut s, cfg)?.msg {
        Message::Hello(h) => h,
        other => {
            return Err(NetError::Protocol {
                peer,
                what: format!("expected hello, got {}", other.name()),
            })
        }
    };
    let who = format!("{}@{addr}", hello.node);
    let refuse = |s: &mut TcpStream, e: NetError| -> NetError {
        let _ = send(
            s,
            cfg,
            &Message::Refused {
                reason: e.to_string(),
            },
        );
        e
    };
    if hello.cluster != cfg.cluster {
        let e = NetError::ClusterMismatch {
            peer: who,
            ours: cfg.cluster.to_string(),
            theirs: hello.cluster.to_string(),
        };
        return Err(refuse(&mut s, e));
    }
    let v = hello.version.min(ProtocolVersion::CURRENT.wire());
    let Some(version) = ProtocolVersion::from_wire(v) else {
        let e = NetError::Version {
            peer: who,
            theirs: hello.version,
            min: ProtocolVersion::OLDEST.wire(),
            max: ProtocolVersion::CURRENT.wire(),
        };
        return Err(refuse(&mut s, e));
    };
    if !wanted(hello.kind) {
        let e = NetError::Protocol {
            peer: who,
            what: format!("this node serves no {} channel", hello.kind.name()),
        };
        return Err(refuse(&mut s, e));
    }
    let mut chal = Challenge {
        version: version.wire(),
        cluster: cfg.cluster,
        node: cfg.node.clone(),
        nonce: auth::nonce(),
        mac: [0; 32],
    };
    chal.mac = auth::server_mac(&cfg.secret, &hello, &chal);
    send(&mut s, cfg, &Message::Challenge(chal.clone()))?;
    match recv(&mut s, cfg)?.msg {
        Message::Proof { mac } if auth::verify_client(&cfg.secret, &hello, &chal, &mac) => {}
        Message::Proof { .. } => {
            let e = NetError::AuthFailed {
                peer: who,
                reason: "the client's proof does not match: wrong or missing cluster secret, or a replayed handshake".into(),
            };
            return Err(refuse(&mut s, e));
        }
        Message::Refused { reason } => return Err(NetError::Refused { peer: who, reason }),
        other => {
            return Err(NetError::Protocol {
                peer: who,
                what: format!("expected proof, got {}", other.name()),
            })
        }
    }
    send(&mut s, cfg, &Message::Welcome)?;
    Connection::new(
        s,
        cfg,
        PeerInfo {
            node: hello.node,
            addr,
            kind: hello.kind,
            version,
        },
    )
}
