//! DNS service: one UDP socket per configured interface (bound to the device, so nothing is
//! answered elsewhere). Each query is decided by [`crate::core::dns::decide`]; this task sends
//! the answer, forwards other names to the upstreams (fresh random IDs, answers checked
//! against the question and the upstream asked, [`MAX_PENDING`] in flight, [`UPSTREAM_WAIT`]
//! each), carries out command names (Wake-on-LAN or AMT through [`crate::power`], one-time
//! boot overrides through [`crate::nextboot`]) within `dns.command_per_minute` per asker, and
//! emits one event per query (each source's events rate-limited like syslog's).
use super::flood::Flood;
use crate::config::Config;
use crate::core::dns::{self, Answered, Command, Decision, Zone};
use crate::core::event::Event;
use crate::events::Bus;
use crate::inventory::Inventory;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Forwarded queries waiting for an upstream, per interface; past it, SERVFAIL at once.
pub const MAX_PENDING: usize = 4096;
/// How long one upstream is given before the next is asked (then SERVFAIL).
pub const UPSTREAM_WAIT: Duration = Duration::from_millis(1500);
/// Query events one source may have recorded a second, and in one burst.
const EVENTS_PER_SEC: u32 = 50;
const EVENTS_BURST: u32 = 200;

pub fn bind(iface: &str, port: u16) -> std::io::Result<UdpSocket> {
    super::bind_udp_to_device("DNS", iface, port, false)
}

/// DNS over TCP (RFC 7766) on the same port and interface: what a resolver retries with when
/// a UDP answer came back truncated (a large group).
pub fn bind_tcp(iface: &str, port: u16) -> std::io::Result<tokio::net::TcpListener> {
    super::listen_tcp_on_device("DNS (TCP)", iface, port)
}

/// TCP connections served at once (more are closed at once), and how long one may sit idle
/// or take to send a query or read an answer.
pub const TCP_CONNECTIONS: usize = 64;
/// Connections one address may hold at once (so one asker cannot take all of them).
pub const TCP_PER_ASKER: usize = 4;
pub const TCP_IDLE: Duration = Duration::from_secs(10);

/// The zone, rebuilt from every inventory the daemon loads.
pub fn zones(
    mut inv: watch::Receiver<Inventory>,
    cfg: &Config,
    cancel: CancellationToken,
) -> watch::Receiver<Arc<Zone>> {
    let server_ip = cfg.server_ip;
    let build = move |i: &Inventory| {
        Arc::new(Zone::build(
            i,
            server_ip,
            crate::clock::unix_now_ms() / 1000,
        ))
    };
    let (tx, rx) = watch::channel(build(&inv.borrow_and_update()));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                r = inv.changed() => if r.is_err() { break },
            }
            let z = build(&inv.borrow_and_update());
            tx.send_replace(z);
        }
    });
    rx
}

pub struct DnsService {
    pub cfg: Arc<Config>,
    pub zone: watch::Receiver<Arc<Zone>>,
    pub inventory: watch::Receiver<Inventory>,
    pub bus: Bus,
}

struct Pending {
    client: SocketAddr,
    id: u16,
    query: Vec<u8>,
    upstream: usize,
    deadline: Instant,
    name: String,
    qtype: String,
}

