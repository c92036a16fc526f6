//! HTTP: per-host iPXE scripts generated from the inventory, static boot files (with Range
//! support and no path escape, via tower-http's ServeDir) and `/healthz`.
pub use super::api_auth::AuthState;
use super::InventoryRx;
use crate::core::boot;
use crate::core::event::Event;
use crate::core::mac::Mac;
use crate::events::Bus;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tower_http::services::ServeDir;

#[derive(Clone)]
pub struct HttpState {
    pub inventory: InventoryRx,
    pub public_url: String,
    pub bus: Bus,
    /// The audit store, opened read-only per request (SQLite's WAL lets readers run beside
    /// the writer); None when auditing is off.
    pub audit: Option<crate::config::AuditConfig>,
    /// The conf repo, for the history API.
    pub conf_repo: PathBuf,
    /// The audit writer's counters (stored, spooled, dropped).
    pub audit_stats: Arc<crate::audit::writer::WriterStats>,
    /// Where boot files and imported images are.
    pub boot_dir: PathBuf,
    /// Users, sessions, allowed Host names (see `services::api_auth`).
    pub auth: Arc<super::api_auth::AuthState>,
    /// Turns for audit queries (`AUDIT_QUERIES` at once).
    pub audit_slots: Arc<tokio::sync::Semaphore>,
    /// The DHCP server's leases (None when pxelator is not the DHCP server): a boot script is
    /// given only to the address that holds its MAC's lease.
    pub leases: Option<Arc<std::sync::Mutex<super::dhcp::LeaseDb>>>,
    /// The daemon's config (the web UI's edits go through the CLI's operations, which take it).
    pub config: Arc<crate::config::Config>,
    /// When each MAC and IP was last seen per protocol (the web UI's overview).
    pub seen: crate::web::SharedSeen,
    /// The daemon's own health summary (the web UI's health page).
    pub health: crate::web::SharedHealth,
    /// Cancelled when the daemon stops: long-lived responses (the web UI's live stream) end
    /// then, so the graceful shutdown does not wait on them.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Counters for `/metrics`, fed from the event bus.
    pub metrics: Arc<super::metrics::Metrics>,
    /// The ping monitor's view of each machine (empty when `[monitor]` is off).
    pub pings: super::metrics::SharedPings,
}

pub fn router(state: HttpState) -> Router {
    let boot_dir = state.boot_dir.clone();
    let bus = Arc::new(state.bus.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/boot/{name}", get(ipxe_script))
        .route("/pool/join/{host}/{token}", get(pool_join))
        .route(
            "/pool/join.sh",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/x-shellscript; charset=utf-8")],
                    crate::pool::JOIN_SCRIPT,
                )
            }),
        )
        .route("/api/login", post(super::api_auth::login))
        .route("/api/logout", post(super::api_auth::logout))
        .route("/api/whoami", get(super::api_auth::whoami))
        .route("/api/audit/find", get(audit_find))
        .route("/api/audit/last-seen/{who}", get(audit_last_seen))
        .route("/api/audit/aggregate", get(audit_aggregate))
        .route("/api/audit/status", get(audit_status))
        .route("/api/leases", get(leases))
        .route("/metrics", get(metrics))
        .route("/api/capture", post(capture))
        .route("/api/history/log", get(history_log))
        .route("/api/history/diff", get(history_diff))
        .route("/api/history/cat", get(history_cat))
        .merge(crate::web::routes())
        .nest_service(
            "/files",
            ServeDir::new(boot_dir).append_index_html_on_directories(false),
        )
        .with_state(state.clone())
        .layer(middleware::from_fn_with_state(
            state,
            super::api_auth::guard,
        ))
        .layer(middleware::from_fn_with_state(bus, audit))
}

