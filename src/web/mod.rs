//! The web UI (`/ui/…`), served by the daemon's HTTP server behind the same guard as the API
//! (`services::api_auth`: session cookie, role per route from `core::access`, CSRF token on
//! every form POST). Handlers gather typed data — the inventory the daemon serves, the
//! last-seen table, the audit store, the conf repo — and [`pages`] renders it. Changes go
//! through the same operations as the CLI ([`crate::commands`]), committed as the logged-in
//! user.
pub mod backups;
pub mod graphs;
pub mod history;
pub mod images;
pub mod pages;
pub mod pool;
pub mod power;
pub mod roots;

use crate::auth::Who;
use crate::commands::{self, MachineRow};
use crate::core::access::Role;
use crate::core::seen::{self, LastSeen};
use crate::inventory::edit::{self, HostSpec};
use crate::services::api_auth;
use crate::services::http::HttpState;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::Markup;
use pages::Frame;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The last-seen table the overview reads, fed by the daemon (`app`).
pub type SharedSeen = Arc<Mutex<LastSeen>>;
/// The daemon's own health summary the health page reads, fed by the daemon (`app`).
pub type SharedHealth = Arc<Mutex<crate::core::health::Health>>;

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(overview))
        .route("/ui/login", get(login_form).post(login_post))
        .route("/ui/logout", post(logout))
        .route("/ui/machines/{who}", get(machine_page).post(machine_edit))
        .route("/ui/machines/{who}/history", get(history::page))
        .route("/ui/machines/{who}/revert", post(history::revert))
        .route("/ui/machines/{who}/power", post(power::machine))
        .route("/ui/machines/{who}/next-boot", post(next_boot))
        .route("/ui/machines/{who}/backups", get(backups::page))
        .route("/ui/machines/{who}/restore", post(backups::restore))
        .route("/ui/machines/{who}/root", get(roots::page).post(roots::act))
        .route("/ui/groups", get(power::page))
        .route("/ui/images", get(images::page))
        .route("/ui/graphs", get(graphs::page))
        .route("/ui/pool", get(pool::page))
        .route("/ui/images/import", post(images::import))
        .route("/ui/images/remove", post(images::remove))
        .route("/ui/profiles/{name}/image", post(images::use_image))
        .route("/ui/groups/{name}/power", post(power::group))
        .route("/ui/groups/{name}/defaults", post(power::defaults))
        .route("/ui/audit", get(audit_page))
        .route("/ui/health", get(health_page))
        .route("/ui/live", get(live))
        // Pages are text that compresses ~10:1 (the overview of 1 000 machines: see BENCHMARKS.md).
        .layer(tower_http::compression::CompressionLayer::new())
        .route("/ui/audit.csv", get(audit_csv))
}

fn html(status: StatusCode, m: Markup) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        m.into_string(),
    )
        .into_response()
}

