//! Just enough ISO 9660 (ECMA-119) to take the live system out of a Debian Live or
//! Webconverger ISO without mounting it: volume descriptors, directory records, and file
//! names from Joliet (UCS-2) or Rock Ridge (`NM` entries) when the image has them, else the
//! plain ISO names (lower-cased, without `;1`).
//!
//! Written in-tree because the ISO crates on crates.io do not fit: `iso9660` reads neither
//! Joliet nor Rock Ridge names (so `filesystem.squashfs` is invisible), and `cdfs`, which does,
//! builds a FUSE binary whose `fuser` dependency needs libfuse even for library users.
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

pub const SECTOR: u64 = 2048;

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("{0}: not an ISO 9660 image (no CD001 volume descriptor at sector 16)")]
    NotIso(String),
    #[error("{path}: truncated: the image says it is {want} bytes but the file has {have} (an interrupted download? fetch it again)")]
    Truncated { path: String, want: u64, have: u64 },
    #[error("{path}: damaged directory at sector {lba}: {what}")]
    Damaged {
        path: String,
        lba: u64,
        what: String,
    },
    #[error("{path}: {file} spans several extents (over 4 GiB); not supported")]
    MultiExtent { path: String, file: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub lba: u64,
    pub size: u64,
    pub is_dir: bool,
}

pub struct Iso {
    file: File,
    path: String,
    root: Entry,
    /// Joliet names (UCS-2) instead of the primary tree's.
    joliet: bool,
}

fn le32(b: &[u8]) -> u64 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64
}

impl Iso {
    pub fn open(path: &Path) -> Result<Iso, IsoError> {
        let p = path.display().to_string();
        let io = |source| IsoError::Io {
            path: p.clone(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let have = file.metadata().map_err(io)?.len();
        let mut primary = None;
        let mut joliet = None;
        for i in 16..64u64 {
            let mut vd = [0u8; SECTOR as usize];
            if file.seek(SeekFrom::Start(i * SECTOR)).is_err() || file.read_exact(&mut vd).is_err()
            {
                break;
            }
            if &vd[1..6] != b"CD001" {
                break;
            }
            match vd[0] {
                1 if primary.is_none() => primary = Some(vd),
                // A supplementary descriptor with a UCS-2 level escape sequence is Joliet.
                2 if vd[88] == 0x25 && vd[89] == 0x2f && matches!(vd[90], 0x40 | 0x43 | 0x45) => {
                    joliet = Some(vd)
                }
                255 => break,
                _ => {}
            }
        }
        let Some(pvd) = primary else {
            return Err(IsoError::NotIso(p));
        };
        let want = le32(&pvd[80..84]) * SECTOR;
        if want > have {
            return Err(IsoError::Truncated {
                path: p,
                want,
                have,
            });
        }
        let vd = joliet.unwrap_or(pvd);
        let r = &vd[156..190];
        Ok(Iso {
            file,
            path: p,
            root: Entry {
                name: String::new(),
                lba: le32(&r[2..6]),
                size: le32(&r[10..14]),
                is_dir: true,
            },
            joliet: joliet.is_some(),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    fn damaged(&self, lba: u64, what: impl Into<String>) -> IsoError {
        IsoError::Damaged {
            path: self.path.clone(),
            lba,
            what: what.into(),
        }
    }

    /// The entries of a directory (without `.` and `..`).
    pub fn read_dir(&mut self, dir: &Entry) -> Result<Vec<Entry>, IsoError> {
        if dir.size > 16 << 20 {
            return Err(self.damaged(dir.lba, format!("a directory of {} bytes", dir.size)));
        }
        let mut buf = vec![0u8; dir.size as usize];
        self.file
            .seek(SeekFrom::Start(dir.lba * SECTOR))
            .and_then(|_| self.file.read_exact(&mut buf))
            .map_err(|e| self.damaged(dir.lba, format!("cannot read it: {e}")))?;
        let mut out = Vec::new();
        let mut off = 0usize;
        while off < buf.len() {
            let len = buf[off] as usize;
            if len == 0 {
                // Records do not cross sectors: the rest of this one is padding.
                off = (off / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            let rec = buf
                .get(off..off + len)
                .filter(|r| r.len() >= 34 && 33 + r[32] as usize <= len)
                .ok_or_else(|| self.damaged(dir.lba, format!("a bad record at byte {off}")))?;
            off += len;
            let id = &rec[33..33 + rec[32] as usize];
            if id == [0] || id == [1] {
                continue;
            }
            let flags = rec[25];
            let mut name = if self.joliet {
                let units: Vec<u16> = id
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect();
                String::from_utf16_lossy(&units)
            } else {
                let su_start = 33 + id.len() + (id.len() + 1) % 2;
                rock_ridge_name(rec.get(su_start..).unwrap_or_default())
                    .unwrap_or_else(|| String::from_utf8_lossy(id).to_lowercase())
            };
            if let Some(i) = name.rfind(';') {
                name.truncate(i);
            }
            if name.ends_with('.') && flags & 2 == 0 {
                name.pop();
            }
            if flags & 0x80 != 0 {
                return Err(IsoError::MultiExtent {
                    path: self.path.clone(),
                    file: name,
                });
            }
            out.push(Entry {
                name,
                lba: le32(&rec[2..6]),
                size: le32(&rec[10..14]),
                is_dir: flags & 2 != 0,
            });
        }
        Ok(out)
    }

    /// The entry at a slash-separated path ("live/vmlinuz"), if there is one.
    pub fn lookup(&mut self, path: &str) -> Result<Option<Entry>, IsoError> {
        let mut cur = self.root.clone();
        for part in path.split('/').filter(|s| !s.is_empty()) {
            if !cur.is_dir {
                return Ok(None);
            }
            let entries = self.read_dir(&cur)?;
            match entries.into_iter().find(|e| e.name == part) {
                Some(e) => cur = e,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// A reader over a file's bytes; reading past the end of a truncated image is an error.
    pub fn open_file(&mut self, e: &Entry) -> Result<impl Read + '_, IsoError> {
        let path = self.path.clone();
        self.file
            .seek(SeekFrom::Start(e.lba * SECTOR))
            .map_err(|source| IsoError::Io { path, source })?;
        Ok((&mut self.file).take(e.size))
    }
}

/// The Rock Ridge alternate name (`NM` entries, RRIP 4.1.4) in a record's system use area.
pub fn rock_ridge_name(mut su: &[u8]) -> Option<String> {
    let mut name = Vec::new();
    let mut found = false;
    while su.len() >= 4 {
        let len = su[2] as usize;
        if len < 4 || len > su.len() {
            break;
        }
        if &su[..2] == b"NM" && len >= 5 {
            found = true;
            name.extend_from_slice(&su[5..len]);
        }
        su = &su[len..];
    }
    found.then(|| String::from_utf8_lossy(&name).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rock_ridge_nm_entries_make_the_name() {
        // PX (skipped), then NM split in two (CONTINUE flag on the first).
        let mut su = vec![b'P', b'X', 8, 1, 0, 0, 0, 0];
        su.extend_from_slice(&[b'N', b'M', 5 + 6, 1, 1]);
        su.extend_from_slice(b"filesy");
        su.extend_from_slice(&[b'N', b'M', 5 + 11, 1, 0]);
        su.extend_from_slice(b"stem.squash");
        assert_eq!(rock_ridge_name(&su).as_deref(), Some("filesystem.squash"));
        assert_eq!(rock_ridge_name(&[b'P', b'X', 4, 1]), None);
        assert_eq!(
            rock_ridge_name(&[b'N', b'M', 200, 1, 0]),
            None,
            "bad length"
        );
    }
}
