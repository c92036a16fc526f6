//! The one ssh runner. Every remote command pxelator runs — a pull's `tar`, a restore's `cat`
//! and write, a power-off command — goes through [`Ssh`]: the stock OpenSSH client with the
//! configured key (refused if others can read it), the host key pinned on first use under the
//! host's *name* (HostKeyAlias) in `state_dir/ssh/known_hosts`, `--` before the destination,
//! a deadline after which our ssh is killed (by its PID), and errors that say what was run
//! ("power-off command failed", not "remote tar failed").
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{ChildStdout, Command, Stdio};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("ssh key: {0} (pxelator serve creates the default key; or ssh-keygen -t ed25519 -N '' -f KEY)")]
    Key(String),
    #[error("host key of {host} ({addr}) differs from the one pinned in {known_hosts}; if the host was really reinstalled, forget the old key with: ssh-keygen -R {host} -f {known_hosts}")]
    HostKeyChanged {
        host: String,
        addr: String,
        known_hosts: String,
    },
    #[error("{host} ({addr}): cannot connect or log in: {msg}")]
    Unreachable {
        host: String,
        addr: String,
        msg: String,
    },
    #[error("{host} ({addr}): {what}: no answer within {secs} s; cut off")]
    TimedOut {
        host: String,
        addr: String,
        what: String,
        secs: u64,
    },
    #[error("{host}: {what} failed (exit {code}): {stderr}")]
    Failed {
        host: String,
        what: String,
        code: i32,
        stderr: String,
    },
    #[error("{host}: {what}: answer larger than {max} bytes; stopped reading")]
    TooLarge {
        host: String,
        what: String,
        max: u64,
    },
    #[error("cannot run ssh (apt-get install openssh-client): {0}")]
    Spawn(std::io::Error),
    #[error("{host}: {what}: {msg}")]
    Io {
        host: String,
        what: String,
        msg: String,
    },
}

/// Where and as whom to run commands.
#[derive(Debug, Clone, PartialEq)]
pub struct Ssh {
    /// The host's name: the pin in known_hosts and the name in errors.
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    /// Where multiplexed connections live (a 0700 directory): with it, the first command to a
    /// host leaves a master connection that later commands reuse for [`MUX_PERSIST_SECS`]
    /// (no new handshake); None: a connection per command.
    pub mux_dir: Option<PathBuf>,
}

/// How long an idle master connection stays up after its last command.
pub const MUX_PERSIST_SECS: u32 = 300;

/// What a command printed and how it ended (the command ran: ssh got in).
#[derive(Debug, Clone, PartialEq)]
pub struct Ran {
    pub code: i32,
    /// At most the asked number of bytes; `truncated` says there was more.
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub truncated: bool,
}

/// The raw end of one ssh process: what `read` returned, the exit status, stderr.
struct Ended<T> {
    result: std::io::Result<T>,
    status: std::io::Result<std::process::ExitStatus>,
    stderr: String,
    wrote: Option<std::io::Result<()>>,
}

impl Ssh {
    fn addr(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }

    /// The OpenSSH client command running `remote`.
    pub fn command(&self, remote: &str) -> Result<Command, SshError> {
        crate::fsutil::check_private(&self.key).map_err(SshError::Key)?;
        if let Some(d) = self.known_hosts.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let mut c = Command::new("ssh");
        c.arg("-i")
            .arg(&self.key)
            .args(["-p", &self.port.to_string()])
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .args(["-o", "StrictHostKeyChecking=accept-new"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .arg("-o")
            .arg(format!("HostKeyAlias={}", self.name))
            .args(["-o", "ConnectTimeout=10"])
            .args([
                "-o",
                "ServerAliveInterval=15",
                "-o",
                "ServerAliveCountMax=4",
            ])
            .args(["-o", "LogLevel=ERROR"]);
        if let Some(dir) = &self.mux_dir {
            crate::fsutil::ensure_private_dir(dir).map_err(SshError::Key)?;
            // %C: a hash of the destination, so the socket path stays short whatever the name.
            c.arg("-o")
                .arg(format!("ControlPath={}/%C", dir.display()))
                .args(["-o", "ControlMaster=auto"])
                .arg("-o")
                .arg(format!("ControlPersist={MUX_PERSIST_SECS}"));
        }
        c
            // `--`: whatever the destination holds, ssh never reads it as an option.
            .arg("--")
            .arg(format!("{}@{}", self.user, self.address))
            .arg(remote);
        Ok(c)
    }

    /// Runs `remote` (named `what` in errors), feeding it `stdin`, and returns at most
    /// `max_stdout` bytes of what it prints; killed after `timeout`.
    pub fn run(
        &self,
        what: &str,
        remote: &str,
        stdin: Option<&[u8]>,
        max_stdout: u64,
        timeout: Duration,
    ) -> Result<Vec<u8>, SshError> {
        let input = stdin.map(<[u8]>::to_vec);
        let out = self.stream(what, remote, input, timeout, |mut out| {
            let mut buf = Vec::new();
            (&mut out).take(max_stdout + 1).read_to_end(&mut buf)?;
            Ok(buf)
        })?;
        if out.len() as u64 > max_stdout {
            return Err(SshError::TooLarge {
                host: self.name.clone(),
                what: what.into(),
                max: max_stdout,
            });
        }
        Ok(out)
    }

    /// Runs `remote`, handing its stdout to `read` as it arrives (a pull's tar stream);
    /// killed after `timeout`. `read`'s I/O error is reported only if the command itself
    /// succeeded (a failed command explains the broken stream better).
    pub fn stream<T>(
        &self,
        what: &str,
        remote: &str,
        stdin: Option<Vec<u8>>,
        timeout: Duration,
        read: impl FnOnce(ChildStdout) -> std::io::Result<T>,
    ) -> Result<T, SshError> {
        let ended = self.drive(what, remote, stdin, timeout, read)?;
        let status = ended.status.map_err(|e| self.io(what, e))?;
        if !status.success() {
            return Err(self.classify(what, status.code(), &ended.stderr));
        }
        if let Some(Err(e)) = ended.wrote {
            return Err(self.io(what, e));
        }
        ended.result.map_err(|e| self.io(what, e))
    }

    /// Runs `remote` and returns how it ended whatever its exit code (`pxelator run`, recipes):
    /// at most `max_stdout` bytes of its output (the rest is not read: the pipe is closed),
    /// 64 KiB of stderr. Errors only when ssh did not get in (exit 255, a changed host key) or
    /// the deadline cut it off.
    pub fn exec(
        &self,
        what: &str,
        remote: &str,
        stdin: Option<Vec<u8>>,
        max_stdout: u64,
        timeout: Duration,
    ) -> Result<Ran, SshError> {
        let ended = self.drive(what, remote, stdin, timeout, |mut out| {
            let mut buf = Vec::new();
            (&mut out).take(max_stdout + 1).read_to_end(&mut buf)?;
            Ok(buf)
        })?;
        let status = ended.status.map_err(|e| self.io(what, e))?;
        match status.code() {
            Some(255) | None => Err(self.classify(what, status.code(), &ended.stderr)),
            Some(code) => {
                let mut stdout = ended.result.unwrap_or_default();
                let truncated = stdout.len() as u64 > max_stdout;
                stdout.truncate(max_stdout as usize);
                Ok(Ran {
                    code,
                    stdout,
                    stderr: ended.stderr,
                    truncated,
                })
            }
        }
    }

    /// Spawns ssh, feeds stdin, hands stdout to `read`, kills it at the deadline.
    fn drive<T>(
        &self,
        what: &str,
        remote: &str,
        stdin: Option<Vec<u8>>,
        timeout: Duration,
        read: impl FnOnce(ChildStdout) -> std::io::Result<T>,
    ) -> Result<Ended<T>, SshError> {
        let mut child = self
            .command(remote)?
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(SshError::Spawn)?;
        let watchdog = crate::deadline::Watchdog::start(&child, timeout);
        let writer = stdin.map(|data| {
            let mut pipe = child.stdin.take().expect("piped");
            std::thread::spawn(move || pipe.write_all(&data))
        });
        let mut stderr = child.stderr.take().expect("piped");
        let err_reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        });
        let result = read(child.stdout.take().expect("piped"));
        let status = child.wait();
        let timed_out = watchdog.stop();
        let wrote = writer.map(|w| w.join().unwrap_or(Ok(())));
        let stderr = err_reader.join().unwrap_or_default();
        if timed_out {
            return Err(SshError::TimedOut {
                host: self.name.clone(),
                addr: self.addr(),
                what: what.into(),
                secs: timeout.as_secs(),
            });
        }
        Ok(Ended {
            result,
            status,
            stderr,
            wrote,
        })
    }

    fn io(&self, what: &str, e: std::io::Error) -> SshError {
        SshError::Io {
            host: self.name.clone(),
            what: what.into(),
            msg: e.to_string(),
        }
    }

    /// What a failed ssh run means: the pinned key changed, ssh could not get in (exit 255),
    /// or the remote command itself failed.
    pub fn classify(&self, what: &str, status: Option<i32>, stderr: &str) -> SshError {
        if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || stderr.contains("Host key verification failed")
        {
            return SshError::HostKeyChanged {
                host: self.name.clone(),
                addr: self.addr(),
                known_hosts: self.known_hosts.display().to_string(),
            };
        }
        match status {
            Some(255) | None => SshError::Unreachable {
                host: self.name.clone(),
                addr: self.addr(),
                msg: stderr
                    .trim()
                    .lines()
                    .last()
                    .unwrap_or("ssh failed")
                    .to_owned(),
            },
            Some(code) => SshError::Failed {
                host: self.name.clone(),
                what: what.into(),
                code,
                stderr: stderr.trim().to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn target(key: &Path) -> Ssh {
        Ssh {
            name: "kiosk1".into(),
            address: "-oProxyCommand=touch /tmp/pwned".into(),
            port: 22,
            user: "root".into(),
            key: key.to_owned(),
            known_hosts: "/kh".into(),
            mux_dir: None,
        }
    }

    #[test]
    fn the_destination_comes_after_a_double_dash_and_readable_keys_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("k");
        std::fs::write(&key, "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = target(&key).command("uptime").unwrap();
        let args: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into()).collect();
        let dd = args.iter().position(|a| a == "--").unwrap();
        assert_eq!(args[dd + 1], "root@-oProxyCommand=touch /tmp/pwned");
        assert_eq!(args[dd + 2], "uptime");
        assert_eq!(args.len(), dd + 3);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = target(&key).command("uptime").unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn failures_are_worded_for_what_was_run() {
        let s = target(Path::new("/k"));
        let e = s.classify(
            "power-off command `systemctl poweroff`",
            Some(1),
            "Failed to connect to bus\n",
        );
        assert_eq!(
            e.to_string(),
            "kiosk1: power-off command `systemctl poweroff` failed (exit 1): Failed to connect to bus"
        );
        let e = s.classify(
            "x",
            Some(255),
            "ssh: connect to host h port 22: Connection refused\n",
        );
        assert!(matches!(e, SshError::Unreachable { .. }), "{e}");
        let e = s.classify("x", Some(255), "Host key verification failed.\n");
        assert!(e.to_string().contains("ssh-keygen -R kiosk1 -f /kh"), "{e}");
    }
}