async fn ipxe_script(
    State(st): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
) -> Response {
    let Some(mac) = name
        .strip_suffix(".ipxe")
        .and_then(|m| m.parse::<Mac>().ok())
    else {
        return (
            StatusCode::BAD_REQUEST,
            format!("{name:?}: expected /boot/<mac>.ipxe, e.g. /boot/52-54-00-12-34-56.ipxe\n"),
        )
            .into_response();
    };
    if let Some(reason) = boot_script_refusal(&st, &mac, peer) {
        st.bus.emit(Event::BootScriptRefused {
            peer,
            mac,
            reason: reason.clone(),
        });
        return (StatusCode::FORBIDDEN, format!("{reason}\n")).into_response();
    }
    // A one-time override ("next boot") is used up by this script.
    let state_dir = st.config.state_dir.clone();
    let next =
        match tokio::task::spawn_blocking(move || crate::nextboot::take(&state_dir, mac)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::warn!("{e}; {mac} boots as its profile says");
                None
            }
            Err(_) => None,
        };
    // A network root with a reset asked for, or a newer base to move onto, is made ready
    // now, while nothing uses it: before the kernel that will mount it is even fetched.
    let nfs_host = {
        let inv = st.inventory.borrow();
        let m = inv.by_mac(&mac);
        (next != Some(boot::NextBoot::Local)
            && inv
                .profile_for(m)
                .is_some_and(|p| p.boot == crate::inventory::BootKind::Nfsroot))
        .then(|| m.and_then(|m| m.hostname.clone()))
        .flatten()
    };
    if let Some(h) = nfs_host {
        let (state_dir, program) = (
            st.config.state_dir.clone(),
            st.config.nfsroot.ganesha.clone(),
        );
        let inv = st.inventory.borrow().clone();
        let host = h.clone();
        let done = tokio::task::spawn_blocking(move || {
            crate::nfsroot::prepare_boot(&state_dir, &program, &inv, &host)
        })
        .await;
        match done {
            Ok(Ok(Some(crate::nfsroot::Prepared::Rebased { from, to }))) => {
                st.bus.emit(Event::OverlayRebased { host: h, from, to })
            }
            Ok(Ok(Some(crate::nfsroot::Prepared::Reset { base, snapshot }))) => {
                st.bus.emit(Event::OverlayReset {
                    host: h,
                    base,
                    snapshot,
                })
            }
            Ok(Ok(None)) | Err(_) => {}
            Ok(Err(e)) => st.bus.emit(Event::NfsrootProblem {
                message: format!("{h}: {e}"),
            }),
        }
    }
    // A pool member's boot script carries its join URL (with its token): computed off the
    // async threads (it reads the pool's join key).
    let pool_arg = {
        let cfg = st.config.clone();
        let m = st.inventory.borrow().by_mac(&mac).cloned();
        let base = st.public_url.clone();
        tokio::task::spawn_blocking(move || crate::pool::boot_arg(&cfg, m.as_ref(), &base))
            .await
            .ok()
            .flatten()
    };
    let (script, kiosk, host) = {
        let inv = st.inventory.borrow();
        let host = inv.by_mac(&mac).and_then(|m| m.hostname.clone());
        let kiosk = match next {
            Some(boot::NextBoot::Local) => None,
            _ => boot::kiosk_boot(&inv, &mac, &st.public_url),
        };
        (
            boot::ipxe_script_with(&inv, &mac, &st.public_url, next, pool_arg.as_deref()),
            kiosk,
            host,
        )
    };
    if let Some(n) = next {
        st.bus.emit(Event::NextBootUsed {
            mac,
            host: host.clone(),
            next: n.name().into(),
        });
    }
    if let Some(k) = kiosk {
        // "name" is whatever version images/name links to now: record which.
        let image = k.image.map(|i| {
            std::fs::read_link(crate::image::images_dir(&st.boot_dir).join(&i))
                .ok()
                .and_then(|t| t.to_str().map(str::to_owned))
                .unwrap_or(i)
        });
        st.bus.emit(Event::KioskBooted {
            mac,
            host,
            profile: k.profile,
            image,
            args: k.args,
        });
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        script,
    )
        .into_response()
}

