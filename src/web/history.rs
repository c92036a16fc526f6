//! A machine's config history: its file's commits, the diff between any two of them, the file
//! as of a date, and "restore this version" (a new commit by the logged-in user). The same
//! operations as `pxelator history log|diff|cat|revert`.
use super::pages::{self, Frame};
use super::{find_machine, ui_page, wait_for_commit};
use crate::auth::Who;
use crate::commands;
use crate::confrepo::{ConfRepo, LogEntry};
use crate::core::access::Role;
use crate::services::http::HttpState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{html, Markup};

/// How many commits the page lists.
const LOG_LIMIT: usize = 100;
/// How much of a file as of a date the page shows.
const SHOW_MAX: usize = 256 * 1024;

#[derive(serde::Deserialize, Default)]
pub struct HistoryQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    at: String,
}

/// A revision or date as typed in a form: bounded, printable, no option-like or path-like
/// tricks (gix resolves it; nothing runs a shell).
fn rev_ok(s: &str) -> Result<&str, String> {
    let s = s.trim();
    if s.len() > 64 || s.chars().any(|c| c.is_control()) {
        return Err(format!(
            "{:?} is not a revision or a date: give a commit id, HEAD~N, or a date like 2026-11-26 14:30",
            s.chars().take(64).collect::<String>()
        ));
    }
    Ok(s)
}

pub struct HistoryView {
    pub name: String,
    pub file: String,
    pub log: Vec<LogEntry>,
    pub from: String,
    pub to: String,
    pub diff: Option<String>,
    pub at: String,
    /// The file as of `at`: (the commit it comes from, its text, whether it was cut).
    pub content: Option<(String, String, bool)>,
    pub can_edit: bool,
    pub error: Option<String>,
}

pub async fn page(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let m = match find_machine(&st, &key) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let name = m.name();
    let (root, file) = (st.conf_repo.clone(), m.file.clone());
    let mut v = HistoryView {
        name,
        file: m.file.clone(),
        log: Vec::new(),
        from: q.from.trim().to_string(),
        to: q.to.trim().to_string(),
        diff: None,
        at: q.at.trim().to_string(),
        content: None,
        can_edit: who.role >= Role::Operator,
        error: None,
    };
    let (from, to, at) = (v.from.clone(), v.to.clone(), v.at.clone());
    let res = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let repo = ConfRepo::open(&root)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{} is not a git repository", root.display()))?;
        let log = repo
            .log(Some(&file), LOG_LIMIT)
            .map_err(|e| e.to_string())?;
        let diff = if from.is_empty() && to.is_empty() {
            None
        } else {
            let from = rev_ok(&from)?;
            let to = rev_ok(&to)?;
            let (f, t) = (
                (!from.is_empty()).then_some(from),
                (!to.is_empty()).then_some(to),
            );
            Some(repo.diff(&file, f, t).map_err(|e| e.to_string())?)
        };
        let content = if at.is_empty() {
            None
        } else {
            let at = rev_ok(&at)?;
            let id = repo.resolve(at).map_err(|e| e.to_string())?;
            let bytes = repo
                .cat(&file, &id.to_string())
                .map_err(|e| e.to_string())?;
            let cut = bytes.len() > SHOW_MAX;
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOW_MAX)]).into_owned();
            Some((id.to_string(), text, cut))
        };
        Ok((log, diff, content))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match res {
        Ok((log, diff, content)) => {
            v.log = log;
            v.diff = diff;
            v.content = content;
        }
        Err(e) => {
            v.error = Some(e);
            // The log alone, so the page still offers the commits to choose from.
            let (root, file) = (st.conf_repo.clone(), m.file.clone());
            v.log = tokio::task::spawn_blocking(move || {
                ConfRepo::open(&root)
                    .ok()
                    .flatten()
                    .and_then(|r| r.log(Some(&file), LOG_LIMIT).ok())
                    .unwrap_or_default()
            })
            .await
            .unwrap_or_default();
        }
    }
    let title = format!("History of {}", v.name);
    ui_page(&st, &headers, &who, &title, v.error.is_some(), |f| {
        render(f, &v)
    })
}

#[derive(serde::Deserialize)]
pub struct RevertForm {
    rev: String,
}

