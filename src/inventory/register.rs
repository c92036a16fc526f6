//! Zero-touch registration: an unknown MAC that received a pool address is written into the
//! inventory as `machines/<mac>.toml`, so it becomes an ordinary, hand-editable machine.
use crate::core::mac::Mac;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Default hostname for a registered machine: `host-` + the last three MAC bytes.
pub fn default_hostname(mac: &Mac) -> String {
    let b = mac.0;
    format!("host-{:02x}{:02x}{:02x}", b[3], b[4], b[5])
}

/// Writes `machines/<mac>.toml` atomically (`fsutil::write_new`). Never overwrites a file that
/// already exists: a hand-written file always wins.
pub fn write_machine(
    root: &Path,
    mac: &Mac,
    ip: Ipv4Addr,
    when: &str,
) -> std::io::Result<Option<PathBuf>> {
    let path = root.join("machines").join(format!("{}.toml", mac.dashed()));
    let text = format!(
        "# Registered automatically by pxelator when this MAC first asked for an address.\n\
         # Edit freely: set a profile, change the hostname or the address.\n\
         mac = \"{mac}\"\nip = \"{ip}\"\nhostname = \"{}\"\nregistered = \"{when}\"\n",
        default_hostname(mac)
    );
    // Mode 0644 before the umask, like every conf-repo file pxelator writes.
    Ok(crate::fsutil::write_new(&path, text.as_bytes(), 0o644)?.then_some(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn writes_a_file_the_loader_reads_back_and_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let mac: Mac = "52:54:00:aa:bb:cc".parse().unwrap();
        let ip = Ipv4Addr::new(10, 77, 1, 100);
        let p = write_machine(d.path(), &mac, ip, "2026-11-26T12:00:00Z")
            .unwrap()
            .unwrap();
        let (inv, problems) = super::super::load(d.path(), Ipv4Addr::new(10, 77, 1, 1), None);
        assert!(problems.is_empty(), "{problems:?}");
        let m = inv.by_mac(&mac).unwrap();
        assert_eq!(m.ip, Some(ip));
        assert_eq!(m.hostname.as_deref(), Some("host-aabbcc"));
        assert_eq!(m.source, p);
        assert!(
            write_machine(d.path(), &mac, Ipv4Addr::new(10, 77, 1, 101), "later")
                .unwrap()
                .is_none()
        );
        assert!(std::fs::read_to_string(&p).unwrap().contains("10.77.1.100"));
    }
}
