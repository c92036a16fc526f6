//! The HTTP gate: every request passes [`guard`], which asks `core::access::required_role` what
//! it needs. Open routes (boot files, scripts, `/healthz`) go through; everything else needs the
//! Host header to name this server (no DNS rebinding), then a user — an API token
//! (`Authorization: Bearer …`) or a session cookie from `POST /api/login` — whose role is
//! enough. A write made with a session cookie must carry the session's `X-CSRF-Token`.
//! Tokens need none: browsers never send them by themselves.
use super::http::HttpState;
use crate::auth::{required_role, Access, LoginLimiter, Sessions, Users, Who};
use crate::core::event::Event;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub const COOKIE: &str = "pxl_session";
/// Concurrent password checks (Argon2 costs ~19 MiB and tens of ms each).
const LOGIN_SLOTS: usize = 2;

/// Users (reloaded when the file changes), sessions, the login limiter, allowed Host names.
pub struct AuthState {
    users_path: PathBuf,
    users: Mutex<(Option<SystemTime>, Arc<Users>)>,
    pub sessions: Sessions,
    pub limiter: LoginLimiter,
    login_slots: tokio::sync::Semaphore,
    /// Host header values the API answers to (config `http.hosts`).
    hosts: Vec<String>,
    /// Cookies get `Secure` when the public URL is https.
    secure_cookie: bool,
}

impl AuthState {
    pub fn new(users_path: PathBuf, hosts: Vec<String>, public_url: &str) -> AuthState {
        AuthState {
            users_path,
            users: Mutex::new((None, Arc::new(Users::empty()))),
            sessions: Sessions::default(),
            limiter: LoginLimiter::default(),
            login_slots: tokio::sync::Semaphore::new(LOGIN_SLOTS),
            hosts,
            secure_cookie: public_url.starts_with("https://"),
        }
    }

    /// The users file as it is now (one `stat` per call; re-read when it changed). A file that
    /// cannot be used (too open, broken) means no users: nobody gets in, and the log says why.
    fn users(&self) -> Arc<Users> {
        let mtime = std::fs::metadata(&self.users_path)
            .and_then(|m| m.modified())
            .ok();
        let mut cache = self
            .users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.0 != mtime || mtime.is_none() {
            let users = Users::load(&self.users_path).unwrap_or_else(|e| {
                tracing::error!("{e}; nobody can log in until it is fixed");
                Users::empty()
            });
            self.sessions.retain_valid(&users);
            *cache = (mtime, Arc::new(users));
        }
        cache.1.clone()
    }

    fn host_ok(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| crate::config::host_without_port(h).to_ascii_lowercase())
            .is_some_and(|h| self.hosts.contains(&h))
    }
}

fn now_ms() -> i64 {
    crate::clock::unix_now_ms()
}

pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE).then(|| v.to_owned())
        })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The conf-repo path a history request names (`path=` resolved, `host:/p` → `hosts/host/p`).
fn history_path(req: &Request) -> Option<String> {
    let q = req.uri().query()?;
    let params: Vec<(String, String)> = serde_urlencoded::from_str(q).ok()?;
    let p = params.into_iter().find(|(k, _)| k == "path")?.1;
    crate::confrepo::repo_path(&p).ok()
}

fn refuse(status: StatusCode, msg: String) -> Response {
    let mut r = (status, msg).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"pxelator\""),
        );
    }
    r
}

