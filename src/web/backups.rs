//! A machine's host-file backups (admin only: they hold configuration read off the host): the
//! last pull, the pulls with the files each changed, a file's last change as a diff, and
//! restore — a preview (the diff from what the host has now, read over ssh) and then the
//! write. The same operations as `pxelator backup status|restore [--dry-run]` and
//! `pxelator history diff`.
use super::history::diff_block;
use super::pages::{self, Frame};
use super::{find_machine, ui_page};
use crate::auth::Who;
use crate::backup;
use crate::confrepo::{ConfRepo, LogEntry};
use crate::services::http::HttpState;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use maud::{html, Markup};

/// Pulls listed, and how many of them get their changed files listed.
const PULLS: usize = 20;
const PULLS_WITH_FILES: usize = 10;
/// Changed files listed per pull.
const FILES_PER_PULL: usize = 50;

/// A pulled file's path under `hosts/<host>/` from a form: relative, clean, bounded.
fn file_ok(s: &str) -> Result<String, String> {
    let s = s.trim().trim_start_matches('/');
    if s.is_empty() || s.len() > 1024 {
        return Err("say which file: a path as listed, e.g. etc/hosts".into());
    }
    crate::confrepo::clean_path(s).map_err(|e| e.to_string())
}

/// A revision from a form: a commit id or a date, as the history page takes them.
fn rev_ok(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok("HEAD".into());
    }
    if s.len() > 64 || s.chars().any(|c| c.is_control()) {
        return Err("a revision is a commit id, HEAD~N or a date like 2026-11-26".into());
    }
    Ok(s.to_string())
}

pub struct Pull {
    pub entry: LogEntry,
    /// Files it changed (relative to the host's directory), None when not looked up.
    pub changed: Option<Vec<String>>,
}

pub struct BackupsView {
    pub host: String,
    pub in_plan: bool,
    pub last: Option<backup::HostResult>,
    pub pulls: Vec<Pull>,
    pub files: Vec<String>,
    /// The selected file: its last change, and the versions to restore from.
    pub file: Option<(String, String, Vec<LogEntry>)>,
    pub error: Option<String>,
}

impl BackupsView {
    /// The page with nothing but what went wrong.
    fn failed(host: &str, error: String) -> BackupsView {
        BackupsView {
            host: host.to_string(),
            in_plan: false,
            last: None,
            pulls: Vec::new(),
            files: Vec::new(),
            file: None,
            error: Some(error),
        }
    }
}

#[derive(serde::Deserialize, Default)]
pub struct BackupsQuery {
    #[serde(default)]
    file: String,
}

pub async fn page(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Query<BackupsQuery>,
) -> Response {
    let m = match find_machine(&st, &key) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let host = m.name();
    let (cfg, inv, h) = (
        st.config.clone(),
        st.inventory.borrow().clone(),
        host.clone(),
    );
    let file = (!q.file.trim().is_empty()).then(|| file_ok(&q.file));
    let v = tokio::task::spawn_blocking(move || view(&cfg, &inv, &h, file))
        .await
        .unwrap_or_else(|e| BackupsView::failed(&host, e.to_string()));
    let title = format!("Backups of {}", v.host);
    ui_page(&st, &headers, &who, &title, v.error.is_some(), |f| {
        render(f, &v, None)
    })
}

