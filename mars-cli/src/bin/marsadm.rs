//! `marsadm`: the admin tool. It talks only to the local `marsd` (DIR/marsd.sock).
//! Exit codes: 0 done, 1 refused or failed (the message says why and what to do), 2 usage.

use anyhow::{bail, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use mars_cli::control::{call, Outcome, Request, Response};
use mars_cli::manual;
use mars_cli::view::{render, NodeStatus, ReplicaStatus};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Administer the local MARS node (via its marsd).
///
/// Exit codes: 0 done; 1 refused or failed (the message says what is wrong and which command
/// fixes it), or a wait timed out; 2 usage error.
#[derive(Parser, Debug)]
#[command(name = "marsadm", version, disable_help_subcommand = true)]
struct Args {
    /// The mars directory of the local marsd.
    #[arg(long, env = "MARS_DIR", default_value = "/var/lib/mars", global = true)]
    mars_dir: PathBuf,
    /// Print JSON instead of text: the daemon's response, then (commands that wait) the
    /// state reached; queries print their value or status as JSON (schema: FORMAT.md).
    #[arg(long, global = true)]
    json: bool,
    /// How long waiting commands wait (seconds; default 60); `events`: stop after this long
    /// (default: until interrupted).
    #[arg(long, global = true)]
    timeout: Option<f64>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start a new cluster with this node.
    #[command(long_about = manual::CREATE_CLUSTER.about, after_long_help = manual::CREATE_CLUSTER.more)]
    CreateCluster,
    /// Join the cluster of the node at HOST:PORT (same secret).
    #[command(long_about = manual::JOIN_CLUSTER.about, after_long_help = manual::JOIN_CLUSTER.more)]
    JoinCluster { peer: String },
    /// Leave the cluster (refused while this node holds resource data).
    #[command(long_about = manual::LEAVE_CLUSTER.about, after_long_help = manual::LEAVE_CLUSTER.more)]
    LeaveCluster,
    /// Merge this cluster with the cluster of the node at HOST:PORT (refused, with the list,
    /// when resource names collide).
    #[command(long_about = manual::MERGE_CLUSTER.about, after_long_help = manual::MERGE_CLUSTER.more)]
    MergeCluster { peer: String },
    /// Create resource RES on device DEV; this node becomes its primary.
    #[command(long_about = manual::CREATE_RESOURCE.about, after_long_help = manual::CREATE_RESOURCE.more)]
    CreateResource {
        res: String,
        dev: String,
        /// Size (bytes, or with K/M/G/T); default: the device's size.
        #[arg(long)]
        size: Option<String>,
    },
    /// Join resource RES with device DEV (full sync, then fetch + replay).
    #[command(long_about = manual::JOIN_RESOURCE.about, after_long_help = manual::JOIN_RESOURCE.more)]
    JoinResource { res: String, dev: String },
    /// Move a replica of RES to another node: join there, wait until UpToDate, hand over if
    /// the source is the primary (once its NBD clients left), then leave on the source.
    /// Interrupted, it goes on in the background; run it again to follow it.
    #[command(long_about = manual::MIGRATE_RESOURCE.about, after_long_help = manual::MIGRATE_RESOURCE.more)]
    MigrateResource {
        res: String,
        /// The node that gets the replica.
        #[arg(long)]
        to: String,
        /// The node that gives it up (default: the primary).
        #[arg(long)]
        from: Option<String>,
        /// The device on the target (default: a sparse file in its mars directory).
        #[arg(long)]
        dev: Option<String>,
    },
    /// Leave resource RES (after `down`); the device keeps its data, unreplicated.
    #[command(long_about = manual::LEAVE_RESOURCE.about, after_long_help = manual::LEAVE_RESOURCE.more)]
    LeaveResource {
        res: String,
        /// Only say what would happen.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete resource RES (after every other member left).
    #[command(long_about = manual::DELETE_RESOURCE.about, after_long_help = manual::DELETE_RESOURCE.more)]
    DeleteResource {
        res: String,
        /// Only say what would happen.
        #[arg(long)]
        dry_run: bool,
    },
    /// Discard this replica's data and history and full-sync it from the primary (resolves
    /// a split brain on the losing side, or an emergency-mode hole).
    #[command(long_about = manual::INVALIDATE.about, after_long_help = manual::INVALIDATE.more)]
    Invalidate {
        res: String,
        /// Only say what would be discarded, and how much.
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-read the local data device of RES and compare every 4 KiB block with its stored
    /// checksum: reports the damaged blocks (exit code 1 if any were found and not repaired)
    /// and checksum-file errors. Throttled; an interrupted scrub continues where it stopped.
    /// The result is recorded for `view` ("last scrub: 3 h ago, 0 differences").
    #[command(long_about = manual::VERIFY.about, after_long_help = manual::VERIFY.more)]
    /// Compare the checksums of every secondary of RES with the primary's, online: each
    /// secondary at its replay position, blocks written since left out. Reports the differing
    /// ranges (exit code 1 if any were found and not repaired).
    Verify {
        res: String,
        /// Re-sync a secondary that differs from the primary (fast full sync).
        #[arg(long)]
        repair: bool,
        /// Compare at most this many data bytes per second (K/M/G suffixes; 0: unlimited).
        #[arg(long, default_value = "10G")]
        rate: String,
    },
    #[command(long_about = manual::SCRUB.about, after_long_help = manual::SCRUB.more)]
    Scrub {
        res: String,
        /// Repair: re-sync damaged blocks from the primary (on a secondary), rebuild damaged
        /// checksum-file pages from the data (never the data from checksums).
        #[arg(long)]
        repair: bool,
        /// Read at most this many bytes per second (K/M/G suffixes; 0: unlimited).
        #[arg(long, default_value = "200M")]
        rate: String,
        /// Start from the beginning instead of an interrupted scrub's restart point.
        #[arg(long)]
        restart: bool,
    },
    /// Attach the local disk of RES.
    #[command(long_about = manual::ATTACH.about, after_long_help = manual::ATTACH.more)]
    Attach { res: String },
    /// Detach the local disk of RES.
    #[command(long_about = manual::DETACH.about, after_long_help = manual::DETACH.more)]
    Detach { res: String },
    /// Attach, fetch, sync and replay RES.
    #[command(long_about = manual::UP.about, after_long_help = manual::UP.more)]
    Up { res: String },
    /// Stop everything of RES here and wait until it is detached.
    #[command(long_about = manual::DOWN.about, after_long_help = manual::DOWN.more)]
    Down { res: String },
    /// Make this node the primary of RES (planned handover: waits, loses nothing).
    #[command(long_about = manual::PRIMARY.about, after_long_help = manual::PRIMARY.more)]
    Primary {
        res: String,
        /// Forced failover: only after `pause-fetch`, while the old primary is unreachable;
        /// its unfetched tail is lost and the history forks (split brain).
        #[arg(long)]
        force: bool,
        /// Only say what would happen (and what would be lost).
        #[arg(long)]
        dry_run: bool,
    },
    /// Give up the primary role of RES.
    #[command(long_about = manual::SECONDARY.about, after_long_help = manual::SECONDARY.more)]
    Secondary { res: String },
    /// Pause the full sync of RES.
    #[command(long_about = manual::PAUSE_SYNC.about, after_long_help = manual::PAUSE_SYNC.more)]
    PauseSync { res: String },
    /// Resume the full sync of RES.
    #[command(long_about = manual::RESUME_SYNC.about, after_long_help = manual::RESUME_SYNC.more)]
    ResumeSync { res: String },
    /// Pause fetching logs of RES.
    #[command(long_about = manual::PAUSE_FETCH.about, after_long_help = manual::PAUSE_FETCH.more)]
    PauseFetch { res: String },
    /// Resume fetching logs of RES.
    #[command(long_about = manual::RESUME_FETCH.about, after_long_help = manual::RESUME_FETCH.more)]
    ResumeFetch { res: String },
    /// Pause replaying logs of RES.
    #[command(long_about = manual::PAUSE_REPLAY.about, after_long_help = manual::PAUSE_REPLAY.more)]
    PauseReplay { res: String },
    /// Resume replaying logs of RES.
    #[command(long_about = manual::RESUME_REPLAY.about, after_long_help = manual::RESUME_REPLAY.more)]
    ResumeReplay { res: String },
    /// Grow RES online (on its primary) to SIZE (bytes or K/M/G/T; default: the smallest
    /// member device). The secondaries sync the new tail.
    #[command(long_about = manual::RESIZE.about, after_long_help = manual::RESIZE.more)]
    Resize { res: String, size: Option<String> },
    /// Start a new log file of RES (on its primary).
    #[command(long_about = manual::LOG_ROTATE.about, after_long_help = manual::LOG_ROTATE.more)]
    LogRotate { res: String },
    /// Delete the logs of RES that no member needs any more.
    #[command(long_about = manual::LOG_DELETE.about, after_long_help = manual::LOG_DELETE.more)]
    LogDelete { res: String },
    /// log-rotate and log-delete for every resource here.
    #[command(long_about = manual::CRON.about, after_long_help = manual::CRON.more)]
    Cron,
    /// Wait until every node of the cluster is connected.
    #[command(long_about = manual::WAIT_CLUSTER.about, after_long_help = manual::WAIT_CLUSTER.more)]
    WaitCluster,
    /// Wait until RES reaches a state here.
    #[command(long_about = manual::WAIT_RESOURCE.about, after_long_help = manual::WAIT_RESOURCE.more)]
    WaitResource {
        res: String,
        #[arg(value_parser = ["is-primary", "is-secondary", "is-uptodate"])]
        cond: String,
    },
    /// Show the state of a resource: every replica with upstream's line, progress (bar,
    /// rate, ETA, lag) and messages. RES `all`: every resource of the cluster; no RES: the
    /// resources with a replica here.
    #[command(long_about = manual::VIEW.about, after_long_help = manual::VIEW.more)]
    View { res: Option<String> },
    /// Stream state changes (roles, disk and replication states, primary, split brain,
    /// emergency, peer connections, sync milestones, messages) as they happen, one line
    /// each, starting with the current state (type `exists`). Until interrupted, `--count`
    /// events or `--timeout`.
    #[command(long_about = manual::EVENTS.about, after_long_help = manual::EVENTS.more)]
    Events {
        /// Only this resource (default: every resource here).
        res: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Show the disk state of RES here.
    #[command(long_about = manual::VIEW_DISKSTATE.about, after_long_help = manual::VIEW_DISKSTATE.more)]
    ViewDiskstate { res: String },
    /// Show the replication state of RES here.
    #[command(long_about = manual::VIEW_REPLSTATE.about, after_long_help = manual::VIEW_REPLSTATE.more)]
    ViewReplstate { res: String },
    /// Show the flags of RES here.
    #[command(long_about = manual::VIEW_FLAGS.about, after_long_help = manual::VIEW_FLAGS.more)]
    ViewFlags { res: String },
    /// Show the role of RES here.
    #[command(long_about = manual::VIEW_ROLE.about, after_long_help = manual::VIEW_ROLE.more)]
    ViewRole { res: String },
    /// Show the designated primary of RES.
    #[command(long_about = manual::VIEW_PRIMARYNODE.about, after_long_help = manual::VIEW_PRIMARYNODE.more)]
    ViewPrimarynode { res: String },
    /// Print 1 if the history of RES forks (split brain), else 0; the fork on stderr.
    #[command(long_about = manual::VIEW_IS_SPLIT_BRAIN.about, after_long_help = manual::VIEW_IS_SPLIT_BRAIN.more)]
    ViewIsSplitBrain { res: String },
    /// Print a metadata key's value.
    #[command(long_about = manual::GET_LINK.about, after_long_help = manual::GET_LINK.more)]
    GetLink { key: String },
    /// Write a metadata key (expert use).
    #[command(long_about = manual::SET_LINK.about, after_long_help = manual::SET_LINK.more)]
    SetLink { key: String, value: String },
    /// List metadata keys under a prefix.
    #[command(long_about = manual::LOWLEVEL_LS.about, after_long_help = manual::LOWLEVEL_LS.more)]
    LowlevelLs { prefix: Option<String> },
    /// Show the commands by group, or the manual page of COMMAND.
    #[command(long_about = manual::HELP.about, after_long_help = manual::HELP.more)]
    Help { command: Option<String> },
}

fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        Some('T' | 't') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("{s}: expected bytes or a number with K, M, G or T"))?;
    n.checked_mul(mult)
        .ok_or_else(|| anyhow::anyhow!("{s} is too large"))
}

struct Adm {
    sock: PathBuf,
    json: bool,
    timeout: Duration,
}

impl Adm {
    fn call(&self, r: Request) -> Result<Response> {
        call(&self.sock, r)
    }

    /// Send a command and print its answer; refused or failed → error (exit 1).
    fn run(&self, r: Request) -> Result<Response> {
        let resp = self.call(r)?;
        if self.json {
            println!("{}", serde_json::to_string(&resp)?);
        } else if !resp.message.is_empty() && resp.status == Outcome::Ok {
            println!("{}", resp.message);
        }
        match resp.status {
            Outcome::Ok => Ok(resp),
            _ => bail!("{}", resp.message),
        }
    }

    fn status(&self, res: Option<&str>) -> Result<NodeStatus> {
        let resp = self.call(Request::Status {
            res: res.map(str::to_string),
        })?;
        if resp.status != Outcome::Ok {
            bail!("{}", resp.message);
        }
        Ok(serde_json::from_value(resp.data)?)
    }

    fn mine(&self, res: &str) -> Result<(NodeStatus, Option<ReplicaStatus>)> {
        let s = self.status(Some(res))?;
        let Some(r) = s.resources.iter().find(|r| r.name == res) else {
            bail!("no resource {res} in this cluster (`marsadm view` lists them)");
        };
        let m = r.replicas.iter().find(|m| m.host == s.node).cloned();
        Ok((s, m))
    }

    /// Poll until `done` says yes; print `progress` lines when they change.
    fn wait(&self, what: &str, mut done: impl FnMut(&Adm) -> Result<(bool, String)>) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        let mut last = String::new();
        loop {
            let (ok, progress) = done(self)?;
            if ok {
                return Ok(());
            }
            if progress != last && !self.json {
                eprintln!("  {progress}");
                last = progress.clone();
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {:?} waiting for {what}; last state: {last}",
                    self.timeout
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn switch(&self, res: &str, switch: &str, on: bool) -> Result<()> {
        self.run(Request::Switch {
            res: res.into(),
            switch: switch.into(),
            on,
        })
        .map(drop)
    }

    fn field(&self, res: &str, f: impl Fn(&ReplicaStatus) -> String) -> Result<()> {
        let (_, m) = self.mine(res)?;
        let v = m.as_ref().map_or_else(|| "NotJoined".to_string(), f);
        self.print_value(&v);
        Ok(())
    }

    /// The end of a command that waited: `text` for people; with --json one more line
    /// `{"done":text,"state":...}` (the state reached).
    fn done<T: serde::Serialize>(&self, text: &str, state: T) -> Result<()> {
        if self.json {
            println!("{}", serde_json::json!({ "done": text, "state": state }));
        } else if !text.is_empty() {
            println!("{text}");
        }
        Ok(())
    }

    /// A single value: plain, or as a JSON string with --json.
    fn print_value(&self, v: &str) {
        if self.json {
            println!("{}", serde_json::json!(v));
        } else {
            println!("{v}");
        }
    }
}

/// `verify`: ask for it, wait for the primary's result for every consistent secondary,
/// print it.
fn verify(adm: &Adm, res: &str, repair: bool, rate: u64) -> Result<()> {
    let resp = adm.run(Request::Verify {
        res: res.into(),
        repair,
        rate,
    })?;
    let id = resp.data.get("id").and_then(|v| v.as_u64()).unwrap_or(0);
    let mut results = Vec::new();
    // The secondaries asked: the consistent ones when the verify started (a repair that
    // follows a result makes one inconsistent again: it stays asked).
    let mut expected: Option<Vec<String>> = None;
    adm.wait(&format!("the primary's verify of {res}"), |a| {
        let s = a.status(Some(res))?;
        let Some(r) = s.resources.iter().find(|r| r.name == res) else {
            bail!("resource {res} disappeared");
        };
        let primary = r.primary.clone().unwrap_or_default();
        let asked = expected.get_or_insert_with(|| {
            r.replicas
                .iter()
                .filter(|m| m.host != primary && m.consistent)
                .map(|m| m.host.clone())
                .collect()
        });
        results = r
            .replicas
            .iter()
            .filter(|m| asked.contains(&m.host))
            .filter_map(|m| Some((m.host.clone(), m.checksums.last_verify.clone()?)))
            .filter(|(_, v)| v.id == id)
            .collect();
        let waiting: Vec<String> = asked
            .iter()
            .filter(|h| !results.iter().any(|(x, _)| x == *h))
            .cloned()
            .collect();
        Ok((
            waiting.is_empty(),
            format!(
                "{primary} compares its checksums with {}",
                waiting.join(", ")
            ),
        ))
    })?;
    let mut differing = 0;
    for (host, v) in &results {
        if adm.json {
            println!("{}", serde_json::json!({ "host": host, "verify": v }));
            continue;
        }
        let ranges: Vec<String> = v.ranges.iter().map(|(o, n)| format!("{o}+{n}")).collect();
        println!(
            "{res} {host}: {} differing block(s){}; {} compared, {} not judged (unknown, or written since)",
            v.differing,
            if ranges.is_empty() {
                String::new()
            } else {
                format!(" at bytes {}", ranges.join(", "))
            },
            v.compared,
            v.unjudged
        );
        if v.failed {
            bail!("{res}: the comparison with {host} failed: see the primary's marsd log");
        }
        differing += v.differing;
    }
    if differing > 0 && !repair {
        bail!("{res}: replicas differ: run `marsadm verify {res} --repair` to re-sync the differing secondaries from the primary");
    }
    if differing > 0 && !adm.json {
        println!("{res}: repair: the differing secondaries re-sync from the primary (`marsadm view {res}` shows it)");
    }
    Ok(())
}

/// `scrub`: start it, follow its progress, print what it found.
fn scrub(adm: &Adm, res: &str, repair: bool, rate: u64, restart: bool) -> Result<()> {
    let started = Instant::now();
    adm.run(Request::Scrub {
        res: res.into(),
        repair,
        rate,
        restart,
    })?;
    let mut view = None;
    adm.wait(
        &format!(
            "the scrub of {res} (it goes on in the background; `marsadm view {res}` shows it)"
        ),
        |a| {
            let (_, m) = a.mine(res)?;
            let Some(c) = m.map(|m| m.checksums) else {
                bail!("{res} is not attached here any more");
            };
            let fresh = c
                .last_scrub
                .as_ref()
                .is_some_and(|r| r.ago_secs <= started.elapsed().as_secs() + 1);
            let progress = match c.scrubbing {
                Some((pos, size, rate)) => format!(
                    "scrubbing: {}% ({pos} of {size} bytes) {} MiB/s",
                    (pos * 100).checked_div(size).unwrap_or(100),
                    rate >> 20
                ),
                None => "starting".into(),
            };
            let done = c.scrubbing.is_none() && fresh;
            view = Some(c);
            Ok((done, progress))
        },
    )?;
    let c = view.unwrap_or_default();
    if adm.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    }
    let r = c.last_scrub.clone().unwrap_or_default();
    let shown: Vec<String> = c
        .damaged_blocks
        .iter()
        .take(20)
        .map(|b| format!("{}", b * 4096))
        .collect();
    if !adm.json {
        println!(
            "{res}: scrubbed {} bytes: {} damaged block(s){}, {} checksum-file error(s)",
            r.bytes,
            r.damaged,
            if shown.is_empty() {
                String::new()
            } else {
                format!(" at byte offsets {}", shown.join(", "))
            },
            r.checksum_file_errors
        );
    }
    if r.damaged > 0 && !repair {
        bail!("{res}: damaged data found: run `marsadm scrub {res} --repair` to re-sync those blocks from the primary");
    }
    if r.damaged > 0 && !adm.json {
        println!("{res}: repair: the damaged blocks are re-synced from the primary (`marsadm view {res}` shows the sync)");
    }
    Ok(())
}

fn describe(m: &Option<ReplicaStatus>) -> String {
    match m {
        None => "not a member".into(),
        Some(m) => format!(
            "{} {} {} {}{}",
            m.disk,
            m.repl,
            m.flags,
            m.role,
            m.msg.as_ref().map(|x| format!(": {x}")).unwrap_or_default()
        ),
    }
}

/// The parser, with the manual layout (`mars_cli::manual::decorate`).
fn command() -> clap::Command {
    manual::decorate(Args::command())
}

fn main() {
    let a = Args::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit());
    if let Cmd::Help { command: c } = &a.cmd {
        help(c.as_deref());
    }
    let adm = Adm {
        sock: Path::new(&a.mars_dir).join("marsd.sock"),
        json: a.json,
        timeout: Duration::from_secs_f64(a.timeout.unwrap_or(60.0).max(0.0)),
    };
    if let Cmd::Events { res, count } = a.cmd {
        let limit = a.timeout.map(|t| Duration::from_secs_f64(t.max(0.0)));
        if let Err(e) = events(&adm, res, count, limit) {
            eprintln!("marsadm: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = run(&adm, a.cmd) {
        eprintln!("marsadm: {e:#}");
        std::process::exit(1);
    }
}

/// `events`: print the daemon's event lines until `count` events, `limit` elapsed, or the
/// daemon ends the stream.
fn events(
    adm: &Adm,
    res: Option<String>,
    count: Option<u64>,
    limit: Option<Duration>,
) -> Result<()> {
    use mars_cli::events::{text, Event, EventType};
    let deadline = limit.map(|l| Instant::now() + l);
    let mut stream = mars_cli::control::EventStream::open(&adm.sock, res)?;
    let mut seen = 0;
    while count.is_none_or(|c| seen < c) {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            break;
        }
        let Some(e): Option<Event> = stream.next(left)? else {
            break;
        };
        if adm.json {
            println!("{}", serde_json::to_string(&e)?);
        } else {
            println!("{}", text(&e));
        }
        seen += 1;
        if e.kind == EventType::Dropped {
            bail!(
                "marsd ended the event stream: {}",
                e.new.unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// `marsadm help [COMMAND]`: exits 0, or 2 for an unknown command.
fn help(name: Option<&str>) -> ! {
    let mut cmd = command();
    match name {
        None => {
            let _ = cmd.print_long_help();
        }
        Some(n) => match cmd.find_subcommand_mut(n) {
            Some(sub) => {
                let _ = sub.print_long_help();
            }
            None => {
                eprintln!("marsadm: no command {n:?}; `marsadm help` lists the commands");
                std::process::exit(2);
            }
        },
    }
    std::process::exit(0)
}

fn run(adm: &Adm, cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Help { .. } => unreachable!("handled in main"),
        Cmd::CreateCluster => adm.run(Request::CreateCluster).map(drop),
        Cmd::JoinCluster { peer } => {
            adm.run(Request::JoinCluster { peer })?;
            adm.wait("the cluster to welcome this node", |a| {
                let s = a.status(None)?;
                Ok((
                    s.cluster.is_some(),
                    "waiting for the cluster's answer".into(),
                ))
            })?;
            adm.done("joined", adm.status(None)?.cluster)
        }
        Cmd::LeaveCluster => adm.run(Request::LeaveCluster).map(drop),
        Cmd::MergeCluster { peer } => {
            adm.run(Request::MergeCluster { peer })?;
            let mut outcome = String::new();
            adm.wait("the other cluster's answer", |a| {
                let s = a.status(None)?;
                outcome = s.merge.clone().unwrap_or_default();
                Ok((s.merge.is_some(), "waiting for the other cluster".into()))
            })?;
            if outcome.starts_with("refused") {
                bail!("merge-cluster {outcome}");
            }
            adm.done(&outcome, &outcome)
        }
        Cmd::CreateResource { res, dev, size } => {
            let size = size.as_deref().map(parse_size).transpose()?;
            adm.run(Request::CreateResource { res, dev, size })
                .map(drop)
        }
        Cmd::JoinResource { res, dev } => {
            adm.run(Request::JoinResource {
                res: res.clone(),
                dev,
            })?;
            adm.wait("the resource's metadata", |a| {
                let (_, m) = a.mine(&res)?;
                Ok((m.as_ref().is_some_and(|m| m.replay.is_some()), describe(&m)))
            })?;
            adm.done("", adm.mine(&res)?.1)
        }
        Cmd::MigrateResource { res, to, from, dev } => {
            adm.run(Request::MigrateResource {
                res: res.clone(),
                to: to.clone(),
                from,
                dev,
            })?;
            adm.wait(&format!("the migration of {res} (it goes on in the background; run the same command again to follow it)"), |a| {
                let s = a.status(Some(&res))?;
                let Some(r) = s.resources.iter().find(|r| r.name == res) else {
                    bail!("resource {res} disappeared");
                };
                if let Some(e) = &r.migration_error {
                    bail!("migration of {res} stopped: {e}");
                }
                let target = r.replicas.iter().find(|m| m.host == to);
                let progress = match target {
                    None => format!("{to}: joining"),
                    Some(m) if m.syncstatus < r.size => {
                        format!("{to}: full sync {}%", m.syncstatus * 100 / r.size.max(1))
                    }
                    Some(m) => format!("{to}: {} {} {}", m.disk, m.repl, m.role),
                };
                Ok((r.migration.is_none(), progress))
            })?;
            adm.done(&format!("{res}: migrated to {to}"), adm.mine(&res)?.0)
        }
        Cmd::LeaveResource { res, dry_run } => {
            adm.run(Request::LeaveResource { res, dry_run }).map(drop)
        }
        Cmd::DeleteResource { res, dry_run } => {
            adm.run(Request::DeleteResource { res, dry_run }).map(drop)
        }
        Cmd::Invalidate { res, dry_run } => {
            adm.run(Request::Invalidate {
                res: res.clone(),
                dry_run,
            })?;
            if dry_run {
                return Ok(());
            }
            adm.wait("the replica to be consistent again", |a| {
                let (_, m) = a.mine(&res)?;
                Ok((m.as_ref().is_some_and(|m| m.consistent), describe(&m)))
            })?;
            adm.done("", adm.mine(&res)?.1)
        }
        Cmd::Verify { res, repair, rate } => verify(adm, &res, repair, parse_size(&rate)?),
        Cmd::Scrub {
            res,
            repair,
            rate,
            restart,
        } => scrub(adm, &res, repair, parse_size(&rate)?, restart),
        Cmd::Attach { res } => adm.switch(&res, "attach", true),
        Cmd::Detach { res } => adm.switch(&res, "attach", false),
        Cmd::Up { res } => adm.switch(&res, "all", true),
        Cmd::Down { res } => {
            adm.switch(&res, "all", false)?;
            adm.wait("the resource to detach", |a| {
                let (_, m) = a.mine(&res)?;
                Ok((
                    m.as_ref().is_none_or(|m| m.disk == "Detached"),
                    describe(&m),
                ))
            })?;
            adm.done("", adm.mine(&res)?.1)
        }
        Cmd::Primary {
            res,
            force,
            dry_run,
        } => {
            adm.run(Request::Primary {
                res: res.clone(),
                force,
                dry_run,
            })?;
            if dry_run {
                return Ok(());
            }
            adm.wait("this node to become primary", |a| {
                let (_, m) = a.mine(&res)?;
                Ok((
                    m.as_ref().is_some_and(|m| m.role == "Primary"),
                    describe(&m),
                ))
            })?;
            adm.done(&format!("{res}: primary here"), adm.mine(&res)?.1)
        }
        Cmd::Secondary { res } => adm.run(Request::Secondary { res }).map(drop),
        Cmd::PauseSync { res } => adm.switch(&res, "sync", false),
        Cmd::ResumeSync { res } => adm.switch(&res, "sync", true),
        Cmd::PauseFetch { res } => adm.switch(&res, "connect", false),
        Cmd::ResumeFetch { res } => adm.switch(&res, "connect", true),
        Cmd::PauseReplay { res } => adm.switch(&res, "allow-replay", false),
        Cmd::ResumeReplay { res } => adm.switch(&res, "allow-replay", true),
        Cmd::Resize { res, size } => {
            let size = size.as_deref().map(parse_size).transpose()?;
            adm.run(Request::Resize { res, size }).map(drop)
        }
        Cmd::LogRotate { res } => adm.run(Request::LogRotate { res }).map(drop),
        Cmd::LogDelete { res } => adm.run(Request::LogDelete { res }).map(drop),
        Cmd::Cron => adm.run(Request::Cron).map(drop),
        Cmd::WaitCluster => adm
            .wait("every node of the cluster", |a| {
                let s = a.status(None)?;
                let down: Vec<String> = s
                    .peers
                    .iter()
                    .filter(|p| !p.connected)
                    .map(|p| p.name.clone())
                    .collect();
                Ok((
                    s.cluster.is_some() && down.is_empty(),
                    format!("not connected: {down:?}"),
                ))
            })
            .and_then(|()| adm.done("", adm.status(None)?.peers)),
        Cmd::WaitResource { res, cond } => adm
            .wait(&format!("{res} {cond}"), |a| {
                let (_, m) = a.mine(&res)?;
                let ok = m.as_ref().is_some_and(|m| match cond.as_str() {
                    "is-primary" => m.role == "Primary",
                    "is-secondary" => m.role == "Secondary",
                    _ => m.up_to_date,
                });
                Ok((ok, describe(&m)))
            })
            .and_then(|()| adm.done("", adm.mine(&res)?.1)),
        Cmd::Events { .. } => unreachable!("handled in main"),
        Cmd::View { res } => {
            let s = adm.status(res.as_deref())?;
            if let Some(r) = res.as_deref().filter(|r| *r != "all") {
                if s.resources.is_empty() {
                    bail!("no resource {r} in this cluster (`marsadm view all` lists them)");
                }
            }
            if adm.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", render(&s));
            }
            Ok(())
        }
        Cmd::ViewDiskstate { res } => adm.field(&res, |m| m.disk.clone()),
        Cmd::ViewReplstate { res } => adm.field(&res, |m| m.repl.clone()),
        Cmd::ViewFlags { res } => adm.field(&res, |m| m.flags.clone()),
        Cmd::ViewRole { res } => adm.field(&res, |m| m.role.clone()),
        Cmd::ViewPrimarynode { res } => {
            let s = adm.status(Some(&res))?;
            let p = s
                .resources
                .iter()
                .find(|r| r.name == res)
                .and_then(|r| r.primary.clone());
            adm.print_value(&p.unwrap_or_else(|| "(none)".into()));
            Ok(())
        }
        Cmd::ViewIsSplitBrain { res } => {
            let s = adm.status(Some(&res))?;
            let sb = s
                .resources
                .iter()
                .find(|r| r.name == res)
                .and_then(|r| r.split_brain.clone());
            if let Some(sb) = &sb {
                eprintln!("{sb}");
            }
            adm.print_value(if sb.is_some() { "1" } else { "0" });
            Ok(())
        }
        Cmd::GetLink { key } => {
            let r = adm.call(Request::GetLink { key })?;
            if r.status != Outcome::Ok {
                bail!("{}", r.message);
            }
            adm.print_value(&r.message);
            Ok(())
        }
        Cmd::SetLink { key, value } => adm.run(Request::SetLink { key, value }).map(drop),
        Cmd::LowlevelLs { prefix } => {
            let r = adm.call(Request::Ls {
                prefix: prefix.unwrap_or_default(),
            })?;
            if adm.json {
                println!("{}", r.data);
            } else if !r.message.is_empty() {
                println!("{}", r.message);
            }
            Ok(())
        }
    }
}