/// The middleware in front of every route.
pub async fn guard(
    State(st): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let hist = history_path(&req);
    let need = required_role(req.method().as_str(), req.uri().path(), hist.as_deref());
    // A Prometheus server named in `[metrics] allow_from` scrapes without a token.
    if req.uri().path() == "/metrics"
        && st.auth.host_ok(req.headers())
        && st
            .config
            .metrics_allow_from
            .iter()
            .any(|(net, len)| match peer.ip() {
                std::net::IpAddr::V4(ip) => crate::core::dns::in_net(ip, *net, *len),
                std::net::IpAddr::V6(_) => false,
            })
    {
        return next.run(req).await;
    }
    let Access::Role(role) = need else {
        if need == Access::Login && !st.auth.host_ok(req.headers()) {
            return refuse(StatusCode::MISDIRECTED_REQUEST, misdirected(&st));
        }
        return next.run(req).await;
    };
    if !st.auth.host_ok(req.headers()) {
        return refuse(StatusCode::MISDIRECTED_REQUEST, misdirected(&st));
    }
    let (who, by_cookie) = match authenticate(&st, req.headers()) {
        Ok(x) => x,
        Err(reason) => {
            if reason != NO_CREDENTIALS {
                st.bus.emit(Event::AuthFailed {
                    peer,
                    user: None,
                    reason: reason.into(),
                });
            }
            // A browser on a web UI page is sent to the login form.
            if req.uri().path().starts_with("/ui/") && req.method() == Method::GET {
                return axum::response::Redirect::to("/ui/login").into_response();
            }
            return refuse(
                StatusCode::UNAUTHORIZED,
                format!("{reason}: send `Authorization: Bearer <token>` (`pxelator user token NAME` makes one) or log in with POST /api/login\n"),
            );
        }
    };
    if who.role < role {
        let mut r = refuse(
            StatusCode::FORBIDDEN,
            format!(
                "{} is {}; this needs {} (`pxelator user role {} {}`)\n",
                who.user,
                who.role.with_article(),
                role.with_article(),
                who.user,
                role.name()
            ),
        );
        r.extensions_mut().insert(who);
        return r;
    }
    if let Some(session) = by_cookie {
        let safe = matches!(*req.method(), Method::GET | Method::HEAD);
        let sent = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let sent = match sent {
            Some(s) => Some(s),
            // A web UI form carries the token as its `csrf` field.
            None if !safe && is_form(req.headers()) => {
                let (token, rebuilt) = form_csrf(req).await;
                req = match rebuilt {
                    Ok(r) => r,
                    Err(resp) => return resp,
                };
                token
            }
            None => None,
        };
        if !safe && sent.as_deref() != Some(session.csrf.as_str()) {
            return refuse(
                StatusCode::FORBIDDEN,
                "a write with a session cookie needs the session's CSRF token (X-CSRF-Token header, or the form's csrf field)\n".into(),
            );
        }
    }
    req.extensions_mut().insert(who.clone());
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(who);
    resp
}

const NO_CREDENTIALS: &str = "authentication required";

/// The largest form body the guard reads to find its CSRF token.
const FORM_LIMIT: usize = 64 * 1024;

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// A form's `csrf` field, and the request rebuilt with the body read (at most FORM_LIMIT).
async fn form_csrf(req: Request) -> (Option<String>, Result<Request, Response>) {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, FORM_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return (
                None,
                Err(refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a form is at most {FORM_LIMIT} bytes\n"),
                )),
            )
        }
    };
    let token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .ok()
        .and_then(|kv| kv.into_iter().find(|(k, _)| k == "csrf").map(|(_, v)| v));
    (
        token,
        Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
    )
}

/// The user behind a request's credentials, and the session when it came by cookie.
fn authenticate(
    st: &HttpState,
    headers: &HeaderMap,
) -> Result<(Who, Option<crate::auth::Session>), &'static str> {
    if let Some(token) = bearer(headers) {
        return st
            .auth
            .users()
            .verify_token(token)
            .map(|w| (w, None))
            .ok_or("unknown or revoked API token");
    }
    if let Some(c) = cookie_value(headers) {
        // The session's user must still exist with the same role (checked on each users-file
        // change, see `AuthState::users`).
        let _ = st.auth.users();
        return st
            .auth
            .sessions
            .get(&c, now_ms())
            .map(|s| (s.who.clone(), Some(s)))
            .ok_or("session expired or unknown; log in again");
    }
    Err(NO_CREDENTIALS)
}

fn misdirected(st: &HttpState) -> String {
    format!(
        "this server answers the API as {}; add another name to [http] names in the config\n",
        st.auth.hosts.join(", ")
    )
}

