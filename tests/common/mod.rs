//! Helpers shared by the integration tests: free loopback ports, an nx-27017 server the test
//! starts (and kills by PID on drop), the stock git CLI acting as a human ("Carol Hand"), and
//! running the pxelator CLI against a small config.
#![allow(dead_code)]
pub mod sshd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nx-27017 as scripts/setup installs it (or $PXELATOR_NX27017), if present.
pub fn nx_binary() -> Option<PathBuf> {
    let p = std::env::var_os("PXELATOR_NX27017")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/pxelator/nx-venv/bin/nx-27017".into());
    p.exists().then_some(p)
}

/// An nx-27017 server this test started.
pub struct Nx {
    child: Child,
    pub port: u16,
}

impl Drop for Nx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts nx-27017 (in memory) on `port`, logs in `dir`; does not wait for it.
pub fn spawn_nx(bin: &Path, port: u16, dir: &Path) -> Nx {
    let child = Command::new(bin)
        .args([
            "--db",
            "memory",
            "--host",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .arg("--log-file")
        .arg(dir.join("nx.log"))
        .arg("--pid-file")
        .arg(dir.join("nx.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nx-27017");
    Nx { child, port }
}

/// Starts nx-27017 and waits (at most 30 s) until it accepts connections.
pub fn start_nx(bin: &Path, port: u16, dir: &Path) -> Nx {
    let nx = spawn_nx(bin, port, dir);
    wait_listening(port, Duration::from_secs(30), || {
        format!("nx-27017 did not listen on {port} within 30 s")
    });
    nx
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`; after `limit`, panics
/// with `why()` (e.g. the server's log).
pub fn wait_listening(port: u16, limit: Duration, why: impl Fn() -> String) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{}", why());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The stock git CLI in `repo`, as Carol Hand; stdout. Fails the test on a git error.
pub fn git(repo: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Carol Hand")
        .env("GIT_AUTHOR_EMAIL", "carol@lib.example")
        .env("GIT_COMMITTER_NAME", "Carol Hand")
        .env("GIT_COMMITTER_EMAIL", "carol@lib.example")
        .output()
        .expect("git CLI (apt-get install git)");
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Runs `pxelator VERB --config CFG REST…` (the binary under test).
pub fn px(cfg: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pxelator"))
        .args(&args[..1])
        .arg("--config")
        .arg(cfg)
        .args(&args[1..])
        .output()
        .expect("run pxelator")
}

/// [`px`] run as the login `user` (the commit author pxelator takes from the environment).
pub fn px_as(cfg: &Path, user: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pxelator"))
        .args(&args[..1])
        .arg("--config")
        .arg(cfg)
        .args(&args[1..])
        .env("USER", user)
        .env_remove("SUDO_USER")
        .output()
        .expect("run pxelator")
}

/// stdout then stderr.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `base/pxelator.toml` with conf-repo, state and boot under `base`, DHCP off.
pub fn minimal_config(base: &Path, server_ip: &str) -> PathBuf {
    for d in ["conf-repo", "boot"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    let cfg = base.join("pxelator.toml");
    std::fs::write(
        &cfg,
        format!(
            "conf_repo = \"{0}/conf-repo\"\nstate_dir = \"{0}/state\"\nboot_dir = \"{0}/boot\"\nserver_ip = \"{server_ip}\"\n[dhcp]\nmode = \"off\"\n",
            base.display()
        ),
    )
    .unwrap();
    cfg
}

/// `pxelator serve` (RUST_LOG=info, stderr to `log`), killed by PID when dropped.
pub struct Daemon(Child);

impl Daemon {
    pub fn start(cfg: &Path, log: &Path) -> Daemon {
        Daemon(
            Command::new(env!("CARGO_BIN_EXE_pxelator"))
                .args(["serve", "--config"])
                .arg(cfg)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .expect("start pxelator serve"),
        )
    }
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGTERM, then waits up to `limit` for the daemon to exit; its status, or None.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(st)) = self.0.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET over plain HTTP/1.0 on loopback, no credentials; the body.
pub fn get(port: u16, path: &str) -> Option<String> {
    request(port, "GET", path, &[], "").map(|r| r.body)
}

/// An HTTP response as a test sees it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Resp {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// One HTTP/1.0 request on loopback with `Host: 127.0.0.1` unless `headers` gives a Host.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Resp> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut head = format!("{method} {path} HTTP/1.0\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str("Host: 127.0.0.1\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body.as_bytes()).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (h, b) = buf.split_once("\r\n\r\n")?;
    let status = h.split(' ').nth(1)?.parse().ok()?;
    Some(Resp {
        status,
        headers: h.to_owned(),
        body: b.to_owned(),
    })
}

/// Adds user `name` with `role` through the CLI (password on stdin) and returns an API
/// token made for it.
pub fn user_with_token(cfg: &Path, name: &str, role: &str, password: &str) -> String {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_pxelator"))
        .args(["user", "--config"])
        .arg(cfg)
        .args(["add", name, "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pxelator user add");
    writeln!(c.stdin.take().unwrap(), "{password}").unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "user add: {}", text(&o));
    let o = px(cfg, &["user", "token", name, "--label", "test"]);
    assert!(o.status.success(), "user token: {}", text(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// Polls `f` every 50 ms until it is true or `limit` passes; the time it took.
pub fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The stock git CLI in `repo` with `input` on stdin; stdout, trimmed.
pub fn git_stdin(repo: &Path, args: &[&str], input: &[u8]) -> String {
    use std::io::Write;
    let mut c = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git CLI");
    c.stdin.take().unwrap().write_all(input).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// A config for a daemon on loopback only: DHCP and TFTP off, HTTP on 127.0.0.1:`port`,
/// conf repo, state and boot directories under `base`.
pub fn loopback_config(base: &Path, port: u16) -> PathBuf {
    loopback_config_with(base, port, "[tftp]\nenabled = false\n")
}

/// [`loopback_config`] with `extra` TOML sections instead of the one turning TFTP off (e.g. a
/// `[tftp]` or `[syslog]` listening on 127.0.0.1).
pub fn loopback_config_with(base: &Path, port: u16, extra: &str) -> PathBuf {
    for d in ["boot", "conf-repo"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    let cfg = base.join("pxelator.toml");
    std::fs::write(
        &cfg,
        format!(
            "conf_repo = \"{0}/conf-repo\"\nstate_dir = \"{0}/state\"\nboot_dir = \"{0}/boot\"\nserver_ip = \"127.0.0.1\"\n\
             [dhcp]\nmode = \"off\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n{extra}",
            base.display()
        ),
    )
    .unwrap();
    cfg
}

/// A process's peak resident set (VmHWM) in kB, as the kernel counts it.
pub fn vm_hwm_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

/// Resets a process's VmHWM to its current RSS (`/proc/PID/clear_refs`, value 5), so a later
/// [`vm_hwm_kb`] is the peak of what happened in between.
pub fn reset_vm_hwm(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .expect("reset VmHWM (needs the same user or root)");
}

pub fn run(cmd: &mut Command) {
    let o = cmd.output().expect("run tool");
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A live tree: live/vmlinuz (an x86 boot header), live/initrd.img (cpio), and a real
/// live/filesystem.squashfs.
pub fn live_tree(dir: &Path, tag: &str) -> PathBuf {
    let live = dir.join("live");
    std::fs::create_dir_all(&live).unwrap();
    let mut kernel = vec![0u8; 300_000];
    kernel[0x202..0x206].copy_from_slice(b"HdrS");
    kernel[1000..1000 + tag.len()].copy_from_slice(tag.as_bytes());
    std::fs::write(live.join("vmlinuz"), &kernel).unwrap();
    let mut initrd = b"070701".to_vec();
    initrd.resize(70_001, b'i');
    std::fs::write(live.join("initrd.img"), &initrd).unwrap();
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), format!("live-{tag}\n")).unwrap();
    run(Command::new("mksquashfs")
        .arg(&root)
        .arg(live.join("filesystem.squashfs"))
        .args(["-noappend", "-quiet", "-no-progress"]));
    std::fs::remove_dir_all(&root).unwrap();
    dir.to_owned()
}
