//! One metadata node as a process, driven by lines on stdin (see
//! `mars_strategy::net::serve_stdio`).
//!
//! `meta-node --dir D --node N --listen ADDR --secret S [--create | --join NAME@ADDR]`
use mars_strategy::net::{serve_stdio, StdioNode};
use std::time::Duration;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: meta-node --dir D --node N --listen ADDR --secret S [--create | --join NAME@IP:PORT]";
    let (Some(dir), Some(node), Some(listen), Some(secret)) = (
        arg(&args, "--dir"),
        arg(&args, "--node"),
        arg(&args, "--listen"),
        arg(&args, "--secret"),
    ) else {
        eprintln!("{usage}");
        return std::process::ExitCode::from(2);
    };
    let join = match arg(&args, "--join") {
        None => None,
        Some(j) => match j
            .split_once('@')
            .and_then(|(n, a)| Some((n.to_string(), a.parse().ok()?)))
        {
            Some(x) => Some(x),
            None => {
                eprintln!("--join wants NAME@IP:PORT, got {j}; {usage}");
                return std::process::ExitCode::from(2);
            }
        },
    };
    let opts = StdioNode {
        dir: dir.into(),
        node,
        listen,
        secret: secret.into_bytes(),
        create: args.iter().any(|a| a == "--create"),
        join,
        tick: Duration::from_millis(200),
    };
    match serve_stdio(opts) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meta-node: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
