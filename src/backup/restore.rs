//! Writing one pulled file back to its host, as of a revision or date: the diff first, then
//! the content through ssh's stdin; mode and owner only as numbers parsed from the metadata.
use super::*;

/// How long each of a restore's two ssh commands may take.
pub(crate) const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// Writes `path` (absolute, on `plan`'s host) back as of `rev`: content from
/// `hosts/<host>/<path>`, mode and owner from `hosts/<host>.meta` at that revision. With
/// `dry_run`, only returns the diff from the host's current content.
pub fn restore(
    cfg: &Config,
    plan: &HostPlan,
    path: &str,
    rev: &str,
    dry_run: bool,
) -> Result<String, BackupError> {
    let repo = ConfRepo::open(&cfg.conf_repo)?.ok_or_else(|| {
        BackupError::Io(format!(
            "{} is not a git repository",
            cfg.conf_repo.display()
        ))
    })?;
    let rel = path.trim_start_matches('/');
    let want = repo.cat(&format!("hosts/{}/{rel}", plan.name), rev)?;
    let meta = repo
        .cat(&format!("hosts/{}.meta", plan.name), rev)
        .unwrap_or_default();
    let mode = mode_and_owner(&String::from_utf8_lossy(&meta), &format!("/{rel}"));
    let known = known_hosts(cfg);
    let q = remote_word_quoted(&format!("/{rel}"));
    let ssh = plan.ssh(&known);
    let current = ssh.run(
        &format!("reading /{rel} to compare"),
        &format!("cat {q} 2>/dev/null || true"),
        None,
        MAX_FILE_BYTES,
        RESTORE_TIMEOUT,
    )?;
    let diff = crate::confrepo::unified_diff(
        &format!("/{rel}"),
        &current,
        &want,
        &format!("{} now", plan.name),
        rev,
    );
    if dry_run {
        return Ok(if diff.is_empty() {
            format!("/{rel} on {} already has its content of {rev}\n", plan.name)
        } else {
            diff
        });
    }
    let tmp = remote_word_quoted(&format!("/{rel}.pxelator-restore"));
    let mut script = format!("umask 077 && cat > {tmp}");
    // Only numbers parsed from the metadata reach the remote shell, never its text.
    if let Some((mode, uid, gid)) = mode {
        script.push_str(&format!(
            " && chmod {mode:o} {tmp} && chown {uid}:{gid} {tmp}"
        ));
    }
    script.push_str(&format!(" && mv -f {tmp} {q}"));
    ssh.run(
        &format!("writing /{rel} back"),
        &script,
        Some(&want),
        0,
        RESTORE_TIMEOUT,
    )?;
    Ok(format!(
        "restored /{rel} on {} as of {rev}\n{diff}",
        plan.name
    ))
}

/// The operation `pxelator backup restore` and the web UI share: finds `host` in backup.toml
/// and runs [`restore`]; a write (not a dry run) is recorded through `emit` as
/// `backup_restored`, or `backup_failed` when it did not happen.
pub fn restore_host_file(
    cfg: &Config,
    inv: &crate::inventory::Inventory,
    host: &str,
    path: &str,
    rev: &str,
    dry_run: bool,
    emit: &dyn Fn(Event),
) -> Result<String, BackupError> {
    let plans = load_plans(cfg, inv)?;
    let plan = plans
        .hosts
        .iter()
        .find(|p| p.name == host)
        .ok_or_else(|| BackupError::UnknownHost(host.to_owned()))?;
    let r = restore(cfg, plan, path, rev, dry_run);
    if !dry_run {
        emit(match &r {
            Ok(_) => Event::BackupRestored {
                host: host.to_owned(),
                path: path.to_owned(),
                rev: rev.to_owned(),
            },
            // A restore that did not happen is part of the host's history too.
            Err(e) => Event::BackupFailed {
                host: host.to_owned(),
                attempts: 1,
                reason: format!("restore of {path}@{rev}: {e}"),
            },
        });
    }
    r
}

/// The mode and owner recorded for `path` in a `.meta` text: the line for that path whose
/// mode is octal (at most 7777) and whose owner is `uid:gid` in digits. A line in any other
/// shape (hand-edited, or forged) gives nothing, so restore keeps the umask's mode and owner.
pub fn mode_and_owner(meta: &str, path: &str) -> Option<(u32, u64, u64)> {
    meta.lines().find_map(|l| {
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() < 4 || f[0] != path {
            return None;
        }
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let (uid, gid) = f[3].split_once(':')?;
        if !(digits(f[2]) && f[2].len() <= 4 && digits(uid) && digits(gid)) {
            return None;
        }
        let mode = u32::from_str_radix(f[2], 8).ok().filter(|m| *m <= 0o7777)?;
        Some((mode, uid.parse().ok()?, gid.parse().ok()?))
    })
}