/// A page for `who`: the frame (title, the user, the session's CSRF token for its forms)
/// handed to `render`; 400 when the page reports a refused or failed request, else 200.
fn ui_page(
    st: &HttpState,
    headers: &HeaderMap,
    who: &Who,
    title: &str,
    failed: bool,
    render: impl FnOnce(&Frame) -> Markup,
) -> Response {
    let token = csrf(st, headers);
    let f = Frame {
        title,
        who: Some(who),
        csrf: token.as_deref(),
    };
    let status = if failed {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    html(status, render(&f))
}

/// The session's CSRF token, for the forms of the page.
fn csrf(st: &HttpState, headers: &HeaderMap) -> Option<String> {
    let c = api_auth::cookie_value(headers)?;
    st.auth
        .sessions
        .get(&c, crate::clock::unix_now_ms())
        .map(|s| s.csrf)
}

async fn login_form() -> Response {
    html(StatusCode::OK, pages::login(None, ""))
}

#[derive(serde::Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

async fn login_post(
    State(st): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(f): Form<LoginForm>,
) -> Response {
    match api_auth::start_session(&st, peer, &f.user, f.password).await {
        Ok((who, set_cookie, _)) => {
            let mut r = Redirect::to("/ui/").into_response();
            if let Ok(v) = header::HeaderValue::from_str(&set_cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r.extensions_mut().insert(who);
            r
        }
        Err(refusal) => {
            let user: String = f.user.chars().take(64).collect();
            // The form again with the reason: a page for a person, so 200 (the refusal is
            // still an auth_failed event); the rate limit keeps its 429 and Retry-After.
            let status = match refusal.status {
                StatusCode::UNAUTHORIZED => StatusCode::OK,
                s => s,
            };
            let mut r = html(status, pages::login(Some(refusal.message.trim()), &user));
            if let Some(secs) = refusal.retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
            }
            r
        }
    }
}

/// The guard has checked the session and the form's CSRF token.
async fn logout(State(st): State<HttpState>, headers: HeaderMap) -> Response {
    if let Some(c) = api_auth::cookie_value(&headers) {
        st.auth.sessions.end(&c);
    }
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        header::HeaderValue::from_static(
            "pxl_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
    r
}

#[derive(serde::Deserialize, Default)]
struct OverviewQuery {
    #[serde(default)]
    q: String,
}

fn matches(m: &MachineRow, q: &str) -> bool {
    let q = q.to_ascii_lowercase();
    [
        m.hostname.clone(),
        Some(m.mac.to_string()),
        m.ip.map(|i| i.to_string()),
        m.group.clone(),
        m.profile.clone(),
    ]
    .into_iter()
    .flatten()
    .any(|s| s.to_ascii_lowercase().contains(&q))
}

async fn overview(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Query(q): Query<OverviewQuery>,
) -> Response {
    let now = crate::clock::unix_now_ms();
    let all = commands::machine_rows(&st.inventory.borrow(), &st.conf_repo);
    let total = all.len();
    let rows: Vec<pages::Row> = {
        let seen = st
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.into_iter()
            .filter(|m| q.q.is_empty() || matches(m, &q.q))
            .map(|m| {
                let times = seen.machine(m.mac, m.ip);
                pages::Row {
                    state: seen::state(&times, now),
                    times,
                    machine: m,
                }
            })
            .collect()
    };
    ui_page(&st, &headers, &who, "Machines", false, |f| {
        pages::overview(f, &rows, &q.q, total, now)
    })
}

#[derive(serde::Deserialize, Default)]
struct MachineQuery {
    done: Option<String>,
    /// Page the events: those before this time (unix ms).
    before: Option<i64>,
}

/// Runs `run` on a reader of the audit store with the API's turn-taking (a bounded wait) and
/// deadline; `None` when auditing is off.
async fn with_store<T: Send + 'static>(
    st: &HttpState,
    run: impl FnOnce(&dyn crate::audit::AuditStore) -> Result<T, crate::audit::AuditError>
        + Send
        + 'static,
) -> Result<Option<T>, String> {
    if st.audit.is_none() {
        return Ok(None);
    }
    let (cfg, turn) = crate::services::http::audit_slot(st)
        .await
        .map_err(|(_, why)| why.trim().to_string())?;
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let deadline = std::time::Instant::now() + crate::services::http::AUDIT_QUERY_TIME;
        let stop = Box::new(move || std::time::Instant::now() > deadline);
        let store =
            crate::audit::open_bounded_reader(&cfg, Some(stop)).map_err(|e| e.to_string())?;
        run(store.as_ref()).map(Some).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The newest `limit` events matching `filter` (the store's limits and deadline apply); none
/// when auditing is off.
async fn newest_events(
    st: &HttpState,
    filter: serde_json::Value,
    limit: u64,
) -> Result<Vec<serde_json::Value>, String> {
    with_store(st, move |s| {
        s.find(&filter, Some(&serde_json::json!({"time": -1})), Some(limit))
    })
    .await
    .map(Option::unwrap_or_default)
}

/// The newest `limit` events of a machine (by MAC or IP), before `before` (unix ms) if given.
async fn machine_events(
    st: &HttpState,
    m: &MachineRow,
    limit: u64,
    before: Option<i64>,
) -> Result<Vec<serde_json::Value>, String> {
    let mut who = vec![serde_json::json!({"mac": m.mac.to_string()})];
    if let Some(ip) = m.ip {
        who.push(serde_json::json!({"ip": ip.to_string()}));
    }
    let mut filter = serde_json::json!({"$or": who});
    if let Some(b) = before {
        filter["time"] = serde_json::json!({"$lt": b});
    }
    newest_events(st, filter, limit).await
}

/// The machine a hostname, MAC or IP names in the served inventory; 404 with its name if none.
fn find_machine(st: &HttpState, key: &str) -> Result<MachineRow, (StatusCode, String)> {
    let inv = st.inventory.borrow();
    edit::find(&inv, key)
        .map(|m| MachineRow::new(m, &st.conf_repo))
        .ok_or((
            StatusCode::NOT_FOUND,
            format!("no machine {key:?} in the inventory"),
        ))
}

/// Events listed per page on the machine page.
const EVENTS_PAGE: usize = 50;

async fn machine_view(
    st: &HttpState,
    who: &Who,
    key: &str,
    before: Option<i64>,
    notice: Option<String>,
    error: Option<String>,
) -> Result<pages::MachineView, (StatusCode, String)> {
    let machine = find_machine(st, key)?;
    let now = crate::clock::unix_now_ms();
    let times = st
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .machine(machine.mac, machine.ip);
    // The newest 500 events make the boot stories; the newest 50 are listed (or, paging, the
    // 50 before `before`).
    let (mut events, ev_err) = match machine_events(st, &machine, 500, None).await {
        Ok(e) => (e, None),
        Err(e) => (Vec::new(), Some(format!("audit store: {e}"))),
    };
    let boots = crate::core::story::boots(&events, 5);
    let recipes = match &machine.hostname {
        Some(h) => newest_events(
            st,
            crate::remote::status_filter(std::slice::from_ref(h)),
            200,
        )
        .await
        .map(|e| crate::core::recipe::latest(&e))
        .unwrap_or_default(),
        None => Vec::new(),
    };
    events.truncate(EVENTS_PAGE);
    let (events, ev_err): (Vec<serde_json::Value>, _) = match before {
        None => (events, ev_err),
        Some(b) => match machine_events(st, &machine, EVENTS_PAGE as u64, Some(b)).await {
            Ok(e) => (e, ev_err),
            Err(e) => (Vec::new(), Some(format!("audit store: {e}"))),
        },
    };
    let repo = st.conf_repo.clone();
    let file = machine.file.clone();
    let (state_dir, mac) = (st.config.state_dir.clone(), machine.mac);
    let (history, next_boot) = tokio::task::spawn_blocking(move || {
        let log = crate::confrepo::ConfRepo::open(&repo)
            .ok()
            .flatten()
            .and_then(|r| r.log(Some(&file), 20).ok())
            .unwrap_or_default();
        let next = crate::nextboot::load(&state_dir)
            .map(|all| all.get(&mac).copied())
            .map_err(|e| e.to_string());
        (log, next)
    })
    .await
    .unwrap_or_else(|e| (Vec::new(), Err(e.to_string())));
    let more = events.len() == EVENTS_PAGE;
    Ok(pages::MachineView {
        state: seen::state(&times, now),
        times,
        events,
        history,
        recipes,
        boots,
        can_edit: who.role >= Role::Operator,
        is_admin: who.role >= Role::Admin,
        next_boot: next_boot.clone().ok().flatten(),
        group_defaults: machine
            .group
            .as_ref()
            .and_then(|g| st.inventory.borrow().group_defaults().get(g).cloned())
            .unwrap_or_default(),
        before,
        more,
        notice,
        error: error.or(ev_err).or(next_boot.err()),
        machine,
    })
}

async fn machine_page(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Query(q): Query<MachineQuery>,
) -> Response {
    let notice = q
        .done
        .filter(|d| d.len() <= 40 && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|d| {
            let a = who.author();
            format!("Committed {d} as {} <{}>", a.name, a.email)
        });
    render_machine(&st, &who, &headers, &key, q.before, notice, None).await
}

/// The machine page (200), with a notice, or with an error (400: the form's change was
/// refused); the error page when there is no such machine.
async fn render_machine(
    st: &HttpState,
    who: &Who,
    headers: &HeaderMap,
    key: &str,
    before: Option<i64>,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let token = csrf(st, headers);
    let f = Frame {
        title: key,
        who: Some(who),
        csrf: token.as_deref(),
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    match machine_view(st, who, key, before, notice, error).await {
        Ok(v) => html(status, pages::machine(&f, &v, crate::clock::unix_now_ms())),
        Err((status, msg)) => html(status, pages::error_page(&f, status.as_u16(), &msg)),
    }
}

/// A form's "set a parameter" and "remove a parameter" fields (machines and group defaults).
#[derive(serde::Deserialize, Default)]
pub struct ParamFields {
    #[serde(default)]
    param_key: String,
    #[serde(default)]
    param_value: String,
    #[serde(default)]
    unset: String,
}

impl ParamFields {
    /// `KEY=VALUE` to set (none when no name is given) and the keys to remove; the edit
    /// operation checks names and values as it does for the CLI.
    fn changes(&self) -> Result<(Vec<String>, Vec<String>), String> {
        let key = self.param_key.trim();
        let set = if !key.is_empty() {
            vec![format!("{key}={}", self.param_value)]
        } else if !self.param_value.is_empty() {
            return Err("a parameter value needs a name".into());
        } else {
            Vec::new()
        };
        let unset = Some(self.unset.clone())
            .filter(|u| !u.is_empty())
            .into_iter()
            .collect();
        Ok((set, unset))
    }
}

#[derive(serde::Deserialize, Default)]
struct EditForm {
    #[serde(default)]
    profile: String,
    #[serde(flatten)]
    params: ParamFields,
    /// The approval form: keep a self-registered machine, optionally renamed and grouped.
    #[serde(default)]
    approve: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    group: String,
}

/// The form as a [`HostSpec`]; the inventory edit checks every value as it does for the CLI.
fn spec_of(f: &EditForm) -> Result<HostSpec, String> {
    let mut spec = HostSpec::default();
    if !f.profile.trim().is_empty() {
        spec.profile = Some(f.profile.trim().to_string());
    }
    (spec.params, spec.unset) = f.params.changes()?;
    if f.approve == "1" {
        spec.approve = true;
        if !f.name.trim().is_empty() {
            spec.name = Some(f.name.trim().to_string());
        }
        if !f.group.trim().is_empty() {
            spec.params.push(format!("group={}", f.group.trim()));
        }
    }
    Ok(spec)
}

/// Runs a conf-repo change (blocking) and, when it committed, waits briefly for the daemon to
/// serve the new inventory, so the page after the change shows it. Errors as text for the page.
async fn wait_for_commit(
    st: &HttpState,
    change: impl FnOnce() -> anyhow::Result<commands::Committed> + Send + 'static,
) -> Result<commands::Committed, String> {
    let mut served = st.inventory.clone();
    served.borrow_and_update();
    let r = tokio::task::spawn_blocking(change)
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| format!("{e:#}")));
    if matches!(&r, Ok(c) if c.commit.is_some()) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), served.changed()).await;
    }
    r
}

