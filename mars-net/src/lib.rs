//! Transport of MARS (connections, framing, handshake, auth). Content lands with the transport issue.
#![forbid(unsafe_code)]