impl DnsService {
    pub async fn run(self: Arc<Self>, iface: String, sock: UdpSocket, cancel: CancellationToken) {
        let Some(policy) = self.cfg.dns.clone() else {
            return;
        };
        let sock = Arc::new(sock);
        let upstream = if policy.upstreams.is_empty() {
            None
        } else {
            match UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0))).await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(iface, "dns: no socket for upstreams: {e}");
                    None
                }
            }
        };
        let mut pending: HashMap<u16, Pending> = HashMap::new();
        let mut events = Flood::new(EVENTS_PER_SEC, EVENTS_BURST);
        let mut commands = Flood::per_minute(policy.command_per_minute);
        let mut buf = vec![0u8; 4096];
        let mut ubuf = vec![0u8; 65_536];
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {
                    self.expire(&sock, upstream.as_ref(), &policy.upstreams, &mut pending, &mut events).await;
                    for (ip, count) in events.drain() {
                        self.bus.emit(Event::Suppressed { proto: "dns", what: "dns_answered", ip, count });
                    }
                }
                r = sock.recv_from(&mut buf) => match r {
                    Ok((n, peer)) => {
                        self.query(&sock, upstream.as_ref(), &policy, &buf[..n], peer, &mut pending, &mut events, &mut commands).await;
                    }
                    Err(e) => tracing::warn!(iface, "dns receive: {e}"),
                },
                r = recv_opt(upstream.as_ref(), &mut ubuf) => match r {
                    Ok((n, from)) => self.upstream_reply(&sock, &ubuf[..n], from, &policy.upstreams, &mut pending, &mut events).await,
                    Err(e) => tracing::warn!(iface, "dns upstream receive: {e}"),
                },
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn query(
        &self,
        sock: &Arc<UdpSocket>,
        upstream: Option<&UdpSocket>,
        policy: &crate::config::DnsConfig,
        packet: &[u8],
        peer: SocketAddr,
        pending: &mut HashMap<u16, Pending>,
        events: &mut Flood,
        commands: &mut Flood,
    ) {
        let zone = self.zone.borrow().clone();
        let Some(decision) = super::contain::contain(&self.bus, "dns", peer, packet, || {
            dns::decide(packet, peer.ip(), &zone, policy)
        }) else {
            return;
        };
        let now_ms = crate::clock::unix_now_ms();
        let mut emit = |e: Event| {
            if events.allow(peer.ip(), now_ms) {
                self.bus.emit(e);
            }
        };
        match decision {
            Decision::Drop { reason } => emit(Event::PacketRejected {
                proto: "dns",
                peer,
                iface: String::new(),
                bytes: packet.len(),
                reason,
            }),
            Decision::Reply(a) => {
                send(sock, &dns::encode(&a), peer).await;
                emit(answered(peer, &a, zone_via(&a)));
            }
            Decision::Refused { reply, reason } => {
                send(sock, &dns::encode(&reply), peer).await;
                emit(Event::DnsRefused {
                    peer,
                    name: reply.name,
                    reason,
                });
            }
            Decision::Command {
                command,
                host,
                target,
                reply,
            } => {
                if !commands.allow(peer.ip(), now_ms) {
                    send(sock, &dns::encode(&dns::refusal(&reply)), peer).await;
                    // Always recorded: the command limit already bounds these.
                    self.bus.emit(Event::DnsRefused {
                        peer,
                        name: reply.name,
                        reason: format!(
                            "over dns.command_per_minute ({}) for {}",
                            policy.command_per_minute,
                            peer.ip()
                        ),
                    });
                    return;
                }
                // The effect may wait on a machine (AMT): not on this loop.
                let (cfg, inv, bus, sock) = (
                    self.cfg.clone(),
                    self.inventory.borrow().clone(),
                    self.bus.clone(),
                    sock.clone(),
                );
                tokio::spawn(async move {
                    let (h, mac) = (host.clone(), target.mac);
                    let outcome = tokio::task::spawn_blocking(move || {
                        carry_out(&cfg, &inv, command, &h, mac, peer)
                    })
                    .await
                    .unwrap_or_else(|e| Err((format!("the command panicked: {e}"), Vec::new())));
                    let (outcome, effects) = match outcome {
                        Ok(ev) => ("done".to_string(), ev),
                        Err((why, ev)) => (why, ev),
                    };
                    let answer = if outcome == "done" {
                        reply
                    } else {
                        let mut r = dns::refusal(&reply);
                        r.msg.metadata.response_code = hickory_proto::op::ResponseCode::ServFail;
                        r
                    };
                    send(&sock, &dns::encode(&answer), peer).await;
                    for e in effects {
                        bus.emit(e);
                    }
                    bus.emit(Event::DnsCommand {
                        peer,
                        command: command.as_str().into(),
                        host,
                        mac: target.mac,
                        outcome,
                    });
                });
            }
            Decision::Forward { name, qtype } => {
                let Some(up) = upstream else {
                    return;
                };
                if pending.len() >= MAX_PENDING {
                    let a = dns::servfail(packet, name, qtype);
                    send(sock, &dns::encode(&a), peer).await;
                    emit(answered(peer, &a, "forwarded"));
                    return;
                }
                let id = loop {
                    let mut b = [0u8; 2];
                    let _ = getrandom::fill(&mut b);
                    let id = u16::from_be_bytes(b);
                    if !pending.contains_key(&id) {
                        break id;
                    }
                };
                let p = Pending {
                    client: peer,
                    id: u16::from_be_bytes([packet[0], packet[1]]),
                    query: packet.to_vec(),
                    upstream: 0,
                    deadline: Instant::now() + UPSTREAM_WAIT,
                    name,
                    qtype,
                };
                forward(up, &p.query, id, policy.upstreams[0]).await;
                pending.insert(id, p);
            }
        }
    }

    async fn upstream_reply(
        &self,
        sock: &UdpSocket,
        reply: &[u8],
        from: SocketAddr,
        upstreams: &[SocketAddr],
        pending: &mut HashMap<u16, Pending>,
        events: &mut Flood,
    ) {
        if reply.len() < 12 {
            return;
        }
        let id = u16::from_be_bytes([reply[0], reply[1]]);
        // Only the upstream asked may answer, with the question asked.
        let ok = pending.get(&id).is_some_and(|p| {
            upstreams.get(p.upstream) == Some(&from) && same_question(&p.query, reply)
        });
        if !ok {
            return;
        }
        let p = pending.remove(&id).expect("checked");
        let mut out = reply.to_vec();
        out[..2].copy_from_slice(&p.id.to_be_bytes());
        send(sock, &out, p.client).await;
        if events.allow(p.client.ip(), crate::clock::unix_now_ms()) {
            self.bus.emit(Event::DnsAnswered {
                peer: p.client,
                name: p.name,
                qtype: p.qtype,
                rcode: rcode_of(reply).into(),
                via: "forwarded",
            });
        }
    }

    /// Queries an upstream did not answer in time go to the next one; past the last, SERVFAIL.
    async fn expire(
        &self,
        sock: &UdpSocket,
        upstream: Option<&UdpSocket>,
        upstreams: &[SocketAddr],
        pending: &mut HashMap<u16, Pending>,
        events: &mut Flood,
    ) {
        let now = Instant::now();
        let late: Vec<u16> = pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            let mut p = pending.remove(&id).expect("listed");
            if let (Some(up), Some(next)) = (upstream, upstreams.get(p.upstream + 1)) {
                p.upstream += 1;
                p.deadline = now + UPSTREAM_WAIT;
                forward(up, &p.query, id, *next).await;
                pending.insert(id, p);
                continue;
            }
            let a = dns::servfail(&p.query, p.name, p.qtype);
            send(sock, &dns::encode(&a), p.client).await;
            if events.allow(p.client.ip(), crate::clock::unix_now_ms()) {
                self.bus.emit(Event::DnsAnswered {
                    peer: p.client,
                    name: a.name,
                    qtype: a.qtype,
                    rcode: "SERVFAIL (no upstream answered)".into(),
                    via: "forwarded",
                });
            }
        }
    }
}

