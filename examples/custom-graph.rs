//! A brick graph built by hand: a file on io_uring → a throttled probe (64 MiB/s) → a probe (counters,
//! latency) → this program. Run: `cargo run --release --example custom-graph`.

use brick_core::bricks::Probe;
use brick_core::{Brick, Limiter, Rates};
use xio::file::{self, Backend, FileOptions};

pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let opts = FileOptions {
        create_size: Some(64 << 20),
        ..FileOptions::default()
    };
    let disk = file::open(dir.path().join("disk.img"), Backend::IoUring, &opts)?;
    let limit = Limiter::new(Rates {
        ops_per_sec: 0,
        bytes_per_sec: 64 << 20,
    });
    let throttle = Probe::throttled("throttle", limit, disk.clone());
    let probe = Probe::new("probe", throttle);

    for i in 0..256u64 {
        brick_core::write_all(&*probe, i * 65536, &[i as u8; 65536])?;
    }
    assert_eq!(brick_core::read_all(&*probe, 7 * 65536, 4)?, [7; 4]);
    let s = probe.stats();
    println!(
        "probe: {} requests, {} MiB, mean latency {:?}, p99 {:?}",
        s.completed,
        s.bytes >> 20,
        s.mean_latency,
        s.p99
    );
    println!(
        "disk:  {} requests completed by io_uring",
        disk.stats().completed
    );
    Ok(())
}
