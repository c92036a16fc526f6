//! The HTTP listener (issue 15): every connection's first request head is read here. GET and
//! HEAD of `/files/…` are answered on this path — the head from `core::files`, the body with
//! `sendfile(2)` straight from the page cache to the socket, no copy through user space — and
//! the connection stays here while its requests are such. Anything else goes, with the bytes
//! read so far, to the router (hyper + axum) for the rest of the connection, which the router
//! closes after its response (no keep-alive there) so a client's next file request comes back
//! to this path on a new connection.
//!
//! Bounds: a head must arrive within [`HEAD_SECS`] (and fit `core::files::MAX_HEAD`), an idle
//! keep-alive connection is closed after [`IDLE_SECS`], a client that takes no bytes for
//! [`STALL_SECS`] is dropped; files are opened beneath the boot directory (`openat2`
//! RESOLVE_BENEATH: no `..`, no absolute or escaping symlink, no /proc magic link), regular
//! files only.
use crate::core::event::Event;
use crate::core::files::{self as decide, Head, Parsed};
use crate::events::Bus;
use axum::extract::ConnectInfo;
use axum::Router;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Seconds for a request head to arrive once a connection or request started.
pub const HEAD_SECS: u64 = 30;
/// Seconds an idle keep-alive connection is kept.
pub const IDLE_SECS: u64 = 60;
/// Seconds a client may take no bytes before it is dropped.
pub const STALL_SECS: u64 = 60;
/// Bytes per sendfile call: small enough that 50 clients take turns.
const CHUNK: usize = 1 << 20;

/// What the file path needs.
pub struct Files {
    pub boot_dir: PathBuf,
    pub bus: Bus,
}

/// Accepts connections until `cancel`; then waits for the open ones (file transfers stop at
/// their next chunk, the router's connections finish their response).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    files: Arc<Files>,
    cancel: CancellationToken,
) {
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    tracing::warn!("http accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tracker.spawn(connection(
            stream,
            peer,
            app.clone(),
            files.clone(),
            cancel.clone(),
        ));
    }
    tracker.close();
    tracker.wait().await;
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    files: Arc<Files>,
    cancel: CancellationToken,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    let mut first = true;
    loop {
        let head = loop {
            match decide::parse_head(&buf) {
                Parsed::Done(h) => break Some(h),
                Parsed::Other => break None,
                Parsed::TooLarge => {
                    let reply = decide::too_large_reply();
                    let _ = tokio::time::timeout(
                        Duration::from_secs(STALL_SECS),
                        stream.write_all(reply.head.as_bytes()),
                    )
                    .await;
                    return;
                }
                Parsed::Partial => {}
            }
            // The first head's clock starts at accept; later ones after an idle wait.
            let wait = if first || !buf.is_empty() {
                HEAD_SECS
            } else {
                IDLE_SECS
            };
            let mut chunk = [0u8; 4096];
            let n = tokio::select! {
                _ = cancel.cancelled() => return,
                r = tokio::time::timeout(Duration::from_secs(wait), stream.read(&mut chunk)) => match r {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => return,
                },
            };
            buf.extend_from_slice(&chunk[..n]);
        };
        first = false;
        match head {
            Some(h) if decide::is_file_request(&h) => {
                buf.drain(..h.len);
                match answer(&mut stream, peer, &h, &files, &cancel).await {
                    Ok(true) => continue,
                    _ => return,
                }
            }
            _ => return to_router(stream, buf, peer, app, cancel).await,
        }
    }
}

/// Serves one file request; whether the connection stays open.
async fn answer(
    stream: &mut TcpStream,
    peer: SocketAddr,
    h: &Head,
    files: &Files,
    cancel: &CancellationToken,
) -> std::io::Result<bool> {
    let opened = match decide::relative_path(&h.target) {
        Some(rel) => {
            let dir = files.boot_dir.clone();
            let r = rel.clone();
            tokio::task::spawn_blocking(move || open_file(&dir, &r))
                .await
                .map_err(std::io::Error::other)?
                .map(|f| (rel, f))
        }
        None => None,
    };
    let reply = match &opened {
        Some((rel, (_, meta))) => decide::reply(h, rel, meta, std::time::SystemTime::now()),
        None => decide::error_reply(
            h,
            404,
            "Not Found",
            "no such file under the boot directory (GET /files/<path below boot_dir>)\n",
        ),
    };
    let sent = send(stream, &reply, opened.as_ref().map(|(_, (f, _))| f), cancel).await;
    files.bus.emit(Event::HttpServed {
        peer,
        file: h.target.split('?').next().unwrap_or_default().to_owned(),
        status: reply.status,
        bytes: Some(reply.length),
        mac: None,
        user: None,
    });
    sent?;
    Ok(h.keep_alive)
}

