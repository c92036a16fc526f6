//! The conf repo as a git repository (gix): every change pxelator makes is one commit with a
//! real author, and any path's history can be listed, compared, read as of a revision or a
//! date, and restored by a new commit. Plain `git` sees ordinary commits (`git log`, `git show`,
//! `git fsck` agree with us).
//!
//! Commits are made on whatever branch HEAD names. pxelator writes the files it changes into
//! the working tree, builds the new tree from HEAD's tree plus those changes (so uncommitted
//! hand edits elsewhere are neither committed nor lost), commits, then rewrites the index from
//! the new tree (so `git status` shows only the hand edits). If HEAD moved while we worked
//! (another commit), the ref update is refused and the commit is retried on the new HEAD.
//!
//! gix covers everything used here; nothing shells out to `git`.
use gix::bstr::{BStr, ByteSlice};
use gix::ObjectId;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("conf repo {path}: {msg}")]
    Git { path: PathBuf, msg: String },
    #[error("conf repo {path}: {file}: {source}")]
    Io {
        path: PathBuf,
        file: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0:?} is not a path inside the conf repo (use a relative path like machines/kiosk1.toml)"
    )]
    BadPath(String),
    #[error("{what:?} is neither a revision nor a date (examples: HEAD~2, 3f2a9c1, 2026-11-26, \"2026-11-26 14:30\")")]
    BadRev { what: String },
    #[error("{path} did not exist at {rev}")]
    NotAtRev { path: String, rev: String },
    #[error("conf repo {0} has no commits yet")]
    Empty(PathBuf),
    #[error("commit {commit} is refused: its tree holds {entry:?}, {why}; nothing of it is served (fix the tree with a new commit, e.g. git rm the entry)")]
    UnsafeEntry {
        commit: String,
        entry: String,
        why: &'static str,
    },
    #[error("conf repo {path}: {file} is a symbolic link; pxelator never writes through one (remove it: rm {file})")]
    SymlinkInPath { path: PathBuf, file: PathBuf },
}

/// Why a path from a git tree must not reach the disk, if it must not: each slash-separated
/// name must be a plain name — not empty, `.`, `..` or `.git` (any case), without control
/// characters or backslashes. Such a path can only name something below the directory it is
/// joined to. Git's own tools refuse to check such entries out; a crafted tree
/// (`git hash-object -t tree --literally`) still holds them.
pub fn unsafe_tree_path(p: &str) -> Option<&'static str> {
    for name in p.split('/') {
        let why = match name {
            "" => "an empty name (a leading, doubled or trailing slash)",
            "." | ".." => "a . or .. name that would leave its directory",
            n if n.eq_ignore_ascii_case(".git") => "a .git name",
            n if n.chars().any(char::is_control) => "a control character in a name",
            n if n.contains('\\') => "a backslash in a name",
            _ => continue,
        };
        return Some(why);
    }
    None
}

/// Who made a change: a name and an email, as git records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    pub email: String,
}

impl Author {
    /// `Name <email>` (as `git commit --author` takes it) or a bare name.
    pub fn parse(s: &str) -> Author {
        match s.split_once('<') {
            Some((name, rest)) => Author {
                name: name.trim().to_owned(),
                email: rest.trim_end_matches('>').trim().to_owned(),
            },
            None => Author {
                name: s.trim().to_owned(),
                email: format!("{}@{}", s.trim(), host_name()),
            },
        }
    }

    /// The person running the CLI: `SUDO_USER` (the admin behind sudo), else `USER`, else the
    /// uid, at this host.
    pub fn invoking_user() -> Author {
        let user = std::env::var("SUDO_USER")
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .or_else(|| {
                nix::unistd::User::from_uid(nix::unistd::getuid())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .unwrap_or_else(|| format!("uid{}", nix::unistd::getuid()));
        Author {
            email: format!("{user}@{}", host_name()),
            name: user,
        }
    }

    /// The daemon: `pxelator <hostname>`.
    pub fn daemon() -> Author {
        let host = host_name();
        Author {
            name: format!("pxelator {host}"),
            email: format!("pxelator@{host}"),
        }
    }
}

pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// One file change inside the repo (paths relative to its root).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Write(String, Vec<u8>),
    /// Moves a file (a pull's spill file, on the repo's file system) to the path; its blob is
    /// written from the file in a stream, never loaded whole.
    Move(String, PathBuf),
    Delete(String),
}

/// A commit touching a path, newest first in [`ConfRepo::log`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogEntry {
    pub commit: String,
    /// Unix seconds (author time).
    pub time: i64,
    pub author: String,
    pub email: String,
    pub message: String,
}

pub struct ConfRepo {
    root: PathBuf,
    repo: gix::ThreadSafeRepository,
}