fn view(
    cfg: &crate::config::Config,
    inv: &crate::inventory::Inventory,
    host: &str,
    file: Option<Result<String, String>>,
) -> BackupsView {
    let mut v = BackupsView {
        host: host.to_string(),
        in_plan: false,
        last: backup::load_status(cfg)
            .into_iter()
            .find(|r| r.host == host),
        pulls: Vec::new(),
        files: Vec::new(),
        file: None,
        error: None,
    };
    match backup::load_plans(cfg, inv) {
        Ok(p) => v.in_plan = p.hosts.iter().any(|p| p.name == host),
        Err(e) => v.error = Some(e.to_string()),
    }
    let repo = match ConfRepo::open(&cfg.conf_repo) {
        Ok(Some(r)) => r,
        Ok(None) => return v,
        Err(e) => {
            v.error = Some(e.to_string());
            return v;
        }
    };
    let dir = format!("hosts/{host}/");
    let res = (|| -> Result<(), String> {
        let log = repo
            .log(Some(dir.trim_end_matches('/')), PULLS)
            .map_err(|e| e.to_string())?;
        for (i, entry) in log.into_iter().enumerate() {
            let changed = if i < PULLS_WITH_FILES {
                let mut c = repo
                    .changed(&entry.commit, &dir)
                    .map_err(|e| e.to_string())?;
                c.truncate(FILES_PER_PULL);
                Some(
                    c.into_iter()
                        .map(|p| p.trim_start_matches(&dir).to_string())
                        .collect(),
                )
            } else {
                None
            };
            v.pulls.push(Pull { entry, changed });
        }
        if let Some(head) = repo.head().map_err(|e| e.to_string())? {
            v.files = repo
                .files(head, &dir)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(p, _)| p.trim_start_matches(&dir).to_string())
                .collect();
            v.files.sort();
        }
        if let Some(f) = file {
            let f = f?;
            let path = format!("{dir}{f}");
            let diff = repo.diff(&path, None, None).map_err(|e| e.to_string())?;
            let versions = repo.log(Some(&path), PULLS).map_err(|e| e.to_string())?;
            v.file = Some((f, diff, versions));
        }
        Ok(())
    })();
    if let Err(e) = res {
        v.error = Some(e);
    }
    v
}

#[derive(serde::Deserialize)]
pub struct RestoreForm {
    file: String,
    #[serde(default)]
    rev: String,
    /// "1" writes; anything else previews.
    #[serde(default)]
    confirm: String,
}

/// What a restore form did: the preview's diff (and the form to confirm it), or the write's
/// result.
pub struct Restored {
    pub file: String,
    pub rev: String,
    pub written: bool,
    pub result: Result<String, String>,
}

