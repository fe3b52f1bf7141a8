//! Emergency mode: when the mars directory runs short of space the primary stops logging
//! and keeps serving IO straight to its data device (no error to the client); `view` says
//! EmergencyMode on the primary and Orphan on the outdated secondary, with what to do;
//! recovery: space again, `cron` on the primary (the export goes on, with its clients),
//! `invalidate` on the secondary.
//! The level is a `defaults/` key: here it is raised above the free space to provoke it (the
//! tmpfs variant with a really full file system is in interop.rs).

mod common;
use common::*;
use std::time::Duration;
use xio::logger::LoggerMode;

/// The mode `view --json` reports for the logger of `res` on `node`.
fn logger_mode(node: &Node, res: &str) -> Option<LoggerMode> {
    let s = node.status();
    s.resources.iter().find(|r| r.name == res)?.logger
}

const SIZE: u64 = 16 << 20;

#[test]
fn emergency_mode_keeps_io_going_and_invalidate_recovers() {
    let c = Cluster::new(&["alice", "bob"]);
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    c.replicate("r0", &["a.img", "b.img"], SIZE);
    let mut model = vec![0u8; SIZE as usize];
    let mut nbd = a.nbd("r0");
    write_blocks(&mut nbd, &mut model, 51, 300, 50);
    b.wait_uptodate("r0");
    // "Only 1 PiB free": below the emergency level.
    a.ok(&[
        "set-link",
        "defaults/emergency-free",
        &(1u64 << 50).to_string(),
    ]);
    a.wait_state("r0", "EmergencyMode", |m| m.disk == "EmergencyMode");
    wait_until(
        Duration::from_secs(20),
        "alice's logger to bypass",
        || match logger_mode(a, "r0") {
            Some(LoggerMode::Bypass) => Ok(()),
            m => Err(format!("{m:?}")),
        },
    );
    // IO goes on: every write succeeds and reads back (verifying writes).
    write_blocks(&mut nbd, &mut model, 52, 400, 50);
    assert_eq!(
        read_export(&mut nbd, SIZE),
        model,
        "a read after emergency writes differs"
    );
    b.wait_state("r0", "Orphan", |m| m.disk == "Orphan" && !m.up_to_date);
    let view = b.ok(&["view", "r0"]);
    eprintln!("--- marsadm view on bob in emergency mode:\n{view}");
    assert!(
        view.contains("Orphan") && view.contains("EmergencyMode"),
        "{view}"
    );
    assert!(view.contains("marsadm invalidate r0"), "{view}");
    b.refused(&["invalidate", "r0"], "emergency mode");
    // Recovery: space again, cron on the primary: logging resumes while the client stays
    // connected (the export is never interrupted).
    a.ok(&["set-link", "defaults/emergency-free", "0"]);
    a.cron_until_logging("r0", Duration::from_secs(20));
    assert_eq!(logger_mode(a, "r0"), Some(LoggerMode::Logging));
    assert_eq!(logger_mode(b, "r0"), None, "only the primary runs a logger");
    // The same connection goes on: writes logged again, reads exact.
    write_blocks(&mut nbd, &mut model, 54, 200, 50);
    assert_eq!(
        read_export(&mut nbd, SIZE),
        model,
        "a read after leaving emergency mode differs"
    );
    nbd.disconnect().unwrap();
    b.ok_within(
        &["invalidate", "r0"],
        Duration::from_secs(20),
        "alice's emergency LED to reach bob",
    );
    b.wait_uptodate("r0");
    wait_equal(&c.path("b.img"), &model, "bob after invalidate");
    // Replication goes on normally; nobody reports the hole any more.
    let mut nbd = a.nbd("r0");
    write_blocks(&mut nbd, &mut model, 53, 200, 50);
    nbd.disconnect().unwrap();
    b.wait_uptodate("r0");
    wait_equal(&c.path("b.img"), &model, "bob replicates again");
    wait_until(Duration::from_secs(20), "the hole record to go", || {
        let v = a.ok(&["lowlevel-ls", "resource-r0/emergency-hole"]);
        if v.trim().is_empty() {
            Ok(())
        } else {
            Err(v)
        }
    });
}
