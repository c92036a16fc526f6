//! Pure decisions. Nothing here opens a socket, reads a file or the clock: requests, the
//! inventory, lease state and `now` are passed in; decisions (and the reasons for ignoring a
//! request) come out, ready to be sent and audited by `services`.
pub mod access;
pub mod boot;
pub mod capture;
pub mod dhcp;
pub mod dns;
pub mod event;
pub mod files;
pub mod graphs;
pub mod health;
pub mod leases;
pub mod mac;
pub mod monitor;
pub mod nfsroot;
pub mod pool;
pub mod recipe;
pub mod reclaim;
pub mod seen;
pub mod slots;
pub mod story;

/// Lowercase hex of bytes (digests, ids).
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
