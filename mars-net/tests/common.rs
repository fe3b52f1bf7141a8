//! Shared helpers for the mars-net tests.
#![allow(dead_code)]

use mars_net::*;
use parking_lot::Mutex;
use std::io::Write;
use std::sync::Arc;

pub const CLUSTER: ClusterId = ClusterId([0x42; 16]);

pub fn secret() -> Secret {
    Secret::new("correct horse battery staple, cluster 42").unwrap()
}

pub fn cfg(name: &str) -> NetConfig {
    NetConfig::new(CLUSTER, name, secret())
}

/// An echo node on the meta channel.
pub fn echo_node() -> Node {
    let h = Handlers::new().on(ChannelKind::Meta, |mut conn: Connection| {
        while let Ok(f) = conn.recv() {
            if let Message::Request { id, body } = f.msg {
                if conn.reply(id, body, &f.payload).is_err() {
                    break;
                }
            }
        }
    });
    Node::listen("127.0.0.1:0", cfg("server"), h).unwrap()
}

/// Captures tracing output of the current thread and of threads started while installed.
#[derive(Clone, Default)]
pub struct LogCapture(pub Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn install() -> LogCapture {
        let cap = LogCapture::default();
        let c2 = cap.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || c2.clone())
            .with_ansi(false)
            .finish();
        let _ = tracing::subscriber::set_global_default(sub);
        cap
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