#[derive(serde::Deserialize)]
pub struct LoginBody {
    user: String,
    password: String,
}

/// Why a login was refused: the status, a message, and for the rate limit the seconds to wait.
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl Refusal {
    fn response(self) -> Response {
        let mut r = refuse(self.status, self.message);
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        r
    }
}

/// Checks a password (rate-limited per address, at most LOGIN_SLOTS at once) and starts a
/// session: the user, the Set-Cookie value (HttpOnly, SameSite=Strict) and the session. The
/// API's JSON login and the web UI's form login both use it.
pub async fn start_session(
    st: &HttpState,
    peer: SocketAddr,
    user: &str,
    password: String,
) -> Result<(Who, String, crate::auth::Session), Refusal> {
    let now = now_ms();
    if let Some(secs) = st.auth.limiter.blocked(peer.ip(), now) {
        st.bus.emit(Event::AuthFailed {
            peer,
            user: Some(user.chars().take(64).collect()),
            reason: "login rate limit".into(),
        });
        return Err(Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "too many failed logins from {}; try again in {secs} s\n",
                peer.ip()
            ),
            retry_after: Some(secs),
        });
    }
    let Ok(_slot) = st.auth.login_slots.acquire().await else {
        return Err(Refusal {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "shutting down\n".into(),
            retry_after: None,
        });
    };
    let users = st.auth.users();
    let name = user.to_owned();
    let who = tokio::task::spawn_blocking(move || users.verify_password(&name, &password))
        .await
        .ok()
        .flatten();
    let Some(who) = who else {
        st.auth.limiter.failed(peer.ip(), now);
        st.bus.emit(Event::AuthFailed {
            peer,
            user: Some(user.chars().take(64).collect()),
            reason: "wrong user or password".into(),
        });
        return Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: "wrong user or password\n".into(),
            retry_after: None,
        });
    };
    st.auth.limiter.succeeded(peer.ip());
    let (cookie, session) = st.auth.sessions.start(who.clone(), now);
    let set = format!(
        "{COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        crate::auth::SESSION_TTL_MS / 1000,
        if st.auth.secure_cookie {
            "; Secure"
        } else {
            ""
        }
    );
    Ok((who, set, session))
}

/// `POST /api/login` with `{"user": …, "password": …}` → a session cookie (HttpOnly,
/// SameSite=Strict) and `{"user", "role", "csrf"}`. Five failures a minute per address, then
/// 429 with Retry-After.
pub async fn login(
    State(st): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::Json(body): axum::Json<LoginBody>,
) -> Response {
    let (who, set, session) = match start_session(&st, peer, &body.user, body.password).await {
        Ok(x) => x,
        Err(r) => return r.response(),
    };
    let mut r = axum::Json(serde_json::json!({
        "user": who.user, "role": who.role.name(), "csrf": session.csrf,
    }))
    .into_response();
    if let Ok(v) = header::HeaderValue::from_str(&set) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r.extensions_mut().insert(who);
    r
}

/// `POST /api/logout` (with the session's X-CSRF-Token): ends the session.
pub async fn logout(State(st): State<HttpState>, headers: HeaderMap) -> Response {
    let Some(c) = cookie_value(&headers) else {
        return refuse(StatusCode::BAD_REQUEST, "no session cookie\n".into());
    };
    let Some(s) = st.auth.sessions.get(&c, now_ms()) else {
        return refuse(StatusCode::UNAUTHORIZED, "no such session\n".into());
    };
    if headers.get("x-csrf-token").and_then(|v| v.to_str().ok()) != Some(s.csrf.as_str()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "logout needs the session's X-CSRF-Token\n".into(),
        );
    }
    st.auth.sessions.end(&c);
    let mut r = (StatusCode::OK, "logged out\n").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        header::HeaderValue::from_static(
            "pxl_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
    r
}

/// `GET /api/whoami` → `{"user", "role"}`.
pub async fn whoami(axum::Extension(who): axum::Extension<Who>) -> Response {
    axum::Json(serde_json::json!({"user": who.user, "role": who.role.name()})).into_response()
}