#[derive(serde::Deserialize)]
struct NextBootForm {
    next: String,
}

/// The guard has checked the role (operator) and the form's CSRF token.
async fn next_boot(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Form(form): Form<NextBootForm>,
) -> Response {
    let next = match form.next.as_str() {
        "clear" => Ok(None),
        n => n.parse::<crate::core::boot::NextBoot>().map(Some),
    };
    let r = match next {
        Ok(next) => {
            let (cfg, k, user) = (st.config.clone(), key.clone(), who.user.clone());
            tokio::task::spawn_blocking(move || commands::host_next_boot(&cfg, &k, next, &user))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| format!("{e:#}")))
        }
        Err(e) => Err(e),
    };
    match r {
        Ok(e) => {
            st.bus.emit(e);
            Redirect::to(&format!("/ui/machines/{key}")).into_response()
        }
        Err(e) => render_machine(&st, &who, &headers, &key, None, None, Some(e)).await,
    }
}

/// The guard has checked the role (operator) and the form's CSRF token.
async fn machine_edit(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Form(form): Form<EditForm>,
) -> Response {
    let result = match spec_of(&form) {
        Ok(spec) => {
            let (cfg, author, k) = (st.config.clone(), who.author(), key.clone());
            wait_for_commit(&st, move || commands::host_edit(&cfg, &k, &spec, &author)).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(c) => {
            // The machine's name after the change (an approval may rename it).
            let name = match form.name.trim() {
                n if form.approve == "1" && !n.is_empty() => n.to_string(),
                _ => key,
            };
            let short: String = c.commit.unwrap_or_default().chars().take(12).collect();
            Redirect::to(&format!("/ui/machines/{name}?done={short}")).into_response()
        }
        Err(e) => render_machine(&st, &who, &headers, &key, None, None, Some(e)).await,
    }
}

#[derive(serde::Deserialize)]
struct AuditQuery {
    #[serde(default = "default_filter")]
    filter: String,
    limit: Option<u64>,
    /// "1": show how the store runs the query.
    #[serde(default)]
    plan: String,
    /// An aggregation pipeline (JSON), run instead of the find when given.
    #[serde(default)]
    pipeline: String,
}

fn default_filter() -> String {
    "{}".into()
}

/// Runs an explorer query: the newest `limit` events matching `filter` (the store's own
/// limits and deadline apply, as for the API).
async fn audit_rows(
    st: &HttpState,
    q: &AuditQuery,
) -> Result<(Vec<serde_json::Value>, u64), String> {
    let limit =
        crate::audit::query::api_limit(Some(q.limit.unwrap_or(100))).map_err(|e| e.to_string())?;
    let filter: serde_json::Value =
        serde_json::from_str(&q.filter).map_err(|e| format!("filter: not JSON ({e})"))?;
    Ok((newest_events(st, filter, limit).await?, limit))
}

async fn audit_page(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    if !q.pipeline.trim().is_empty() {
        return aggregate_page(&st, &who, &headers, &q).await;
    }
    let (rows, limit, error) = match audit_rows(&st, &q).await {
        Ok((r, l)) => (r, l, None),
        Err(e) => (Vec::new(), q.limit.unwrap_or(100), Some(e)),
    };
    let plan = if q.plan == "1" && error.is_none() {
        match serde_json::from_str::<serde_json::Value>(&q.filter) {
            Ok(f) => with_store(&st, move |s| {
                s.explain(&f, Some(&serde_json::json!({"time": -1})))
            })
            .await
            .unwrap_or_else(|e| Some(vec![format!("no plan: {e}")])),
            Err(_) => None,
        }
    } else {
        None
    };
    let v = pages::AuditView {
        filter: q.filter.clone(),
        limit,
        rows,
        plan,
        pipeline: String::new(),
        groups: None,
        status: audit_status(&st),
        enabled: st.audit.is_some(),
        error,
    };
    ui_page(&st, &headers, &who, "Audit", v.error.is_some(), |f| {
        pages::audit(f, &v)
    })
}

/// The audit store's counters, as the explorer and the health page show them.
fn audit_status(st: &HttpState) -> [(&'static str, u64); 5] {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &st.audit_stats;
    [
        ("emitted", st.bus.emitted()),
        ("stored", s.stored.load(Relaxed)),
        ("spooled", s.spooled.load(Relaxed)),
        ("waiting in the spool", s.spool_pending.load(Relaxed)),
        ("dropped", s.dropped.load(Relaxed)),
    ]
}

/// The explorer with an aggregation: its groups as a table (the store's group cap and
/// deadline apply, as for `pxelator audit aggregate` and the API).
async fn aggregate_page(
    st: &HttpState,
    who: &Who,
    headers: &HeaderMap,
    q: &AuditQuery,
) -> Response {
    let parsed: Result<serde_json::Value, String> =
        serde_json::from_str(&q.pipeline).map_err(|e| format!("pipeline: not JSON ({e})"));
    let (groups, error) = match parsed.clone() {
        Ok(p) => match with_store(st, move |s| s.aggregate(&p)).await {
            Ok(g) => (Some(g.unwrap_or_default()), None),
            Err(e) => (None, Some(e)),
        },
        Err(e) => (None, Some(e)),
    };
    let plan = match parsed {
        Ok(p) if q.plan == "1" && error.is_none() => {
            with_store(st, move |s| s.explain_aggregate(&p))
                .await
                .unwrap_or_else(|e| Some(vec![format!("no plan: {e}")]))
        }
        _ => None,
    };
    let v = pages::AuditView {
        filter: q.filter.clone(),
        limit: q.limit.unwrap_or(100),
        rows: Vec::new(),
        plan,
        pipeline: q.pipeline.clone(),
        groups,
        status: audit_status(st),
        enabled: st.audit.is_some(),
        error,
    };
    ui_page(st, headers, who, "Audit", v.error.is_some(), |f| {
        pages::audit(f, &v)
    })
}

async fn audit_csv(State(st): State<HttpState>, Query(q): Query<AuditQuery>) -> Response {
    match audit_rows(&st, &q).await {
        Ok((rows, _)) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"pxelator-audit.csv\"",
                ),
            ],
            pages::audit_csv(&rows),
        )
            .into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

async fn health_page(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
) -> Response {
    let c = &st.config;
    let dhcp = match c.dhcp.mode {
        crate::config::DhcpMode::Off => "off".to_string(),
        m => format!(
            "{m:?} on {} (port {})",
            c.dhcp.interfaces.join(", "),
            c.dhcp.port
        )
        .to_lowercase(),
    };
    let listening = vec![
        ("DHCP", dhcp),
        (
            "TFTP",
            if c.tftp.enabled {
                c.tftp.listen.to_string()
            } else {
                "off".into()
            },
        ),
        ("HTTP", format!("{} ({})", c.http.listen, c.http.public_url)),
        (
            "syslog",
            c.syslog
                .map(|a| a.to_string())
                .unwrap_or_else(|| "off".into()),
        ),
    ];
    // The next scheduled power actions (power.toml), over the coming day.
    let cfg = st.config.clone();
    let schedule = tokio::task::spawn_blocking(move || {
        crate::power::load_schedules(&cfg).map(|s| {
            s.map(|s| {
                let now = jiff::Timestamp::now();
                let day = now + jiff::SignedDuration::from_hours(24);
                crate::power::schedule::occurrences(&s, now, day)
                    .into_iter()
                    .take(8)
                    .map(|o| {
                        let when = o.at.strftime("%a %H:%M %Z").to_string();
                        let what = format!(
                            "{} {}{}",
                            o.action.as_str(),
                            o.target,
                            if o.holiday { " (holiday: skipped)" } else { "" }
                        );
                        (when, what)
                    })
                    .collect::<Vec<_>>()
            })
        })
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let v = pages::HealthView {
        health: st
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
        listening,
        schedule,
        audit: st.audit.as_ref().map(|_| audit_status(&st)),
        version: env!("CARGO_PKG_VERSION"),
    };
    ui_page(&st, &headers, &who, "Health", false, |f| {
        pages::health(f, &v, crate::clock::unix_now_ms())
    })
}

/// Live overviews open at once (each holds a bus subscription and a task).
static LIVE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(32);

/// `GET /ui/live`: server-sent events for the overview: `seen` whenever machines were seen,
/// at most once a second (a burst ends with one more, so the last change is never missed).
/// The page's script then fetches its table again; without JavaScript nothing changes.
async fn live(State(st): State<HttpState>) -> Response {
    use axum::response::sse::{Event as Sse, KeepAlive};
    use std::time::Duration;
    use tokio::sync::broadcast::error::RecvError;
    let Ok(permit) = LIVE.try_acquire() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live pages open\n",
        )
            .into_response();
    };
    let mut rx = st.bus.subscribe();
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Sse, std::convert::Infallible>>(2);
    let shutdown = st.shutdown.clone();
    // A stream lasts 10 minutes at most; the browser's EventSource opens the next by itself.
    let end = tokio::time::Instant::now() + Duration::from_secs(600);
    tokio::spawn(async move {
        let _permit = permit;
        let gap = Duration::from_secs(1);
        let mut last = tokio::time::Instant::now() - gap;
        let mut pending = false;
        loop {
            let wake = last + gap;
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(e) if seen::sighting(&e.event).is_some() => pending = true,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
                _ = tokio::time::sleep_until(wake), if pending => {}
                _ = tx.closed() => return,
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(end) => return,
            }
            if pending && tokio::time::Instant::now() >= last + gap {
                if tx
                    .send(Ok(Sse::default().event("seen").data("1")))
                    .await
                    .is_err()
                {
                    return;
                }
                last = tokio::time::Instant::now();
                pending = false;
            }
        }
    });
    axum::response::sse::Sse::new(tokio_stream::wrappers::ReceiverStream::new(out))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Seeds the last-seen table from the audit store: per protocol, the newest time of each MAC
/// and IP (one bounded aggregate each).
pub fn seed(
    seen: &SharedSeen,
    cfg: &crate::config::AuditConfig,
) -> Result<usize, crate::audit::AuditError> {
    let store = crate::audit::open_reader(cfg)?;
    let mut n = 0;
    for p in seen::Proto::ALL {
        for field in ["mac", "ip"] {
            let pipeline = serde_json::json!([
                {"$match": {"source": p.source(), field: {"$exists": true}}},
                {"$group": {"_id": format!("${field}"), "last": {"$max": "$time_ms"}}}
            ]);
            let groups = store.aggregate(&pipeline)?;
            let mut s = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for g in groups {
                let (Some(id), Some(last)) = (
                    g.get("_id").and_then(|v| v.as_str()),
                    g.get("last").and_then(|v| v.as_i64()),
                ) else {
                    continue;
                };
                match field {
                    "mac" => s.record(p, id.parse().ok(), None, last),
                    _ => s.record(p, None, id.parse().ok(), last),
                }
                n += 1;
            }
        }
    }
    Ok(n)
}