/// Checks that `p` is a plain relative path (no `..`, not absolute, not into `.git`).
pub fn clean_path(p: &str) -> Result<String, RepoError> {
    let parts: Vec<Component> = Path::new(p)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let ok = !parts.is_empty()
        && parts.iter().all(|c| matches!(c, Component::Normal(_)))
        && parts[0].as_os_str() != ".git";
    if !ok {
        return Err(RepoError::BadPath(p.to_owned()));
    }
    Ok(parts
        .iter()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/"))
}

impl ConfRepo {
    fn git_err(&self, msg: impl std::fmt::Display) -> RepoError {
        RepoError::Git {
            path: self.root.clone(),
            msg: msg.to_string(),
        }
    }

    /// Opens the repository at `root`; None when `root` is not a git repository.
    pub fn open(root: &Path) -> Result<Option<ConfRepo>, RepoError> {
        if !root.join(".git").exists() {
            return Ok(None);
        }
        let repo = gix::ThreadSafeRepository::open(root).map_err(|e| RepoError::Git {
            path: root.to_owned(),
            msg: e.to_string(),
        })?;
        Ok(Some(ConfRepo {
            root: root.to_owned(),
            repo,
        }))
    }

    /// Opens the repository, creating it when `root` is not one yet: then every file already
    /// there is committed as the first commit, by `author`.
    pub fn open_or_init(root: &Path, author: &Author) -> Result<ConfRepo, RepoError> {
        if let Some(r) = Self::open(root)? {
            return Ok(r);
        }
        std::fs::create_dir_all(root).map_err(|source| RepoError::Io {
            path: root.to_owned(),
            file: root.to_owned(),
            source,
        })?;
        gix::init(root).map_err(|e| RepoError::Git {
            path: root.to_owned(),
            msg: e.to_string(),
        })?;
        let r = Self::open(root)?.ok_or_else(|| RepoError::Git {
            path: root.to_owned(),
            msg: "created, but cannot be opened".into(),
        })?;
        let mut paths = Vec::new();
        r.each_file(root, &mut |rel| paths.push(rel))?;
        paths.sort();
        let changes = paths
            .into_iter()
            .map(|rel| {
                let full = root.join(&rel);
                std::fs::read(&full)
                    .map(|d| Change::Write(rel, d))
                    .map_err(|source| RepoError::Io {
                        path: root.to_owned(),
                        file: full,
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !changes.is_empty() {
            r.commit(
                &changes,
                author,
                &format!(
                    "Start the conf repo with the {} files already in {}",
                    changes.len(),
                    root.display()
                ),
            )?;
        }
        Ok(r)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The commit HEAD points at, if any.
    pub fn head(&self) -> Result<Option<ObjectId>, RepoError> {
        let repo = self.repo.to_thread_local();
        let head = repo.head().map_err(|e| self.git_err(e))?;
        Ok(head.id().map(|id| id.detach()))
    }

    /// Writes `changes` to the working tree and commits them (one commit) as `author`.
    /// Returns the new commit; None when nothing changed (no empty commits).
    pub fn commit(
        &self,
        changes: &[Change],
        author: &Author,
        message: &str,
    ) -> Result<Option<ObjectId>, RepoError> {
        let changes = changes
            .iter()
            .map(|c| {
                Ok(match c {
                    Change::Write(p, d) => Change::Write(clean_path(p)?, d.clone()),
                    Change::Move(p, from) => Change::Move(clean_path(p)?, from.clone()),
                    Change::Delete(p) => Change::Delete(clean_path(p)?),
                })
            })
            .collect::<Result<Vec<_>, RepoError>>()?;
        for c in &changes {
            let rel = match c {
                Change::Write(p, _) | Change::Move(p, _) | Change::Delete(p) => p,
            };
            let full = self.root.join(rel);
            let io = |source| RepoError::Io {
                path: self.root.clone(),
                file: full.clone(),
                source,
            };
            // A symlinked directory in the working tree (committed by anyone as
            // `hosts/kiosk1 -> /etc`) must not redirect our write outside the repo.
            self.no_symlink_below_root(rel)?;
            match c {
                // Mode 0644 before the umask (pxelator runs with 077: files are 0600).
                Change::Write(_, d) => crate::fsutil::write_atomic(&full, d, 0o644).map_err(io)?,
                Change::Move(_, from) => crate::fsutil::move_into(from, &full).map_err(io)?,
                Change::Delete(_) => match std::fs::remove_file(&full) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(e)),
                },
            }
        }
        // Bounded retry when someone else committed between our read of HEAD and our update.
        let mut last = None;
        for _ in 0..10 {
            match self.try_commit(&changes, author, message) {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Err(last.expect("at least one attempt"))
    }

    /// Writes a file of the working tree as a blob, streaming it (a pulled file may be large).
    fn write_blob_from(&self, file: &Path) -> Result<ObjectId, RepoError> {
        use gix::objs::Write as _;
        let io = |source| RepoError::Io {
            path: self.root.clone(),
            file: file.to_owned(),
            source,
        };
        let mut f = std::fs::File::open(file).map_err(io)?;
        let size = f.metadata().map_err(io)?.len();
        let repo = self.repo.to_thread_local();
        repo.objects
            .write_stream(gix::objs::Kind::Blob, size, &mut f)
            .map_err(|e| self.git_err(e))
    }

    /// Refuses a relative path whose existing directories below the root include a symlink.
    fn no_symlink_below_root(&self, rel: &str) -> Result<(), RepoError> {
        let mut at = self.root.clone();
        let parts: Vec<&str> = rel.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            at.push(part);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(RepoError::SymlinkInPath {
                        path: self.root.clone(),
                        file: at,
                    })
                }
                Ok(_) => {}
                Err(_) => break, // does not exist yet: created below, as a directory
            }
        }
        Ok(())
    }

    fn try_commit(
        &self,
        changes: &[Change],
        author: &Author,
        message: &str,
    ) -> Result<Option<ObjectId>, RepoError> {
        let repo = self.repo.to_thread_local();
        let parent = self.head()?;
        let base_tree = match parent {
            Some(p) => repo
                .find_commit(p)
                .and_then(|c| c.tree_id())
                .map_err(|e| self.git_err(e))?
                .detach(),
            None => repo.empty_tree().id,
        };
        let mut ed = repo.edit_tree(base_tree).map_err(|e| self.git_err(e))?;
        for c in changes {
            match c {
                Change::Write(p, d) => {
                    let blob = repo.write_blob(d).map_err(|e| self.git_err(e))?;
                    ed.upsert(p.as_str(), gix::object::tree::EntryKind::Blob, blob)
                        .map_err(|e| self.git_err(e))?;
                }
                Change::Move(p, _) => {
                    let blob = self.write_blob_from(&self.root.join(p))?;
                    ed.upsert(p.as_str(), gix::object::tree::EntryKind::Blob, blob)
                        .map_err(|e| self.git_err(e))?;
                }
                Change::Delete(p) => {
                    ed.remove(p.as_str()).map_err(|e| self.git_err(e))?;
                }
            }
        }
        let tree = ed.write().map_err(|e| self.git_err(e))?.detach();
        if tree == base_tree && parent.is_some() {
            return Ok(None);
        }
        let now = gix::date::Time::new(crate::clock::unix_now() as i64, 0);
        // The author commits their own change (the daemon's are authored by "pxelator <host>").
        let sig = gix::actor::Signature {
            name: author.name.as_str().into(),
            email: author.email.as_str().into(),
            time: now,
        };
        let (mut b1, mut b2) = (Default::default(), Default::default());
        let msg = if message.ends_with('\n') {
            message.to_owned()
        } else {
            format!("{message}\n")
        };
        let id = repo
            .commit_as(
                sig.to_ref(&mut b1),
                sig.to_ref(&mut b2),
                "HEAD",
                msg,
                tree,
                parent,
            )
            .map_err(|e| self.git_err(e))?
            .detach();
        // Keep the index equal to the new HEAD tree, so `git status` shows only hand edits.
        let mut index = repo.index_from_tree(&tree).map_err(|e| self.git_err(e))?;
        index
            .write(Default::default())
            .map_err(|e| self.git_err(e))?;
        Ok(Some(id))
    }

    /// Resolves a revision (`HEAD~2`, an abbreviated id, a branch) or a date (`2026-11-26`,
    /// `2026-11-26 14:30`, `2026-11-26T14:30:00Z`, UTC): for a date, the last commit made at
    /// or before it.
    pub fn resolve(&self, spec: &str) -> Result<ObjectId, RepoError> {
        let repo = self.repo.to_thread_local();
        if let Some(when) = parse_date(spec) {
            let head = self
                .head()?
                .ok_or_else(|| RepoError::Empty(self.root.clone()))?;
            let walk = repo.rev_walk([head]).all().map_err(|e| self.git_err(e))?;
            for info in walk {
                let info = info.map_err(|e| self.git_err(e))?;
                let c = repo.find_commit(info.id).map_err(|e| self.git_err(e))?;
                let t = c.time().map_err(|e| self.git_err(e))?.seconds;
                if t <= when {
                    return Ok(info.id);
                }
            }
            return Err(RepoError::BadRev {
                what: format!("{spec} (before the first commit)"),
            });
        }
        repo.rev_parse_single(spec)
            .map(|id| id.detach())
            .map_err(|_| RepoError::BadRev {
                what: spec.to_owned(),
            })
    }

    /// The content of `path` at `rev`.
    pub fn cat(&self, path: &str, rev: &str) -> Result<Vec<u8>, RepoError> {
        let path = clean_path(path)?;
        let id = self.resolve(rev)?;
        self.blob_at(id, &path)?.ok_or(RepoError::NotAtRev {
            path,
            rev: rev.to_owned(),
        })
    }

    fn blob_id_at(&self, commit: ObjectId, path: &str) -> Result<Option<ObjectId>, RepoError> {
        Ok(self
            .entry_at(commit, path)?
            .filter(|(blob, _)| *blob)
            .map(|(_, id)| id))
    }

    /// The object at `path` in `commit`: (is a blob, its id); a directory is a tree, whose id
    /// changes whenever anything under it does.
    fn entry_at(
        &self,
        commit: ObjectId,
        path: &str,
    ) -> Result<Option<(bool, ObjectId)>, RepoError> {
        let repo = self.repo.to_thread_local();
        let tree = repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(|e| self.git_err(e))?;
        let entry = tree
            .lookup_entry_by_path(path)
            .map_err(|e| self.git_err(e))?;
        Ok(entry.map(|e| (e.mode().is_blob(), e.object_id())))
    }

    fn blob_at(&self, commit: ObjectId, path: &str) -> Result<Option<Vec<u8>>, RepoError> {
        let Some(id) = self.blob_id_at(commit, path)? else {
            return Ok(None);
        };
        let repo = self.repo.to_thread_local();
        let obj = repo.find_object(id).map_err(|e| self.git_err(e))?;
        Ok(Some(obj.data.clone()))
    }

    /// Commits that changed `path` — a file, or anything under a directory — (or every commit,
    /// for None), newest first, at most `limit`.
    pub fn log(&self, path: Option<&str>, limit: usize) -> Result<Vec<LogEntry>, RepoError> {
        let path = path.map(clean_path).transpose()?;
        let Some(head) = self.head()? else {
            return Ok(Vec::new());
        };
        let repo = self.repo.to_thread_local();
        let walk = repo.rev_walk([head]).all().map_err(|e| self.git_err(e))?;
        let mut out = Vec::new();
        for info in walk {
            if out.len() >= limit {
                break;
            }
            let info = info.map_err(|e| self.git_err(e))?;
            let c = repo.find_commit(info.id).map_err(|e| self.git_err(e))?;
            if let Some(p) = &path {
                let mine = self.entry_at(info.id, p)?;
                let parent = c.parent_ids().next().map(|id| id.detach());
                let theirs = match parent {
                    Some(pid) => self.entry_at(pid, p)?,
                    None => None,
                };
                if mine == theirs {
                    continue;
                }
            }
            let a = c.author().map_err(|e| self.git_err(e))?;
            let time = a.time().map(|t| t.seconds).unwrap_or(0);
            out.push(LogEntry {
                commit: info.id.to_string(),
                time,
                author: a.name.to_str_lossy().into_owned(),
                email: a.email.to_str_lossy().into_owned(),
                message: c.message_raw_sloppy().to_str_lossy().trim_end().to_owned(),
            });
        }
        Ok(out)
    }

    /// Unified diff of `path` from `from` to `to` (revisions or dates). Without `from`: the
    /// path's last change (its commit's parent to that commit, or to `to`); without `to`: HEAD.
    pub fn diff(
        &self,
        path: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<String, RepoError> {
        let path = clean_path(path)?;
        let to_id = match to {
            Some(t) => self.resolve(t)?,
            None => self
                .head()?
                .ok_or_else(|| RepoError::Empty(self.root.clone()))?,
        };
        let from_id = match from {
            Some(f) => Some(self.resolve(f)?),
            None => {
                let last = self.log(Some(&path), 1)?;
                let Some(last) = last.first() else {
                    return Ok(String::new());
                };
                let repo = self.repo.to_thread_local();
                let id = ObjectId::from_hex(last.commit.as_bytes()).map_err(|e| self.git_err(e))?;
                let c = repo.find_commit(id).map_err(|e| self.git_err(e))?;
                let parent = c.parent_ids().next().map(|p| p.detach());
                parent
            }
        };
        let old = match from_id {
            Some(id) => self.blob_at(id, &path)?.unwrap_or_default(),
            None => Vec::new(),
        };
        let new = self.blob_at(to_id, &path)?.unwrap_or_default();
        Ok(unified_diff(
            &path,
            &old,
            &new,
            &from_id.map_or("nothing".into(), short),
            &short(to_id),
        ))
    }

    /// Restores `path` to its content at `rev` with a new commit (deleting it if it did not
    /// exist then). None when it already has that content.
    pub fn revert(
        &self,
        path: &str,
        rev: &str,
        author: &Author,
    ) -> Result<Option<ObjectId>, RepoError> {
        let path = clean_path(path)?;
        let id = self.resolve(rev)?;
        let change = match self.blob_at(id, &path)? {
            Some(data) => Change::Write(path.clone(), data),
            None => Change::Delete(path.clone()),
        };
        self.commit(
            &[change],
            author,
            &format!("Restore {path} as of {} ({rev})", short(id)),
        )
    }

    /// Files of `rev` under `prefix` (relative paths), for snapshots and listings.
    pub fn files(&self, rev: ObjectId, prefix: &str) -> Result<Vec<(String, ObjectId)>, RepoError> {
        // Only the directory the prefix names is walked (not, say, every pulled host file
        // when the inventory is wanted).
        let dir = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        Ok(self
            .files_in_dir(rev, dir)?
            .into_iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .collect())
    }

    /// The files under `prefix` that `rev` changed from its first parent (added, modified or
    /// removed), sorted.
    pub fn changed(&self, rev: &str, prefix: &str) -> Result<Vec<String>, RepoError> {
        let id = self.resolve(rev)?;
        let parent = {
            let repo = self.repo.to_thread_local();
            let c = repo.find_commit(id).map_err(|e| self.git_err(e))?;
            let p = c.parent_ids().next().map(|p| p.detach());
            p
        };
        let now: HashMap<String, ObjectId> = self.files(id, prefix)?.into_iter().collect();
        let before: HashMap<String, ObjectId> = match parent {
            Some(p) => self.files(p, prefix)?.into_iter().collect(),
            None => HashMap::new(),
        };
        let mut out: Vec<String> = now
            .iter()
            .filter(|(p, id)| before.get(*p) != Some(id))
            .map(|(p, _)| p.clone())
            .chain(before.keys().filter(|p| !now.contains_key(*p)).cloned())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Files under each of the top-level `dirs` at `rev` (path relative to the root → blob).
    pub fn files_under(
        &self,
        rev: ObjectId,
        dirs: &[&str],
    ) -> Result<Vec<(String, ObjectId)>, RepoError> {
        let mut out = Vec::new();
        for d in dirs {
            out.extend(self.files_in_dir(rev, d)?);
        }
        Ok(out)
    }

    /// Every file below directory `dir` ("" for the root) at `rev`, with its full path.
    fn files_in_dir(&self, rev: ObjectId, dir: &str) -> Result<Vec<(String, ObjectId)>, RepoError> {
        Ok(self
            .files_with_modes(rev, dir)?
            .into_iter()
            .filter(|f| !f.symlink)
            .map(|f| (f.path, f.id))
            .collect())
    }

    /// The content of a blob (a file of a tree listed by [`ConfRepo::files_with_modes`]).
    pub fn blob(&self, id: ObjectId) -> Result<Vec<u8>, RepoError> {
        let repo = self.repo.to_thread_local();
        let obj = repo.find_object(id).map_err(|e| self.git_err(e))?;
        Ok(obj.data.clone())
    }

    /// Every file below directory `dir` at `rev` with its kind: what a base lays into its
    /// root keeps git's executable bit; a symbolic link is listed as such (not followed).
    pub fn files_with_modes(&self, rev: ObjectId, dir: &str) -> Result<Vec<TreeFile>, RepoError> {
        let repo = self.repo.to_thread_local();
        let root = repo
            .find_commit(rev)
            .and_then(|c| c.tree())
            .map_err(|e| self.git_err(e))?;
        let tree = if dir.is_empty() {
            root
        } else {
            match root
                .lookup_entry_by_path(dir)
                .map_err(|e| self.git_err(e))?
            {
                Some(e) if e.mode().is_tree() => {
                    repo.find_tree(e.object_id()).map_err(|e| self.git_err(e))?
                }
                _ => return Ok(Vec::new()),
            }
        };
        let files = tree
            .traverse()
            .breadthfirst
            .files()
            .map_err(|e| self.git_err(e))?;
        let lead = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        Ok(files
            .into_iter()
            .filter(|e| e.mode.is_blob() || e.mode.is_link())
            .map(|e| TreeFile {
                path: format!("{lead}{}", e.filepath.to_str_lossy()),
                id: e.oid,
                executable: e.mode.is_executable(),
                symlink: e.mode.is_link(),
            })
            .collect())
    }

    /// Paths whose working-tree content differs from HEAD, under the given top-level
    /// directories: edits made by hand and not committed yet. Like git's index, a file whose
    /// size, mtime and inode are those it had when last hashed is not read again
    /// ([`StatCache`]), so a reload after one registration reads one file, not all of them.
    pub fn uncommitted(&self, dirs: &[&str]) -> Result<Vec<String>, RepoError> {
        let Some(head) = self.head()? else {
            return Ok(Vec::new());
        };
        let repo = self.repo.to_thread_local();
        let mut out = Vec::new();
        let committed = self.files_under(head, dirs)?;
        let mut cache = STAT_CACHE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (p, id) in &committed {
            let full = self.root.join(p);
            match cache.blob_id(&full, repo.object_hash()) {
                Ok(hash) if hash == *id => {}
                _ => out.push(p.clone()),
            }
        }
        drop(cache);
        let known: std::collections::HashSet<&str> =
            committed.iter().map(|(p, _)| p.as_str()).collect();
        for d in dirs {
            let dir = self.root.join(d);
            if dir.is_dir() {
                self.each_file(&dir, &mut |rel| {
                    if !known.contains(rel.as_str()) {
                        out.push(rel);
                    }
                })?;
            }
        }
        out.sort();
        Ok(out)
    }

    /// Calls `f` with the root-relative path of every regular file below `dir` (not `.git`).
    fn each_file(&self, dir: &Path, f: &mut dyn FnMut(String)) -> Result<(), RepoError> {
        let io = |source, file: &Path| RepoError::Io {
            path: self.root.clone(),
            file: file.to_owned(),
            source,
        };
        for e in std::fs::read_dir(dir).map_err(|e| io(e, dir))? {
            let e = e.map_err(|e| io(e, dir))?;
            let p = e.path();
            if p.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            let ft = e.file_type().map_err(|e| io(e, &p))?;
            if ft.is_dir() {
                self.each_file(&p, f)?;
            } else if ft.is_file() {
                f(p.strip_prefix(&self.root)
                    .expect("under root")
                    .to_string_lossy()
                    .into_owned());
            }
        }
        Ok(())
    }

    /// Writes the files of `rev` under `dirs` into `dest`, for loading the committed
    /// inventory without touching the working tree. Every path is checked before anything is
    /// written: a refused commit leaves `dest` (the last good snapshot) as it was.
    ///
    /// `dest/.pxelator-ids` lists the blob of every file written; with it, only files whose
    /// blob changed are rewritten and only removed ones deleted, so one registration costs a
    /// file, not the inventory. It is removed before an update and written after, so an
    /// update cut short is followed by a full rebuild.
    pub fn snapshot(
        &self,
        rev: ObjectId,
        dirs: &[&str],
        dest: &Path,
    ) -> Result<SnapshotDelta, RepoError> {
        let files = self.files_under(rev, dirs)?;
        for (p, _) in &files {
            if let Some(why) = unsafe_tree_path(p) {
                return Err(RepoError::UnsafeEntry {
                    commit: short(rev),
                    entry: p.clone(),
                    why,
                });
            }
        }
        let manifest = dest.join(SNAPSHOT_IDS);
        let old = std::fs::read_to_string(&manifest).ok().and_then(|t| {
            t.lines()
                .map(|l| {
                    let (id, p) = l.split_once(' ')?;
                    Some((p.to_owned(), ObjectId::from_hex(id.as_bytes()).ok()?))
                })
                .collect::<Option<HashMap<String, ObjectId>>>()
        });
        let delta = match old {
            Some(old) => self
                .update_snapshot(&files, &old, dest)
                .ok()
                .map(|changed| SnapshotDelta {
                    full: false,
                    changed,
                }),
            None => None,
        };
        let delta = match delta {
            Some(d) => d,
            None => {
                self.rebuild_snapshot(&files, dest)?;
                SnapshotDelta {
                    full: true,
                    changed: Default::default(),
                }
            }
        };
        let list: String = files.iter().map(|(p, id)| format!("{id} {p}\n")).collect();
        crate::fsutil::write_atomic(&manifest, list.as_bytes(), 0o600).map_err(|source| {
            RepoError::Io {
                path: self.root.clone(),
                file: manifest.clone(),
                source,
            }
        })?;
        Ok(delta)
    }

    /// Rewrites only what differs from `old` (the manifest of what `dest` holds); returns the
    /// paths added, changed or removed.
    fn update_snapshot(
        &self,
        files: &[(String, ObjectId)],
        old: &HashMap<String, ObjectId>,
        dest: &Path,
    ) -> Result<std::collections::HashSet<String>, RepoError> {
        let repo = self.repo.to_thread_local();
        let io = |source, f: &Path| RepoError::Io {
            path: self.root.clone(),
            file: f.to_owned(),
            source,
        };
        let manifest = dest.join(SNAPSHOT_IDS);
        std::fs::remove_file(&manifest).map_err(|e| io(e, &manifest))?;
        let now: HashMap<&str, ObjectId> = files.iter().map(|(p, id)| (p.as_str(), *id)).collect();
        let mut changed = std::collections::HashSet::new();
        for p in old.keys().filter(|p| !now.contains_key(p.as_str())) {
            match std::fs::remove_file(dest.join(p)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e, &dest.join(p))),
            }
            changed.insert(p.clone());
        }
        for (p, id) in files.iter().filter(|(p, id)| old.get(p) != Some(id)) {
            // A new regular file beside it, renamed over it: a symlink is never followed.
            let f = dest.join(p);
            let tmp = f.with_extension("pxelator-new");
            let _ = std::fs::remove_file(&tmp);
            self.write_blob_file(&repo, *id, &tmp)?;
            std::fs::rename(&tmp, &f).map_err(|e| io(e, &f))?;
            changed.insert(p.clone());
        }
        Ok(changed)
    }

    /// Writes blob `id` as a new regular file at `path` (created new: nothing there is
    /// followed), creating its directory.
    fn write_blob_file(
        &self,
        repo: &gix::Repository,
        id: ObjectId,
        path: &Path,
    ) -> Result<(), RepoError> {
        let io = |source, f: &Path| RepoError::Io {
            path: self.root.clone(),
            file: f.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(e, dir))?;
        }
        let obj = repo.find_object(id).map_err(|e| self.git_err(e))?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .and_then(|mut out| std::io::Write::write_all(&mut out, &obj.data))
            .map_err(|e| io(e, path))
    }

    /// Writes all `files` into a fresh directory, then puts it in place of `dest`.
    fn rebuild_snapshot(&self, files: &[(String, ObjectId)], dest: &Path) -> Result<(), RepoError> {
        let repo = self.repo.to_thread_local();
        let tmp = dest.with_extension("tmp");
        let io = |source, f: &Path| RepoError::Io {
            path: self.root.clone(),
            file: f.to_owned(),
            source,
        };
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| io(e, &tmp))?;
        for (p, id) in files {
            self.write_blob_file(&repo, *id, &tmp.join(p))?;
        }
        let _ = std::fs::remove_dir_all(dest);
        std::fs::rename(&tmp, dest).map_err(|e| io(e, dest))?;
        Ok(())
    }
}

/// Blob ids of working-tree files by path, valid while the file's size, mtime (ns) and inode
/// stay the same. An entry hashed less than 2 s after its mtime is not trusted later (a write
/// in the same clock tick could keep the stat the same), as git does with "racy" entries.
#[derive(Default)]
struct StatCache(HashMap<PathBuf, (FileStamp, ObjectId)>);

#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    size: u64,
    mtime_ns: i128,
    ino: u64,
}

