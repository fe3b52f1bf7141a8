//! Typed views over upstream's key names and values. Parsers reject malformed values with an
//! [`Error::Malformed`] that names the key, the value and the expected form.
//!
//! - `resource-<r>/log-<seq %09d>-<h>`: a transaction log ([`LogName`], xio's log file name:
//!   the key names the same file as the log directories and the log server).
//! - `resource-<r>/replay-<h>` = `log-<seq>-<loghost>,<pos>,<len>` ([`ReplayLink`]).
//! - `resource-<r>/version-<seq>-<h>` = `<digest>,log-<seq>-<loghost>,<logpos>:<prev digest>`
//!   where `<digest>` = blake3 hex of `<seq>,<loghost>,<logpos>:<previous version value>`:
//!   a hash chain of the log history ([`VersionLink`]). Upstream used md5 over the same text.
//! - `resource-<r>/syncstatus-<h>` = bytes synced ([`parse_u64`]).
//! - `resource-<r>/todo-<h>/<switch>` = `0|1` ([`Switch`]), `resource-<r>/actual-<h>/<led>`.

use crate::error::{Error, Result};
use crate::store::MetaStore;
use std::fmt;
pub use xio::log::LogName;

fn malformed(key: &str, value: &str, expected: &'static str) -> Error {
    Error::Malformed {
        key: key.to_string(),
        value: value.to_string(),
        expected,
    }
}

/// Key builders with upstream's names.
pub mod keys {
    /// `ips/ip-<h>`.
    pub fn ip(h: &str) -> String {
        format!("ips/ip-{h}")
    }
    /// `resource-<r>/replay-<h>`.
    pub fn replay(r: &str, h: &str) -> String {
        format!("resource-{r}/replay-{h}")
    }
    /// `resource-<r>/version-<seq %09d>-<h>`.
    pub fn version(r: &str, seq: u64, h: &str) -> String {
        format!("resource-{r}/version-{seq:09}-{h}")
    }
    /// `resource-<r>/log-<seq %09d>-<h>`.
    pub fn log(r: &str, seq: u64, h: &str) -> String {
        format!("resource-{r}/log-{seq:09}-{h}")
    }
    /// `resource-<r>/syncstatus-<h>`.
    pub fn syncstatus(r: &str, h: &str) -> String {
        format!("resource-{r}/syncstatus-{h}")
    }
    /// `resource-<r>/todo-<h>/<switch>`.
    pub fn todo(r: &str, h: &str, switch: super::Switch) -> String {
        format!("resource-{r}/todo-{h}/{}", switch.name())
    }
    /// `resource-<r>/actual-<h>/<led>`.
    pub fn actual(r: &str, h: &str, led: &str) -> String {
        format!("resource-{r}/actual-{h}/{led}")
    }
}

fn parse_u64_in(key: &str, s: &str, expected: &'static str) -> Result<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(key, s, expected));
    }
    s.parse().map_err(|_| malformed(key, s, expected))
}

/// Parse a decimal byte count (`syncstatus-<h>`, `size`, `actsize-<h>`).
pub fn parse_u64(key: &str, value: &str) -> Result<u64> {
    parse_u64_in(key, value, "a decimal number of bytes")
}

/// `replay-<h>` = `log-<seq>-<loghost>,<pos>,<len>`: where replay stands and the dirty region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayLink {
    /// The log being replayed.
    pub log: LogName,
    /// Replay position in it.
    pub pos: u64,
    /// Length of the region still to apply.
    pub len: u64,
}

impl ReplayLink {
    /// Parse a replay link value.
    pub fn parse(key: &str, v: &str) -> Result<ReplayLink> {
        const EXP: &str = "log-<seq>-<host>,<pos>,<len>";
        let parts: Vec<&str> = v.split(',').collect();
        let [log, pos, len] = parts[..] else {
            return Err(malformed(key, v, EXP));
        };
        Ok(ReplayLink {
            log: LogName::parse(log).map_err(|_| malformed(key, v, EXP))?,
            pos: parse_u64_in(key, pos, EXP)?,
            len: parse_u64_in(key, len, EXP)?,
        })
    }
}

impl fmt::Display for ReplayLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}", self.log, self.pos, self.len)
    }
}

