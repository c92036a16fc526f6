//! Live images: every stored version with its checksums and the profiles (and so machines)
//! that boot it; switching a profile to another version (a commit); importing from a path on
//! the server, with progress; removing versions no profile boots. The same operations as
//! `pxelator image list|use|import|rm` ([`commands::image_list`], [`commands::profile_use_image`],
//! [`image::import`], [`commands::image_remove`]).
use super::pages::{self, Frame};
use super::{ui_page, wait_for_commit};
use crate::auth::Who;
use crate::commands;
use crate::core::access::Role;
use crate::core::event::Event;
use crate::image::{self, ImageInfo};
use crate::services::http::HttpState;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::{html, Markup};
use std::sync::Mutex;

/// The import in progress or last finished (one at a time: each copies gigabytes).
#[derive(Debug, Clone, Default)]
pub struct ImportJob {
    pub name: String,
    pub source: String,
    pub done: u64,
    pub total: u64,
    pub user: String,
    /// None while running; the stored version or the error once finished.
    pub result: Option<Result<String, String>>,
}

static IMPORT: Mutex<Option<ImportJob>> = Mutex::new(None);

fn job() -> Option<ImportJob> {
    IMPORT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn update(f: impl FnOnce(&mut ImportJob)) {
    if let Some(j) = IMPORT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_mut()
    {
        f(j);
    }
}

pub struct ProfileUse {
    pub name: String,
    pub image: String,
    pub machines: usize,
}

pub struct ImagesView {
    /// Each stored version: info, current, profiles booting it.
    pub images: Vec<(ImageInfo, bool, Vec<String>)>,
    pub profiles: Vec<ProfileUse>,
    pub job: Option<ImportJob>,
    pub can_switch: bool,
    pub is_admin: bool,
    pub notice: Option<String>,
    pub error: Option<String>,
}

#[derive(serde::Deserialize, Default)]
pub struct ImagesQuery {
    done: Option<String>,
}

pub async fn page(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Query(q): Query<ImagesQuery>,
) -> Response {
    let notice = q
        .done
        .filter(|d| d.len() <= 40 && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|d| format!("Committed {d}"));
    render_page(&st, &who, &headers, notice, None).await
}

async fn render_page(
    st: &HttpState,
    who: &Who,
    headers: &HeaderMap,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let (boot, inv) = (st.config.boot_dir.clone(), st.inventory.borrow().clone());
    let images = tokio::task::spawn_blocking(move || commands::image_list(&boot, &inv))
        .await
        .unwrap_or_default();
    let profiles = {
        let inv = st.inventory.borrow();
        let mut v: Vec<ProfileUse> = inv
            .profiles()
            .filter_map(|p| {
                p.image.as_ref().map(|i| ProfileUse {
                    name: p.name.clone(),
                    image: i.clone(),
                    machines: inv
                        .machines()
                        .iter()
                        .filter(|m| m.profile.as_deref().unwrap_or("default") == p.name)
                        .count(),
                })
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    };
    let v = ImagesView {
        images,
        profiles,
        job: job(),
        can_switch: who.role >= Role::Operator,
        is_admin: who.role >= Role::Admin,
        notice,
        error,
    };
    let running = v.job.as_ref().is_some_and(|j| j.result.is_none());
    let mut r = ui_page(st, headers, who, "Images", v.error.is_some(), |f| {
        render(f, &v)
    });
    if running {
        // While an import runs the page follows it without script: reloaded every 2 s.
        r.headers_mut()
            .insert("refresh", axum::http::HeaderValue::from_static("2"));
    }
    r
}

#[derive(serde::Deserialize)]
pub struct UseForm {
    image: String,
}

/// The guard has checked the role (operator) and the form's CSRF token.
pub async fn use_image(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Path(profile): Path<String>,
    Form(form): Form<UseForm>,
) -> Response {
    let (cfg, author, img) = (st.config.clone(), who.author(), form.image.clone());
    match wait_for_commit(&st, move || {
        commands::profile_use_image(&cfg, &profile, &img, &author)
    })
    .await
    {
        Ok(c) => {
            let short: String = c.commit.unwrap_or_default().chars().take(12).collect();
            Redirect::to(&format!("/ui/images?done={short}")).into_response()
        }
        Err(e) => render_page(&st, &who, &headers, None, Some(e)).await,
    }
}

#[derive(serde::Deserialize)]
pub struct RemoveForm {
    image: String,
}

/// The guard has checked the role (admin) and the form's CSRF token.
pub async fn remove(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Form(form): Form<RemoveForm>,
) -> Response {
    let cfg = st.config.clone();
    let what = form.image.clone();
    let r = tokio::task::spawn_blocking(move || commands::image_remove(&cfg, &what, false))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| format!("{e:#}")));
    match r {
        Ok(gone) => {
            let msg = format!("Removed {}", gone.join(", "));
            render_page(&st, &who, &headers, Some(msg), None).await
        }
        Err(e) => render_page(&st, &who, &headers, None, Some(e)).await,
    }
}

#[derive(serde::Deserialize)]
pub struct ImportForm {
    source: String,
    #[serde(default)]
    name: String,
}

/// Checks an import form: an absolute path on the server that exists, and a valid name (or
/// the default from the file name).
fn import_request(f: &ImportForm) -> Result<(std::path::PathBuf, String), String> {
    let src = f.source.trim();
    if src.len() > 4096 || !src.starts_with('/') || src.chars().any(|c| c.is_control()) {
        return Err(
            "give the absolute path of a live ISO, or of a directory holding vmlinuz, initrd and filesystem.squashfs, on the server"
                .into(),
        );
    }
    let path = std::path::PathBuf::from(src);
    if !path.exists() {
        return Err(format!(
            "{src}: no such file or directory on the server (the daemon reads it)"
        ));
    }
    let name = match f.name.trim() {
        "" => image::default_name(&path),
        n => n.to_string(),
    };
    if !image::valid_name(&name) {
        return Err(format!("{name:?} is not an image name: lower-case letters, digits, '.', '_', '-', not ending in -vN"));
    }
    Ok((path, name))
}

/// The guard has checked the role (admin) and the form's CSRF token. Starts the import in the
/// background and returns to the page, which shows its progress.
pub async fn import(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Form(form): Form<ImportForm>,
) -> Response {
    let (src, name) = match import_request(&form) {
        Ok(x) => x,
        Err(e) => return render_page(&st, &who, &headers, None, Some(e)).await,
    };
    let busy = {
        let mut slot = IMPORT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let busy = slot.as_ref().is_some_and(|j| j.result.is_none());
        if !busy {
            *slot = Some(ImportJob {
                name: name.clone(),
                source: src.display().to_string(),
                user: who.user.clone(),
                ..Default::default()
            });
        }
        busy
    };
    if busy {
        let e = "an import is running; wait for it to finish".to_string();
        return render_page(&st, &who, &headers, None, Some(e)).await;
    }
    let (boot, bus) = (st.config.boot_dir.clone(), st.bus.clone());
    tokio::task::spawn_blocking(move || {
        // Should the import panic, the job still ends (so the next import is not refused).
        struct Ends;
        impl Drop for Ends {
            fn drop(&mut self) {
                update(|j| {
                    if j.result.is_none() {
                        j.result = Some(Err(
                            "the import stopped unexpectedly (see the daemon's log)".into(),
                        ));
                    }
                });
            }
        }
        let _ends = Ends;
        let r = image::import(&boot, &src, &name, &|done, total| {
            update(|j| {
                j.done = done;
                j.total = total;
            })
        });
        let result = match r {
            Ok(info) => {
                bus.emit(Event::ImageImported {
                    name: info.name.clone(),
                    version: info.version,
                    source: info.source.clone(),
                    squashfs_sha256: info.squashfs_sha256().to_owned(),
                });
                Ok(info.dir_name())
            }
            Err(e) => Err(e.to_string()),
        };
        update(|j| j.result = Some(result));
    });
    Redirect::to("/ui/images").into_response()
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub fn render(f: &Frame, v: &ImagesView) -> Markup {
    let running = v.job.as_ref().is_some_and(|j| j.result.is_none());
    pages::layout(
        f,
        html! {
            h1 { "Images" }
            @if let Some(n) = &v.notice { p.notice role="status" { (n) } }
            @if let Some(e) = &v.error { p.error role="alert" { (e) } }
            @if let Some(j) = &v.job {
                div #import-status class=(match &j.result { Some(Err(_)) => "error", Some(Ok(_)) => "notice", None => "notice" }) role="status" {
                    @match &j.result {
                        None => {
                            "Importing " (j.name) " from " code { (j.source) } ": "
                            @if j.total > 0 { (j.done * 100 / j.total) "% (" (mb(j.done)) " of " (mb(j.total)) ")" } @else { "starting" }
                            progress max=(j.total.max(1)) value=(j.done) {}
                        }
                        Some(Ok(dir)) => { "Imported " (j.source) " as " strong { (dir) } " (by " (j.user) ")." }
                        Some(Err(e)) => { "Import of " (j.source) " failed: " (e) }
                    }
                }
            }
            h2 { "Stored versions" }
            @if v.images.is_empty() { p.muted { "No images yet: import a live ISO below or with " code { "pxelator image import FILE.iso" } "." } } @else {
                table #images {
                    thead { tr { th scope="col" { "Image" } th scope="col" { "Current" } th scope="col" { "Imported" }
                        th scope="col" { "Size" } th scope="col" { "squashfs SHA-256" } th scope="col" { "Booted by" }
                        @if v.is_admin { th scope="col" { "Remove" } } } }
                    tbody { @for (i, current, users) in &v.images { tr {
                        td { strong { (i.dir_name()) } br; span.muted { (i.source) } }
                        td { @if *current { "current" } }
                        td.t { (i.imported) }
                        td.t { (mb(i.files.iter().map(|f| f.size).sum())) }
                        td { code title=(i.squashfs_sha256()) { (i.squashfs_sha256().get(..16).unwrap_or("")) "…" } }
                        td { @if users.is_empty() { span.muted { "no profile" } } @else { (users.join(", ")) } }
                        @if v.is_admin { td { @if users.is_empty() {
                            form.inline method="post" action="/ui/images/remove" {
                                input type="hidden" name="csrf" value=(f.csrf.unwrap_or(""));
                                input type="hidden" name="image" value=(i.dir_name());
                                button type="submit" aria-label=(format!("remove {}", i.dir_name())) { "Remove" }
                            }
                        } @else { span.muted { "in use" } } } }
                    } } }
                }
            }
            h2 { "Profiles that boot an image" }
            @if v.profiles.is_empty() { p.muted { "none: a profile boots an image with image = \"NAME\" (its current version) or \"NAME-vN\"" } } @else {
                table #profiles {
                    thead { tr { th scope="col" { "Profile" } th scope="col" { "Machines" } th scope="col" { "Boots" }
                        @if v.can_switch { th scope="col" { "Switch to" } } } }
                    tbody { @for p in &v.profiles { tr {
                        td { (p.name) } td { (p.machines) } td { code { (p.image) } }
                        @if v.can_switch { td {
                            @let name = image::split_version(&p.image).0;
                            form.inline method="post" action=(format!("/ui/profiles/{}/image", p.name)) {
                                input type="hidden" name="csrf" value=(f.csrf.unwrap_or(""));
                                select name="image" aria-label=(format!("image for profile {}", p.name)) id=(format!("use-{}", p.name)) {
                                    option value=(name) selected[p.image == name] { (name) " (current version)" }
                                    @for (i, _, _) in v.images.iter().filter(|(i, _, _)| i.name == name) {
                                        option value=(i.dir_name()) selected[p.image == i.dir_name()] { (i.dir_name()) }
                                    }
                                }
                                " " button type="submit" { "Switch and commit" }
                            }
                        } }
                    } } }
                }
            }
            @if v.is_admin {
                h2 { "Import" }
                form method="post" action="/ui/images/import" {
                    input type="hidden" name="csrf" value=(f.csrf.unwrap_or(""));
                    label for="source" { "Path on the server (a live ISO, or a directory with vmlinuz, initrd and filesystem.squashfs)" }
                    input #source name="source" size="60" placeholder="/var/lib/pxelator/incoming/kiosk.iso" required;
                    label for="name" { "Name (empty: from the file name)" }
                    input #name name="name" placeholder="kiosk-live";
                    br;
                    button.primary #import type="submit" disabled[running] { "Import" }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_forms_are_checked() {
        let f = |s: &str, n: &str| ImportForm {
            source: s.into(),
            name: n.into(),
        };
        assert!(import_request(&f("relative.iso", "")).is_err());
        assert!(import_request(&f("/no/such/file.iso", ""))
            .unwrap_err()
            .contains("no such file"));
        let e = import_request(&f("/", "Bad Name")).unwrap_err();
        assert!(e.contains("not an image name"), "{e}");
        assert_eq!(import_request(&f("/", "kiosk")).unwrap().1, "kiosk");
    }
}
