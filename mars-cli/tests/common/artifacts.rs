//! What a failed scenario leaves behind for whoever has to find out why: every node's marsd
//! log, its `marsadm --json view` and a listing of its resource directories, in
//! `$MARS_TEST_ARTIFACTS/<test>/` (default `target/scenario-artifacts/<test>/`), whose path
//! is printed (CI lists it when a suite fails).

use super::{run_bounded, Node};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the artifacts of `test` go.
pub fn artifacts_dir(test: &str) -> PathBuf {
    let base = std::env::var_os("MARS_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // CARGO_TARGET_TMPDIR is `<target>/tmp`.
            Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .unwrap_or(Path::new("target"))
                .join("scenario-artifacts")
        });
    let name: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    base.join(name)
}

/// Keep the artifacts of `nodes` for the running test (named after its thread); returns
/// the directory. Never panics: it runs while a test is failing.
pub fn keep_artifacts(nodes: &[Node]) -> Option<PathBuf> {
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed-test")
        .to_string();
    let dir = artifacts_dir(&test);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot keep scenario artifacts in {}: {e}", dir.display());
        return None;
    }
    for n in nodes {
        let _ = std::fs::copy(&n.log, dir.join(format!("{}.marsd.log", n.name)));
        let view = run_bounded(
            env!("CARGO_BIN_EXE_marsadm"),
            &[
                "--mars-dir",
                n.dir.to_str().unwrap_or_default(),
                "--timeout",
                "5",
                "--json",
                "view",
            ],
            Duration::from_secs(10),
        );
        let text = match view {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => e,
        };
        let _ = std::fs::write(dir.join(format!("{}.view.json", n.name)), text);
        let _ = std::fs::write(dir.join(format!("{}.files.txt", n.name)), listing(&n.dir));
    }
    eprintln!(
        "scenario artifacts (marsd logs, view --json and files of every node): {}",
        dir.display()
    );
    Some(dir)
}

/// `name size` of every file under `dir`, one level of subdirectories deep.
fn listing(dir: &Path) -> String {
    let mut out = String::new();
    let entries = |d: &Path| -> Vec<std::fs::DirEntry> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .map(|r| r.flatten().collect())
            .unwrap_or_default();
        v.sort_by_key(|e| e.file_name());
        v
    };
    for e in entries(dir) {
        let p = e.path();
        if p.is_dir() {
            for f in entries(&p) {
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                out += &format!("{} {len}\n", f.path().display());
            }
        } else {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            out += &format!("{} {len}\n", p.display());
        }
    }
    out
}
