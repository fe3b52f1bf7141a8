//! Names: node names, metadata keys, the scope a key belongs to (global or one resource) and
//! the ownership rule (a key ending in `-<node>` is written only by that node).
//!
//! Ownership is decided by upstream's key patterns, not by splitting at the last `-`, because
//! node names may contain `-` themselves (`ips/ip-node-12` is owned by `node-12`).

use crate::error::{Error, Result};
use std::sync::Arc;

/// A node (host) name.
pub type NodeName = Arc<str>;

/// A metadata key such as `resource-r/replay-h`.
pub type Key = Arc<str>;

/// Maximum length of a key in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// Maximum length of a node name in bytes.
pub const MAX_NODE_LEN: usize = 64;

/// Check a node name: `[A-Za-z0-9._-]+`, at most [`MAX_NODE_LEN`] bytes, not starting with `-`/`.`.
pub fn check_node(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidNode {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NODE_LEN {
        return bad("too long");
    }
    if name.starts_with(['-', '.']) {
        return bad("starts with '-' or '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("contains a character other than letters, digits, '.', '_', '-'");
    }
    Ok(())
}

/// Check a key: non-empty `/`-separated components of printable ASCII without spaces, no `.`
/// or `..` components, at most [`MAX_KEY_LEN`] bytes.
pub fn check_key(key: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad("longer than 255 bytes");
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return bad("contains a space, control or non-ASCII character");
    }
    for comp in key.split('/') {
        if comp.is_empty() {
            return bad("has an empty path component");
        }
        if comp == "." || comp == ".." {
            return bad("has a '.' or '..' component");
        }
    }
    Ok(())
}

/// Which group of nodes exchanges a key.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Scope {
    /// Cluster-wide keys (`uuid`, `ips/`, `defaults/`, `todo-global/`, `resources/`, ...):
    /// every member, by bounded-fanout anti-entropy.
    Global,
    /// Keys under `resource-<r>/`: only the resource's members and subscribers.
    Resource(Arc<str>),
}

impl Scope {
    /// The scope of a key.
    pub fn of(key: &str) -> Scope {
        match resource_of(key) {
            Some(r) => Scope::Resource(Arc::from(r)),
            None => Scope::Global,
        }
    }

    /// Short name for logs and dumps.
    pub fn label(&self) -> String {
        match self {
            Scope::Global => "global".into(),
            Scope::Resource(r) => format!("resource-{r}"),
        }
    }
}

/// The resource a key belongs to (`resource-<r>/...` → `r`).
pub fn resource_of(key: &str) -> Option<&str> {
    let first = key.split('/').next()?;
    let r = first.strip_prefix("resource-")?;
    (!r.is_empty() && key.len() > first.len()).then_some(r)
}

/// Last-component prefixes after which the rest of the component is the owning node.
const OWNED_PREFIXES: &[&str] = &[
    "ip-",
    "data-",
    "device-",
    "replay-",
    "syncstatus-",
    "syncpos-",
    "syncfrom-",
    "verifystatus-",
    "actsize-",
    "skip-check-",
    "deleted-",
];

/// Directory prefixes whose suffix is the owning node (`actual-<h>/...`, `defaults-<h>/...`).
const OWNED_DIRS: &[&str] = &["actual-", "defaults-"];

/// The node that owns a key, if the key is owned (upstream's "ownership indicator"). Shared
/// keys (`primary`, `size`, `maxnr`, `uuid`, `todo-<h>/*`, `defaults/*`, `userspace/*`, ...)
/// return `None`: any member may write them.
pub fn owner_of(key: &str) -> Option<&str> {
    let comps: Vec<&str> = key.split('/').collect();
    let (last, dirs) = comps.split_last()?;
    // `actual-<h>/...` or `resource-r/actual-<h>/...`, `defaults-<h>/...`.
    for dir in dirs {
        for p in OWNED_DIRS {
            if let Some(h) = dir.strip_prefix(p) {
                if !h.is_empty() {
                    return Some(h);
                }
            }
        }
    }
    for p in OWNED_PREFIXES {
        if let Some(h) = last.strip_prefix(p) {
            if !h.is_empty() {
                return Some(h);
            }
        }
    }
    // `log-<seq>-<h>` and `version-<seq>-<h>`.
    for p in ["log-", "version-"] {
        if let Some(rest) = last.strip_prefix(p) {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 && rest.as_bytes().get(digits) == Some(&b'-') && rest.len() > digits + 1 {
                return Some(&rest[digits + 1..]);
            }
        }
    }
    None
}

/// Stable 64-bit FNV-1a hash (same on every node and release; used to pick digest buckets).
pub fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_follows_upstream_patterns() {
        assert_eq!(owner_of("ips/ip-node-12"), Some("node-12"));
        assert_eq!(owner_of("resource-r/replay-b"), Some("b"));
        assert_eq!(owner_of("resource-r/log-000000001-a-b"), Some("a-b"));
        assert_eq!(owner_of("resource-r/version-000000007-x"), Some("x"));
        assert_eq!(owner_of("resource-r/actual-h1/is-primary"), Some("h1"));
        assert_eq!(owner_of("actual-h1/time"), Some("h1"));
        assert_eq!(owner_of("defaults-h1/sync-limit"), Some("h1"));
        assert_eq!(owner_of("resource-r/todo-h1/attach"), None);
        assert_eq!(owner_of("resource-r/primary"), None);
        assert_eq!(owner_of("defaults/sync-limit"), None);
        assert_eq!(owner_of("uuid"), None);
        assert_eq!(owner_of("resource-r/log-x-b"), None);
    }

    #[test]
    fn scopes() {
        assert_eq!(Scope::of("resource-r/size"), Scope::Resource("r".into()));
        assert_eq!(Scope::of("ips/ip-a"), Scope::Global);
        assert_eq!(Scope::of("resource-r"), Scope::Global);
        assert_eq!(Scope::of("resources/r"), Scope::Global);
    }

    #[test]
    fn key_and_node_checks() {
        assert!(check_key("resource-r/replay-a").is_ok());
        assert!(check_key("a//b").is_err());
        assert!(check_key("a/../b").is_err());
        assert!(check_key("a b").is_err());
        assert!(check_key("").is_err());
        assert!(check_node("node-1.example").is_ok());
        assert!(check_node("-x").is_err());
        assert!(check_node("a/b").is_err());
    }
}
