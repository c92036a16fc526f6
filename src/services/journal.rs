//! The lease journal: one JSON line per durable [`LeaseChange`], appended *before* the reply
//! that depends on it is sent. A write() that returned survives `kill -9` (it is in the page
//! cache); `fdatasync` runs on a timer for power loss. On start the journal is replayed, then
//! compacted to the leases still valid.
use crate::core::leases::{LeaseChange, Leases};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Most "last seen" records one compaction keeps (the most recent): bounds the journal and
/// memory when many MACs pass through (spoofed ones included).
pub const MAX_SEEN: usize = 200_000;

pub struct Journal {
    path: PathBuf,
    file: File,
}

#[derive(Debug, thiserror::Error)]
#[error("lease journal {path}: {source} (check that state_dir exists and is writable)")]
pub struct JournalError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Replays journal lines into a [`Leases`]; returns it and how many lines were skipped as
/// unreadable (a torn last line after a crash, bytes that are not UTF-8 or not a record).
pub fn replay(mut input: impl BufRead) -> std::io::Result<(Leases, usize)> {
    let mut leases = Leases::default();
    let mut skipped = 0;
    let mut line = Vec::new();
    while input.read_until(b'\n', &mut line)? > 0 {
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if !text.is_empty() {
            match serde_json::from_slice::<LeaseChange>(text) {
                Ok(c) => leases.apply(&c),
                Err(_) => skipped += 1,
            }
        }
        line.clear();
    }
    Ok((leases, skipped))
}

impl Journal {
    /// Replays `dir/leases.jsonl` into a [`Leases`], rewrites it compacted, and opens it for
    /// appending. Unreadable lines (a torn last line after a crash) are skipped and counted.
    /// `keep_seen_secs`: how long compaction keeps a MAC's "last seen" after its lease is gone
    /// (the reclaim period; at most [`MAX_SEEN`] of them, the most recent).
    pub fn open(
        dir: &Path,
        now: u64,
        keep_seen_secs: u64,
    ) -> Result<(Journal, Leases, usize), JournalError> {
        let path = dir.join("leases.jsonl");
        let err = |source| JournalError {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let (leases, skipped) = match File::open(&path) {
            Ok(f) => replay(BufReader::new(f)).map_err(err)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Leases::default(), 0),
            Err(e) => return Err(err(e)),
        };
        // Compaction: the still-valid bound and declined leases, as the records that recreate
        // them, and when other MACs were last seen (within keep_seen_secs).
        let mut keep: Vec<LeaseChange> = leases
            .iter()
            .filter(|l| l.until > now)
            .filter_map(|l| l.as_change())
            .collect();
        let covered: std::collections::HashMap<_, _> = keep
            .iter()
            .filter_map(|c| match c {
                LeaseChange::Bind { mac, until, .. } => Some((*mac, *until)),
                _ => None,
            })
            .collect();
        let mut seen: Vec<(crate::core::mac::Mac, u64)> = leases
            .seen()
            .filter(|(_, t)| t.saturating_add(keep_seen_secs) > now)
            .filter(|(m, t)| covered.get(*m).is_none_or(|u| u < *t))
            .map(|(m, t)| (*m, *t))
            .collect();
        seen.sort_by_key(|(m, t)| (std::cmp::Reverse(*t), m.0));
        seen.truncate(MAX_SEEN);
        keep.extend(
            seen.into_iter()
                .map(|(mac, until)| LeaseChange::Seen { mac, until }),
        );
        let mut text = String::new();
        for c in &keep {
            text.push_str(&serde_json::to_string(c).expect("lease serialises"));
            text.push('\n');
        }
        crate::fsutil::write_private(&path, text.as_bytes()).map_err(err)?;
        let file = OpenOptions::new().append(true).open(&path).map_err(err)?;
        // Rebuild from exactly what was written so memory and disk agree.
        let mut compact = Leases::default();
        for c in &keep {
            compact.apply(c);
        }
        Ok((Journal { path, file }, compact, skipped))
    }

