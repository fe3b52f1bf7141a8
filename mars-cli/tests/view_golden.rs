//! Golden tests of `marsadm view`: every `testdata/view/<state>.json` is a node status as
//! `marsd` builds it (before messages); `<state>.txt` is what `view` prints for it (messages
//! derived, then rendered). `MARS_BLESS=1 cargo test -p mars-cli --test view_golden`
//! rewrites the expectations (review the diff before committing it).

use mars_cli::view::{messages, render, NodeStatus};
use std::path::Path;

const STATES: [&str; 7] = [
    "uptodate",
    "syncing",
    "paused_fetch",
    "primary_unreachable",
    "split_brain",
    "emergency",
    "orphan",
];

#[test]
fn view_text_of_every_state_matches_its_golden_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/view");
    let bless = std::env::var_os("MARS_BLESS").is_some();
    let mut failed = Vec::new();
    for state in STATES {
        let input = std::fs::read_to_string(dir.join(format!("{state}.json"))).unwrap();
        let mut s: NodeStatus =
            serde_json::from_str(&input).unwrap_or_else(|e| panic!("{state}.json: {e}"));
        messages::annotate(&mut s);
        let got = render(&s);
        let path = dir.join(format!("{state}.txt"));
        if bless {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            failed.push(format!("--- {state}: want\n{want}--- got\n{got}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn every_golden_state_says_what_an_operator_must_know() {
    // The point of each state, independent of layout: a change that loses it fails here
    // even after a careless bless.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/view");
    for (state, must) in [
        (
            "uptodate",
            &["UpToDate Replaying dCASFR Secondary alice"][..],
        ),
        (
            "syncing",
            &[
                "sync:   [=====",
                " 25%",
                "rate 48.0 MiB/s",
                "ETA 4 s",
                "lag 2.0 MiB / 0.4 s",
            ][..],
        ),
        (
            "paused_fetch",
            &[
                "PausedFetch",
                "info: fetch paused by operator: `marsadm resume-fetch r0`",
                "lag 12.0 MiB / 95.5 s",
            ][..],
        ),
        (
            "primary_unreachable",
            &[
                "PrimaryUnreachable",
                "UnResponsive",
                "[no contact 12 s]",
                "primary alice unreachable for 12 s",
                "primary --force r0",
            ][..],
        ),
        (
            "split_brain",
            &["ERROR: SPLIT BRAIN", "marsadm invalidate r0", "SplitBrain"][..],
        ),
        (
            "emergency",
            &[
                "ERROR: EmergencyMode",
                "ERROR: fetch stopped: only 1048576 bytes free",
                "logger: bypass",
            ][..],
        ),
        (
            "orphan",
            &[
                "Orphan Orphan",
                "ERROR: Orphan: the primary ran out of log space",
            ][..],
        ),
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{state}.txt"))).unwrap();
        for m in must {
            assert!(text.contains(m), "{state}.txt lacks {m:?}:\n{text}");
        }
    }
}
