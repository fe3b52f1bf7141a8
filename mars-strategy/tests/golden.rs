//! Golden tests of the strategy: every `testdata/*.txt` holds a resource's metadata and a
//! node's facts, then `----`, then the actions `derive` must return (one per line, in order).
//! `MARS_BLESS=1 cargo test -p mars-strategy --test golden` rewrites the expectations (review
//! the diff before committing it).
//!
//! Input lines:
//! - `me <node>`, `res <resource>`, `now <ns>`, `fact started <ns>` (daemon start, default 0)
//! - `key <key relative to resource-<r>/> <value>`
//! - `chain <host> <log name> <pos>`: `version-<seq>-<host>` chained onto that host's link of
//!   `seq - 1` (or the start of the history); `fork <host> <log> <pos>` makes one that is not.
//! - `fact running primary|secondary|nothing`
//! - `fact local <log> len=<n> [verified=<n>]` (verified defaults to len)
//! - `fact fetch <log> peer=<h> [done] [failed=<text without spaces>]`
//! - `fact replay-busy`, `fact replay-failed <text>`
//! - `fact sync pos=<n> [done_at=<ns>] [failed=<text>]`
//! - `fact primary <log> end=<n> clients=<n> min_seq=<n> [bypass] [hole=<seq>:<pos>]
//!   [writeback_error=<text, `_` for spaces>] [failed=<text, `_` for spaces>]`
//! - `fact free <bytes> [delete_logs_below=<n>] [stop_fetch_below=<n>] [emergency_below=<n>]`

use mars_strategy::strategy::{
    derive, Facts, FetchFact, LocalLog, PrimaryFact, Running, Snapshot, SyncFact,
};
use mars_strategy::views::{LogName, VersionLink};
use std::collections::BTreeMap;
use std::path::Path;

fn kv(words: &[&str]) -> BTreeMap<String, String> {
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (w.to_string(), String::new()),
        })
        .collect()
}

fn num(m: &BTreeMap<String, String>, k: &str) -> Option<u64> {
    m.get(k).map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{k}={v}: not a number"))
    })
}

fn log(s: &str) -> LogName {
    LogName::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn parse(input: &str) -> (Snapshot, Facts) {
    let (mut me, mut res) = (String::new(), String::new());
    let mut keys: Vec<(String, String)> = Vec::new();
    let mut f = Facts::default();
    for line in input.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        match w[..] {
            ["me", n] => me = n.into(),
            ["res", r] => res = r.into(),
            ["now", t] => f.now = t.parse().expect("now"),
            ["fact", "started", t] => f.started = t.parse().expect("started"),
            ["key", k, ref v @ ..] => keys.push((k.into(), v.join(" "))),
            [op @ ("chain" | "fork"), host, l, pos] => {
                let l = log(l);
                let prev_key = format!("version-{:09}-{host}", l.seq - 1);
                let prev = match op {
                    "fork" => VersionLink::next("", LogName::new(0, "elsewhere"), 0).to_string(),
                    _ => keys
                        .iter()
                        .find(|(k, _)| *k == prev_key)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default(),
                };
                let seq = l.seq;
                let v = VersionLink::next(&prev, l, pos.parse().expect("pos"));
                keys.push((format!("version-{seq:09}-{host}"), v.to_string()));
            }
            ["fact", "running", r] => {
                f.running = match r {
                    "primary" => Running::Primary,
                    "secondary" => Running::Secondary,
                    _ => Running::Nothing,
                }
            }
            ["fact", "local", l, ref rest @ ..] => {
                let m = kv(rest);
                let len = num(&m, "len").expect("len");
                let verified = num(&m, "verified").unwrap_or(len);
                f.local_logs.insert(log(l), LocalLog { len, verified });
            }
            ["fact", "fetch", l, ref rest @ ..] => {
                let m = kv(rest);
                f.fetch = Some(FetchFact {
                    log: log(l),
                    peer: m.get("peer").cloned().unwrap_or_default(),
                    done: m.contains_key("done"),
                    failed: m.get("failed").cloned(),
                });
            }
            ["fact", "replay-busy"] => f.replay_busy = true,
            ["fact", "free", n, ref rest @ ..] => {
                let m = kv(rest);
                f.free_space = Some(n.parse().expect("free"));
                f.delete_logs_below = num(&m, "delete_logs_below").unwrap_or(0);
                f.stop_fetch_below = num(&m, "stop_fetch_below").unwrap_or(0);
                f.emergency_below = num(&m, "emergency_below").unwrap_or(0);
            }
            ["fact", "replay-failed", ref rest @ ..] => f.replay_failed = Some(rest.join(" ")),
            ["fact", "sync", ref rest @ ..] => {
                let m = kv(rest);
                f.sync = Some(SyncFact {
                    pos: num(&m, "pos").unwrap_or(0),
                    done_at: num(&m, "done_at"),
                    failed: m.get("failed").cloned(),
                });
            }
            ["fact", "primary", l, ref rest @ ..] => {
                let m = kv(rest);
                f.primary = Some(PrimaryFact {
                    log: log(l),
                    end: num(&m, "end").unwrap_or(0),
                    clients: num(&m, "clients").unwrap_or(0),
                    min_seq: num(&m, "min_seq").unwrap_or(0),
                    bypass: m.contains_key("bypass"),
                    hole: m.get("hole").map(|h| {
                        let (a, b) = h.split_once(':').expect("hole=<seq>:<pos>");
                        (a.parse().expect("seq"), b.parse().expect("pos"))
                    }),
                    writeback_error: m.get("writeback_error").map(|e| e.replace('_', " ")),
                    failed: m.get("failed").map(|e| e.replace('_', " ")),
                });
            }
            _ => panic!("unknown golden input line {line:?}"),
        }
    }
    let s = Snapshot::from_pairs(&me, &res, keys.iter().map(|(k, v)| (&**k, &**v)));
    assert!(s.malformed.is_empty(), "malformed keys: {:?}", s.malformed);
    (s, f)
}

#[test]
fn golden_strategy_tables() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let bless = std::env::var_os("MARS_BLESS").is_some();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the golden tables in {}",
        dir.display()
    );
    let mut failed = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let (input, expected) = text
            .split_once("\n----\n")
            .unwrap_or_else(|| panic!("{}: no ---- line", path.display()));
        let (s, f) = parse(input);
        let got: Vec<String> = derive(&s, &f).iter().map(|a| a.to_string()).collect();
        let want: Vec<&str> = expected.lines().filter(|l| !l.trim().is_empty()).collect();
        if got != want {
            if bless {
                let mut out = format!("{input}\n----\n");
                for l in &got {
                    out.push_str(l);
                    out.push('\n');
                }
                std::fs::write(path, out).unwrap();
            } else {
                failed.push(format!(
                    "{}:\n  want: {want:#?}\n  got:  {got:#?}",
                    path.display()
                ));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "golden mismatches:\n{}",
        failed.join("\n")
    );
}