impl DnsService {
    /// Accepts DNS over TCP; each connection in a task of its own, [`TCP_CONNECTIONS`] at most
    /// and [`TCP_PER_ASKER`] from one address (past either, closed at once).
    pub async fn run_tcp(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        cancel: CancellationToken,
    ) {
        let slots = Arc::new(tokio::sync::Semaphore::new(TCP_CONNECTIONS));
        let events = Arc::new(std::sync::Mutex::new(Flood::new(
            EVENTS_PER_SEC,
            EVENTS_BURST,
        )));
        let per_asker: Arc<std::sync::Mutex<HashMap<std::net::IpAddr, usize>>> = Arc::default();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let (conn, peer) = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {
                    let dropped = events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain();
                    for (ip, count) in dropped {
                        self.bus.emit(Event::Suppressed { proto: "dns", what: "dns_answered", ip, count });
                    }
                    continue;
                }
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("dns tcp accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue; // dropped: closed at once
            };
            {
                let mut held = per_asker
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let n = held.entry(peer.ip()).or_default();
                if *n >= TCP_PER_ASKER {
                    continue;
                }
                *n += 1;
            }
            let (svc, events, cancel, per_asker) = (
                self.clone(),
                events.clone(),
                cancel.clone(),
                per_asker.clone(),
            );
            tokio::spawn(async move {
                let _slot = slot;
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = svc.tcp_conn(conn, peer, &events) => {}
                }
                let mut held = per_asker
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(n) = held.get_mut(&peer.ip()) {
                    *n -= 1;
                    if *n == 0 {
                        held.remove(&peer.ip());
                    }
                }
            });
        }
    }

    /// One connection: length-prefixed queries answered in order until it goes idle.
    /// Answers from the zone as over UDP; outside names forwarded to the first upstream over
    /// TCP; command names are not carried out over TCP (REFUSED: a command is one small UDP
    /// query, where its rate limit lives).
    async fn tcp_conn(
        &self,
        mut conn: tokio::net::TcpStream,
        peer: SocketAddr,
        events: &std::sync::Mutex<Flood>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Some(policy) = self.cfg.dns.clone() else {
            return;
        };
        loop {
            let mut len = [0u8; 2];
            if !matches!(
                tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut len)).await,
                Ok(Ok(_))
            ) {
                return;
            }
            let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if !matches!(
                tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut query)).await,
                Ok(Ok(_))
            ) {
                return;
            }
            let zone = self.zone.borrow().clone();
            let Some(decision) = super::contain::contain(&self.bus, "dns", peer, &query, || {
                dns::decide(&query, peer.ip(), &zone, &policy)
            }) else {
                return;
            };
            let emit = |e: Event| {
                let ok = events
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .allow(peer.ip(), crate::clock::unix_now_ms());
                if ok {
                    self.bus.emit(e);
                }
            };
            let answer = match decision {
                Decision::Drop { .. } => return,
                Decision::Reply(mut a) => {
                    emit(answered(peer, &a, zone_via(&a)));
                    a.limit = u16::MAX;
                    dns::encode(&a)
                }
                Decision::Refused { mut reply, reason } => {
                    emit(Event::DnsRefused {
                        peer,
                        name: reply.name.clone(),
                        reason,
                    });
                    reply.limit = u16::MAX;
                    dns::encode(&reply)
                }
                Decision::Command { reply, .. } => {
                    let r = dns::refusal(&reply);
                    emit(Event::DnsRefused {
                        peer,
                        name: reply.name,
                        reason: "command names are carried out over UDP only".into(),
                    });
                    dns::encode(&r)
                }
                Decision::Forward { name, qtype } => {
                    match forward_tcp(&query, policy.upstreams[0]).await {
                        Some(bytes) => {
                            emit(Event::DnsAnswered {
                                peer,
                                name,
                                qtype,
                                rcode: rcode_of(&bytes).into(),
                                via: "forwarded",
                            });
                            bytes
                        }
                        None => {
                            let mut a = dns::servfail(&query, name, qtype);
                            emit(answered(peer, &a, "forwarded"));
                            a.limit = u16::MAX;
                            dns::encode(&a)
                        }
                    }
                }
            };
            let Ok(n) = u16::try_from(answer.len()) else {
                return;
            };
            let mut out = n.to_be_bytes().to_vec();
            out.extend_from_slice(&answer);
            if !matches!(
                tokio::time::timeout(TCP_IDLE, conn.write_all(&out)).await,
                Ok(Ok(()))
            ) {
                return;
            }
        }
    }
}

