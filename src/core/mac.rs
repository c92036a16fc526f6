//! The hardware address type shared by inventory, leases and events (defined with the wire
//! formats, in `proto`).
pub use crate::proto::mac::*;
