//! # The strategy: what one node must do for one resource
//!
//! [`derive`] is a pure function of a [`Snapshot`] (what the replicated metadata says about the
//! resource, typed) and the node's [`Facts`] (what runs locally and how far it got). It returns
//! the [`Action`]s that move the node towards what the metadata asks for; the daemon executes
//! them (building and tearing down brick graphs, writing links) and derives again on every
//! change or tick. Nothing here does IO, so every rule is a golden test (`testdata/*.txt`,
//! run by `tests/golden.rs`).
//!
//! The rules follow upstream MARS (`../shared/research/strategy.md` §3):
//! - **Primary.** The designated primary (`primary` = me) starts its logger and NBD export
//!   only after the previous primary gave up (`actual-<old>/is-primary` = 0) and every log it
//!   wrote is fetched and replayed here (planned handover: nothing is lost). On its own crash
//!   restart it starts at once: the logger replays its own log before it serves.
//!   A primary that is no longer designated keeps serving while NBD clients are connected
//!   (`RemainsPrimary`) and stops once the last one left.
//! - **Full sync.** A member whose `syncstatus-<me>` is below `size` copies the primary's
//!   device (fast: checksums first), from its persisted restart point; replay waits for it.
//!   `syncpos-<me>` is set from the primary's replay link [`SYNCPOS_SETTLE_NS`] after the copy
//!   ended; the replica is consistent once replay has passed it.
//! - **Fetch.** The first log at or after my replay position that is not complete here is
//!   fetched from its creator (or the primary), from the local size.
//! - **Replay** runs up to what fetch verified. At the end of a log, my version link is
//!   computed over my own history and must equal the creator's before replay switches to the
//!   next log (the version chain check).
//! - **Links.** The primary publishes `log-<seq>-<me>` for each log it starts, `version-...`
//!   for each log it finished, and its position in `replay-<me>`; every node publishes its
//!   LEDs in `actual-<me>/`.
//! - **Split brain** ([`split_brain`]): two logs of one sequence number from different
//!   creators, or version links of one log that differ. No secondary fetches or replays past
//!   the fork; `invalidate` on the losers resolves it.
//! - **Forced failover**: a designated primary marked `forced-primary` starts without waiting
//!   for the old primary or its logs (the unfetched tail is lost, the history forks).

mod action;
mod derive;
mod facts;
mod migrate;
mod snapshot;
mod split;
mod state;

pub use action::Action;
pub use derive::{derive, STARTUP_GRACE_NS, SYNCPOS_SETTLE_NS};
pub use facts::{Facts, FetchFact, LocalLog, PrimaryFact, Running, SyncFact};
pub use migrate::{migrate_step, MigrateStep, Migration};
pub use snapshot::{Member, Snapshot};
pub use split::{is_loser, split_brain, SplitBrain};
pub use state::{replica_state, ReplicaState};
