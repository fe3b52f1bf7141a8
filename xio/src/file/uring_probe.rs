//! Whether this process can use io_uring. Probed once (a ring set up like the aio backend's,
//! then dropped). Where it cannot (sysctl `kernel.io_uring_disabled`, a seccomp filter, an old
//! kernel), or where the operator says so with `MARS_IO_URING=off`, [`super::open`] opens the
//! thread backend instead and says so once, as a warning: slower, but the node keeps working.

use std::sync::OnceLock;

/// `MARS_IO_URING=off` (or `0`): never use io_uring in this process.
pub const IO_URING_ENV: &str = "MARS_IO_URING";

static UNAVAILABLE: OnceLock<Option<String>> = OnceLock::new();

/// Why io_uring is not used in this process, or `None` when it is. The first call probes.
pub fn io_uring_unavailable() -> Option<&'static str> {
    UNAVAILABLE
        .get_or_init(|| {
            let setting = std::env::var(IO_URING_ENV).ok();
            let reason = unavailable_because(setting.as_deref(), crate::aio::probe);
            if let Some(r) = &reason {
                tracing::warn!(
                    "io_uring is not used in this process ({r}): files are opened with the \
                     thread backend (sio) instead, which is slower. To use io_uring, allow it \
                     (sysctl kernel.io_uring_disabled=0, a seccomp profile that permits \
                     io_uring_setup/io_uring_enter) and unset {IO_URING_ENV}."
                );
            }
            reason
        })
        .as_deref()
}

/// The decision, apart from the process-wide state: `setting` is the environment variable,
/// `probe` sets up a ring.
fn unavailable_because(
    setting: Option<&str>,
    probe: impl FnOnce() -> std::io::Result<()>,
) -> Option<String> {
    if matches!(setting, Some("off" | "0")) {
        return Some(format!("{IO_URING_ENV}=off"));
    }
    probe()
        .err()
        .map(|e| format!("setting up an io_uring failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_probe_or_the_setting_means_fallback() {
        let eperm = || Err(std::io::Error::from_raw_os_error(libc::EPERM));
        let reason = unavailable_because(None, eperm).unwrap();
        assert!(reason.contains("Operation not permitted"), "{reason}");
        assert_eq!(unavailable_because(None, || Ok(())), None);
        assert_eq!(unavailable_because(Some("on"), || Ok(())), None);
        for off in ["off", "0"] {
            let r = unavailable_because(Some(off), || panic!("no probe when switched off"));
            assert_eq!(r.as_deref(), Some("MARS_IO_URING=off"));
        }
    }
}
