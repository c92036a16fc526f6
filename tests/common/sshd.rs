//! OpenSSH servers for tests: `sshd` on a loopback port with its own host key and
//! authorized_keys, killed by PID on drop; client key pairs made with `ssh-keygen`.
use super::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    child: Child,
    pub port: u16,
    pub root: PathBuf,
    cfg: PathBuf,
    log: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn spawn_sshd(cfg: &Path, log: &Path, port: u16) -> Child {
    let child = Command::new(SSHD)
        .args(["-D", "-f"])
        .arg(cfg)
        .arg("-E")
        .arg(log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sshd");
    super::wait_listening(port, Duration::from_secs(10), || {
        format!(
            "sshd on {port} did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
    child
}

/// An sshd on 127.0.0.1 with its own host key, accepting `authorized`.
pub fn start_sshd(dir: &Path, authorized: &Path) -> Sshd {
    start_sshd_with(dir, authorized, "")
}

/// [`start_sshd`] with `extra` sshd_config lines (e.g. `SetEnv PXL_HOST=h1`, so commands can
/// tell the loopback "hosts" apart).
pub fn start_sshd_with(dir: &Path, authorized: &Path, extra: &str) -> Sshd {
    std::fs::create_dir_all(dir).unwrap();
    // sshd's privilege separation directory.
    std::fs::create_dir_all("/run/sshd").unwrap();
    let port = free_port();
    keygen(&dir.join("host_key"));
    let cfg = dir.join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {0}/host_key\nPidFile {0}/sshd.pid\n\
             AuthorizedKeysFile {1}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nMaxStartups 100\n{2}",
            dir.display(),
            authorized.display(),
            extra
        ),
    )
    .unwrap();
    let log = dir.join("sshd.log");
    let child = spawn_sshd(&cfg, &log, port);
    Sshd {
        child,
        port,
        root: dir.join("root"),
        cfg,
        log,
    }
}

impl Sshd {
    /// Restarts with a new host key (the host was "reinstalled").
    pub fn rekey(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        keygen(&self.cfg.parent().unwrap().join("host_key"));
        self.child = spawn_sshd(&self.cfg, &self.log, self.port);
    }
}

/// A scratch directory with a client key pair and an authorized_keys file accepting it.
pub fn client_key() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("client_key");
    keygen(&key);
    let authorized = d.path().join("authorized_keys");
    std::fs::copy(key.with_extension("pub"), &authorized).unwrap();
    (d, key, authorized)
}

pub fn sshd_available() -> bool {
    Path::new(SSHD).exists()
}
