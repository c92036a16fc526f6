//! One-time boot overrides ("next boot: local disk / netboot"): machine state, not
//! configuration — like leases it lives in `state_dir/next-boot.json`, not in the conf repo.
//! Set from the web UI or `pxelator host next-boot`, used (and removed) by the daemon when it
//! serves the machine's boot script or pxelinux config. Every change holds an exclusive lock
//! on `state_dir/next-boot.lock`, so the CLI and the daemon never lose each other's writes.
use crate::core::boot::NextBoot;
use crate::core::mac::Mac;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// At most this many overrides are kept (one per machine; a bound on the file).
pub const MAX: usize = 100_000;

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("next-boot.json")
}

#[derive(Debug, thiserror::Error)]
pub enum NextBootError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a next-boot file ({msg}); remove it to clear every override")]
    Bad { path: PathBuf, msg: String },
    #[error("{0} one-time boot overrides are set already; clear some first")]
    Full(usize),
}

/// Every override set now.
pub fn load(state_dir: &Path) -> Result<BTreeMap<Mac, NextBoot>, NextBootError> {
    let p = path(state_dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => return Err(NextBootError::Io { path: p, source }),
    };
    let raw: BTreeMap<String, NextBoot> =
        serde_json::from_str(&text).map_err(|e| NextBootError::Bad {
            path: p.clone(),
            msg: e.to_string(),
        })?;
    raw.into_iter()
        .map(|(k, v)| {
            k.parse::<Mac>()
                .map(|m| (m, v))
                .map_err(|_| NextBootError::Bad {
                    path: p.clone(),
                    msg: format!("{k:?} is not a MAC address"),
                })
        })
        .collect()
}

/// Changes the overrides under the lock: `f` gets them and says what to keep; returns what
/// `f` returned.
fn change<T>(
    state_dir: &Path,
    f: impl FnOnce(&mut BTreeMap<Mac, NextBoot>) -> T,
) -> Result<T, NextBootError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| NextBootError::Io { path, source }
    };
    std::fs::create_dir_all(state_dir).map_err(io(state_dir))?;
    let lock_path = state_dir.join("next-boot.lock");
    let _lock = crate::fsutil::lock_exclusive(&lock_path).map_err(io(&lock_path))?;
    let mut all = load(state_dir)?;
    let out = f(&mut all);
    if all.len() > MAX {
        return Err(NextBootError::Full(MAX));
    }
    let text: BTreeMap<String, NextBoot> =
        all.into_iter().map(|(m, n)| (m.to_string(), n)).collect();
    let p = path(state_dir);
    let json = serde_json::to_vec_pretty(&text).expect("a map of strings serializes");
    crate::fsutil::write_private(&p, &json).map_err(io(&p))?;
    Ok(out)
}

/// Sets (or with None clears) the override of `mac`; returns the one it replaced.
pub fn set(
    state_dir: &Path,
    mac: Mac,
    next: Option<NextBoot>,
) -> Result<Option<NextBoot>, NextBootError> {
    change(state_dir, |all| match next {
        Some(n) => all.insert(mac, n),
        None => all.remove(&mac),
    })
}

/// Takes the override of `mac` out (it applies to one boot); None when there is none. Reads
/// without the lock first, so a boot with no override writes nothing.
pub fn take(state_dir: &Path, mac: Mac) -> Result<Option<NextBoot>, NextBootError> {
    if !load(state_dir)?.contains_key(&mac) {
        return Ok(None);
    }
    change(state_dir, |all| all.remove(&mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_take_once_and_clear() {
        let d = tempfile::tempdir().unwrap();
        let m: Mac = "52:54:00:00:00:01".parse().unwrap();
        let other: Mac = "52:54:00:00:00:02".parse().unwrap();
        assert_eq!(take(d.path(), m).unwrap(), None);
        assert!(!d.path().join("next-boot.json").exists(), "nothing written");
        set(d.path(), m, Some(NextBoot::Local)).unwrap();
        set(d.path(), other, Some(NextBoot::Netboot)).unwrap();
        assert_eq!(load(d.path()).unwrap().len(), 2);
        assert_eq!(take(d.path(), m).unwrap(), Some(NextBoot::Local));
        assert_eq!(take(d.path(), m).unwrap(), None, "one boot only");
        assert_eq!(set(d.path(), other, None).unwrap(), Some(NextBoot::Netboot));
        assert!(load(d.path()).unwrap().is_empty());
    }

    #[test]
    fn a_damaged_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("next-boot.json"), "{\"nope\": \"local\"}").unwrap();
        let e = load(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("next-boot.json") && e.contains("not a MAC"),
            "{e}"
        );
    }
}
