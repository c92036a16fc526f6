//! TFTP server (read-only): RFC 1350 with blksize, tsize, timeout and windowsize (RFC 7440).
//!
//! Why in-tree and not async-tftp 0.4: that crate ignores an ERROR from the client and keeps
//! retransmitting (its open issue #18) — exactly what UEFI/EDK2 firmware sends after its
//! tsize probe — and serialises file opens behind a mutex. The protocol is small; the wire
//! format and negotiation live in `proto::tftp`, this file is only the transfer loop.
//!
//! Each transfer gets its own socket (a new TID, RFC 1350 §4) and task; block numbers roll over
//! from 65535 to 0 so files larger than 65535 blocks work with clients that expect that.
use super::contain::{self, contain};
use super::InventoryRx;
use crate::config::TftpConfig;
use crate::core::boot;
use crate::core::event::Event;
use crate::events::Bus;
use crate::proto::tftp::{self as wire, Packet};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

/// Concurrent transfers; more wait for a slot (the client retransmits its RRQ meanwhile).
const MAX_TRANSFERS: usize = 512;
/// Concurrent transfers from one address: a real client fetches one file at a time (a UEFI
/// size probe and the fetch overlap briefly); a flood of RRQs cannot take every slot.
pub const MAX_PER_CLIENT: usize = 8;
/// A transfer that makes no progress (no new block acknowledged) for this long ends, whatever
/// the client sends meanwhile (duplicate ACKs, stale blocks), and frees its slot.
pub const STALL_BUDGET: Duration = Duration::from_secs(30);

pub struct TftpService {
    pub root: PathBuf,
    pub cfg: TftpConfig,
    pub inventory: InventoryRx,
    pub bus: Bus,
    pub transfers: TaskTracker,
    slots: Arc<Semaphore>,
    rejections: super::flood::Rejections,
    per_client: PerClient,
}

/// Transfers in flight per client address (entries removed at 0).
type PerClient = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// One transfer counted against its client's [`MAX_PER_CLIENT`]; uncounted when dropped.
struct ClientSlot {
    ip: std::net::IpAddr,
    map: PerClient,
}

impl ClientSlot {
    fn take(map: &PerClient, ip: std::net::IpAddr) -> Option<ClientSlot> {
        let mut m = map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(ip).or_insert(0);
        if *n >= MAX_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            ip,
            map: map.clone(),
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut m = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

enum Source {
    File(std::fs::File),
    Memory(Vec<u8>),
}

impl Source {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        match self {
            // Boot files come from the page cache; a positioned read keeps retransmits simple.
            Source::File(f) => {
                let mut done = 0;
                while done < buf.len() {
                    let n = f.read_at(&mut buf[done..], offset + done as u64)?;
                    if n == 0 {
                        break;
                    }
                    done += n;
                }
                Ok(done)
            }
            Source::Memory(v) => {
                let start = (offset as usize).min(v.len());
                let n = buf.len().min(v.len() - start);
                buf[..n].copy_from_slice(&v[start..start + n]);
                Ok(n)
            }
        }
    }
}

enum Outcome {
    Done(u64),
    Failed(u64, String),
}

impl TftpService {
    pub fn new(
        root: PathBuf,
        cfg: TftpConfig,
        inventory: InventoryRx,
        bus: Bus,
        transfers: TaskTracker,
    ) -> TftpService {
        TftpService {
            root,
            cfg,
            inventory,
            bus,
            transfers,
            slots: Arc::new(Semaphore::new(MAX_TRANSFERS)),
            rejections: super::flood::Rejections::new("tftp"),
            per_client: Default::default(),
        }
    }