/// `version-<seq>-<h>` = `<digest>,log-<seq>-<loghost>,<logpos>:<prev digest>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionLink {
    /// blake3 hex of `<seq>,<loghost>,<logpos>:<previous version value>`.
    pub digest: String,
    /// The log this version ends.
    pub log: LogName,
    /// Its final position.
    pub pos: u64,
    /// The previous version's digest (empty for the first).
    pub prev: String,
}

fn is_hex_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl VersionLink {
    /// The next link of the chain after `prev_value` (the previous link's whole value, or ""
    /// for the first version of a resource).
    pub fn next(prev_value: &str, log: LogName, pos: u64) -> VersionLink {
        let input = format!("{},{},{}:{}", log.seq, log.creator, pos, prev_value);
        let digest = blake3::hash(input.as_bytes()).to_hex().to_string();
        let prev = prev_value.split(',').next().unwrap_or("").to_string();
        VersionLink {
            digest,
            log,
            pos,
            prev,
        }
    }

    /// Parse a version link value.
    pub fn parse(key: &str, v: &str) -> Result<VersionLink> {
        const EXP: &str = "<64 hex digest>,log-<seq>-<host>,<pos>:<previous digest or empty>";
        let (head, prev) = v.split_once(':').ok_or_else(|| malformed(key, v, EXP))?;
        let parts: Vec<&str> = head.split(',').collect();
        let [digest, log, pos] = parts[..] else {
            return Err(malformed(key, v, EXP));
        };
        if !is_hex_digest(digest) || !(prev.is_empty() || is_hex_digest(prev)) {
            return Err(malformed(key, v, EXP));
        }
        Ok(VersionLink {
            digest: digest.to_string(),
            log: LogName::parse(log).map_err(|_| malformed(key, v, EXP))?,
            pos: parse_u64_in(key, pos, EXP)?,
            prev: prev.to_string(),
        })
    }

    /// Check that this link chains onto `prev_value` (the previous link's value).
    pub fn verify(&self, key: &str, prev_value: &str) -> Result<()> {
        let expect = VersionLink::next(prev_value, self.log.clone(), self.pos);
        if expect.digest != self.digest {
            return Err(Error::BrokenChain {
                key: key.to_string(),
                reason: format!(
                    "digest {} does not match the recomputed {}",
                    self.digest, expect.digest
                ),
            });
        }
        if expect.prev != self.prev {
            return Err(Error::BrokenChain {
                key: key.to_string(),
                reason: format!("previous digest {:?} is not {:?}", self.prev, expect.prev),
            });
        }
        Ok(())
    }
}

impl fmt::Display for VersionLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}:{}", self.digest, self.log, self.pos, self.prev)
    }
}

/// The `todo-<h>/` switches (marsadm's names map: fetch → connect, replay → allow-replay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Switch {
    /// Attach the local disk.
    Attach,
    /// Fetch logs from the primary (`marsadm pause-fetch`/`resume-fetch`).
    Connect,
    /// Full sync allowed.
    Sync,
    /// Replay allowed.
    AllowReplay,
}

impl Switch {
    /// Upstream's key name.
    pub fn name(self) -> &'static str {
        match self {
            Switch::Attach => "attach",
            Switch::Connect => "connect",
            Switch::Sync => "sync",
            Switch::AllowReplay => "allow-replay",
        }
    }

    /// From a key name or a marsadm alias.
    pub fn from_name(s: &str) -> Option<Switch> {
        Some(match s {
            "attach" => Switch::Attach,
            "connect" | "fetch" => Switch::Connect,
            "sync" => Switch::Sync,
            "allow-replay" | "replay" => Switch::AllowReplay,
            _ => return None,
        })
    }
}

/// Parse a switch or LED value: `0` or `1`.
pub fn parse_flag(key: &str, v: &str) -> Result<bool> {
    match v {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(malformed(key, v, "0 or 1")),
    }
}

/// Typed reads of one resource's keys in a store.
pub struct ResourceView<'a> {
    store: &'a MetaStore,
    res: &'a str,
}

impl<'a> ResourceView<'a> {
    /// A view of resource `res`.
    pub fn new(store: &'a MetaStore, res: &'a str) -> Self {
        ResourceView { store, res }
    }

