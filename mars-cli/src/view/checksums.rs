//! What `view` shows of a replica's block checksums: scrubs (running and the last one) and
//! reads that failed their checksum. Parsed from the keys each node publishes
//! (`actual-<h>/scrub`, `actual-<h>/scrub-progress`, `actual-<h>/csum-errors`).

use serde::{Deserialize, Serialize};

/// What a replica's block checksums say (`actual-<h>/scrub`, `scrub-progress`, `csum-errors`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecksumView {
    /// A scrub running now: bytes done, device size, bytes/s.
    pub scrubbing: Option<(u64, u64, u64)>,
    /// The last finished scrub.
    pub last_scrub: Option<ScrubRecord>,
    /// Reads failed because data did not match its checksum (since its marsd started), and
    /// the last such error.
    pub read_errors: u64,
    /// The last read error.
    pub last_error: Option<String>,
    /// The last verify of this replica against the primary.
    #[serde(default)]
    pub last_verify: Option<VerifyRecord>,
    /// Damaged blocks the last local scrub found (block numbers of 4 KiB, the first ones; on
    /// this node only).
    #[serde(default)]
    pub damaged_blocks: Vec<u64>,
}

/// This replica's entry in the primary's record of the last verify.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRecord {
    /// The verify's id (`marsadm verify` waits for its own).
    pub id: u64,
    /// How long ago the primary recorded it (seconds, when the status was taken).
    pub ago_secs: u64,
    /// Blocks whose checksums differ.
    pub differing: u64,
    /// Blocks compared.
    pub compared: u64,
    /// Blocks not judged (unknown on a side, or written after the compared position).
    pub unjudged: u64,
    /// The first differing runs: `(byte offset, bytes)`.
    pub ranges: Vec<(u64, u64)>,
    /// The comparison failed (the primary's log says why).
    pub failed: bool,
}

impl VerifyRecord {
    /// `host`'s entry in a record `<id> <unix secs> <entries>` (see `daemon/verify.rs`).
    pub fn parse(record: &str, host: &str, now_secs: u64) -> Option<VerifyRecord> {
        let mut it = record.splitn(3, ' ');
        let id = it.next()?.parse().ok()?;
        let at: u64 = it.next()?.parse().ok()?;
        let entry = it
            .next()?
            .split(';')
            .find(|e| e.split(':').next() == Some(host))?;
        let f: Vec<&str> = entry.split(':').collect();
        let mut r = VerifyRecord {
            id,
            ago_secs: now_secs.saturating_sub(at),
            ..VerifyRecord::default()
        };
        if f.get(1) == Some(&"failed") {
            r.failed = true;
            return Some(r);
        }
        let num = |i: usize| f.get(i).and_then(|x| x.parse().ok());
        r.differing = num(1)?;
        r.compared = num(2)?;
        r.unjudged = num(3)?;
        r.ranges = f
            .get(4)
            .unwrap_or(&"")
            .split(',')
            .filter_map(|x| {
                let (b, n) = x.split_once('+')?;
                Some((b.parse::<u64>().ok()? * 4096, n.parse::<u64>().ok()? * 4096))
            })
            .collect();
        Some(r)
    }
}

/// A finished scrub.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubRecord {
    /// How long ago it ended (seconds, when the status was taken).
    pub ago_secs: u64,
    /// Bytes scrubbed.
    pub bytes: u64,
    /// Damaged blocks found.
    pub damaged: u64,
    /// Blocks whose checksum-file page was damaged.
    pub checksum_file_errors: u64,
    /// `--repair` was given.
    pub repair: bool,
}

impl ChecksumView {
    /// Parse the published keys (absent or unparsable ones are left out).
    pub fn from_keys(
        scrub: Option<&str>,
        progress: Option<&str>,
        errors: Option<&str>,
        now_secs: u64,
    ) -> ChecksumView {
        let nums =
            |v: &str| -> Vec<u64> { v.split_whitespace().map_while(|x| x.parse().ok()).collect() };
        let last_scrub = scrub.map(nums).and_then(|n| match n[..] {
            [at, bytes, damaged, errs, repair] => Some(ScrubRecord {
                ago_secs: now_secs.saturating_sub(at),
                bytes,
                damaged,
                checksum_file_errors: errs,
                repair: repair == 1,
            }),
            _ => None,
        });
        let scrubbing = progress.map(nums).and_then(|n| match n[..] {
            [pos, size, rate] => Some((pos, size, rate)),
            _ => None,
        });
        let (read_errors, last_error) = match errors.and_then(|e| e.split_once(' ')) {
            Some((n, last)) => (n.parse().unwrap_or(0), Some(last.to_string())),
            None => (errors.and_then(|e| e.parse().ok()).unwrap_or(0), None),
        };
        ChecksumView {
            scrubbing,
            last_scrub,
            read_errors,
            last_error: last_error.filter(|l| !l.is_empty()),
            last_verify: None,
            damaged_blocks: Vec::new(),
        }
    }

    /// Its lines in `view` (indented like the other replica lines).
    pub fn lines(&self, res: &str, host: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((pos, size, rate)) = self.scrubbing {
            let eta = (size.saturating_sub(pos))
                .checked_div(rate)
                .map_or_else(|| "?".to_string(), |s| format!("{s} s"));
            out.push(format!(
                "    scrubbing: {} {} MiB/s, ETA {eta}",
                super::text::bar(pos, size),
                rate >> 20
            ));
        }
        if let Some(r) = &self.last_scrub {
            let found = if r.damaged + r.checksum_file_errors == 0 {
                "0 differences".to_string()
            } else {
                format!(
                    "{} damaged block(s), {} checksum-file error(s)",
                    r.damaged, r.checksum_file_errors
                )
            };
            out.push(format!(
                "    last scrub: {} ago, {found}{}",
                ago(r.ago_secs),
                if r.repair { " (with repair)" } else { "" }
            ));
            if r.damaged > 0 && !r.repair {
                out.push(format!(
                    "    > damaged data on {host}: run `marsadm scrub {res} --repair` there"
                ));
            }
        }
        if let Some(v) = &self.last_verify {
            let what = if v.failed {
                "the comparison failed (see the primary's log)".to_string()
            } else if v.differing == 0 {
                format!("0 differences ({} blocks compared)", v.compared)
            } else {
                let shown: Vec<String> = v.ranges.iter().map(|(o, n)| format!("{o}+{n}")).collect();
                format!(
                    "{} differing block(s) at bytes {}",
                    v.differing,
                    shown.join(", ")
                )
            };
            out.push(format!("    last verify: {} ago, {what}", ago(v.ago_secs)));
            if v.differing > 0 {
                out.push(format!(
                    "    > {host} differs from the primary: run `marsadm verify {res} --repair` to re-sync it"
                ));
            }
        }
        if self.read_errors > 0 {
            out.push(format!(
                "    > CHECKSUM: {} read(s) failed on {host}; last: {}",
                self.read_errors,
                self.last_error.as_deref().unwrap_or("?")
            ));
        }
        out
    }
}

/// `3 h`, `12 min`, `40 s`.
fn ago(secs: u64) -> String {
    match secs {
        s if s >= 2 * 86_400 => format!("{} d", s / 86_400),
        s if s >= 2 * 3600 => format!("{} h", s / 3600),
        s if s >= 120 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}
