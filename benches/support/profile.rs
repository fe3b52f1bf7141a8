//! Where the time goes, for the benches (included with `#[path]`): `perf record` attached to a
//! process for the length of one job, and the context switches of a process's threads.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The CPU time (user + system) that every thread of `pid` used so far, in seconds (the
/// kernel counts it in clock ticks of 10 ms: measure over seconds).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces, in parentheses): state is
    // field 3, utime 14 and stime 15.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| rest.get(i)?.parse::<u64>().ok())
        .sum();
    // /proc counts in USER_HZ, which is 100 on every architecture Linux runs on here.
    ticks as f64 / 100.0
}

/// The voluntary + involuntary context switches of every thread of `pid` so far.
pub fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|s| {
            s.lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// A `perf record -g` of one process, running until [`Recording::finish`].
pub struct Recording {
    child: Child,
    data: PathBuf,
}

impl Recording {
    /// Start recording `pid` into `data` (`None` when perf cannot be started).
    pub fn start(pid: u32, data: &Path) -> Option<Recording> {
        let child = Command::new("perf")
            .args([
                "record",
                "-F",
                "499",
                "-g",
                "-q",
                "-p",
                &pid.to_string(),
                "-o",
            ])
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Recording {
            child,
            data: data.to_path_buf(),
        })
    }

    /// Stop recording and return the report's top lines (self time by thread name and symbol,
    /// at least 1.5% of samples); the full report is written beside the data file as `.txt`.
    pub fn finish(mut self) -> String {
        // perf writes its data file on SIGINT.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let out = Command::new("perf")
            .args(["report", "--stdio", "--no-children", "-g", "none", "-i"])
            .arg(&self.data)
            .args(["--sort", "comm,symbol", "--percent-limit", "1.5"])
            .stderr(Stdio::null())
            .output();
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let _ = std::fs::write(self.data.with_extension("txt"), &text);
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .take(14)
            .collect::<Vec<_>>()
            .join("\n")
    }
}