    pub async fn run(self: Arc<Self>, sock: UdpSocket, cancel: CancellationToken) {
        let mut buf = vec![0u8; 2048];
        loop {
            let (n, peer) = tokio::select! {
                _ = cancel.cancelled() => break,
                r = sock.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => { warn!("tftp recv: {e}"); continue; }
                },
            };
            let packet = &buf[..n];
            let Some(decoded) = contain(&self.bus, "tftp", peer, packet, || Packet::decode(packet))
            else {
                continue;
            };
            match decoded {
                Ok(Packet::Rrq {
                    file,
                    mode,
                    options,
                }) => {
                    let this = self.clone();
                    let local = sock
                        .local_addr()
                        .map(|a| a.ip())
                        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
                    let Some(client_slot) = ClientSlot::take(&self.per_client, peer.ip()) else {
                        let _ = sock
                            .send_to(
                                &err_packet(
                                    wire::ERR_NOT_DEFINED,
                                    "too many transfers from this address, retry",
                                ),
                                peer,
                            )
                            .await;
                        let ev = Event::TftpFailed {
                            peer,
                            file,
                            bytes: 0,
                            reason: format!(
                                "refused: {MAX_PER_CLIENT} transfers from {} already running",
                                peer.ip()
                            ),
                        };
                        self.rejections.record(&self.bus, peer.ip(), ev);
                        continue;
                    };
                    let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                        let _ = sock
                            .send_to(
                                &err_packet(wire::ERR_NOT_DEFINED, "server busy, retry"),
                                peer,
                            )
                            .await;
                        continue;
                    };
                    let bus = self.bus.clone();
                    let request = packet.to_vec();
                    self.transfers.spawn(async move {
                        // Its own task, so a panic in it ends this transfer only (tokio
                        // catches it) and is recorded here with the RRQ that started it.
                        let t = tokio::spawn(async move {
                            this.transfer(local, peer, file, mode, options).await;
                            drop(permit);
                            drop(client_slot);
                        });
                        if let Err(e) = t.await {
                            if e.is_panic() {
                                let payload = e.into_panic();
                                contain::report(&bus, "tftp", peer, &request, payload.as_ref());
                            }
                        }
                    });
                }
                Ok(Packet::Wrq { file, .. }) => {
                    let _ = sock
                        .send_to(
                            &err_packet(wire::ERR_ACCESS, "this TFTP server is read-only"),
                            peer,
                        )
                        .await;
                    self.bus.emit(Event::TftpFailed {
                        peer,
                        file,
                        bytes: 0,
                        reason: "write request refused (read-only server)".into(),
                    });
                }
                // Stray ACK/ERROR on the listening port (late packets of ended transfers): ignore.
                Ok(_) => {}
                Err(e) => {
                    let _ = sock
                        .send_to(&err_packet(wire::ERR_ILLEGAL_OP, &e.to_string()), peer)
                        .await;
                    let ev = Event::PacketRejected {
                        proto: "tftp",
                        peer,
                        iface: String::new(),
                        bytes: n,
                        reason: e.to_string(),
                    };
                    self.rejections.record(&self.bus, peer.ip(), ev);
                }
            }
        }
    }

    /// Resolves a requested name to content: generated per-host files first, then the boot dir.
    fn open(&self, raw: &str) -> Result<(String, Source), (u16, String)> {
        let Some(rel) = wire::sanitize_path(raw) else {
            return Err((
                wire::ERR_ACCESS,
                format!("path {raw:?} is not allowed (absolute, empty or contains '..')"),
            ));
        };
        if let Some(mac) = boot::pxelinux_cfg_mac(&rel) {
            if let Some(text) = boot::pxelinux_config(&self.inventory.borrow(), &mac) {
                return Ok((rel, Source::Memory(text.into_bytes())));
            }
        }
        let path = self.root.join(&rel);
        let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => (wire::ERR_NOT_FOUND, format!("{rel}: file not found")),
            _ => (wire::ERR_ACCESS, format!("{rel}: {e}")),
        })?;
        // Symlinks may point elsewhere inside the boot dir, never outside it.
        let inside = match (path.canonicalize(), self.root.canonicalize()) {
            (Ok(p), Ok(root)) => p.starts_with(root) && p.is_file(),
            _ => false,
        };
        if !inside {
            return Err((
                wire::ERR_ACCESS,
                format!("{rel}: not a regular file inside the boot directory"),
            ));
        }
        Ok((rel, Source::File(file)))
    }

    async fn transfer(
        &self,
        local: std::net::IpAddr,
        peer: SocketAddr,
        raw: String,
        mode: String,
        options: Vec<(String, String)>,
    ) {
        let sock = match UdpSocket::bind(SocketAddr::new(local, 0)).await {
            Ok(s) => s,
            Err(e) => {
                warn!(%peer, "tftp: cannot open transfer socket: {e}");
                return;
            }
        };
        if mode != "octet" && mode != "netascii" {
            let _ = sock
                .send_to(
                    &err_packet(wire::ERR_ILLEGAL_OP, "only octet mode is supported"),
                    peer,
                )
                .await;
            return;
        }
        let (file, source) = match self.open(&raw) {
            Ok(x) => x,
            Err((code, msg)) => {
                let _ = sock.send_to(&err_packet(code, &msg), peer).await;
                self.bus.emit(Event::TftpFailed {
                    peer,
                    file: raw,
                    bytes: 0,
                    reason: msg,
                });
                return;
            }
        };
        let size = match &source {
            Source::File(f) => f.metadata().map(|m| m.len()).unwrap_or(0),
            Source::Memory(v) => v.len() as u64,
        };
        let neg = wire::negotiate(&options, size, wire::MAX_BLKSIZE);
        let timeout = Duration::from_secs(u64::from(neg.timeout.unwrap_or(self.cfg.timeout_secs)));
        self.bus.emit(Event::TftpStarted {
            peer,
            file: file.clone(),
            blksize: neg.blksize,
            windowsize: neg.windowsize,
            tsize: options.iter().any(|(k, _)| k == "tsize").then_some(size),
        });
        let started = Instant::now();
        let outcome = send_file(&sock, peer, &source, size, &neg, timeout, self.cfg.retries).await;
        match outcome {
            Outcome::Done(bytes) => self.bus.emit(Event::TftpFinished {
                peer,
                file,
                bytes,
                duration_ms: started.elapsed().as_millis() as u64,
            }),
            Outcome::Failed(bytes, reason) => self.bus.emit(Event::TftpFailed {
                peer,
                file,
                bytes,
                reason,
            }),
        }
    }
}

