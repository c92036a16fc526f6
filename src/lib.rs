//! pxelator — a network-boot appliance: DHCP/PXE, TFTP and HTTP answered from an
//! inventory of plain files.
//!
//! # Layout
//! - [`auth`]      — users (Argon2id passwords, API tokens) in `state_dir/users.toml` (0600),
//!   browser sessions, the login rate limit; who may do what is [`core::access`].
//! - [`clock`]     — the wall clock (`unix_now`, RFC 3339 text): read here only, passed to decisions.
//! - [`fsutil`]    — atomic file writes (temp file, fsync, rename), private (0600) ones.
//! - [`tomlfile`]  — the one TOML loader: every file's parse errors read `path:line: message`.
//! - [`config`]    — TOML config → validated [`config::Config`]; `check-config` runs the same code.
//! - [`proto`]     — bytes ⇄ types for DHCP, TFTP and syslog, and `Mac`: the `pxelator-proto`
//!   crate (crates/proto), which depends on nothing of pxelator; no I/O, fuzzable.
//! - [`core`]      — pure decisions: DHCP decide, leases, boot files and scripts, DNS answers and
//!   command names, monitor states, capture filters, access rules per route, which
//!   auto-registered machines to reclaim, the [`core::event::Event`] enum.
//! - [`inventory`] — conf-repo files → [`inventory::Inventory`] with `path:line` problems; registration
//!   writes; [`inventory::edit`] turns `host add|edit|rm` into checked file changes.
//! - [`confrepo`]  — the conf repo as git (gix): commits with real authors, log/diff/cat/revert by
//!   revision or date, snapshots of HEAD for the daemon.
//! - [`services`]  — socket tasks (dhcp, tftp, http, the /files zero-copy path, dns, the ping
//!   monitor, /metrics): receive, decode, decide, send, emit events.
//! - [`events`]    — the event bus: protocol tasks publish without ever waiting; the logger subscribes.
//! - [`audit`]     — the audit store: bus → writer (spool when the store is away) → SQLite or
//!   MongoDB behind one trait; Mongo-style queries; CouchDB import, JSONL/BSON export.
//! - [`deadline`]  — a child process killed (by PID) when its time is up: ssh, alert commands.
//! - [`ssh`]       — the one ssh runner (pinned host keys, `--`, deadlines, errors naming what ran).
//! - [`remote`]    — `pxelator run` and recipes ([`core::recipe`]) on many hosts at once over the
//!   ssh runner with multiplexed connections; `recipes.toml` checks; recipes captured from history.
//! - [`backup`]    — host-file pulls over ssh into `hosts/<host>/` (one commit per host per run),
//!   restore from any revision or date; `backup.toml` in the conf repo says what and when.
//! - [`power`]     — power on/off/reset/status: Intel AMT (WS-Management, digest auth) where a
//!   machine has it, else Wake-on-LAN and an ssh command; power.toml schedules ([`power::schedule`]).
//! - [`image`]     — live images: ISO 9660 reader, `image import|list|rm` into versioned,
//!   checksummed directories under the boot directory.
//! - [`capture`]   — `pxelator capture` / `POST /api/capture`: one interface's frames of a machine
//!   ([`core::capture`] decides) into a bounded pcap.
//! - [`commands`]  — the `host` and `history` operations the CLI and the web UI share, with typed
//!   results (inventory edit → commit; log/diff/cat/revert).
//! - [`nextboot`]  — one-time boot overrides ("next boot: local disk / netboot"), machine state in
//!   `state_dir/next-boot.json`, used up when the boot script is served.
//! - [`overlay`]   — what a host changed in its overlayfs upper directory against its base
//!   (whiteouts and opaque directories read as overlayfs does).
//! - [`base`]      — bases for writable network roots: `overlay/<name>.toml` → mmdebstrap → immutable
//!   versions with manifests; `overlay promote` builds a new version from a host's changes.
//! - [`nfsroot`]   — hosts' network roots: overlay mounts, nfs-ganesha exports (decided by
//!   [`core::nfsroot`]), reset/rebase when a host boots, snapshots.
//! - [`pool`]      — the storage pool (Ceph): `pool init`, daemons kept running, members' join
//!   material, noout around scheduled power-offs, the grace, over the mgr's Dashboard API.
//! - [`restorevm`] — a new machine from a backup: a base plus a host's pulled files at a revision.
//! - [`setup`]     — the appliance's first setup: setup.toml → config, network file, conf repo,
//!   admin user, ssh key, boot loaders under one root (the data partition).
//! - [`appliance`] — `pxelator appliance status|update|rollback|confirm`: the image's A/B system
//!   slots (GRUB's environment block, [`core::slots`] decides), the boot-time health check.
//! - [`web`]       — the web UI under `/ui/`: handlers gather typed data (inventory, last seen,
//!   audit, conf repo) and [`web::pages`] renders HTML (maud); edits are [`commands`] as the user.
//! - [`app`]       — supervision: sockets, reload on SIGHUP and file change, sd_notify, graceful SIGTERM.
pub mod app;
pub mod appliance;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod base;
pub mod capture;
pub mod clock;
pub mod commands;
pub mod config;
pub mod confrepo;
pub mod core;
pub mod deadline;
pub mod events;
pub mod fsutil;
pub mod image;
pub mod inventory;
pub mod nextboot;
pub mod nfsroot;
pub mod overlay;
pub mod pool;
pub mod power;
pub mod remote;
pub mod restorevm;
/// The wire formats, a crate of their own (`crates/proto`): nothing there can use the rest.
pub use pxelator_proto as proto;
pub mod services;
pub mod setup;
pub mod ssh;
pub mod tomlfile;
pub mod web;