/// One query to `upstream` over TCP; its answer (with the asker's own ID, which the query
/// already carries), or None when it does not answer within [`UPSTREAM_WAIT`] twice over.
async fn forward_tcp(query: &[u8], upstream: SocketAddr) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        let mut c = tokio::net::TcpStream::connect(upstream).await.ok()?;
        let mut out = u16::try_from(query.len()).ok()?.to_be_bytes().to_vec();
        out.extend_from_slice(query);
        c.write_all(&out).await.ok()?;
        let mut len = [0u8; 2];
        c.read_exact(&mut len).await.ok()?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        c.read_exact(&mut reply).await.ok()?;
        (reply.len() >= 12 && reply[..2] == query[..2] && same_question(query, &reply))
            .then_some(reply)
    };
    tokio::time::timeout(UPSTREAM_WAIT * 2, work)
        .await
        .ok()
        .flatten()
}

/// What a command does; Ok with its events, or Err with why it failed (and events so far).
fn carry_out(
    cfg: &Config,
    inv: &Inventory,
    command: Command,
    host: &str,
    mac: crate::core::mac::Mac,
    peer: SocketAddr,
) -> Result<Vec<Event>, (String, Vec<Event>)> {
    use crate::core::boot::NextBoot;
    let next = match command {
        Command::Wake => {
            let events = crate::power::request(
                cfg,
                inv,
                &[host.to_owned()],
                Some(crate::power::schedule::Action::On),
                None,
            )
            .map_err(|e| (e.to_string(), Vec::new()))?;
            let failed = events.iter().find_map(|e| match e {
                Event::PowerFailed { reason, .. } => Some(reason.clone()),
                _ => None,
            });
            return match failed {
                Some(why) => Err((why, events)),
                None => Ok(events),
            };
        }
        Command::Netboot => NextBoot::Netboot,
        Command::Local => NextBoot::Local,
    };
    crate::nextboot::set(&cfg.state_dir, mac, Some(next))
        .map_err(|e| (e.to_string(), Vec::new()))?;
    Ok(vec![Event::NextBootSet {
        mac,
        host: Some(host.to_owned()),
        next: Some(next.name().into()),
        user: format!("dns:{}", peer.ip()),
    }])
}