/// A pool member's join material (its OSD's ceph.conf with its key), for its address and its
/// token only; every answer is an event.
async fn pool_join(
    State(st): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((host, token)): Path<(String, String)>,
) -> Response {
    let refuse = |reason: String, code: StatusCode| {
        st.bus.emit(Event::PoolJoinRefused {
            host: host.chars().take(64).collect(),
            peer,
            reason: reason.clone(),
        });
        (code, format!("{reason}\n")).into_response()
    };
    if crate::inventory::check_hostname(&host).is_err()
        || token.len() > 64
        || !token.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return refuse(
            "expected /pool/join/<hostname>/<token>".into(),
            StatusCode::BAD_REQUEST,
        );
    }
    let std::net::IpAddr::V4(ip) = peer.ip() else {
        return refuse(
            format!("{peer} is not an IPv4 address"),
            StatusCode::FORBIDDEN,
        );
    };
    let cfg = st.config.clone();
    let inv = st.inventory.borrow().clone();
    let h = host.clone();
    let res =
        tokio::task::spawn_blocking(move || crate::pool::join_material(&cfg, &inv, &h, ip, &token))
            .await;
    match res {
        Ok(Ok((conf, osd, created))) => {
            st.bus.emit(Event::PoolJoined {
                host: host.clone(),
                osd,
                peer,
                created,
            });
            (
                [
                    (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                conf,
            )
                .into_response()
        }
        Ok(Err(crate::pool::Refusal(reason))) => refuse(reason, StatusCode::FORBIDDEN),
        Err(_) => refuse(
            "the join was interrupted".into(),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    }
}

/// Why `peer` may not have `mac`'s boot script, if it may not. Where pxelator hands out the
/// addresses, only the address leased to that MAC (or reserved for it in the inventory) gets
/// it: a kiosk user cannot read another machine's kernel arguments or forge its
/// `kiosk_booted` event. Without a lease table (proxyDHCP, DHCP off) there is nothing to
/// check against.
fn boot_script_refusal(st: &HttpState, mac: &Mac, peer: SocketAddr) -> Option<String> {
    let db = st.leases.as_ref()?;
    let std::net::IpAddr::V4(ip) = peer.ip() else {
        return Some(format!("{peer} is not an IPv4 address leased to {mac}"));
    };
    let leased = db
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .leases
        .by_mac(mac)
        .map(|l| l.ip);
    let reserved = st.inventory.borrow().by_mac(mac).and_then(|m| m.ip);
    if leased == Some(ip) || reserved == Some(ip) {
        return None;
    }
    Some(match leased.or(reserved) {
        Some(a) => format!("{mac}'s boot script is for {a}, not {ip}"),
        None => format!("{mac} holds no lease; its boot script is for the address it leases"),
    })
}

/// Audit queries run at once over HTTP, how long one waits for its turn, how long it may run.
pub const AUDIT_QUERIES: usize = 2;
const AUDIT_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
pub const AUDIT_QUERY_TIME: std::time::Duration = crate::audit::QUERY_TIME;

/// Sets its flag when dropped (with the request's future, if the client goes away).
struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[derive(serde::Deserialize)]
struct FindParams {
    /// MongoDB-style filter as JSON (default `{}`).
    filter: Option<String>,
    sort: Option<String>,
    limit: Option<u64>,
}

/// Runs a read-only audit query off the async threads; maps every error to a status.
async fn audit_query<F>(st: &HttpState, f: F) -> Response
where
    F: FnOnce(&dyn crate::audit::AuditStore) -> Result<Response, crate::audit::AuditError>
        + Send
        + 'static,
{
    let (cfg, turn) = match audit_turn(st).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // The query stops when it has run AUDIT_QUERY_TIME, or when this request is dropped
    // (the client went away): the flag is set by the guard below.
    let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _drop_guard = SetOnDrop(gone.clone());
    let deadline = std::time::Instant::now() + AUDIT_QUERY_TIME;
    let stop = Box::new(move || {
        gone.load(std::sync::atomic::Ordering::Relaxed) || std::time::Instant::now() > deadline
    });
    let res = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let store = crate::audit::open_bounded_reader(&cfg, Some(stop))?;
        f(&*store)
    })
    .await;
    match res {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => audit_error(e),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("audit query failed: {e}\n"),
        )
            .into_response(),
    }
}