fn err_packet(code: u16, message: &str) -> Vec<u8> {
    Packet::Error {
        code,
        message: message.into(),
    }
    .encode()
}

/// What arrived from the client while waiting.
enum Reply {
    Ack(u16),
    Error(u16, String),
    Timeout,
}

async fn recv_reply(sock: &UdpSocket, peer: SocketAddr, timeout: Duration) -> Reply {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 1024];
    loop {
        let r = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await;
        let Ok(Ok((n, from))) = r else {
            return Reply::Timeout;
        };
        if from != peer {
            // RFC 1350 §4: a packet from a foreign TID gets an error, the transfer goes on.
            let _ = sock
                .send_to(
                    &err_packet(wire::ERR_UNKNOWN_TID, "unknown transfer ID"),
                    from,
                )
                .await;
            continue;
        }
        match Packet::decode(&buf[..n]) {
            Ok(Packet::Ack { block }) => return Reply::Ack(block),
            Ok(Packet::Error { code, message }) => return Reply::Error(code, message),
            _ => continue,
        }
    }
}

async fn send_file(
    sock: &UdpSocket,
    peer: SocketAddr,
    source: &Source,
    size: u64,
    neg: &wire::Negotiated,
    timeout: Duration,
    max_retries: u8,
) -> Outcome {
    // Option acknowledgement: wait for ACK 0. EDK2 answers its tsize probe with ERROR 8 here.
    if !neg.oack.is_empty() {
        let oack = Packet::Oack {
            options: neg.oack.clone(),
        }
        .encode();
        let mut tries = 0;
        loop {
            if sock.send_to(&oack, peer).await.is_err() {
                return Outcome::Failed(0, "cannot send OACK".into());
            }
            match recv_reply(sock, peer, timeout).await {
                Reply::Ack(0) => break,
                // Any other ACK is no answer to the OACK: it counts as a try, so a client
                // cannot hold the slot by sending them.
                Reply::Ack(_) => {
                    tries += 1;
                    if tries > max_retries {
                        return Outcome::Failed(
                            0,
                            format!("no ACK 0 for OACK after {tries} answers"),
                        );
                    }
                }
                Reply::Error(code, msg) => {
                    return Outcome::Failed(0, format!("client ended the transfer after the option acknowledgement (error {code}: {msg}); firmware probing the size does this"));
                }
                Reply::Timeout => {
                    tries += 1;
                    if tries > max_retries {
                        return Outcome::Failed(0, format!("no ACK for OACK after {tries} tries"));
                    }
                }
            }
        }
    }
    let blk = u64::from(neg.blksize);
    let last_block = size / blk + 1; // the final block is shorter than blksize, possibly empty
    let window = u64::from(neg.windowsize);
    let mut base = 1u64; // oldest unacknowledged block
    let mut next = 1u64; // next block to send
    let mut retries = 0u8;
    let mut data = vec![0u8; neg.blksize as usize];
    let mut pkt = Vec::with_capacity(neg.blksize as usize + 4);
    let mut progress = tokio::time::Instant::now();
    loop {
        if progress.elapsed() > STALL_BUDGET {
            return Outcome::Failed(
                (base - 1) * blk,
                format!("no progress for {} s", STALL_BUDGET.as_secs()),
            );
        }
        while next < base + window && next <= last_block {
            let offset = (next - 1) * blk;
            let n = match source.read_at(&mut data, offset) {
                Ok(n) => n,
                Err(e) => {
                    let _ = sock
                        .send_to(&err_packet(wire::ERR_NOT_DEFINED, "read error"), peer)
                        .await;
                    return Outcome::Failed(offset, format!("read error: {e}"));
                }
            };
            wire::encode_data_into(&mut pkt, (next & 0xffff) as u16, &data[..n]);
            if let Err(e) = sock.send_to(&pkt, peer).await {
                return Outcome::Failed(offset, format!("send: {e}"));
            }
            next += 1;
        }
        match recv_reply(sock, peer, timeout).await {
            Reply::Ack(block) => {
                // Map the 16-bit block number onto the blocks in flight (rollover-safe).
                let delta = u64::from(block.wrapping_sub(((base - 1) & 0xffff) as u16));
                if delta == 0 {
                    // Re-ACK of what we already had: with a window this means "resend from base".
                    if window > 1 {
                        next = base;
                    }
                    continue;
                }
                if delta > next - base {
                    continue; // acknowledges something never sent: stale or bogus
                }
                base += delta;
                retries = 0;
                progress = tokio::time::Instant::now();
                if base > last_block {
                    return Outcome::Done(size);
                }
                if base < next {
                    next = base; // the client saw a gap: resend the rest of the window
                }
            }
            Reply::Error(code, msg) => {
                return Outcome::Failed(
                    (base - 1) * blk,
                    format!("client sent error {code}: {msg}"),
                );
            }
            Reply::Timeout => {
                retries += 1;
                if retries > max_retries {
                    return Outcome::Failed(
                        (base - 1) * blk,
                        format!("timed out after {max_retries} retransmissions"),
                    );
                }
                next = base;
            }
        }
    }
}

/// Helper for tests and tools: bind the listening socket.
pub async fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(addr).await
}

/// Used by `app` to check that the boot directory exists before binding anything.
pub fn check_root(root: &Path) -> Result<(), String> {
    if root.is_dir() {
        Ok(())
    } else {
        Err(format!("boot_dir {} is not a directory; create it and put loaders (undionly.kpxe, ipxe.efi, pxelinux.0) and kernels there", root.display()))
    }
}
