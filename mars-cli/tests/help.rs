//! `marsadm help`: every command the binary knows (taken from its own listing, so a command
//! added without a manual page, or in no group, fails here) has a manual page with every
//! section, documented arguments, and examples that use the command; `help COMMAND` and
//! `COMMAND --help` print the same page; an unknown command is a usage error.

use std::process::{Command, Output};

fn marsadm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_marsadm"))
        .args(args)
        .env_remove("MARS_DIR")
        .output()
        .expect("running marsadm")
}

fn stdout_ok(args: &[&str]) -> String {
    let o = marsadm(args);
    assert!(
        o.status.success(),
        "marsadm {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8")
}

const GROUPS: &[&str] = &[
    "cluster:",
    "resource:",
    "roles:",
    "replication control:",
    "queries:",
    "maintenance:",
];

/// The commands of `marsadm help`, by group (from the listing's indentation).
fn listing() -> Vec<(String, String)> {
    let text = stdout_ok(&["help"]);
    let mut group = String::new();
    let mut out = Vec::new();
    for line in text.lines().skip_while(|l| !l.starts_with("Commands")) {
        if line.starts_with("Options:") {
            break;
        }
        if let Some(g) = line.strip_prefix("  ").filter(|g| !g.starts_with(' ')) {
            group = g.to_string();
        } else if let Some(c) = line.strip_prefix("    ") {
            let name = c.split_whitespace().next().expect("a command name");
            out.push((group.clone(), name.to_string()));
        }
    }
    out
}

#[test]
fn every_command_is_grouped_and_has_a_full_manual_page() {
    let cmds = listing();
    assert!(cmds.len() >= 35, "too few commands listed: {cmds:?}");
    for g in GROUPS {
        assert!(
            cmds.iter().any(|(group, _)| group == g),
            "group {g} is empty or missing: {cmds:?}"
        );
    }
    let sections = [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "PRECONDITIONS AND REFUSALS",
        "UPSTREAM",
        "EXAMPLES",
        "EXIT CODES",
    ];
    for (group, name) in &cmds {
        assert!(
            GROUPS.contains(&group.as_str()),
            "{name} is in no group ({group}): add it to mars_cli::manual::GROUPS"
        );
        let page = stdout_ok(&["help", name]);
        for s in sections {
            assert!(
                page.lines().any(|l| l == s),
                "the manual page of {name} has no {s} section: give it long_about and after_long_help from mars_cli::manual\n{page}"
            );
        }
        assert!(
            page.contains(&format!("marsadm {name} - ")),
            "NAME of {name}"
        );
        let desc = section(&page, "DESCRIPTION");
        assert!(
            desc.len() >= 80,
            "{name}: the description is too short: {desc:?}"
        );
        assert!(
            section(&page, "EXAMPLES").contains(&format!("marsadm {name}")),
            "{name}: no example uses it"
        );
        for arg in section(&page, "Arguments:")
            .lines()
            .filter(|l| l.trim().starts_with('<'))
        {
            let after = page.split(arg).nth(1).unwrap_or_default();
            let help = after.lines().nth(1).unwrap_or_default().trim();
            assert!(!help.is_empty(), "{name}: argument {arg} is undocumented");
        }
        assert_eq!(
            stdout_ok(&[name, "--help"]),
            page,
            "{name} --help differs from help {name}"
        );
    }
}

/// The lines after `heading` up to the next line that starts in column 0.
fn section(page: &str, heading: &str) -> String {
    page.lines()
        .skip_while(|l| *l != heading)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn help_for_an_unknown_command_is_a_usage_error() {
    let o = marsadm(&["help", "no-such-command"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("marsadm help"), "{err}");
}
