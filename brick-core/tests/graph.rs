//! Reconciliation by path and the power ordering rules.

use brick_core::bricks::{MemDisk, MemDiskMode, Probe};
use brick_core::prelude::*;
use brick_core::Graph;
use std::sync::Arc;
use std::time::Duration;

fn build(g: &Graph) {
    g.ensure("/dev/disk", &[], |_| {
        let d = MemDisk::new("/dev/disk", 1 << 20, MemDiskMode::Inline);
        d.switch(false).unwrap();
        Ok(d as Arc<dyn Brick>)
    })
    .unwrap();
    g.ensure("res/probe", &["/dev/disk"], |preds| {
        let below: Arc<dyn Output> = preds[0].clone();
        let p = Probe::new("res/probe", below);
        p.switch(false).unwrap();
        Ok(p as Arc<dyn Brick>)
    })
    .unwrap();
}

#[test]
fn ensure_is_idempotent_and_power_follows_the_ordering() {
    let g = Graph::new();
    build(&g);
    let first = g.get("res/probe").unwrap();
    build(&g); // a second round changes nothing
    assert!(Arc::ptr_eq(&first, &g.get("res/probe").unwrap()));
    assert_eq!(g.paths(), vec!["/dev/disk", "res/probe"]);

    let err = g.switch("res/probe", true).unwrap_err();
    assert!(matches!(err, Error::PowerOrder { on: true, .. }), "{err}");
    g.switch("/dev/disk", true).unwrap();
    g.switch("res/probe", true).unwrap();
    brick_core::run(&*first, Aio::read(0, 512)).unwrap();

    assert!(matches!(
        g.switch("/dev/disk", false),
        Err(Error::PowerOrder { on: false, .. })
    ));
    assert!(g.remove("/dev/disk").is_err(), "in use by res/probe");
    assert!(g.remove("res/probe").is_err(), "still on");
    g.kill_all(Duration::from_secs(5)).unwrap();
    assert!(g.paths().is_empty());
}

#[test]
fn missing_predecessor_is_a_clear_error() {
    let g = Graph::new();
    let err = g
        .ensure("x", &["nope"], |_| unreachable!("must not build"))
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("predecessor `nope` does not exist"),
        "{err}"
    );
}

#[test]
fn a_throttled_probe_switches_off_and_leaves_the_graph() {
    let g = Graph::new();
    g.ensure("disk", &[], |_| {
        Ok(MemDisk::new("disk", 1 << 20, MemDiskMode::Inline) as Arc<dyn Brick>)
    })
    .unwrap();
    g.ensure("slow", &["disk"], |preds| {
        let limiter = brick_core::Limiter::new(brick_core::Rates {
            ops_per_sec: 0,
            bytes_per_sec: 1 << 30,
        });
        Ok(Probe::throttled("slow", limiter, preds[0].clone()) as Arc<dyn Brick>)
    })
    .unwrap();
    brick_core::run(&*g.get("slow").unwrap(), Aio::read(0, 512)).unwrap();
    g.kill_all(Duration::from_secs(5)).unwrap();
    assert!(g.paths().is_empty());
}
