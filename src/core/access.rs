//! Who may do what: roles and the access rule for every HTTP route. Pure: a request's method
//! and path in, the least role out (users, tokens and sessions are `auth`'s).
use serde::{Deserialize, Serialize};

/// What a user may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Audit queries, the inventory, the history of conf files.
    Viewer,
    /// + power, backup runs, machine params.
    Operator,
    /// + pulled host files' contents, restore, users, secrets.
    Admin,
}

impl Role {
    /// "a viewer", "an operator", "an admin".
    pub fn with_article(self) -> &'static str {
        match self {
            Role::Viewer => "a viewer",
            Role::Operator => "an operator",
            Role::Admin => "an admin",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("{s:?} is not a role: viewer, operator or admin")),
        }
    }
}

/// What a request needs: the least role that may make it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Boot clients and health checks: no login.
    Open,
    /// Logging in and out: no role yet.
    Login,
    Role(Role),
}

/// The least role for `method path` (`history_path`: the conf-repo path a history request
/// names, already resolved, e.g. `hosts/kiosk1/etc/passwd`). Pure.
///
/// Open: `/healthz`, `/boot/…`, `/files/…` and `/pool/join/…`, which boot clients fetch
/// before anyone could log in. Everything else under `/api/` needs a user; pulled host files (`hosts/…`), the
/// files that may hold secrets (`power.toml`, `backup.toml`) and any request that names no
/// path (a diff of everything) need an admin. Anything else is refused to all but admins, so
/// a new route is closed until it is given its role here.
pub fn required_role(method: &str, path: &str, history_path: Option<&str>) -> Access {
    let secretive = |p: Option<&str>| {
        p.is_none_or(|p| {
            p == "hosts" || p.starts_with("hosts/") || p == "power.toml" || p == "backup.toml"
        })
    };
    match (method, path) {
        (_, "/healthz") => Access::Open,
        (_, p) if p.starts_with("/boot/") || p.starts_with("/files/") || p == "/files" => {
            Access::Open
        }
        // A pool member's join material: its own token and address are checked by the
        // handler (the token is in its boot script, which only its address gets).
        ("GET", p) if p.starts_with("/pool/join/") || p == "/pool/join.sh" => Access::Open,
        ("POST", "/api/login") | ("POST", "/api/logout") => Access::Login,
        ("GET" | "POST", "/ui/login") | ("GET", "/ui") => Access::Login,
        ("POST", "/ui/logout") => Access::Role(Role::Viewer),
        (
            "GET",
            "/ui/" | "/ui/audit" | "/ui/audit.csv" | "/ui/health" | "/ui/live" | "/ui/groups"
            | "/ui/images" | "/ui/graphs" | "/ui/pool",
        ) => Access::Role(Role::Viewer),
        // A machine's host-file backups: their contents and writing them back.
        ("GET", p) if p.starts_with("/ui/machines/") && p.ends_with("/backups") => {
            Access::Role(Role::Admin)
        }
        ("POST", p) if p.starts_with("/ui/machines/") && p.ends_with("/restore") => {
            Access::Role(Role::Admin)
        }
        // A machine's network root: what the host wrote (secrets too), snapshot, reset.
        ("GET" | "POST", p) if p.starts_with("/ui/machines/") && p.ends_with("/root") => {
            Access::Role(Role::Admin)
        }
        ("GET", p) if p.starts_with("/ui/machines/") => Access::Role(Role::Viewer),
        ("POST", p)
            if p.starts_with("/ui/machines/")
                || p.starts_with("/ui/groups/")
                || p.starts_with("/ui/profiles/") =>
        {
            Access::Role(Role::Operator)
        }
        // Importing reads a path on the server; removing deletes boot files.
        ("POST", "/ui/images/import" | "/ui/images/remove") => Access::Role(Role::Admin),
        // /metrics also opens to the addresses of `[metrics] allow_from` (services::api_auth).
        ("GET", "/api/whoami" | "/api/leases" | "/metrics") => Access::Role(Role::Viewer),
        ("GET", p) if p.starts_with("/api/audit/") => Access::Role(Role::Viewer),
        ("GET", "/api/history/log") => Access::Role(Role::Viewer),
        ("GET", "/api/history/diff" | "/api/history/cat") if !secretive(history_path) => {
            Access::Role(Role::Viewer)
        }
        _ => Access::Role(Role::Admin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_per_route() {
        use Access::*;
        assert_eq!(
            required_role("GET", "/boot/52-54-00-00-00-01.ipxe", None),
            Open
        );
        assert_eq!(required_role("GET", "/files/vmlinuz", None), Open);
        assert_eq!(required_role("GET", "/healthz", None), Open);
        assert_eq!(
            required_role("GET", "/api/audit/find", None),
            Role(super::Role::Viewer)
        );
        // Issue 17: leases and metrics are a viewer's; a capture (the segment's traffic) an
        // admin's, and nothing else may be done to those paths by less.
        for p in ["/api/leases", "/metrics"] {
            assert_eq!(
                required_role("GET", p, None),
                Role(super::Role::Viewer),
                "{p}"
            );
            assert_eq!(
                required_role("POST", p, None),
                Role(super::Role::Admin),
                "{p}"
            );
        }
        assert_eq!(
            required_role("POST", "/api/capture", None),
            Role(super::Role::Admin)
        );
        assert_eq!(
            required_role("GET", "/api/capture", None),
            Role(super::Role::Admin)
        );
        let cat = |p| required_role("GET", "/api/history/cat", p);
        assert_eq!(cat(Some("machines/kiosk1.toml")), Role(super::Role::Viewer));
        assert_eq!(
            cat(Some("hosts/kiosk1/etc/passwd")),
            Role(super::Role::Admin)
        );
        assert_eq!(cat(Some("power.toml")), Role(super::Role::Admin));
        assert_eq!(cat(None), Role(super::Role::Admin));
        assert_eq!(
            required_role("GET", "/api/history/log", Some("hosts/kiosk1")),
            Role(super::Role::Viewer),
            "commit messages only"
        );
        assert_eq!(
            required_role("DELETE", "/api/audit/find", None),
            Role(super::Role::Admin)
        );
        assert_eq!(
            required_role("GET", "/api/new-thing", None),
            Role(super::Role::Admin)
        );
        for page in [
            "/ui/groups",
            "/ui/images",
            "/ui/graphs",
            "/ui/audit",
            "/ui/health",
        ] {
            assert_eq!(
                required_role("GET", page, None),
                Role(super::Role::Viewer),
                "{page}"
            );
        }
        assert_eq!(
            required_role("POST", "/ui/groups/reading-room/power", None),
            Role(super::Role::Operator)
        );
        assert_eq!(
            required_role("POST", "/ui/machines/kiosk1/power", None),
            Role(super::Role::Operator)
        );
        assert_eq!(
            required_role("GET", "/ui/machines/kiosk1/root", None),
            Role(super::Role::Admin)
        );
        assert_eq!(
            required_role("POST", "/ui/machines/kiosk1/root", None),
            Role(super::Role::Admin)
        );
        assert_eq!(
            required_role("GET", "/ui/machines/kiosk1/backups", None),
            Role(super::Role::Admin),
            "host-file contents"
        );
        assert_eq!(
            required_role("POST", "/ui/machines/kiosk1/restore", None),
            Role(super::Role::Admin)
        );
        assert_eq!(
            required_role("POST", "/ui/images/import", None),
            Role(super::Role::Admin)
        );
        assert_eq!(
            required_role("POST", "/ui/profiles/live-kiosk/image", None),
            Role(super::Role::Operator)
        );
        assert_eq!(required_role("POST", "/api/login", None), Login);
        assert_eq!(required_role("GET", "/ui/login", None), Login);
        assert_eq!(
            required_role("GET", "/ui/", None),
            Role(super::Role::Viewer)
        );
        assert_eq!(
            required_role("POST", "/ui/machines/kiosk1", None),
            Role(super::Role::Operator)
        );
        assert_eq!(
            required_role("GET", "/ui/secret", None),
            Role(super::Role::Admin)
        );
    }
}
