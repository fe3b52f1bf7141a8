//! A tmpfs mounted for a test (root only: interop suites): a small mars directory or data
//! device file system that really fills up.

use super::tool_ok;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A tmpfs mounted on a directory: unmounted (lazily if busy) and the directory removed when
/// dropped. Drop it after the marsd using it (declare it before the cluster).
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let opt = format!("size={size}");
        tool_ok(
            "mount",
            &["-t", "tmpfs", "-o", &opt, "tmpfs", dir.to_str().unwrap()],
            Duration::from_secs(20),
        );
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    pub fn remount(&self, size: &str) {
        let opt = format!("remount,size={size}");
        tool_ok(
            "mount",
            &["-o", &opt, self.dir.to_str().unwrap()],
            Duration::from_secs(20),
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let d = self.dir.to_str().unwrap();
        let quiet = |args: &[&str]| {
            Command::new("umount")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !quiet(&[d]) {
            quiet(&["-l", d]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        // The cluster's temp dir could not remove the mount point while it was mounted.
        if let Some(parent) = self.dir.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}