/// The audit config and a turn to query (at most AUDIT_QUERIES at once; a request that waits
/// AUDIT_QUEUE_WAIT for its turn is refused), or the status and why not. The API and the web
/// UI both take their turns here.
pub(crate) async fn audit_slot(
    st: &HttpState,
) -> Result<
    (
        crate::config::AuditConfig,
        tokio::sync::OwnedSemaphorePermit,
    ),
    (StatusCode, &'static str),
> {
    let Some(cfg) = st.audit.clone() else {
        return Err((
            StatusCode::NOT_FOUND,
            "auditing is off in this config ([audit] enabled = false)\n",
        ));
    };
    match tokio::time::timeout(AUDIT_QUEUE_WAIT, st.audit_slots.clone().acquire_owned()).await {
        Ok(Ok(turn)) => Ok((cfg, turn)),
        _ => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "audit queries are all busy; try again shortly\n",
        )),
    }
}

async fn audit_turn(
    st: &HttpState,
) -> Result<
    (
        crate::config::AuditConfig,
        tokio::sync::OwnedSemaphorePermit,
    ),
    Response,
> {
    audit_slot(st).await.map_err(|e| e.into_response())
}

fn audit_error(e: crate::audit::AuditError) -> Response {
    use crate::audit::AuditError as E;
    match e {
        E::Query(_) | E::BadWho(_) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        E::Open { .. }
        | E::Sql(_)
        | E::Mongo { .. }
        | E::Spool { .. }
        | E::SpoolFull { .. }
        | E::Other(_) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

fn json_param(what: &str, text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{what} is not valid JSON: {e}\n"))
}

/// `GET /api/audit/find?filter={...}&sort={...}&limit=N` → JSON lines.
async fn audit_find(
    State(st): State<HttpState>,
    axum::extract::Query(q): axum::extract::Query<FindParams>,
) -> Response {
    let parsed = (
        json_param("filter", q.filter.as_deref().unwrap_or("{}")),
        q.sort.as_deref().map(|s| json_param("sort", s)).transpose(),
    );
    let (filter, sort) = match parsed {
        (Ok(f), Ok(s)) => (f, s),
        (Err(e), _) | (_, Err(e)) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let limit = match crate::audit::query::api_limit(q.limit) {
        Ok(n) => n,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let (cfg, turn) = match audit_turn(&st).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    // Streamed: documents go out as they are read, 64 lines in flight at most, so memory does
    // not grow with the result. A client that goes away closes the channel, which stops the
    // query; so does AUDIT_QUERY_TIME. Errors before the first document get their status;
    // one after it ends the stream with an {"error": …} line.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(64);
    let (started_tx, started) =
        tokio::sync::oneshot::channel::<Result<(), crate::audit::AuditError>>();
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let deadline = std::time::Instant::now() + AUDIT_QUERY_TIME;
        let stop = Box::new(move || std::time::Instant::now() > deadline);
        let store = match crate::audit::open_bounded_reader(&cfg, Some(stop)) {
            Ok(s) => s,
            Err(e) => return drop(started_tx.send(Err(e))),
        };
        let mut started_tx = Some(started_tx);
        let res = store.find_each(&filter, sort.as_ref(), Some(limit), &mut |d| {
            if let Some(s) = started_tx.take() {
                let _ = s.send(Ok(()));
            }
            tx.blocking_send(Ok(format!("{d}\n").into()))
                .map_err(|_| crate::audit::AuditError::Other("the client went away".into()))
        });
        match (res, started_tx) {
            (Err(e), Some(s)) => drop(s.send(Err(e))),
            (Ok(()), Some(s)) => drop(s.send(Ok(()))),
            (Err(e), None) => {
                let line = serde_json::json!({"error": e.to_string()});
                let _ = tx.blocking_send(Ok(format!("{line}\n").into()));
            }
            (Ok(()), None) => {}
        }
    });
    match started.await {
        Ok(Ok(())) => (
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
            .into_response(),
        Ok(Err(e)) => audit_error(e),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "audit query failed\n").into_response(),
    }
}

#[derive(serde::Deserialize)]
struct AggregateParams {
    pipeline: String,
}

/// `GET /api/audit/aggregate?pipeline=[...]` → JSON lines, one per group.
async fn audit_aggregate(
    State(st): State<HttpState>,
    axum::extract::Query(q): axum::extract::Query<AggregateParams>,
) -> Response {
    let pipeline = match json_param("pipeline", &q.pipeline) {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    audit_query(&st, move |store| {
        let body: String = store
            .aggregate(&pipeline)?
            .iter()
            .map(|d| format!("{d}\n"))
            .collect();
        Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
    })
    .await
}

/// `GET /api/audit/last-seen/<mac|ip|host>` → one JSON document, or 404.
async fn audit_last_seen(State(st): State<HttpState>, Path(who): Path<String>) -> Response {
    audit_query(&st, move |store| {
        Ok(match store.last_seen(&who)? {
            Some(doc) => (
                [(header::CONTENT_TYPE, "application/json")],
                doc.to_string(),
            )
                .into_response(),
            None => (StatusCode::NOT_FOUND, format!("{who}: never seen\n")).into_response(),
        })
    })
    .await
}

#[derive(serde::Deserialize)]
struct HistoryParams {
    /// A repo path, or `host:/path` for pulled host files.
    path: Option<String>,
    rev: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

/// Runs a history query off the async threads; errors become 400 (bad path or revision) or
/// 404 (not a git repository).
async fn history_query<F>(st: &HttpState, f: F) -> Response
where
    F: FnOnce(&crate::confrepo::ConfRepo) -> Result<Response, crate::confrepo::RepoError>
        + Send
        + 'static,
{
    let root = st.conf_repo.clone();
    let res = tokio::task::spawn_blocking(move || match crate::confrepo::ConfRepo::open(&root) {
        Ok(Some(r)) => f(&r),
        Ok(None) => Ok((
            StatusCode::NOT_FOUND,
            format!("{} is not a git repository: no history\n", root.display()),
        )
            .into_response()),
        Err(e) => Err(e),
    })
    .await;
    match res {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

fn history_path(p: &Option<String>) -> Result<Option<String>, crate::confrepo::RepoError> {
    p.as_deref().map(crate::confrepo::repo_path).transpose()
}

/// The `path` parameter, which diff and cat need.
fn required_path(p: &Option<String>) -> Result<String, crate::confrepo::RepoError> {
    history_path(p)?.ok_or(crate::confrepo::RepoError::BadPath(String::new()))
}

/// `GET /api/history/log?path=…&limit=N` → JSON array of commits (newest first).
async fn history_log(
    State(st): State<HttpState>,
    axum::extract::Query(q): axum::extract::Query<HistoryParams>,
) -> Response {
    history_query(&st, move |r| {
        let log = r.log(history_path(&q.path)?.as_deref(), q.limit.unwrap_or(50))?;
        Ok(axum::Json(log).into_response())
    })
    .await
}

/// `GET /api/history/diff?path=…[&from=REV|DATE][&to=REV|DATE]` → `{"diff": "…"}`.
async fn history_diff(
    State(st): State<HttpState>,
    axum::extract::Query(q): axum::extract::Query<HistoryParams>,
) -> Response {
    history_query(&st, move |r| {
        let path = required_path(&q.path)?;
        let diff = r.diff(&path, q.from.as_deref(), q.to.as_deref())?;
        Ok(axum::Json(serde_json::json!({"path": path, "diff": diff})).into_response())
    })
    .await
}

/// `GET /api/history/cat?path=…[&rev=REV|DATE]` → the file's bytes at that revision.
async fn history_cat(
    State(st): State<HttpState>,
    axum::extract::Query(q): axum::extract::Query<HistoryParams>,
) -> Response {
    history_query(&st, move |r| {
        let path = required_path(&q.path)?;
        let data = r.cat(&path, q.rev.as_deref().unwrap_or("HEAD"))?;
        Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
    })
    .await
}

/// `GET /api/audit/status` → the writer's counters: events emitted, stored, sent through the
/// spool, waiting in it now, and dropped (which must stay 0). Counters only: no file is read.
/// `GET /api/leases`: the DHCP server's leases (what `pxelator leases --json` prints, as one
/// JSON array); 404 when pxelator is not the DHCP server here.
async fn leases(State(st): State<HttpState>) -> Response {
    let Some(db) = &st.leases else {
        return (
            StatusCode::NOT_FOUND,
            "pxelator hands out no addresses here (dhcp.mode is not \"server\")\n",
        )
            .into_response();
    };
    let rows = {
        let db = db.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        crate::core::leases::rows(&db.leases, &st.inventory.borrow(), crate::clock::unix_now())
    };
    axum::Json(rows).into_response()
}

/// `POST /api/capture?secs=N[&host=|&mac=|&ip=][&iface=][&packets=][&max_mb=]` (admins): a
/// capture as a pcap download, as `pxelator capture` takes it; through the API at most
/// [`API_CAPTURE_SECS`] and [`API_CAPTURE_MB`] (it is held in memory until it is sent).
async fn capture(
    State(st): State<HttpState>,
    axum::Extension(who): axum::Extension<crate::auth::Who>,
    axum::extract::Query(q): axum::extract::Query<CaptureQuery>,
) -> Response {
    let bad = |m: String| (StatusCode::BAD_REQUEST, format!("{m}\n")).into_response();
    let Some(secs) = q.secs.filter(|s| (1..=API_CAPTURE_SECS).contains(s)) else {
        return bad(format!(
            "give secs=1..{API_CAPTURE_SECS} (longer captures: `pxelator capture` on the appliance)"
        ));
    };
    if q.max_mb.is_some_and(|m| m > API_CAPTURE_MB) {
        return bad(format!("max_mb: at most {API_CAPTURE_MB} through the API"));
    }
    let mac = match q.mac.as_deref().map(str::parse::<crate::core::mac::Mac>) {
        Some(Err(e)) => return bad(format!("mac: {e}")),
        Some(Ok(m)) => Some(m),
        None => None,
    };
    let req = crate::commands::CaptureRequest {
        iface: q.iface,
        host: q.host,
        mac,
        ip: q.ip,
        secs: Some(secs),
        packets: q.packets,
        max_mb: Some(q.max_mb.unwrap_or(API_CAPTURE_MB)),
    };
    let cfg = st.config.clone();
    let user = who.user.clone();
    let res = tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        crate::commands::capture(&cfg, &req, &mut buf, &user, "api download").map(|(_, e)| (buf, e))
    })
    .await;
    match res {
        Ok(Ok((pcap, event))) => {
            st.bus.emit(event);
            (
                [
                    (header::CONTENT_TYPE, "application/vnd.tcpdump.pcap"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"pxelator-capture.pcap\"",
                    ),
                ],
                pcap,
            )
                .into_response()
        }
        Ok(Err(e)) => bad(format!("{e:#}")),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("capture: {e}\n")).into_response(),
    }
}

pub const API_CAPTURE_SECS: u64 = 300;
pub const API_CAPTURE_MB: u64 = 64;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureQuery {
    secs: Option<u64>,
    packets: Option<u64>,
    max_mb: Option<u64>,
    iface: Option<String>,
    host: Option<String>,
    mac: Option<String>,
    ip: Option<std::net::Ipv4Addr>,
}

/// `GET /metrics`: Prometheus' text format (see [`super::metrics`]).
async fn metrics(State(st): State<HttpState>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let now = crate::clock::unix_now();
    let mut g = super::metrics::Gauges {
        machines: i64::try_from(st.inventory.borrow().machines().len()).unwrap_or(i64::MAX),
        ..Default::default()
    };
    if let Some(db) = &st.leases {
        let db = db.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut by: std::collections::BTreeMap<&'static str, i64> =
            ["bound", "offered", "declined"]
                .into_iter()
                .map(|s| (s, 0))
                .collect();
        for l in db.leases.iter().filter(|l| l.until > now) {
            *by.entry(l.state.name()).or_default() += 1;
        }
        g.leases = by.into_iter().collect();
        for s in &st.config.dhcp.net.subnets {
            if let Some((a, b)) = s.pool {
                let n = i64::from(u32::from(b) - u32::from(a)) + 1;
                g.pool_sizes
                    .push((format!("{}/{}", s.network, s.prefix), n));
            }
        }
    }
    if st.audit.is_some() {
        let s = &st.audit_stats;
        g.audit = Some(super::metrics::AuditGauges {
            emitted: st.bus.emitted(),
            stored: s.stored.load(Relaxed),
            spooled: s.spooled.load(Relaxed),
            spool_pending: s.spool_pending.load(Relaxed),
            dropped: s.dropped.load(Relaxed),
        });
    }
    g.pings = st
        .pings
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(&g),
    )
        .into_response()
}

async fn audit_status(State(st): State<HttpState>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &st.audit_stats;
    let body = serde_json::json!({
        "enabled": st.audit.is_some(),
        "emitted": st.bus.emitted(),
        "stored": s.stored.load(Relaxed),
        "spooled": s.spooled.load(Relaxed),
        "spool_pending": s.spool_pending.load(Relaxed),
        "dropped": s.dropped.load(Relaxed),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The path as the audit store records it: a pool member's join token is a secret (it lets its
/// holder fetch that member's OSD key), so `/pool/join/HOST/TOKEN` is kept as
/// `/pool/join/HOST/-`.
fn recorded_path(path: &str) -> String {
    match path.strip_prefix("/pool/join/") {
        Some(rest) => format!(
            "/pool/join/{}/-",
            rest.split('/').next().unwrap_or_default()
        ),
        None => path.to_owned(),
    }
}

/// Emits one `HttpServed` event per request, with the MAC when the path names one.
async fn audit(
    State(bus): State<Arc<Bus>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let path = recorded_path(req.uri().path());
    let resp = next.run(req).await;
    let user = resp
        .extensions()
        .get::<crate::auth::Who>()
        .map(|w| w.user.clone());
    let bytes = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mac = path
        .strip_prefix("/boot/")
        .and_then(|n| n.strip_suffix(".ipxe"))
        .and_then(|m| m.parse().ok());
    bus.emit(Event::HttpServed {
        peer,
        file: path,
        status: resp.status().as_u16(),
        bytes,
        mac,
        user,
    });
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn join_tokens_never_reach_the_audit_store() {
        assert_eq!(
            super::recorded_path("/pool/join/k1/0123456789abcdef0123456789abcdef01234567"),
            "/pool/join/k1/-"
        );
        assert_eq!(super::recorded_path("/pool/join.sh"), "/pool/join.sh");
        assert_eq!(super::recorded_path("/files/vmlinuz"), "/files/vmlinuz");
    }
}