    /// Appends one change with a single write() call.
    pub fn append(&mut self, change: &LeaseChange) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(change).expect("lease change serialises");
        line.push(b'\n');
        self.file.write_all(&line).map_err(|source| JournalError {
            path: self.path.clone(),
            source,
        })
    }

    pub fn sync(&self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|source| JournalError {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::mac::Mac;
    use std::net::Ipv4Addr;

    /// Found while making the journal a fuzz target: a line that is not UTF-8 (a torn write)
    /// made `open` fail, so the daemon would not start; it is now one skipped line.
    #[test]
    fn regression_non_utf8_line_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("leases.jsonl"), b"{\"x\xff\n\n").unwrap();
        let (_, leases, skipped) = Journal::open(dir.path(), 0, 0).unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(leases.iter().count(), 0);
    }

    #[test]
    fn replay_keeps_bound_drops_expired_offers_and_torn_lines() {
        let d = tempfile::tempdir().unwrap();
        let (mut j, _, _) = Journal::open(d.path(), 100, 0).unwrap();
        let m = |n| Mac([2, 0, 0, 0, 0, n]);
        j.append(&LeaseChange::Bind {
            mac: m(1),
            ip: Ipv4Addr::new(10, 0, 0, 1),
            until: 1000,
        })
        .unwrap();
        j.append(&LeaseChange::Bind {
            mac: m(2),
            ip: Ipv4Addr::new(10, 0, 0, 2),
            until: 150,
        })
        .unwrap();
        j.append(&LeaseChange::Bind {
            mac: m(3),
            ip: Ipv4Addr::new(10, 0, 0, 3),
            until: 1000,
        })
        .unwrap();
        j.append(&LeaseChange::Release {
            mac: m(3),
            ip: Ipv4Addr::new(10, 0, 0, 3),
        })
        .unwrap();
        drop(j);
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.path().join("leases.jsonl"))
            .unwrap();
        f.write_all(b"{\"op\":\"bind\",\"mac\":\"02:00").unwrap();
        let (_, leases, skipped) = Journal::open(d.path(), 200, 0).unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(leases.len(), 1);
        assert_eq!(leases.by_mac(&m(1)).unwrap().ip, Ipv4Addr::new(10, 0, 0, 1));
        let text = std::fs::read_to_string(d.path().join("leases.jsonl")).unwrap();
        // m1's lease, and that m3 (released) was seen: no lease of its own.
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.lines().nth(1).unwrap().contains("\"op\":\"seen\""),
            "{text}"
        );
        assert!(leases.by_mac(&m(3)).is_none());
    }

    /// Reclaiming asks when a MAC was last seen; compaction used to forget a lease once it
    /// expired or was released, so a restart made a machine seen yesterday look unseen since
    /// its registration. Now "seen" records survive compaction for the reclaim period.
    #[test]
    fn compaction_keeps_when_macs_were_last_seen_for_the_period() {
        let d = tempfile::tempdir().unwrap();
        let m = |n| Mac([2, 0, 0, 0, 0, n]);
        let ip = |n| Ipv4Addr::new(10, 0, 0, n);
        let (mut j, _, _) = Journal::open(d.path(), 0, 0).unwrap();
        for (n, until) in [(1, 1000), (2, 5000), (3, 100)] {
            j.append(&LeaseChange::Bind {
                mac: m(n),
                ip: ip(n),
                until,
            })
            .unwrap();
        }
        j.append(&LeaseChange::Release {
            mac: m(1),
            ip: ip(1),
        })
        .unwrap();
        drop(j);
        // At 2000, keeping 1500 s: m1 (released, ended 1000) kept as seen; m2's lease is
        // still valid; m3 (ended 100) is older than the period and forgotten.
        let (_, leases, _) = Journal::open(d.path(), 2000, 1500).unwrap();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases.last_seen(&m(1)), Some(1000));
        assert_eq!(leases.last_seen(&m(2)), Some(5000));
        assert_eq!(leases.last_seen(&m(3)), None);
        // And again, from the compacted file alone.
        let (_, leases, _) = Journal::open(d.path(), 2100, 1500).unwrap();
        assert_eq!(leases.last_seen(&m(1)), Some(1000));
        assert!(
            leases.by_mac(&m(1)).is_none(),
            "no lease is made of a seen record"
        );
        let text = std::fs::read_to_string(d.path().join("leases.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("leases.jsonl"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
