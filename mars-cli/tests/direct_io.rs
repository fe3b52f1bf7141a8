//! `marsd --direct-io on`: a primary opens its data device and its log files with `O_DIRECT`
//! and writes log format v2 (aligned); the secondary fetches, verifies and replays those logs,
//! and after a handover the roles swap with the same data.
//! `marsd --direct-io off --log-direct-io on`: only the log files are opened with `O_DIRECT`.

mod common;
use common::*;
use std::path::Path;
use xio::nbd::client::Client;

const SIZE: u64 = 16 << 20;

/// The format version byte of every log file in `dir` (its `log-*` files, by name).
fn log_versions(dir: &Path) -> Vec<(String, u8)> {
    let mut v: Vec<(String, u8)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let b = std::fs::read(dir.join(&name)).ok()?;
            (name.starts_with("log-") && b.len() >= 512).then(|| (name, b[8]))
        })
        .collect();
    v.sort();
    v
}

/// Whether the file system of the temporary directory takes `O_DIRECT` (tmpfs does not).
fn o_direct_supported() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let opts = xio::file::FileOptions {
        create_size: Some(4096),
        direct: true,
        threads: 0,
        ..xio::file::FileOptions::default()
    };
    xio::file::open(dir.path().join("probe"), xio::file::Backend::Sync, &opts).is_ok()
}

/// Alice and bob run marsd with `flags`; alice writes through NBD (pattern `tag`) until bob
/// is UpToDate with equal bytes, and every log of alice's is format v2. `None` where the
/// temporary directory's file system does not take `O_DIRECT`.
fn replicated_v2(flags: &[&str], tag: u64) -> Option<(Cluster, Client, Vec<u8>)> {
    if !o_direct_supported() {
        eprintln!("skipped: the temporary directory's file system does not support O_DIRECT");
        return None;
    }
    let c = Cluster::new_with(&["alice", "bob"], |_, mut n| {
        n.extra = flags.iter().map(|f| f.to_string()).collect();
        n
    });
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = c.nodes[0].nbd("r0");
    write_blocks(&mut nbd, &mut model, tag, 500, 40);
    c.nodes[1].wait_uptodate("r0");
    wait_equal(&c.path("b.img"), &model, "bob's device to equal the model");
    let on_alice = log_versions(&c.nodes[0].dir.join("resource-r0"));
    assert!(
        !on_alice.is_empty() && on_alice.iter().all(|(_, v)| *v == 2),
        "alice's logs are format v2: {on_alice:?}"
    );
    Some((c, nbd, model))
}

#[test]
fn direct_io_primaries_write_v2_logs_that_replicate_both_ways() {
    let Some((c, nbd, mut model)) = replicated_v2(&["--direct-io", "on"], 1) else {
        return;
    };
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    let on_bob = log_versions(&b.dir.join("resource-r0"));
    assert!(
        on_bob.iter().any(|(_, v)| *v == 2),
        "bob fetched the v2 logs: {on_bob:?}"
    );

    // Handover: bob writes (O_DIRECT, v2) and alice replays his logs.
    nbd.disconnect().unwrap();
    a.wait_state("r0", "no clients", |m| m.clients == 0);
    b.ok(&["primary", "r0"]);
    a.wait_state("r0", "Secondary", |m| m.role == "Secondary");
    let mut nbd = b.nbd("r0");
    assert!(read_export(&mut nbd, SIZE) == model, "bob serves the data");
    write_blocks(&mut nbd, &mut model, 2, 300, 30);
    a.wait_uptodate("r0");
    wait_equal(
        &c.path("a.img"),
        &model,
        "alice's device to equal the model",
    );
}

/// The open files of process `pid` whose path contains `part`, with whether each is open with
/// `O_DIRECT` (the `flags` line of `/proc/<pid>/fdinfo/<fd>`, octal).
fn open_with_o_direct(pid: u32, part: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let target = target.display().to_string();
        if !target.contains(part) {
            continue;
        }
        let fd = e.file_name().into_string().unwrap();
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| i32::from_str_radix(f.trim(), 8).ok())
            .expect("fdinfo has flags");
        out.push((target, flags & libc::O_DIRECT != 0));
    }
    out
}

#[test]
fn a_log_direct_primary_keeps_its_data_device_in_the_page_cache_and_replicates() {
    let flags = ["--direct-io", "off", "--log-direct-io", "on"];
    let Some((c, mut nbd, model)) = replicated_v2(&flags, 3) else {
        return;
    };
    let a = &c.nodes[0];
    let data = open_with_o_direct(a.pid(), "a.img");
    assert!(
        !data.is_empty() && data.iter().all(|(_, d)| !d),
        "alice's data device is open without O_DIRECT: {data:?}"
    );
    let logs = open_with_o_direct(a.pid(), "/log-");
    assert!(
        logs.iter().any(|(_, d)| *d),
        "alice writes her current log with O_DIRECT: {logs:?}"
    );
    assert!(
        read_export(&mut nbd, SIZE) == model,
        "alice serves the data"
    );
    let log = a.log_text();
    assert!(
        log.contains("data page cache, log O_DIRECT"),
        "marsd says how the primary writes: {log}"
    );
}