/// How a reply decided from the zone is recorded: an answer (or a name it does not have) is
/// "inventory"; FORMERR, NOTIMP and the like are "error".
fn zone_via(a: &Answered) -> &'static str {
    if matches!(a.rcode(), "NOERROR" | "NXDOMAIN") {
        "inventory"
    } else {
        "error"
    }
}

fn answered(peer: SocketAddr, a: &Answered, via: &'static str) -> Event {
    Event::DnsAnswered {
        peer,
        name: a.name.clone(),
        qtype: a.qtype.clone(),
        rcode: a.rcode().into(),
        via,
    }
}

/// The rcode of an upstream's answer (checked to be at least a header long), as dig shows it.
fn rcode_of(reply: &[u8]) -> &'static str {
    dns::rcode_name(hickory_proto::op::ResponseCode::from(0, reply[3] & 0x0f))
}

fn same_question(query: &[u8], reply: &[u8]) -> bool {
    match (
        hickory_proto::op::Message::from_vec(query),
        hickory_proto::op::Message::from_vec(reply),
    ) {
        (Ok(q), Ok(r)) => q.queries == r.queries,
        _ => false,
    }
}

async fn forward(up: &UdpSocket, query: &[u8], id: u16, to: SocketAddr) {
    let mut q = query.to_vec();
    q[..2].copy_from_slice(&id.to_be_bytes());
    if let Err(e) = up.send_to(&q, to).await {
        tracing::warn!("dns: forwarding to {to}: {e}");
    }
}

async fn send(sock: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(e) = sock.send_to(bytes, to).await {
        tracing::warn!("dns: answering {to}: {e}");
    }
}

async fn recv_opt(s: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match s {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}
