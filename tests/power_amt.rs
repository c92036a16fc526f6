//! Issue 4, Intel AMT: `pxelator power status|on|off|reset` against a WS-Management endpoint
//! behind a real Apache (mod_auth_digest does the HTTP digest authentication). The endpoint (tests/fixtures/amt-wsman.cgi) checks every SOAP message
//! against the published AMT/CIM formats and faults on anything else; this test reads its log
//! to see exactly which requests arrived. Wrong credentials and an unreachable AMT must give a
//! clear error, exit 2 and a power_failed event.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;
use common::{free_port, minimal_config, px, text};

const APACHE: &str = "/usr/sbin/apache2";
const MODULES: &str = "/usr/lib/apache2/modules";
/// AMT's realms read "Digest:<32 hex>"; Apache's user file is colon-separated and cannot hold
/// a colon in the realm, so this one has a dash (the amt unit tests parse a real-form one).
const REALM: &str = "Digest-A3829B3827DE4D33D4449B366831FD01";

struct Apache {
    child: Child,
    port: u16,
    state: PathBuf,
}

impl Drop for Apache {
    /// SIGTERM, so the parent stops its prefork children too (SIGKILL would leave them
    /// serving the port); SIGKILL only if it has not gone within 10 s.
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn md5_hex(s: &str) -> String {
    let mut c = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("md5sum");
    use std::io::Write;
    c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout)[..32].to_owned()
}

/// Apache on 127.0.0.1:<free port> serving the AMT stand-in at /wsman behind digest auth for
/// admin / `password`.
fn start_apache(dir: &Path, password: &str) -> Apache {
    start_apache_on(dir, password, free_port(), None)
}

/// A self-signed certificate for 127.0.0.1 made by the openssl CLI: (cert, key, its SHA-256
/// fingerprint as openssl prints it, `AA:BB:…`).
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=Intel(r) AMT test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let fp = String::from_utf8_lossy(&o.stdout)
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .to_owned();
    (cert, key, fp)
}