    fn typed<T>(&self, key: String, f: impl FnOnce(&str, &str) -> Result<T>) -> Result<Option<T>> {
        self.store.get(&key).map(|v| f(&key, v)).transpose()
    }

    /// `replay-<h>`.
    pub fn replay(&self, h: &str) -> Result<Option<ReplayLink>> {
        self.typed(keys::replay(self.res, h), ReplayLink::parse)
    }

    /// `version-<seq>-<h>`.
    pub fn version(&self, seq: u64, h: &str) -> Result<Option<VersionLink>> {
        self.typed(keys::version(self.res, seq, h), VersionLink::parse)
    }

    /// `syncstatus-<h>`.
    pub fn syncstatus(&self, h: &str) -> Result<Option<u64>> {
        self.typed(keys::syncstatus(self.res, h), parse_u64)
    }

    /// `size`.
    pub fn size(&self) -> Result<Option<u64>> {
        self.typed(format!("resource-{}/size", self.res), parse_u64)
    }

    /// `todo-<h>/<switch>`.
    pub fn todo(&self, h: &str, s: Switch) -> Result<Option<bool>> {
        self.typed(keys::todo(self.res, h, s), parse_flag)
    }

    /// `actual-<h>/<led>` as a flag.
    pub fn actual(&self, h: &str, led: &str) -> Result<Option<bool>> {
        self.typed(keys::actual(self.res, h, led), parse_flag)
    }

    /// The designated primary (`None` for absent or `(none)`).
    pub fn primary(&self) -> Option<&'a str> {
        self.store
            .get(&format!("resource-{}/primary", self.res))
            .filter(|p| *p != "(none)")
    }

    /// Log files present, sorted by sequence.
    pub fn logs(&self) -> Result<Vec<LogName>> {
        let pre = format!("resource-{}/", self.res);
        let mut v = Vec::new();
        for (k, _) in self.store.list(&format!("{pre}log-")) {
            let name = &k[pre.len()..];
            v.push(
                LogName::parse(name)
                    .map_err(|_| malformed(name, name, "log-<sequence digits>-<host>"))?,
            );
        }
        v.sort();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_link_roundtrip_and_errors() {
        let r = ReplayLink::parse("k", "log-000000007-node-a,4096,512").unwrap();
        assert_eq!(r.log.seq, 7);
        assert_eq!(r.log.creator, "node-a");
        assert_eq!(r.to_string(), "log-000000007-node-a,4096,512");
        for bad in [
            "",
            "log-7-a,1",
            "log-x-a,1,2",
            "log-7-a,-1,2",
            "foo,1,2",
            "log-7-a,1,2,3",
        ] {
            let e = ReplayLink::parse("k", bad).unwrap_err();
            assert!(e.to_string().contains("expected"), "{e}");
        }
    }

    #[test]
    fn version_chain() {
        let v1 = VersionLink::next("", LogName::parse("log-000000001-a").unwrap(), 100);
        let s1 = v1.to_string();
        let v2 = VersionLink::next(&s1, LogName::parse("log-000000002-a").unwrap(), 50);
        let s2 = v2.to_string();
        let p2 = VersionLink::parse("k", &s2).unwrap();
        assert_eq!(p2, v2);
        p2.verify("k", &s1).unwrap();
        assert_eq!(p2.prev, v1.digest);
        // A different history breaks the chain.
        let other = VersionLink::next("", LogName::parse("log-000000001-b").unwrap(), 100);
        assert!(p2.verify("k", &other.to_string()).is_err());
        assert!(VersionLink::parse("k", "zz,log-1-a,1:").is_err());
    }

    #[test]
    fn switches_and_flags() {
        assert_eq!(Switch::from_name("fetch"), Some(Switch::Connect));
        assert_eq!(Switch::from_name("replay"), Some(Switch::AllowReplay));
        assert!(parse_flag("k", "2").is_err());
        assert_eq!(
            keys::todo("r", "h", Switch::AllowReplay),
            "resource-r/todo-h/allow-replay"
        );
        assert_eq!(keys::log("r", 3, "h"), "resource-r/log-000000003-h");
    }
}
