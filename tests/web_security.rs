//! The web UI's attack surface against the real daemon on loopback, with raw HTTP requests:
//! a form POST without (or with another session's) CSRF token, a viewer posting an edit, an
//! oversized form, no session, a foreign Host header, a stored value that tries to become
//! markup. Each must fail, and nothing may be committed by the ones refused.
mod common;
use common::*;
use std::io::{Read, Write};
use std::time::Duration;

/// One HTTP/1.0 request with a form body (or none); status, headers, body.
fn send(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    host: &str,
    form: Option<&str>,
) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n");
    if let Some(c) = cookie {
        head.push_str(&format!("Cookie: pxl_session={c}\r\n"));
    }
    if let Some(f) = form {
        head.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            f.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    if let Some(f) = form {
        let _ = s.write_all(f.as_bytes());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let buf = String::from_utf8_lossy(&buf).into_owned();
    let (h, b) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    (
        h.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        h.to_string(),
        b.to_string(),
    )
}

fn login(port: u16, user: &str) -> String {
    let (status, headers, _) = send(
        port,
        "POST",
        "/ui/login",
        None,
        "127.0.0.1",
        Some(&format!("user={user}&password={user}-password-1")),
    );
    assert_eq!(status, 303, "login as {user}: {headers}");
    let set = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap()
        .to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    set.split_once("pxl_session=")
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

fn csrf_of(page: &str) -> String {
    page.split_once("name=\"csrf\" value=\"")
        .unwrap()
        .1
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn forms_need_the_sessions_csrf_token_and_the_role() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = loopback_config(d.path(), port);
    user_with_token(&cfg, "amy", "operator", "amy-password-1");
    user_with_token(&cfg, "vic", "viewer", "vic-password-1");
    let o = px(
        &cfg,
        &[
            "host",
            "add",
            "kiosk1",
            "--mac",
            "52:54:00:aa:00:01",
            "--ip",
            "127.0.0.2",
            "--param",
            "motd=<script>alert(1)</script>",
            "--author",
            "T <t@x>",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut daemon = Daemon::start(&cfg, &d.path().join("daemon.log"));
    wait_listening(port, Duration::from_secs(20), || {
        std::fs::read_to_string(d.path().join("daemon.log")).unwrap_or_default()
    });
    let repo = d.path().join("conf-repo");
    let head = || git(&repo, &["rev-parse", "HEAD"]);
    let before = head();

    // No session: pages send the browser to the login form, a POST is refused.
    let (s, h, _) = send(port, "GET", "/ui/machines/kiosk1", None, "127.0.0.1", None);
    assert!(s == 303 && h.contains("location: /ui/login"), "{h}");
    let (s, _, _) = send(
        port,
        "POST",
        "/ui/machines/kiosk1",
        None,
        "127.0.0.1",
        Some("param_key=a&param_value=b"),
    );
    assert_eq!(s, 401);

    let amy = login(port, "amy");
    let (s, _, page) = send(
        port,
        "GET",
        "/ui/machines/kiosk1",
        Some(&amy),
        "127.0.0.1",
        None,
    );
    assert_eq!(s, 200);
    // The stored value is text on the page, never markup.
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !page.contains("<script>alert"),
        "{page}"
    );
    let token = csrf_of(&page);

    // Cross-site form posts: no token, a wrong one, another session's.
    let vic = login(port, "vic");
    let (_, _, vpage) = send(port, "GET", "/ui/", Some(&vic), "127.0.0.1", None);
    let vic_token = csrf_of(&vpage);
    for form in [
        "param_key=homepage&param_value=http://evil/".to_string(),
        "csrf=0000&param_key=homepage&param_value=http://evil/".to_string(),
        format!("csrf={vic_token}&param_key=homepage&param_value=http://evil/"),
    ] {
        let (s, _, b) = send(
            port,
            "POST",
            "/ui/machines/kiosk1",
            Some(&amy),
            "127.0.0.1",
            Some(&form),
        );
        assert_eq!(s, 403, "{form}: {b}");
        assert!(b.contains("CSRF"), "{b}");
    }
    // The viewer, with her own valid token: the role is not enough.
    let (s, _, b) = send(
        port,
        "POST",
        "/ui/machines/kiosk1",
        Some(&vic),
        "127.0.0.1",
        Some(&format!("csrf={vic_token}&param_key=a&param_value=b")),
    );
    assert_eq!(s, 403, "{b}");
    // Every other form of the UI: no CSRF token → refused; a viewer with her own token →
    // refused; an operator on an admin-only form → refused. Nothing changes.
    let forms = [
        ("/ui/machines/kiosk1/revert", "rev=HEAD", false),
        ("/ui/machines/kiosk1/power", "action=on", false),
        ("/ui/machines/kiosk1/next-boot", "next=local", false),
        ("/ui/groups/reading-room/power", "action=on", false),
        (
            "/ui/groups/reading-room/defaults",
            "param_key=homepage&param_value=x",
            false,
        ),
        ("/ui/profiles/default/image", "image=x", false),
        (
            "/ui/machines/kiosk1/restore",
            "file=etc%2Fhosts&confirm=1",
            true,
        ),
        ("/ui/images/import", "source=%2Fetc&name=etc", true),
        ("/ui/images/remove", "image=x-v1", true),
        ("/ui/machines/kiosk1/root", "action=reset", true),
    ];
    for (path, form, admin_only) in forms {
        let (s, _, b) = send(port, "POST", path, Some(&amy), "127.0.0.1", Some(form));
        assert_eq!(s, 403, "{path} without a CSRF token: {b}");
        let (s, _, b) = send(
            port,
            "POST",
            path,
            Some(&vic),
            "127.0.0.1",
            Some(&format!("csrf={vic_token}&{form}")),
        );
        assert_eq!(s, 403, "{path} as a viewer: {b}");
        if admin_only {
            let (s, _, b) = send(
                port,
                "POST",
                path,
                Some(&amy),
                "127.0.0.1",
                Some(&format!("csrf={token}&{form}")),
            );
            assert_eq!(s, 403, "{path} as an operator: {b}");
            assert!(b.contains("admin"), "{b}");
        }
    }
    assert!(
        !d.path().join("state/next-boot.json").exists(),
        "a refused next-boot form set one"
    );
    // Pages: without a session, the login form; a viewer does not read host-file backups.
    for path in [
        "/ui/groups",
        "/ui/images",
        "/ui/graphs",
        "/ui/machines/kiosk1/history",
        "/ui/machines/kiosk1/backups",
        "/ui/audit?pipeline=%5B%5D",
    ] {
        let (s, h, _) = send(port, "GET", path, None, "127.0.0.1", None);
        assert!(s == 303 && h.contains("location: /ui/login"), "{path}: {h}");
    }
    for path in ["/ui/machines/kiosk1/backups", "/ui/machines/kiosk1/root"] {
        let (s, _, b) = send(port, "GET", path, Some(&vic), "127.0.0.1", None);
        assert_eq!(s, 403, "{path}: {b}");
    }
    // A form bigger than the guard reads.
    let big = format!(
        "csrf={token}&param_key=a&param_value={}",
        "x".repeat(100_000)
    );
    let (s, _, _) = send(
        port,
        "POST",
        "/ui/machines/kiosk1",
        Some(&amy),
        "127.0.0.1",
        Some(&big),
    );
    assert_eq!(s, 413);
    // A page asked for under a name this server does not have (DNS rebinding).
    let (s, _, _) = send(port, "GET", "/ui/", Some(&amy), "evil.example", None);
    assert_eq!(s, 421);
    assert_eq!(head(), before, "a refused request committed something");

    // The real form: committed, as amy.
    let (s, h, _) = send(
        port,
        "POST",
        "/ui/machines/kiosk1",
        Some(&amy),
        "127.0.0.1",
        Some(&format!(
            "csrf={token}&param_key=homepage&param_value=http%3A%2F%2Fopac%2F"
        )),
    );
    assert_eq!(s, 303, "{h}");
    assert_ne!(head(), before);
    assert!(git(&repo, &["log", "-1", "--format=%an"]).starts_with("amy"));

    // Logout ends the session server-side.
    let (s, _, _) = send(
        port,
        "POST",
        "/ui/logout",
        Some(&amy),
        "127.0.0.1",
        Some(&format!("csrf={token}")),
    );
    assert_eq!(s, 303);
    let (s, h, _) = send(port, "GET", "/ui/", Some(&amy), "127.0.0.1", None);
    assert!(s == 303 && h.contains("/ui/login"), "{h}");

    // The live stream needs a session too; one left open does not hold the daemon's shutdown.
    let (s, _, _) = send(port, "GET", "/ui/live", None, "127.0.0.1", None);
    assert_eq!(s, 303);
    let vic_live = {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            c,
            "GET /ui/live HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: pxl_session={vic}\r\n\r\n"
        )
        .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = [0u8; 512];
        let n = c.read(&mut head).unwrap();
        let head = String::from_utf8_lossy(&head[..n]).to_string();
        assert!(
            head.starts_with("HTTP/1.1 200") && head.contains("text/event-stream"),
            "{head}"
        );
        c
    };
    let st = daemon.terminate(Duration::from_secs(10));
    assert!(
        st.is_some_and(|s| s.success()),
        "the daemon did not stop cleanly with a live stream open: {st:?}"
    );
    drop(vic_live);
}
