//! Metadata propagation at scale: our scoped propagation vs upstream-like full mesh, in the
//! same simulation run (same nodes, same resources, same network).
//!
//! `cargo bench -p mars-rs --bench metasim [-- --sizes 10,100,1000,3000 --runs 3 --loss 0.0]`
//!
//! Per configuration and mode: messages and bytes per node per round when idle and while one
//! global change spreads, rounds until every node has the change (global key) or every member
//! has it (resource key). Each figure is min/median/max over `--runs` seeds.
use mars_strategy::node::Mode;
use mars_strategy::sim::{measure, Report, SimConfig};
use std::time::Instant;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn mmm(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    let fmt = |x: f64| {
        if x >= 100.0 {
            format!("{x:.0}")
        } else {
            format!("{x:.1}")
        }
    };
    if v.len() == 1 {
        return fmt(v[0]);
    }
    format!(
        "{}/{}/{}",
        fmt(v[0]),
        fmt(v[v.len() / 2]),
        fmt(v[v.len() - 1])
    )
}

fn main() {
    let sizes: Vec<usize> = arg("--sizes")
        .unwrap_or_else(|| "10,100,1000,3000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runs: u64 = arg("--runs").and_then(|s| s.parse().ok()).unwrap_or(3);
    let loss: f64 = arg("--loss").and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let mesh_max: usize = arg("--mesh-max")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    println!("metasim: scoped propagation (ours) vs full mesh (upstream-like); loss {loss}; min/median/max over {runs} seeds");
    println!("| n | k | mode | idle msgs/node/rnd | idle bytes/node/rnd | change msgs/node/rnd | change bytes/node/rnd | max msgs 1 node 1 rnd | rounds global | rounds resource | goal 2·log2(n) | wall s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &sizes {
        for k in [2usize, 3] {
            for mode in [Mode::Scoped, Mode::FullMesh] {
                if mode == Mode::FullMesh && n > mesh_max {
                    continue;
                }
                let t0 = Instant::now();
                let mut reps: Vec<Report> = Vec::new();
                // Full mesh is deterministic per node and costs O(n²) messages per round to
                // simulate: one seed from 3000 nodes on.
                let runs = if mode == Mode::FullMesh && n >= 3000 {
                    1
                } else {
                    runs
                };
                for seed in 0..runs {
                    let mut cfg = SimConfig::new(n, k, mode);
                    cfg.seed = 1000 + seed;
                    cfg.loss = loss;
                    let idle = if mode == Mode::FullMesh { 1 } else { 5 };
                    reps.push(measure(cfg, idle, 200));
                }
                let col = |f: &dyn Fn(&Report) -> f64| mmm(reps.iter().map(f).collect());
                let rounds = |f: &dyn Fn(&Report) -> Option<u64>| {
                    if reps.iter().any(|r| f(r).is_none()) {
                        "not converged".to_string()
                    } else {
                        mmm(reps.iter().map(|r| f(r).unwrap_or(0) as f64).collect())
                    }
                };
                println!(
                    "| {n} | {k} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
                    if mode == Mode::Scoped {
                        "ours"
                    } else {
                        "full mesh"
                    },
                    col(&|r| r.idle_msgs),
                    col(&|r| r.idle_bytes),
                    col(&|r| r.global_msgs),
                    col(&|r| r.global_bytes),
                    col(&|r| r.max_node_round as f64),
                    rounds(&|r| r.global_rounds),
                    rounds(&|r| r.resource_rounds),
                    2.0 * (n as f64).log2(),
                    t0.elapsed().as_secs_f64() / runs as f64,
                );
            }
        }
    }
}