/// [`start_apache`] on a given port, over TLS (mod_ssl) with `tls` = (cert, key) if given.
fn start_apache_on(dir: &Path, password: &str, port: u16, tls: Option<(&Path, &Path)>) -> Apache {
    let state = dir.join("amt-state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cgi = dir.join("amt-wsman.cgi");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/amt-wsman.cgi"),
        &cgi,
    )
    .unwrap();
    std::fs::set_permissions(&cgi, std::fs::Permissions::from_mode(0o755)).unwrap();
    let users = dir.join("digest-users");
    std::fs::write(
        &users,
        format!(
            "admin:{REALM}:{}\n",
            md5_hex(&format!("admin:{REALM}:{password}"))
        ),
    )
    .unwrap();
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).unwrap();
    let conf = dir.join("httpd.conf");
    let modules = [
        "mpm_prefork",
        "authn_core",
        "authn_file",
        "authz_core",
        "authz_user",
        "auth_digest",
        "alias",
        "cgi",
        "env",
    ]
    .iter()
    .chain(if tls.is_some() { &["ssl"][..] } else { &[] })
    .map(|m| format!("LoadModule {m}_module {MODULES}/mod_{m}.so\n"))
    .collect::<String>();
    let ssl = tls
        .map(|(c, k)| {
            format!(
                "SSLEngine on\nSSLCertificateFile {}\nSSLCertificateKeyFile {}\n",
                c.display(),
                k.display()
            )
        })
        .unwrap_or_default();
    std::fs::write(
        &conf,
        format!(
            "{modules}ServerRoot {d}\nServerName amt.test\nListen 127.0.0.1:{port}\n{ssl}\
PidFile {d}/httpd.pid\nErrorLog {d}/error.log\nLogLevel warn\nUser nobody\nGroup nogroup\n\
StartServers 1\nMinSpareServers 1\nMaxSpareServers 2\n\
ScriptAlias /wsman {cgi}\n\
<Location /wsman>\n  SetEnv AMT_STATE_DIR {state}\n  AuthType Digest\n  AuthName \"{REALM}\"\n\
  AuthDigestProvider file\n  AuthUserFile {users}\n  Require valid-user\n</Location>\n",
            d = dir.display(),
            cgi = cgi.display(),
            state = state.display(),
            users = users.display(),
        ),
    )
    .unwrap();
    // Its own process group: stopping, Apache signals its whole group (here: only itself
    // and its children, not the test and whoever started it).
    use std::os::unix::process::CommandExt;
    let child = Command::new(APACHE)
        .process_group(0)
        .args(["-DFOREGROUND", "-f"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start apache2");
    common::wait_listening(port, Duration::from_secs(15), || {
        format!(
            "apache2 did not start on {port}: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        )
    });
    Apache { child, port, state }
}

fn amt_log(a: &Apache) -> Vec<String> {
    std::fs::read_to_string(a.state.join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn amt_power_status_on_off_reset_over_digest_auth() {
    if !Path::new(APACHE).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "apache2-bin missing; scripts/setup installs it"
        );
        println!("SKIPPED: AMT power test: {APACHE} not installed (apt-get install apache2-bin)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    let apache = start_apache(&base.join("amt"), "Secret-1!");
    let dead = free_port();
    let repo = base.join("conf-repo");
    std::fs::create_dir_all(repo.join("machines")).unwrap();
    std::fs::create_dir_all(repo.join("groups")).unwrap();
    let machine = |name: &str, n: u8, amt: Option<String>| {
        let amt = amt.map(|a| format!("[params]\namt = \"{a}\"\n"));
        std::fs::write(
            repo.join(format!("machines/{name}.toml")),
            format!(
                "mac = \"52:54:00:00:00:{n:02x}\"\nip = \"10.77.1.{n}\"\nhostname = \"{name}\"\n{}",
                amt.unwrap_or_default()
            ),
        )
        .unwrap();
    };
    machine("kiosk1", 11, Some(format!("127.0.0.1:{}", apache.port)));
    machine("kiosk2", 12, Some(format!("127.0.0.1:{dead}")));
    machine("kiosk3", 13, None);
    let pass = base.join("amt-password");
    std::fs::write(&pass, "Secret-1!\n").unwrap();
    {
        // A password file others can read is refused (issue 10), then made private.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).unwrap();
        let amt = pxelator::power::amt::AmtConfig {
            password_file: Some(pass.clone()),
            ..Default::default()
        };
        let e = pxelator::power::amt::Client::new("127.0.0.1", &amt)
            .err()
            .unwrap();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::write(
        repo.join("power.toml"),
        format!(
            "[amt]\nuser = \"admin\"\npassword_file = \"{}\"\ntimeout_secs = 5\n",
            pass.display()
        ),
    )
    .unwrap();
    let cfg = minimal_config(base, "10.77.1.1");
    let url = format!("http://127.0.0.1:{}/wsman", apache.port);

    // status: a WS-Transfer Get; the stand-in starts "off (soft)" (8).
    let o = px(&cfg, &["power", "status", "kiosk1"]);
    assert!(
        o.status.success(),
        "{}\napache error.log:\n{}",
        text(&o),
        std::fs::read_to_string(base.join("amt/error.log")).unwrap_or_default()
    );
    assert!(
        text(&o).contains(&format!(
            "kiosk1 (52:54:00:00:00:0b): off (soft) (PowerState 8, from {url})"
        )),
        "{}",
        text(&o)
    );
    // on, then status says on; off; reset: each one RequestPowerStateChange with its CIM value.
    for (verb, want) in [("on", "on"), ("off", "off"), ("reset", "reset")] {
        let o = px(&cfg, &["power", verb, "kiosk1"]);
        assert!(o.status.success(), "{verb}: {}", text(&o));
        assert!(
            text(&o).contains(&format!(
                "kiosk1 (52:54:00:00:00:0b): {want} by amt via {url}"
            )),
            "{}",
            text(&o)
        );
    }
    let o = px(&cfg, &["power", "status", "kiosk1"]);
    assert!(
        text(&o).contains("kiosk1 (52:54:00:00:00:0b): on (PowerState 2"),
        "{}",
        text(&o)
    );
    assert_eq!(
        amt_log(&apache),
        ["get", "change 2", "change 8", "change 10", "get"],
        "the endpoint saw exactly these well-formed requests (a malformed one logs FAULT)"
    );

    // Unreachable AMT: a clear error naming the URL, exit 2, nothing sent elsewhere.
    let o = px(&cfg, &["power", "on", "kiosk2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "kiosk2: cannot reach AMT at http://127.0.0.1:{dead}/wsman"
        )) && text(&o).contains("AMT provisioned"),
        "{}",
        text(&o)
    );
    // No AMT: reset and status are refused with what to set; on falls back to Wake-on-LAN
    // (not sent here: 10.77.1.0/24 is not configured, which it says).
    let o = px(&cfg, &["power", "reset", "kiosk3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("reset needs Intel AMT: set its amt param"),
        "{}",
        text(&o)
    );
    let o = px(&cfg, &["power", "status", "kiosk3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("it has no amt param"), "{}", text(&o));

    // Wrong password: AMT (Apache) refuses the digest answer; said so, exit 2.
    std::fs::write(&pass, "wrong\n").unwrap();
    let before = amt_log(&apache).len();
    let o = px(&cfg, &["power", "off", "kiosk1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "kiosk1: AMT at {url} refused user \"admin\" (HTTP 401): check [amt] user and password_file"
        )),
        "{}",
        text(&o)
    );
    assert_eq!(
        amt_log(&apache).len(),
        before,
        "nothing reached the endpoint"
    );
    // [amt] missing while a machine has amt: named.
    std::fs::write(repo.join("power.toml"), "").unwrap();
    let o = px(&cfg, &["power", "off", "kiosk1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("power.toml has no [amt]"), "{}", text(&o));

    // Every action and failure is an event.
    let ev = text(&px(
        &cfg,
        &[
            "audit",
            "find",
            r#"{"source": "power"}"#,
            "--sort",
            r#"{"time_ms": 1}"#,
        ],
    ));
    let kinds: Vec<&str> = ev
        .lines()
        .filter_map(|l| l.split("\"kind\":\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(
        kinds,
        [
            "power_state_seen",
            "power_requested",
            "power_requested",
            "power_requested",
            "power_state_seen",
            "power_failed",
            "power_failed",
            "power_failed",
            "power_failed",
            "power_failed"
        ],
        "{ev}"
    );
    assert!(
        ev.contains("\"method\":\"amt\"") && ev.contains("\"value\":2"),
        "{ev}"
    );
}

/// Issue 10: the digest exchange went over plain HTTP. With `[amt] tls = true` pxelator talks
/// HTTPS (here to Apache with mod_ssl and a self-signed certificate, as AMT has): the first
/// connection pins the certificate's SHA-256 in `<state_dir>/amt/known_certs` (0600, the same
/// fingerprint openssl prints), later ones must present it. When the endpoint comes back with
/// another certificate (a machine in the middle, or a re-provisioned AMT) the action is refused
/// with both fingerprints and the line to delete, and nothing reaches the endpoint.
#[test]
fn amt_over_tls_pins_the_certificate_on_first_use() {
    if !Path::new(APACHE).exists() || !Path::new(MODULES).join("mod_ssl.so").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "apache2-bin (mod_ssl) missing"
        );
        println!("SKIPPED: AMT over TLS test: {APACHE} with mod_ssl not installed");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let base = d.path();
    let amt_dir = base.join("amt");
    std::fs::create_dir_all(&amt_dir).unwrap();
    let (cert_a, key_a, fp_a) = self_signed(base, "a");
    let (cert_b, key_b, fp_b) = self_signed(base, "b");
    let port = free_port();
    let apache = start_apache_on(&amt_dir, "Secret-1!", port, Some((&cert_a, &key_a)));
    let repo = base.join("conf-repo");
    std::fs::create_dir_all(repo.join("machines")).unwrap();
    std::fs::write(
        repo.join("machines/kiosk1.toml"),
        "mac = \"52:54:00:00:00:0b\"\nip = \"10.77.1.11\"\nhostname = \"kiosk1\"\n\
         [params]\namt = \"127.0.0.1\"\n",
    )
    .unwrap();
    let pass = base.join("amt-password");
    std::fs::write(&pass, "Secret-1!\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        repo.join("power.toml"),
        format!(
            "[amt]\nuser = \"admin\"\npassword_file = \"{}\"\ntls = true\nport = {port}\ntimeout_secs = 5\n",
            pass.display()
        ),
    )
    .unwrap();
    let cfg = minimal_config(base, "10.77.1.1");
    let url = format!("https://127.0.0.1:{port}/wsman");
    let pins = base.join("state/amt/known_certs");

    let o = px(&cfg, &["power", "status", "kiosk1"]);
    assert!(
        o.status.success(),
        "{}\n{}",
        text(&o),
        std::fs::read_to_string(amt_dir.join("error.log")).unwrap_or_default()
    );
    assert!(
        text(&o).contains(&format!("(PowerState 8, from {url})")),
        "{}",
        text(&o)
    );
    let pinned = std::fs::read_to_string(&pins).unwrap();
    let want = fp_a.replace(':', "").to_lowercase();
    assert_eq!(
        pinned,
        format!("127.0.0.1:{port} {want}\n"),
        "openssl says {fp_a}"
    );
    assert_eq!(
        std::fs::metadata(&pins).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let o = px(&cfg, &["power", "on", "kiosk1"]);
    assert!(o.status.success(), "pinned and matching: {}", text(&o));
    assert_eq!(amt_log(&apache), ["get", "change 2"]);

    // The endpoint comes back with another certificate on the same address and port.
    drop(apache);
    let apache = start_apache_on(&amt_dir, "Secret-1!", port, Some((&cert_b, &key_b)));
    let before = amt_log(&apache).len();
    let o = px(&cfg, &["power", "off", "kiosk1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let shown = text(&o);
    assert!(
        shown.contains(&format!("presented certificate SHA256 {fp_b}"))
            && shown.contains(&fp_a)
            && shown.contains("delete its line from")
            && shown.contains(&pins.display().to_string()),
        "{shown}"
    );
    assert_eq!(
        amt_log(&apache).len(),
        before,
        "nothing reached the endpoint"
    );
    assert_eq!(
        std::fs::read_to_string(&pins).unwrap(),
        pinned,
        "the pin stays"
    );
}
