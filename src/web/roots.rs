//! A machine's network root (admin only: its overlay holds whatever the host wrote, secrets
//! included): the base it lies over, what it changed against it with the diffs of changed
//! text files, its snapshots; a snapshot now, a reset at its next boot. The same operations
//! as `pxelator overlay diff|snapshot|reset`.
use super::history::diff_block;
use super::pages::{self, Frame};
use super::{find_machine, ui_page};
use crate::auth::Who;
use crate::commands::OverlayDiff;
use crate::services::http::HttpState;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use maud::{html, Markup};

/// Changes listed on the page at most (the CLI lists them all).
const CHANGES: usize = 500;

pub struct RootView {
    pub host: String,
    pub diff: Result<OverlayDiff, String>,
    pub snapshots: Vec<(String, u64)>,
    pub reset_pending: bool,
    pub notice: Option<String>,
    pub error: Option<String>,
}

fn view(cfg: &crate::config::Config, host: &str) -> RootView {
    RootView {
        host: host.to_owned(),
        diff: crate::commands::overlay_diff(cfg, host, false).map_err(|e| format!("{e:#}")),
        snapshots: crate::nfsroot::snapshots(&cfg.state_dir, host)
            .into_iter()
            .map(|(p, n)| {
                (
                    p.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    n,
                )
            })
            .collect(),
        reset_pending: crate::nfsroot::reset_requested(&cfg.state_dir, host),
        notice: None,
        error: None,
    }
}

async fn show(
    st: &HttpState,
    who: &Who,
    headers: &HeaderMap,
    key: &str,
    act: Option<String>,
) -> Response {
    let m = match find_machine(st, key) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let host = m.name();
    let (cfg, bus, h) = (st.config.clone(), st.bus.clone(), host.clone());
    let v = tokio::task::spawn_blocking(move || {
        let done = act.map(|a| match a.as_str() {
            "snapshot" => crate::commands::overlay_snapshot(&cfg, &h).map(|(file, e)| {
                bus.emit(e);
                format!("snapshot written: {}", file.display())
            }),
            "reset" => crate::commands::overlay_reset(&cfg, &h).map(|e| {
                bus.emit(e);
                format!("{h}'s overlay starts again from its base at its next boot")
            }),
            other => Err(anyhow::anyhow!(
                "{other:?} is not an action here: snapshot or reset"
            )),
        });
        let mut v = view(&cfg, &h);
        match done {
            Some(Ok(n)) => v.notice = Some(n),
            Some(Err(e)) => v.error = Some(format!("{e:#}")),
            None => {}
        }
        v
    })
    .await
    .unwrap_or_else(|e| RootView {
        host: host.clone(),
        diff: Err(e.to_string()),
        snapshots: Vec::new(),
        reset_pending: false,
        notice: None,
        error: None,
    });
    let title = format!("Network root of {}", v.host);
    ui_page(st, headers, who, &title, v.error.is_some(), |f| {
        render(f, &v)
    })
}

pub async fn page(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    show(&st, &who, &headers, &key, None).await
}

#[derive(serde::Deserialize)]
pub struct ActForm {
    action: String,
}

pub async fn act(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Form(f): Form<ActForm>,
) -> Response {
    show(&st, &who, &headers, &key, Some(f.action)).await
}

pub fn render(f: &Frame, v: &RootView) -> Markup {
    let path = format!("/ui/machines/{}/root", v.host);
    pages::layout(
        f,
        html! {
            p { a href=(format!("/ui/machines/{}", v.host)) { "← " (v.host) } }
            h1 { "Network root of " (v.host) }
            @if let Some(n) = &v.notice { p.notice role="status" { (n) } }
            @if let Some(e) = &v.error { p.error role="alert" { (e) } }
            @match &v.diff {
                Err(e) => { p.muted { (e) } }
                Ok(d) => {
                    p { "Over base " code { (d.base) } "." @if v.reset_pending { " A reset is asked for: it is done when it next boots." } }
                    h2 { "What it changed" }
                    @if d.changes.is_empty() { p.muted { "nothing (against its base)" } } @else {
                        table #changes {
                            thead { tr { th scope="col" { "Change" } th scope="col" { "Path" } th scope="col" { "What differs" } } }
                            tbody { @for c in d.changes.iter().take(CHANGES) { tr {
                                td { (match c.kind {
                                    crate::overlay::ChangeKind::Added => "added",
                                    crate::overlay::ChangeKind::Changed => "changed",
                                    crate::overlay::ChangeKind::Deleted => "deleted",
                                }) }
                                td { code { "/" (c.path) } }
                                td { (c.detail.as_deref().unwrap_or("")) }
                            } } }
                        }
                        @if d.changes.len() > CHANGES { p.muted { (d.changes.len() - CHANGES) " more: " code { "pxelator overlay diff " (v.host) } " lists them all" } }
                    }
                    @if d.hidden > 0 { p.muted { (d.hidden) " more under the base's ignored paths (logs, caches, machine-id): " code { "pxelator overlay diff " (v.host) " --all" } } }
                    @for (p, text) in &d.diffs { h3 { code { "/" (p) } } (diff_block(text)) }
                }
            }
            h2 { "Snapshots" }
            @if v.snapshots.is_empty() { p.muted { "none" } }
            ul { @for (name, bytes) in &v.snapshots { li { code { (name) } " — " (bytes.div_ceil(1024)) " KiB" } } }
            @if let Some(token) = f.csrf {
                form method="post" action=(path) {
                    input type="hidden" name="csrf" value=(token);
                    button type="submit" name="action" value="snapshot" { "Snapshot now" }
                    " "
                    button type="submit" name="action" value="reset" { "Reset to its base at next boot" }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::{Change, ChangeKind, EntryKind};

    #[test]
    fn what_a_host_wrote_is_shown_as_text_never_as_markup() {
        let who = Who {
            user: "ada".into(),
            role: crate::core::access::Role::Admin,
            email: None,
        };
        let f = Frame {
            title: "t",
            who: Some(&who),
            csrf: Some("tok"),
        };
        let v = RootView {
            host: "ws1".into(),
            diff: Ok(OverlayDiff {
                host: "ws1".into(),
                base: "debian-v2".into(),
                changes: vec![
                    Change {
                        path: "etc/<script>x</script>".into(),
                        kind: ChangeKind::Added,
                        entry: EntryKind::File,
                        detail: None,
                    },
                    Change {
                        path: "etc/motd".into(),
                        kind: ChangeKind::Changed,
                        entry: EntryKind::File,
                        detail: Some("content".into()),
                    },
                ],
                hidden: 7,
                diffs: vec![(
                    "etc/motd".into(),
                    "--- base\n+++ host\n@@ -1 +1 @@\n-old\n+<img src=x onerror=alert(1)>\n".into(),
                )],
            }),
            snapshots: vec![("ws1-20261201T000000.000Z.tar".into(), 10_240)],
            reset_pending: true,
            notice: None,
            error: None,
        };
        let html = render(&f, &v).into_string();
        assert!(
            !html.contains("<script>x") && !html.contains("<img"),
            "{html}"
        );
        assert!(html.contains("/etc/&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("Over base <code>debian-v2</code>"));
        assert!(html.contains("7 more under the base's ignored paths"));
        assert!(html.contains("A reset is asked for"));
        assert!(html.contains("ws1-20261201T000000.000Z.tar"));
        assert!(html.contains("name=\"csrf\" value=\"tok\""));
        // Without a session token (no form can be posted) there are no buttons.
        let f = Frame { csrf: None, ..f };
        assert!(!render(&f, &v).into_string().contains("value=\"reset\""));
    }
}