static STAT_CACHE: std::sync::LazyLock<std::sync::Mutex<StatCache>> =
    std::sync::LazyLock::new(Default::default);

impl StatCache {
    /// Most entries kept (a bound on memory; past it, the cache starts over).
    const MAX: usize = 200_000;

    fn blob_id(&mut self, file: &Path, kind: gix::hash::Kind) -> std::io::Result<ObjectId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(file)?;
        if !m.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        let stamp = FileStamp {
            size: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ino: m.ino(),
        };
        if let Some((s, id)) = self.0.get(file) {
            if *s == stamp {
                return Ok(*id);
            }
        }
        let data = std::fs::read(file)?;
        let id = gix::objs::compute_hash(kind, gix::objs::Kind::Blob, &data)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let now_ns = i128::from(crate::clock::unix_now_ms()) * 1_000_000;
        if now_ns - stamp.mtime_ns >= 2_000_000_000 {
            if self.0.len() >= Self::MAX {
                self.0.clear();
            }
            self.0.insert(file.to_owned(), (stamp, id));
        }
        Ok(id)
    }
}

/// What a [`ConfRepo::snapshot`] changed in its directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapshotDelta {
    /// Rebuilt from scratch: every file may have changed.
    pub full: bool,
    /// Files added, changed or removed (root-relative), when not `full`.
    pub changed: std::collections::HashSet<String>,
}

