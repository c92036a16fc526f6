//! The on-disk spool: batches of records that could not be stored yet (store slow, locked or
//! unreachable), one file per batch, replayed in order. A segment is written to a temporary
//! name, synced, then renamed, so a crash leaves either the whole batch or none of it.
//! Segment names are the first record's id, zero-padded: name order is time order.
//!
//! The spool has a size cap ([`DEFAULT_MAX_BYTES`], `[audit] spool_max_mb`): a batch that would
//! pass it is refused with [`AuditError::SpoolFull`] and the writer counts it as dropped, so an
//! audit store that stays away cannot fill the appliance's disk.
use super::{AuditError, Record};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Spool size cap when the configuration names none: 1 GiB (about 3 M events).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes in segments now (counted at open, kept by push and remove).
    bytes: Arc<AtomicU64>,
}

impl Spool {
    pub fn open(dir: &Path) -> Result<Spool, AuditError> {
        std::fs::create_dir_all(dir).map_err(|source| AuditError::Spool {
            path: dir.to_owned(),
            source,
        })?;
        let spool = Spool {
            dir: dir.to_owned(),
            max_bytes: DEFAULT_MAX_BYTES,
            bytes: Arc::default(),
        };
        let now: u64 = spool
            .segments()?
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        spool.bytes.store(now, Ordering::Relaxed);
        Ok(spool)
    }

    /// The same spool with a size cap of `max_bytes`.
    pub fn with_cap(mut self, max_bytes: u64) -> Spool {
        self.max_bytes = max_bytes;
        self
    }

    /// Bytes held in segments now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn err(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
        move |source| AuditError::Spool {
            path: path.to_owned(),
            source,
        }
    }

    /// Writes one batch as a segment (durably) before returning; refuses it when the spool
    /// would pass its size cap.
    pub fn push(&self, rows: &[Record]) -> Result<(), AuditError> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let mut body = Vec::with_capacity(rows.len() * 256);
        for r in rows {
            serde_json::to_writer(&mut body, r).map_err(|e| {
                AuditError::Other(format!("audit spool {}: {e}", self.dir.display()))
            })?;
            body.push(b'\n');
        }
        let len = body.len() as u64;
        if self.bytes().saturating_add(len) > self.max_bytes {
            return Err(AuditError::SpoolFull {
                path: self.dir.clone(),
                max_mb: self.max_bytes >> 20,
            });
        }
        let path = self.dir.join(format!("{:020}.jsonl", first.id.max(0)));
        crate::fsutil::write_private(&path, &body).map_err(Self::err(&path))?;
        self.bytes.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Segment files, oldest first.
    pub fn segments(&self) -> Result<Vec<PathBuf>, AuditError> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(Self::err(&self.dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "jsonl")
                    && !p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
            })
            .collect();
        v.sort();
        Ok(v)
    }

    pub fn is_empty(&self) -> bool {
        self.segments().map(|s| s.is_empty()).unwrap_or(true)
    }

    /// Reads a segment back. A line that does not parse is an error naming `path:line`
    /// (the segment is kept for a human to look at).
    pub fn read(path: &Path) -> Result<Vec<Record>, AuditError> {
        let f = std::fs::File::open(path).map_err(Self::err(path))?;
        let mut rows = Vec::new();
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(Self::err(path))?;
            if line.is_empty() {
                continue;
            }
            rows.push(serde_json::from_str(&line).map_err(|e| {
                AuditError::Other(format!(
                    "audit spool {}:{}: {e} (the segment is kept; move it away to skip it)",
                    path.display(),
                    i + 1
                ))
            })?);
        }
        Ok(rows)
    }

    /// Deletes a segment (after the store accepted it).
    pub fn remove(&self, path: &Path) -> Result<(), AuditError> {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        std::fs::remove_file(path).map_err(Self::err(path))?;
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(len))
            });
        Ok(())
    }

    /// Events waiting in the spool (counts lines; for status output).
    pub fn pending_events(&self) -> u64 {
        self.segments()
            .unwrap_or_default()
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::borrow::Cow;

    fn rec(id: i64) -> Record {
        Record {
            id,
            time_ms: id >> 20,
            source: Cow::Borrowed("dhcp"),
            kind: Cow::Owned("dhcp_reply".into()),
            mac: Some("52:54:00:00:00:01".into()),
            ip: None,
            host: None,
            doc: json!({"kind": "dhcp_reply", "xid": id}),
        }
    }

    #[test]
    fn segments_come_back_in_id_order_and_whole() {
        let d = tempfile::tempdir().unwrap();
        let s = Spool::open(d.path()).unwrap();
        assert!(s.is_empty());
        s.push(&[rec(30 << 20), rec((30 << 20) + 1)]).unwrap();
        s.push(&[rec(10 << 20)]).unwrap();
        let segs = s.segments().unwrap();
        assert_eq!(segs.len(), 2);
        assert_eq!(Spool::read(&segs[0]).unwrap(), vec![rec(10 << 20)]);
        assert_eq!(Spool::read(&segs[1]).unwrap().len(), 2);
        assert_eq!(s.pending_events(), 3);
        s.remove(&segs[0]).unwrap();
        assert_eq!(s.segments().unwrap().len(), 1);
    }

    /// Issue 10: the spool had no size limit. A batch that would pass the cap is refused
    /// with an error naming the directory and the setting; what is there stays; space freed
    /// by a replay is usable again; a reopened spool counts what it already holds.
    #[test]
    fn a_full_spool_refuses_the_batch_and_names_the_setting() {
        let d = tempfile::tempdir().unwrap();
        let one = {
            let s = Spool::open(&d.path().join("probe")).unwrap();
            s.push(&[rec(1 << 20)]).unwrap();
            s.bytes()
        };
        assert!(one > 50, "a record is {one} bytes");
        let s = Spool::open(&d.path().join("s")).unwrap().with_cap(3 * one);
        for i in 0..3 {
            s.push(&[rec((i + 1) << 20)]).unwrap();
        }
        let e = s.push(&[rec(9 << 20)]).unwrap_err().to_string();
        assert!(e.contains("full") && e.contains("spool_max_mb"), "{e}");
        assert_eq!(s.pending_events(), 3);
        assert_eq!(s.bytes(), 3 * one);
        let again = Spool::open(&d.path().join("s")).unwrap().with_cap(3 * one);
        assert_eq!(again.bytes(), 3 * one);
        assert!(again.push(&[rec(9 << 20)]).is_err());
        let first = again.segments().unwrap().remove(0);
        again.remove(&first).unwrap();
        again.push(&[rec(9 << 20)]).unwrap();
        assert_eq!(again.pending_events(), 3);
    }

    #[test]
    fn a_damaged_segment_is_named_with_its_line() {
        let d = tempfile::tempdir().unwrap();
        let s = Spool::open(d.path()).unwrap();
        s.push(&[rec(1)]).unwrap();
        let seg = s.segments().unwrap().remove(0);
        std::fs::write(&seg, "{\"id\": 1}\n").unwrap();
        let e = Spool::read(&seg).unwrap_err().to_string();
        assert!(e.contains(&format!("{}:1", seg.display())), "{e}");
    }
}
