//! [`LogName`]: the name of a log file, `log-<seq %09d>-<creator>`. The one place that builds
//! and parses it: the logger's log directory, the log server, fetch and the strategy's
//! `resource-<r>/log-...` keys all go through it.

use std::fmt;

/// Longest creator (node name), as `mars_strategy::names::check_node`.
pub const MAX_CREATOR_LEN: usize = 64;

/// A log file name: `log-<seq %09d>-<creator>`, where `creator` is the node that created it.
/// Orders by `(seq, creator)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogName {
    /// Sequence number.
    pub seq: u64,
    /// The node that created the file.
    pub creator: String,
}

/// A string that is not a log file name (or not a valid creator).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a log file name ({reason}): expected log-<1 to 19 digits>-<creator>, creator of letters, digits, '.', '_', '-', at most 64 bytes, not starting with '-' or '.'")]
pub struct LogNameError {
    /// The rejected string.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl LogName {
    /// The name of log `seq` made by `creator` (not checked: see [`LogName::check_creator`]).
    pub fn new(seq: u64, creator: impl Into<String>) -> LogName {
        LogName {
            seq,
            creator: creator.into(),
        }
    }

    /// Parse `log-<1..19 digits>-<creator>`. The digits end at the first '-' after them; the
    /// creator may contain '-' (`log-000000001-node-a`).
    pub fn parse(s: &str) -> Result<LogName, LogNameError> {
        let bad = |reason| LogNameError {
            input: s.to_string(),
            reason,
        };
        let rest = s
            .strip_prefix("log-")
            .ok_or_else(|| bad("no log- prefix"))?;
        let (digits, creator) = rest
            .split_once('-')
            .ok_or_else(|| bad("no '-' between the sequence number and the creator"))?;
        if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the sequence number is not 1 to 19 digits"));
        }
        creator_problem(creator).map_or(Ok(()), |r| Err(bad(r)))?;
        let seq = digits
            .parse()
            .map_err(|_| bad("the sequence number exceeds 64 bits"))?;
        Ok(LogName::new(seq, creator))
    }

    /// Check that `creator` may be the creator part of a log file name.
    pub fn check_creator(creator: &str) -> Result<(), LogNameError> {
        match creator_problem(creator) {
            None => Ok(()),
            Some(reason) => Err(LogNameError {
                input: creator.to_string(),
                reason,
            }),
        }
    }
}

fn creator_problem(c: &str) -> Option<&'static str> {
    if c.is_empty() {
        Some("empty creator")
    } else if c.len() > MAX_CREATOR_LEN {
        Some("creator longer than 64 bytes")
    } else if c.starts_with(['-', '.']) {
        Some("creator starts with '-' or '.'")
    } else if !c
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("creator has a character other than letters, digits, '.', '_', '-'")
    } else {
        None
    }
}

impl fmt::Display for LogName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "log-{:09}-{}", self.seq, self.creator)
    }
}

impl std::str::FromStr for LogName {
    type Err = LogNameError;
    fn from_str(s: &str) -> Result<LogName, LogNameError> {
        LogName::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        for (s, seq, creator) in [
            ("log-000000001-alice", 1, "alice"),
            ("log-000000007-node-a", 7, "node-a"),
            ("log-1234567890-a.b_c", 1_234_567_890, "a.b_c"),
            ("log-9999999999999999999-x", 9_999_999_999_999_999_999, "x"),
        ] {
            let n = LogName::parse(s).unwrap();
            assert_eq!(n, LogName::new(seq, creator));
            assert_eq!(LogName::parse(&n.to_string()).unwrap(), n);
        }
        assert_eq!(LogName::new(3, "bob").to_string(), "log-000000003-bob");
        // Fewer than 9 digits parse too; the canonical form pads.
        assert_eq!(
            LogName::parse("log-1-a").unwrap().to_string(),
            "log-000000001-a"
        );
    }

    #[test]
    fn bad_forms_are_rejected_with_the_expected_form() {
        let long = format!("log-1-{}", "a".repeat(65));
        for bad in [
            "",
            "log-",
            "log-000000001",
            "log-000000001-",
            "log--alice",
            "log-x-alice",
            "log-12a-alice",
            "log-00000000000000000001-a",
            "log-18446744073709551616-a",
            "log-1--a",
            "log-1-.a",
            "log-1-a/b",
            "log-1-a b",
            "log-1-é",
            "Log-1-a",
            "state",
            long.as_str(),
        ] {
            let e = LogName::parse(bad).unwrap_err();
            assert_eq!(e.input, bad);
            let m = e.to_string();
            assert!(
                m.contains(&format!("{bad:?}")) && m.contains("expected log-<"),
                "{m}"
            );
        }
        assert!(LogName::check_creator("node-a").is_ok());
        assert!(LogName::check_creator("-a").is_err());
        assert!(LogName::check_creator(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn orders_by_seq_then_creator() {
        let mut v = [
            LogName::new(2, "a"),
            LogName::new(10, "a"),
            LogName::new(1, "b"),
            LogName::new(1, "a"),
        ];
        v.sort();
        let s: Vec<String> = v.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            s,
            [
                "log-000000001-a",
                "log-000000001-b",
                "log-000000002-a",
                "log-000000010-a"
            ]
        );
    }
}