/// The guard has checked the role (operator) and the form's CSRF token.
pub async fn revert(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    Path(key): Path<String>,
    Form(form): Form<RevertForm>,
) -> Response {
    let m = match find_machine(&st, &key) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let rev = match rev_ok(&form.rev) {
        Ok(r) if !r.is_empty() => r.to_string(),
        Ok(_) => {
            return (StatusCode::BAD_REQUEST, "say which version to restore\n").into_response()
        }
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let (cfg, author, spec) = (st.config.clone(), who.author(), format!("{}@{rev}", m.file));
    let r = wait_for_commit(&st, move || commands::history_revert(&cfg, &spec, &author)).await;
    let name = m.name();
    match r {
        Ok(c) => {
            let short: String = c.commit.unwrap_or_default().chars().take(12).collect();
            Redirect::to(&format!("/ui/machines/{name}?done={short}")).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

/// A unified diff, each line classed by its first character.
pub fn diff_block(diff: &str) -> Markup {
    html! {
        pre.diff { @for line in diff.lines() {
            @let class = match line.as_bytes().first() {
                Some(b'+') if !line.starts_with("+++") => "add",
                Some(b'-') if !line.starts_with("---") => "del",
                Some(b'@') => "hunk",
                _ => "ctx",
            };
            span class=(class) { (line) } "\n"
        } }
    }
}

pub fn render(f: &Frame, v: &HistoryView) -> Markup {
    let base = format!("/ui/machines/{}/history", v.name);
    pages::layout(
        f,
        html! {
            p { a href=(format!("/ui/machines/{}", v.name)) { "← " (v.name) } }
            h1 { "History of " code { (v.file) } }
            @if let Some(e) = &v.error { p.error role="alert" { (e) } }
            @if let Some(d) = &v.diff {
                h2 { "Changes from " code { (if v.from.is_empty() { "its last change" } else { &v.from }) }
                     " to " code { (if v.to.is_empty() { "now" } else { &v.to }) } }
                @if d.trim().is_empty() { p.muted { "no difference" } } @else { (diff_block(d)) }
            }
            @if let Some((id, text, cut)) = &v.content {
                h2 { "As of " (v.at) " (commit " code { (id.get(..12).unwrap_or(id)) } ")" }
                pre { (text) }
                @if *cut { p.muted { "(cut at " (SHOW_MAX / 1024) " KiB)" } }
            }
            h2 { "Compare" }
            form method="get" action=(base) {
                table {
                    thead { tr { th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Commit" }
                        th scope="col" { "When" } th scope="col" { "Author" } th scope="col" { "Message" }
                        @if v.can_edit { th scope="col" { "Restore" } } } }
                    tbody { @for (i, e) in v.log.iter().enumerate() { tr {
                        @let short = e.commit.get(..12).unwrap_or(&e.commit);
                        td { input type="radio" name="from" value=(short) aria-label=(format!("from {short}"))
                            checked[v.from == short || (v.from.is_empty() && i == 1)]; }
                        td { input type="radio" name="to" value=(short) aria-label=(format!("to {short}"))
                            checked[v.to == short || (v.to.is_empty() && i == 0)]; }
                        td { code { (short) } }
                        td.t { (crate::clock::rfc3339(e.time.max(0) as u64)) }
                        td { (e.author) " <" (e.email) ">" }
                        td { (e.message) }
                        @if v.can_edit { td { @if i > 0 {
                            button type="submit" form=(format!("revert-{short}")) { "Restore this version" }
                        } } }
                    } } }
                }
                button.primary #compare type="submit" { "Show changes" }
            }
            // One small form per version (outside the compare form: forms do not nest).
            @if v.can_edit { @for e in v.log.iter().skip(1) {
                @let short = e.commit.get(..12).unwrap_or(&e.commit);
                form.inline id=(format!("revert-{short}")) method="post" action=(format!("/ui/machines/{}/revert", v.name)) {
                    input type="hidden" name="csrf" value=(f.csrf.unwrap_or(""));
                    input type="hidden" name="rev" value=(short);
                }
            } }
            h2 { "The file as of a date" }
            form method="get" action=(base) {
                label for="at" { "Date and time (UTC), or a commit" }
                input #at name="at" value=(v.at) placeholder="2026-11-26 14:30";
                " " button.primary type="submit" { "Show" }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_is_escaped_and_classed() {
        let d = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old <b>\n+new & x\n ctx\n";
        let h = diff_block(d).into_string();
        assert!(
            h.contains("<span class=\"del\">-old &lt;b&gt;</span>"),
            "{h}"
        );
        assert!(h.contains("<span class=\"add\">+new &amp; x</span>"), "{h}");
        assert!(h.contains("<span class=\"hunk\">"), "{h}");
        assert!(h.contains("<span class=\"ctx\">+++ b/x</span>"), "{h}");
    }

    #[test]
    fn revisions_from_forms_are_bounded() {
        assert_eq!(rev_ok(" HEAD~1 ").unwrap(), "HEAD~1");
        assert!(rev_ok(&"a".repeat(65)).is_err());
        assert!(rev_ok("HEAD\n--output=x").is_err());
    }
}
