//! HTTP: per-host iPXE scripts generated from the inventory, static boot files (with Range
//! support and no path escape, via tower-http's ServeDir) and `/healthz`.
use super::InventoryRx;
use crate::core::boot;
use crate::core::event::Event;
use crate::core::mac::Mac;
use crate::events::Bus;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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
}

pub fn router(state: HttpState, boot_dir: PathBuf) -> Router {
    let bus = Arc::new(state.bus.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/boot/{name}", get(ipxe_script))
        .nest_service(
            "/files",
            ServeDir::new(boot_dir).append_index_html_on_directories(false),
        )
        .with_state(state)
        .layer(middleware::from_fn_with_state(bus, audit))
}

async fn ipxe_script(State(st): State<HttpState>, Path(name): Path<String>) -> Response {
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
    let script = boot::ipxe_script(&st.inventory.borrow(), &mac, &st.public_url);
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        script,
    )
        .into_response()
}

/// Emits one `HttpServed` event per request, with the MAC when the path names one.
async fn audit(
    State(bus): State<Arc<Bus>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
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
    });
    resp
}