impl SnapshotDelta {
    /// True when `rel` is the same file as in the previous snapshot.
    pub fn unchanged(&self, rel: &str) -> bool {
        !self.full && !self.changed.contains(rel)
    }
}

/// One file of a committed tree ([`ConfRepo::files_with_modes`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TreeFile {
    pub path: String,
    pub id: ObjectId,
    pub executable: bool,
    pub symlink: bool,
}

/// The manifest of a snapshot directory (see [`ConfRepo::snapshot`]).
const SNAPSHOT_IDS: &str = ".pxelator-ids";

/// One truth for everything that reads the conf repo: in a git repository with commits, what
/// is committed (HEAD), as the daemon serves it; otherwise the files on disk. So the CLI and
/// the schedulers act on exactly the machines DHCP answers, never on an uncommitted edit.
pub fn read_current(root: &Path, rel: &str) -> Result<Option<Vec<u8>>, RepoError> {
    if let Some(repo) = ConfRepo::open(root)? {
        if let Some(head) = repo.head()? {
            return repo.blob_at(head, &clean_path(rel)?);
        }
    }
    match std::fs::read(root.join(rel)) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RepoError::Io {
            path: root.to_owned(),
            file: root.join(rel),
            source,
        }),
    }
}

/// The inventory as [`read_current`] sees it: HEAD's inventory files written to a private
/// scratch directory under `state_dir` and loaded from there (problems name the conf-repo
/// files), or the files on disk when the conf repo is not a git repository yet.
pub fn current_inventory(
    cfg: &crate::config::Config,
) -> (crate::inventory::Inventory, Vec<crate::inventory::Problem>) {
    use crate::inventory;
    let load_disk = || inventory::load(&cfg.conf_repo, cfg.server_ip, None);
    let Ok(Some(repo)) = ConfRepo::open(&cfg.conf_repo) else {
        return load_disk();
    };
    let Ok(Some(head)) = repo.head() else {
        return load_disk();
    };
    let scratch = cfg
        .state_dir
        .join(format!("cli-snapshot-{}", std::process::id()));
    let loaded = match repo.snapshot(head, inventory::DIRS, &scratch) {
        Ok(_) => inventory::load_named(&scratch, &cfg.conf_repo, cfg.server_ip, None),
        Err(e) => (
            inventory::Inventory::default(),
            vec![inventory::Problem {
                path: cfg.conf_repo.clone(),
                line: None,
                message: e.to_string(),
            }],
        ),
    };
    let _ = std::fs::remove_dir_all(&scratch);
    loaded
}

