//! Network-namespace fixtures for the `net_*` interop tests: two namespaces joined by a veth
//! pair, link cuts, `tc tbf` caps, and running code inside a namespace (per thread, `setns`).
//! Everything is removed in `Drop`, also when a test fails.
#![allow(dead_code)]
// `setns(2)` has no safe wrapper in our dependencies; it is a plain syscall on an fd we own.
#![allow(unsafe_code)]

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static N: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces `a` and `b`, joined by a veth pair.
pub struct NetPair {
    pub ns_a: String,
    pub ns_b: String,
    pub dev_a: String,
    pub dev_b: String,
    pub addr_a: Ipv4Addr,
    pub addr_b: Ipv4Addr,
}

impl NetPair {
    /// Create the pair with unique names (`marsnet-<pid>-<n>-a|b`).
    pub fn new() -> NetPair {
        let pid = std::process::id();
        let n = N.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{}", pid % 100_000, n);
        let p = NetPair {
            ns_a: format!("marsnet-{pid}-{n}-a"),
            ns_b: format!("marsnet-{pid}-{n}-b"),
            dev_a: format!("mn{tag}a"),
            dev_b: format!("mn{tag}b"),
            addr_a: Ipv4Addr::new(10, 201 + (n % 50) as u8, (pid % 250) as u8, 1),
            addr_b: Ipv4Addr::new(10, 201 + (n % 50) as u8, (pid % 250) as u8, 2),
        };
        ip(&["netns", "add", &p.ns_a]);
        ip(&["netns", "add", &p.ns_b]);
        ip(&[
            "link", "add", &p.dev_a, "type", "veth", "peer", "name", &p.dev_b,
        ]);
        ip(&["link", "set", &p.dev_a, "netns", &p.ns_a]);
        ip(&["link", "set", &p.dev_b, "netns", &p.ns_b]);
        for (ns, dev, addr) in [(&p.ns_a, &p.dev_a, p.addr_a), (&p.ns_b, &p.dev_b, p.addr_b)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        p
    }

    /// Link down (`up = false`) or up, on side a.
    pub fn link(&self, up: bool) {
        ip(&[
            "-n",
            &self.ns_a,
            "link",
            "set",
            &self.dev_a,
            if up { "up" } else { "down" },
        ]);
    }

    /// Cap both directions with `tc tbf` at `rate` (e.g. "1gbit").
    pub fn tbf(&self, rate: &str) {
        for (ns, dev) in [(&self.ns_a, &self.dev_a), (&self.ns_b, &self.dev_b)] {
            let out = Command::new("tc")
                .args([
                    "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst",
                    "256kb", "latency", "50ms",
                ])
                .output()
                .expect("running tc");
            assert!(
                out.status.success(),
                "tc: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Run `f` on a new thread inside namespace `ns`; threads it starts stay in `ns`.
    pub fn run_in<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).expect("opening the namespace");
            // SAFETY: setns on a valid namespace fd we hold open; it only changes this thread's
            // network namespace.
            let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
            f()
        })
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and with it the pair.
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
