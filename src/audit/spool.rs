//! The on-disk spool: batches of records that could not be stored yet (store slow, locked or
//! unreachable), one file per batch, replayed in order. A segment is written to a temporary
//! name, synced, then renamed, so a crash leaves either the whole batch or none of it.
//! Segment names are the first record's id, zero-padded: name order is time order.
use super::{AuditError, Record};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn open(dir: &Path) -> Result<Spool, AuditError> {
        std::fs::create_dir_all(dir).map_err(|source| AuditError::Spool {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Spool {
            dir: dir.to_owned(),
        })
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

    /// Writes one batch as a segment (durably) before returning.
    pub fn push(&self, rows: &[Record]) -> Result<(), AuditError> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let name = format!("{:020}.jsonl", first.id.max(0));
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(&name);
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(Self::err(&tmp))?);
        for r in rows {
            serde_json::to_writer(&mut out, r)
                .map_err(|e| AuditError::Other(format!("audit spool {}: {e}", tmp.display())))?;
            out.write_all(b"\n").map_err(Self::err(&tmp))?;
        }
        let file = out.into_inner().map_err(|e| AuditError::Spool {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(Self::err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(Self::err(&path))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
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

    pub fn remove(path: &Path) -> Result<(), AuditError> {
        std::fs::remove_file(path).map_err(Self::err(path))
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
        Spool::remove(&segs[0]).unwrap();
        assert_eq!(s.segments().unwrap().len(), 1);
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