/// A history path: `host:/etc/hosts` means `hosts/host/etc/hosts` (pulled host files), anything
/// else is a path in the repo.
pub fn repo_path(spec: &str) -> Result<String, RepoError> {
    match spec.split_once(':') {
        Some((host, p)) if !host.is_empty() && !host.contains('/') => {
            clean_path(&format!("hosts/{host}/{}", p.trim_start_matches('/')))
        }
        _ => clean_path(spec),
    }
}

/// `PATH@REV` → (PATH, REV); the revision may be a date with spaces.
pub fn split_at_rev(spec: &str) -> (&str, Option<&str>) {
    match spec.rsplit_once('@') {
        Some((p, r)) if !p.is_empty() && !r.is_empty() => (p, Some(r)),
        _ => (spec, None),
    }
}

/// Abbreviated commit id (12 hex digits).
pub fn short(id: ObjectId) -> String {
    id.to_string()[..12].to_owned()
}

/// Dates accepted wherever a revision is: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]`,
/// `YYYY-MM-DDTHH:MM:SS[Z]` (UTC). A bare date means the end of that day.
pub fn parse_date(s: &str) -> Option<i64> {
    use time::macros::format_description as fd;
    let s = s.trim().trim_end_matches('Z');
    if let Ok(d) = time::Date::parse(s, fd!("[year]-[month]-[day]")) {
        return Some(d.with_hms(23, 59, 59).ok()?.assume_utc().unix_timestamp());
    }
    let norm = s.replacen('T', " ", 1);
    for f in [
        fd!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        fd!("[year]-[month]-[day] [hour]:[minute]"),
    ] {
        if let Ok(t) = time::PrimitiveDateTime::parse(&norm, f) {
            return Some(t.assume_utc().unix_timestamp());
        }
    }
    None
}

