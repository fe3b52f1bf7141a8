//! fio as the load generator of the NBD benches, and the peers they are measured against
//! (included with `#[path]`: benches cannot depend on each other). BENCHMARKING.md has the
//! rules: the same fio job against us and against the peer, in the same run.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What fio drives.
pub enum Target<'a> {
    /// An NBD export, through fio's nbd engine (`nbd+unix:///NAME?socket=SOCK`).
    Nbd(&'a str),
    /// A file, through fio's own io_uring engine: the ceiling without NBD.
    File { path: &'a Path, direct: bool },
}

/// One fio job: its rate (IOPS, or MiB/s when `mibs`) and its completion latency
/// p50 / p99 / p99.9 in µs.
#[derive(Clone, Copy, Default)]
pub struct FioResult {
    pub rate: f64,
    pub lat: [f64; 3],
}

/// How long a fio job runs.
#[derive(Clone, Copy)]
pub enum Length {
    /// Time-based: this many seconds, plus 1 s ramp that is not counted.
    Secs(u64),
    /// Until this many bytes were transferred (wrapping around the region), no ramp.
    Bytes(u64),
}

/// Run one fio job over the first `region` bytes of `target`; `args` are the workload's
/// (`--rw=... --bs=... --iodepth=...`).
pub fn run(
    target: &Target,
    region: u64,
    len: Length,
    args: &[&str],
    read: bool,
    mibs: bool,
) -> FioResult {
    let mut cmd = Command::new("fio");
    cmd.args([
        "--name=bench",
        &format!("--size={region}"),
        "--output-format=json",
        "--percentile_list=50:99:99.9",
    ]);
    match len {
        Length::Secs(secs) => cmd.args([
            "--time_based".to_string(),
            format!("--runtime={secs}"),
            "--ramp_time=1".to_string(),
        ]),
        Length::Bytes(n) => cmd.arg(format!("--io_size={n}")),
    };
    match target {
        Target::Nbd(uri) => {
            cmd.args(["--ioengine=nbd", &format!("--uri={uri}")]);
        }
        Target::File { path, direct } => {
            cmd.args([
                "--ioengine=io_uring",
                &format!("--filename={}", path.display()),
                &format!("--direct={}", u8::from(*direct)),
            ]);
        }
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running fio");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fio failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The nbd engine prints "fio: connected to NBD server" before the JSON.
    let json = &text[text
        .find('{')
        .unwrap_or_else(|| panic!("no JSON from fio: {text}"))..];
    let v: serde_json::Value = serde_json::from_str(json).expect("fio's JSON");
    let d = &v["jobs"][0][if read { "read" } else { "write" }];
    let rate = if mibs {
        d["bw_bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64
    } else {
        d["iops"].as_f64().unwrap_or(0.0)
    };
    let pct = &d["clat_ns"]["percentile"];
    let p = |k: &str| pct[k].as_f64().unwrap_or(f64::NAN) / 1000.0;
    FioResult {
        rate,
        lat: [p("50.000000"), p("99.000000"), p("99.900000")],
    }
}

/// min / median / max.
pub fn mmm(mut v: Vec<f64>) -> [f64; 3] {
    if v.is_empty() {
        return [f64::NAN; 3];
    }
    v.sort_by(|a, b| a.total_cmp(b));
    [v[0], v[v.len() / 2], v[v.len() - 1]]
}

pub fn med(v: impl Iterator<Item = f64>) -> f64 {
    mmm(v.collect())[1]
}

pub fn fmt3(v: [f64; 3], prec: usize) -> String {
    format!("{:.p$} / {:.p$} / {:.p$}", v[0], v[1], v[2], p = prec)
}

/// Medians of the three latency percentiles of `v`, "p50 / p99 / p99.9" in µs.
pub fn lat_medians<'a>(v: impl Iterator<Item = &'a FioResult> + Clone) -> String {
    if v.clone().next().is_none() {
        return "-".into();
    }
    let m: Vec<f64> = (0..3).map(|i| med(v.clone().map(|s| s.lat[i]))).collect();
    format!("{:.0} / {:.0} / {:.0}", m[0], m[1], m[2])
}

/// A peer NBD server on a Unix socket, killed on drop.
pub struct Peer {
    child: Child,
    pub uri: String,
}

impl Peer {
    /// The peer's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `nbdkit file` on `img`: the buffered peer.
    pub fn nbdkit(img: &Path, sock: &Path, name: &str) -> Peer {
        let mut cmd = Command::new("nbdkit");
        cmd.args(["-f", "-U"])
            .arg(sock)
            .args(["-e", name, "file"])
            .arg(format!("file={}", img.display()));
        Peer::start(cmd, sock, name)
    }

    /// `qemu-nbd --cache=none --aio=io_uring` on `img`: the direct-IO peer (`-t`: it would exit
    /// when the first client disconnects, and fio connects more than once).
    pub fn qemu_nbd_direct(img: &Path, sock: &Path, name: &str) -> Peer {
        let mut cmd = Command::new("qemu-nbd");
        cmd.args([
            "-t",
            "-f",
            "raw",
            "--cache=none",
            "--aio=io_uring",
            "-x",
            name,
        ])
        .arg(format!("--socket={}", sock.display()))
        .arg(img);
        Peer::start(cmd, sock, name)
    }

    fn start(mut cmd: Command, sock: &Path, name: &str) -> Peer {
        let child = cmd
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", cmd.get_program()));
        let peer = Peer {
            child,
            uri: format!("nbd+unix:///{name}?socket={}", sock.display()),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(
                Instant::now() < deadline,
                "{:?} did not create its socket {} within 10 s",
                cmd.get_program(),
                sock.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        peer
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
