//! The storage pool page (viewers): health and its checks, each OSD by host with up/in,
//! usage and noout, members not joined yet, problems with `pool_disk` params. The same
//! `pool::status` as `pxelator pool status`.
use super::pages::{self, Frame};
use super::ui_page;
use crate::auth::Who;
use crate::pool::Status;
use crate::services::http::HttpState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use maud::{html, Markup};

pub async fn page(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
) -> Response {
    let cfg = st.config.clone();
    let inv = st.inventory.borrow().clone();
    let status = tokio::task::spawn_blocking(move || {
        crate::pool::status(&cfg, &inv).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    ui_page(&st, &headers, &who, "Storage pool", false, |f| {
        render(f, &status)
    })
}

fn mib(b: u64) -> u64 {
    b >> 20
}

pub fn render(f: &Frame, status: &Result<Status, String>) -> Markup {
    pages::layout(
        f,
        html! {
            h1 { "Storage pool" }
            @match status {
                Err(e) => { p.muted { (e) } }
                Ok(s) => {
                    p #health { "Health: " strong { (s.health.status) } " (cluster " code { (s.fsid) } ")" }
                    @if !s.health.checks.is_empty() { ul { @for c in &s.health.checks { li { (c) } } } }
                    table #osds {
                        thead { tr { th scope="col" { "Host" } th scope="col" { "OSD" } th scope="col" { "State" } th scope="col" { "Used" } th scope="col" { "Size" } th scope="col" { "Flags" } } }
                        tbody {
                            @for o in &s.osds { tr {
                                td { a href=(format!("/ui/machines/{}", o.view.host)) { (o.view.host) } }
                                td { "osd." (o.view.id) }
                                td { (if o.view.up { "up" } else { "down" }) ", " (if o.view.is_in { "in" } else { "out" }) }
                                td { (mib(o.used)) " MiB" }
                                td { (mib(o.total)) " MiB" }
                                td { @if s.noout.contains(&o.view.id) { "noout (switched off by a schedule)" } }
                            } }
                            @for h in &s.waiting { tr {
                                td { a href=(format!("/ui/machines/{h}")) { (h) } }
                                td { "—" } td { "not joined yet: it joins when it boots" } td {} td {} td {}
                            } }
                        }
                    }
                    @if !s.problems.is_empty() { h2 { "Problems" } ul { @for p in &s.problems { li { (p) } } } }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pool::OsdView;
    use crate::pool::{Health, OsdInfo};

    #[test]
    fn osds_are_listed_by_host_with_their_state_and_names_are_text() {
        let f = Frame {
            title: "t",
            who: None,
            csrf: None,
        };
        let s = Status {
            supervisor: crate::pool::Supervisor::Pxelator,
            fsid: "f".into(),
            health: Health {
                status: "HEALTH_WARN".into(),
                checks: vec!["OSD_DOWN: 1 osds down <b>".into()],
                recovering_bytes_per_sec: 0,
            },
            osds: vec![OsdInfo {
                view: OsdView {
                    id: 3,
                    host: "k3".into(),
                    up: false,
                    is_in: true,
                    noout: true,
                },
                used: 5 << 20,
                total: 3 << 30,
            }],
            noout: vec![3],
            waiting: vec!["k9".into()],
            problems: vec![],
        };
        let html = render(&f, &Ok(s)).into_string();
        assert!(html.contains("HEALTH_WARN"));
        assert!(html.contains("osd.3"));
        assert!(html.contains("down, in"));
        assert!(html.contains("noout (switched off by a schedule)"));
        assert!(html.contains("k9"));
        assert!(html.contains("&lt;b&gt;"), "check text is escaped");
        let none = render(&f, &Err("no storage pool on this appliance".into())).into_string();
        assert!(none.contains("no storage pool"));
    }
}