/// A `git diff`-style unified diff with 3 lines of context ("" when equal).
pub fn unified_diff(path: &str, old: &[u8], new: &[u8], from: &str, to: &str) -> String {
    use gix::diff::blob::unified_diff::{ConsumeBinaryHunk, ContextSize};
    use gix::diff::blob::{Algorithm, Diff, InternedInput, UnifiedDiff};
    if old == new {
        return String::new();
    }
    let input = InternedInput::new(BStr::new(old), BStr::new(new));
    let mut diff = Diff::compute(Algorithm::Histogram, &input);
    diff.postprocess_lines(&input);
    let body = UnifiedDiff::new(
        &diff,
        &input,
        ConsumeBinaryHunk::new(String::new(), "\n"),
        ContextSize::symmetrical(3),
    )
    .consume()
    .unwrap_or_else(|_| "(binary content differs)\n".into());
    format!("--- a/{path}\t({from})\n+++ b/{path}\t({to})\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_paths_that_could_leave_the_snapshot_are_unsafe() {
        for ok in [
            "machines/kiosk1.toml",
            "conf/10.77.1.1/10.77.1.5/mac",
            "groups/a..b.toml",
        ] {
            assert_eq!(unsafe_tree_path(ok), None, "{ok}");
        }
        for bad in [
            "machines/../../x",
            "machines/..",
            "machines/./x",
            "/etc/passwd",
            "machines//x",
            "machines/",
            "machines/.git/config",
            "machines/.GIT/hooks",
            "machines/a\nb.toml",
            "machines/a\u{7f}.toml",
            "machines/..\\x",
        ] {
            assert!(unsafe_tree_path(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn paths_must_stay_inside_the_repo() {
        assert_eq!(clean_path("machines/a.toml").unwrap(), "machines/a.toml");
        assert_eq!(clean_path("./machines//a.toml").unwrap(), "machines/a.toml");
        for bad in ["", "/etc/passwd", "../x", "a/../../x", ".git/config"] {
            assert!(clean_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn history_paths() {
        assert_eq!(
            repo_path("kiosk1:/etc/hosts").unwrap(),
            "hosts/kiosk1/etc/hosts"
        );
        assert_eq!(repo_path("machines/a.toml").unwrap(), "machines/a.toml");
        assert!(repo_path("kiosk1:/../../x").is_err());
        assert_eq!(
            split_at_rev("kiosk1:/etc/hosts@2026-11-26 14:30"),
            ("kiosk1:/etc/hosts", Some("2026-11-26 14:30"))
        );
        assert_eq!(split_at_rev("machines/a.toml"), ("machines/a.toml", None));
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("2026-11-26"), Some(1_795_737_599));
        assert_eq!(parse_date("2026-11-26 14:30"), Some(1_795_703_400));
        assert_eq!(parse_date("2026-11-26T14:30:00Z"), Some(1_795_703_400));
        assert_eq!(parse_date("HEAD~1"), None);
    }

    #[test]
    fn authors() {
        assert_eq!(
            Author::parse("Ana Admin <ana@example.org>"),
            Author {
                name: "Ana Admin".into(),
                email: "ana@example.org".into()
            }
        );
        assert!(Author::daemon().name.starts_with("pxelator "));
    }
}
