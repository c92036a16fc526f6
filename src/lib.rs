//! pxelator — a network-boot appliance: DHCP/PXE, TFTP and HTTP answered from an
//! inventory of plain files.
//!
//! # Layout
//! - [`config`]    — TOML config → validated [`config::Config`]; `check-config` runs the same code.
//! - [`proto`]     — bytes ⇄ types for DHCP and TFTP; no I/O, fuzzable.
//! - [`core`]      — pure decisions: DHCP decide, leases, boot files and scripts, the [`core::event::Event`] enum.
//! - [`inventory`] — conf-repo files → [`inventory::Inventory`] with `path:line` problems; registration writes.
//! - [`services`]  — socket tasks (dhcp, tftp, http): receive, decode, decide, send, emit events.
//! - [`events`]    — the event bus: protocol tasks publish without ever waiting; the logger subscribes.
//! - [`audit`]     — the audit store: bus → batched writer → embedded SQLite; Mongo-style queries.
//! - [`app`]       — supervision: sockets, reload on SIGHUP and file change, sd_notify, graceful SIGTERM.
pub mod app;
pub mod audit;
pub mod config;
pub mod core;
pub mod events;
pub mod inventory;
pub mod proto;
pub mod services;
