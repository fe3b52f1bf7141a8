//! [`DirectIo`]: whether a replica's data device and log files are opened with `O_DIRECT`.
//! The default, `auto`, uses it for block devices (the page cache in front of a device that
//! the log already buffers only costs a copy and memory) and not for files (whose file system
//! may not support it, and where tests and small setups live).

use std::path::Path;

/// `O_DIRECT` for the data device and the log: `auto` (block devices only), `on`, `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DirectIo {
    /// On for block devices, off for regular files.
    #[default]
    Auto,
    /// Always (the file system must support `O_DIRECT`).
    On,
    /// Never.
    Off,
}

impl DirectIo {
    /// Whether to open the log files with `O_DIRECT` when the data device is opened so
    /// (`data_direct`): `Auto` follows the data device, `On` and `Off` decide alone. The log
    /// is only written on the hot path, so it gains from bypassing the page cache even when
    /// the data device keeps it (for the reads): the kernel's copy and its dirty-page
    /// flushing of every logged byte go away.
    pub fn resolve_log(self, data_direct: bool) -> bool {
        match self {
            DirectIo::On => true,
            DirectIo::Off => false,
            DirectIo::Auto => data_direct,
        }
    }

    /// Whether to open `data` with `O_DIRECT`: `Auto` asks whether it is a block device (a
    /// path that cannot be inspected counts as a file).
    pub fn resolve(self, data: &Path) -> bool {
        match self {
            DirectIo::On => true,
            DirectIo::Off => false,
            DirectIo::Auto => std::fs::metadata(data)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type())),
        }
    }
}

impl std::str::FromStr for DirectIo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DirectIo::Auto),
            "on" | "yes" | "true" => Ok(DirectIo::On),
            "off" | "no" | "false" => Ok(DirectIo::Off),
            _ => Err(format!(
                "unknown direct IO mode `{s}`: use auto (O_DIRECT for block devices), on or off"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_direct_for_block_devices_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        assert!(!DirectIo::Auto.resolve(&f));
        assert!(DirectIo::On.resolve(&f) && !DirectIo::Off.resolve(&f));
        for data in [false, true] {
            assert_eq!(DirectIo::Auto.resolve_log(data), data);
            assert!(DirectIo::On.resolve_log(data) && !DirectIo::Off.resolve_log(data));
        }
        let loop0 = Path::new("/dev/loop0");
        if loop0.exists() {
            assert!(DirectIo::Auto.resolve(loop0));
        }
        assert_eq!("auto".parse::<DirectIo>(), Ok(DirectIo::Auto));
        assert!("sometimes"
            .parse::<DirectIo>()
            .unwrap_err()
            .contains("auto"));
    }
}