/// The file `rel` beneath `dir` (RESOLVE_BENEATH; symlinks that stay inside are followed)
/// with its metadata, when it is a regular file.
fn open_file(dir: &std::path::Path, rel: &str) -> Option<(std::fs::File, decide::FileMeta)> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use std::os::unix::fs::MetadataExt;
    let d = std::fs::File::open(dir).ok()?;
    let f = match rustix::fs::openat2(
        &d,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => std::fs::File::from(fd),
        // Where openat2 does not exist — or systemd pretends so: RestrictSUIDSGID= answers
        // ENOSYS for it (the appliance's unit does not set it, for this reason) — the same
        // rule by resolving the path and checking it is still below the directory.
        Err(rustix::io::Errno::NOSYS) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                tracing::warn!("openat2 is not available (ENOSYS; RestrictSUIDSGID= in a systemd unit?): /files resolves paths itself, which a link swapped in the boot directory at the wrong moment could escape");
            });
            open_checked(dir, rel)?
        }
        Err(_) => return None,
    };
    let m = f.metadata().ok()?;
    m.is_file().then_some((
        f,
        decide::FileMeta {
            len: m.len(),
            mtime: m.mtime(),
            ino: m.ino(),
        },
    ))
}

/// `rel` under `dir` with every link resolved, opened only if it is still below `dir` (the
/// fallback for [`open_file`]; a link swapped between the check and the open could win, which
/// needs write access to the boot directory).
fn open_checked(dir: &std::path::Path, rel: &str) -> Option<std::fs::File> {
    let root = dir.canonicalize().ok()?;
    let full = root.join(rel).canonicalize().ok()?;
    if !full.starts_with(&root) {
        return None;
    }
    std::fs::File::open(full).ok()
}

/// Writes the head, then the file's bytes with sendfile, a chunk at a time.
async fn send(
    stream: &mut TcpStream,
    reply: &decide::Reply,
    file: Option<&std::fs::File>,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    let stall = Duration::from_secs(STALL_SECS);
    tokio::time::timeout(stall, stream.write_all(reply.head.as_bytes()))
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)??;
    let (Some((start, count)), Some(file)) = (reply.body, file) else {
        return Ok(());
    };
    let mut offset = start;
    let end = start + count;
    while offset < end {
        if cancel.is_cancelled() {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        tokio::time::timeout(stall, stream.writable())
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        let want = (end - offset).min(CHUNK as u64) as usize;
        match stream.try_io(tokio::io::Interest::WRITABLE, || {
            rustix::fs::sendfile(stream_fd(stream), file, Some(&mut offset), want)
                .map_err(std::io::Error::from)
        }) {
            // The file got shorter than its length said: the reply cannot be completed.
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => tokio::task::consume_budget().await,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn stream_fd(s: &TcpStream) -> std::os::fd::BorrowedFd<'_> {
    use std::os::fd::AsFd;
    s.as_fd()
}

/// The connection, with the bytes already read in front, served by the router (hyper HTTP/1,
/// upgrades allowed, no keep-alive, the head within [`HEAD_SECS`]).
async fn to_router(
    stream: TcpStream,
    read: Vec<u8>,
    peer: SocketAddr,
    app: Router,
    cancel: CancellationToken,
) {
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        tower::ServiceExt::oneshot(app.clone(), req)
    });
    let io = hyper_util::rt::TokioIo::new(Rewind {
        read,
        pos: 0,
        inner: stream,
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(HEAD_SECS))
        .serve_connection(io, svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => { let _ = r; }
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A stream whose first bytes are ones already read from it.
struct Rewind {
    read: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.pos < self.read.len() {
            let n = (self.read.len() - self.pos).min(out.remaining());
            let pos = self.pos;
            out.put_slice(&self.read[pos..pos + n]);
            self.pos += n;
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl tokio::io::AsyncWrite for Rewind {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        b: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, b)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    /// The fallback keeps the rule: links inside the boot directory work, links out do not.
    #[test]
    fn the_fallback_stays_in_the_directory() {
        let t = tempfile::tempdir().unwrap();
        let boot = t.path().join("boot");
        std::fs::create_dir_all(boot.join("k")).unwrap();
        std::fs::write(boot.join("k/vmlinuz"), "kernel").unwrap();
        std::fs::write(t.path().join("secret"), "no").unwrap();
        std::os::unix::fs::symlink("k/vmlinuz", boot.join("current")).unwrap();
        std::os::unix::fs::symlink("../secret", boot.join("up")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", boot.join("passwd")).unwrap();
        let read = |rel: &str| {
            super::open_checked(&boot, rel).map(|f| {
                use std::io::Read;
                let mut s = String::new();
                std::io::BufReader::new(f).read_to_string(&mut s).unwrap();
                s
            })
        };
        assert_eq!(read("k/vmlinuz").as_deref(), Some("kernel"));
        assert_eq!(read("current").as_deref(), Some("kernel"));
        assert_eq!(read("up"), None);
        assert_eq!(read("passwd"), None);
        assert_eq!(read("../secret"), None);
        assert_eq!(read("missing"), None);
    }
}