/// The guard has checked the role (admin) and the form's CSRF token.
pub async fn restore(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Form(form): Form<RestoreForm>,
) -> Response {
    let m = match find_machine(&st, &key) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let host = m.name();
    let write = form.confirm == "1";
    let checked = file_ok(&form.file).and_then(|f| Ok((f, rev_ok(&form.rev)?)));
    let (file, rev) = match &checked {
        Ok((f, r)) => (f.clone(), r.clone()),
        Err(_) => (form.file.chars().take(200).collect(), form.rev.clone()),
    };
    let result = match checked {
        Err(e) => Err(e),
        Ok((f, r)) => {
            let (cfg, inv, h, bus) = (
                st.config.clone(),
                st.inventory.borrow().clone(),
                host.clone(),
                st.bus.clone(),
            );
            tokio::task::spawn_blocking(move || {
                backup::restore_host_file(&cfg, &inv, &h, &format!("/{f}"), &r, !write, &|e| {
                    bus.emit(e)
                })
                .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
        }
    };
    let r = Restored {
        file,
        rev,
        written: write,
        result,
    };
    let (cfg, inv, h) = (
        st.config.clone(),
        st.inventory.borrow().clone(),
        host.clone(),
    );
    let sel = Some(Ok(r.file.clone()));
    let v = tokio::task::spawn_blocking(move || view(&cfg, &inv, &h, sel))
        .await
        .unwrap_or_else(|e| BackupsView::failed(&host, e.to_string()));
    let title = format!("Backups of {}", v.host);
    ui_page(&st, &headers, &who, &title, r.result.is_err(), |f| {
        render(f, &v, Some(&r))
    })
}

fn restore_form(f: &Frame, host: &str, file: &str, rev: &str, confirm: bool) -> Markup {
    html! {
        form method="post" action=(format!("/ui/machines/{host}/restore")) {
            input type="hidden" name="csrf" value=(f.csrf.unwrap_or(""));
            input type="hidden" name="file" value=(file);
            @if confirm {
                input type="hidden" name="rev" value=(rev);
                input type="hidden" name="confirm" value="1";
                button.primary #restore-now type="submit" { "Restore /" (file) " as of " (rev) " now" }
            } @else {
                label for="rev" { "Version (commit or date)" }
                input #rev name="rev" value=(rev) placeholder="HEAD";
                " " button.primary #preview type="submit" { "Preview restore" }
            }
        }
    }
}

pub fn render(f: &Frame, v: &BackupsView, restored: Option<&Restored>) -> Markup {
    let host = &v.host;
    let base = format!("/ui/machines/{host}/backups");
    pages::layout(
        f,
        html! {
            p { a href=(format!("/ui/machines/{host}")) { "← " (host) } }
            h1 { "Backups of " (host) }
            @if let Some(e) = &v.error { p.error role="alert" { (e) } }
            @if let Some(r) = restored {
                @match &r.result {
                    Ok(out) if r.written => {
                        p.notice role="status" { "Restored /" (r.file) " on " (host) " as of " (r.rev) "." }
                        (diff_block(out))
                    }
                    Ok(out) => {
                        h2 #preview-result { "Preview: /" (r.file) " on " (host) " → as of " (r.rev) }
                        @if out.starts_with('/') { p.muted { (out) } } @else {
                            (diff_block(out))
                            (restore_form(f, host, &r.file, &r.rev, true))
                        }
                    }
                    Err(e) => p.error role="alert" { "Restore of /" (r.file) " as of " (r.rev) ": " (e) },
                }
            }
            div.grid {
                span { "In backup.toml" } span { @if v.in_plan { "yes" } @else { "no (add [host." (host) "] to pull its files)" } }
                span { "Last pull" }
                span { @match &v.last {
                    None => "never",
                    Some(l) => {
                        (crate::clock::rfc3339(l.time)) " — " (if l.ok { "ok" } else { "FAILED" }) ": " (l.message)
                    }
                } }
            }
            @if let Some((file, diff, versions)) = &v.file {
                h2 #file { code { "/" (file) } }
                h3 { "Its last change" }
                @if diff.trim().is_empty() { p.muted { "no change recorded" } } @else { (diff_block(diff)) }
                h3 { "Versions" }
                ul { @for e in versions { li { code { (e.commit.get(..12).unwrap_or(&e.commit)) } " "
                    (crate::clock::rfc3339(e.time.max(0) as u64)) " " (e.message.lines().next().unwrap_or("")) } } }
                (restore_form(f, host, file, "", false))
            }
            h2 { "Pulls" }
            @if v.pulls.is_empty() { p.muted { "none yet" } } @else {
                table #pulls {
                    thead { tr { th scope="col" { "Commit" } th scope="col" { "When" } th scope="col" { "Message" } th scope="col" { "Files changed" } } }
                    tbody { @for p in &v.pulls { tr {
                        td { code { (p.entry.commit.get(..12).unwrap_or(&p.entry.commit)) } }
                        td.t { (crate::clock::rfc3339(p.entry.time.max(0) as u64)) }
                        td { (p.entry.message.lines().next().unwrap_or("")) }
                        td { @match &p.changed {
                            None => span.muted { "…" },
                            Some(c) => { @for (i, file) in c.iter().enumerate() {
                                @if i > 0 { ", " }
                                a href=(format!("{base}?{}#file", serde_urlencoded::to_string([("file", file)]).unwrap_or_default())) { (file) }
                            } }
                        } }
                    } } }
                }
            }
            h2 { "Files" }
            @if v.files.is_empty() { p.muted { "none pulled" } } @else {
                ul.files { @for file in &v.files { li {
                    a href=(format!("{base}?{}#file", serde_urlencoded::to_string([("file", file)]).unwrap_or_default())) { (file) }
                } } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_paths_and_revisions_are_checked() {
        assert_eq!(file_ok("/etc/hosts").unwrap(), "etc/hosts");
        assert!(file_ok("../../etc/shadow").is_err());
        assert!(file_ok("").is_err());
        assert_eq!(rev_ok("").unwrap(), "HEAD");
        assert!(rev_ok("x\ny").is_err());
    }
}
