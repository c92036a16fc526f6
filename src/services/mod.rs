//! Socket tasks. Each receives bytes, decodes with `proto`, asks `core` for a decision, sends the
//! answer and emits events. They read the inventory through a `watch` channel, so a reload
//! swaps it atomically without interrupting anything in flight.
pub mod api_auth;
pub mod contain;
pub mod dhcp;
pub mod files;
pub mod flood;
pub mod http;
pub mod journal;
pub mod ra;
pub mod syslog;
pub mod tftp;

use crate::inventory::Inventory;
use tokio::sync::watch;

/// The current inventory, replaced wholesale on reload.
pub type InventoryRx = watch::Receiver<Inventory>;
