//! Wire formats: bytes ⇄ types. No sockets, no clocks; every decoder returns a typed error for
//! malformed input and is exercised by property tests and the fuzz targets in `fuzz/`.
pub mod dhcp;
pub mod syslog;
pub mod tftp;
