//! The manual pages of `marsadm`: one [`Page`] per command, referenced from the command's
//! clap definition (`long_about`, `after_long_help` in `bin/marsadm.rs`), so that one table
//! drives the parser, `marsadm COMMAND --help` and `marsadm help COMMAND`. [`decorate`] gives
//! every page the same layout (NAME, SYNOPSIS, DESCRIPTION, options, the sections of
//! [`Page::more`]) and the top level the command list grouped by [`GROUPS`].

// One constant per command, named after it: the command's own doc is its page.
#[allow(missing_docs)]
mod cluster;
#[allow(missing_docs)]
mod queries;
#[allow(missing_docs)]
mod replication;
#[allow(missing_docs)]
mod resource;

pub use cluster::*;
pub use queries::*;
pub use replication::*;
pub use resource::*;

use clap::Command;

/// A command's manual beyond its one-line summary (the doc comment of its clap variant).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// DESCRIPTION: what the command does, and how.
    pub about: &'static str,
    /// The sections after the options: preconditions and refusals, the upstream
    /// equivalent, examples, exit codes.
    pub more: &'static str,
}

/// A [`Page`] from its sections (literals: the page is built at compile time).
macro_rules! page {
    (about: $about:expr, refuses: $refuses:expr, upstream: $up:expr,
     examples: $ex:expr $(,)?) => {
        page!(about: $about, refuses: $refuses, upstream: $up, examples: $ex,
              exit: "    0 done; 1 refused or failed (the message says why and which command fixes it);\n    2 usage error.")
    };
    (about: $about:expr, refuses: $refuses:expr, upstream: $up:expr,
     examples: $ex:expr, exit: $exit:expr $(,)?) => {
        $crate::manual::Page {
            about: $about,
            more: concat!(
                "PRECONDITIONS AND REFUSALS\n", $refuses,
                "\n\nUPSTREAM\n", $up,
                "\n\nEXAMPLES\n", $ex,
                "\n\nEXIT CODES\n", $exit
            ),
        }
    };
}
pub(crate) use page;

/// The command groups of `marsadm help`, in order.
pub const GROUPS: &[(&str, &[&str])] = &[
    (
        "cluster",
        &[
            "create-cluster",
            "join-cluster",
            "leave-cluster",
            "merge-cluster",
            "wait-cluster",
        ],
    ),
    (
        "resource",
        &[
            "create-resource",
            "join-resource",
            "leave-resource",
            "delete-resource",
            "migrate-resource",
            "resize",
        ],
    ),
    ("roles", &["primary", "secondary"]),
    (
        "replication control",
        &[
            "up",
            "down",
            "attach",
            "detach",
            "pause-sync",
            "resume-sync",
            "pause-fetch",
            "resume-fetch",
            "pause-replay",
            "resume-replay",
            "invalidate",
            "verify",
            "scrub",
        ],
    ),
    (
        "queries",
        &[
            "view",
            "events",
            "view-diskstate",
            "view-replstate",
            "view-flags",
            "view-role",
            "view-primarynode",
            "view-is-split-brain",
            "wait-resource",
            "get-link",
            "lowlevel-ls",
        ],
    ),
    (
        "maintenance",
        &["log-rotate", "log-delete", "cron", "set-link", "help"],
    ),
];

/// The layout of every command's page. `{before-help}` is NAME (set by [`decorate`]).
const PAGE_TEMPLATE: &str =
    "{before-help}SYNOPSIS\n    {usage}\n\nDESCRIPTION\n{about-with-newline}\n{all-args}{after-help}";

/// What the arguments that recur across commands are (a command's own doc wins).
const ARG_HELP: &[(&str, &str)] = &[
    ("res", "The resource's name"),
    ("dev", "The data device on this node: a block device or a file (made first, e.g. `truncate -s 10G FILE`)"),
    ("peer", "A member's marsd --listen address, HOST:PORT (e.g. 10.0.0.1:7777)"),
    ("size", "Bytes, or a number with K, M, G or T (powers of 1024)"),
    ("cond", "The state to wait for"),
    ("key", "A metadata key, e.g. resource-r0/primary (`lowlevel-ls` lists them)"),
    ("value", "The value to write"),
    ("prefix", "Only keys starting with this (e.g. resource-r0/); default: all"),
    ("command", "A command's name"),
];

/// Give every subcommand the manual layout, and the top level the grouped command list.
pub fn decorate(cmd: Command) -> Command {
    let list = grouped_list(&cmd);
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    let mut cmd = cmd.help_template(format!(
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{list}\nOptions:\n{{options}}{{after-help}}"
    ));
    for name in names {
        cmd = cmd.mut_subcommand(&name, |mut s| {
            let about = s.get_about().map(|a| a.to_string()).unwrap_or_default();
            let undocumented: Vec<String> = s
                .get_arguments()
                .filter(|a| a.get_help().is_none())
                .map(|a| a.get_id().to_string())
                .collect();
            for id in undocumented {
                if let Some((_, h)) = ARG_HELP.iter().find(|(a, _)| *a == id) {
                    s = s.mut_arg(id, |a| a.help(*h));
                }
            }
            s.before_long_help(format!("NAME\n    marsadm {name} - {about}"))
                .help_template(PAGE_TEMPLATE)
        });
    }
    cmd.build();
    cmd
}

/// `marsadm help`: the commands by group, each with its one-line summary. A command in no
/// group is listed under "other" (and fails the manual test).
pub fn grouped_list(cmd: &Command) -> String {
    let about = |name: &str| {
        cmd.find_subcommand(name)
            .and_then(|s| s.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    let mut out = String::from("Commands (`marsadm help COMMAND` shows a command's manual):\n");
    let mut listed = Vec::new();
    for (group, names) in GROUPS {
        out.push_str(&format!("\n  {group}:\n"));
        for n in names.iter().filter(|n| cmd.find_subcommand(n).is_some()) {
            out.push_str(&format!("    {n:<21} {}\n", about(n)));
            listed.push(*n);
        }
    }
    let other: Vec<&str> = cmd
        .get_subcommands()
        .map(|s| s.get_name())
        .filter(|n| !listed.contains(n))
        .collect();
    if !other.is_empty() {
        out.push_str("\n  other:\n");
        for n in other {
            out.push_str(&format!("    {n:<21} {}\n", about(n)));
        }
    }
    out
}
