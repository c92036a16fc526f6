//! The ping monitor: every `[monitor] interval_secs`, one ICMP echo to every machine with an
//! address (or those of the configured groups), spread over the first half of the interval
//! and at most [`IN_FLIGHT`] at once; unprivileged ICMP sockets where the system allows them
//! (`net.ipv4.ping_group_range`), raw ones otherwise (surge-ping). Each probe is a `ping`
//! event (its rtt, or lost); [`crate::core::monitor`] turns each machine's results into
//! `machine_state` changes with hysteresis; changes that alert go to the webhook and/or the
//! command (`alert_sent` records each delivery). `/metrics` reads the latest view.
use super::metrics::SharedPings;
use crate::config::{Config, MonitorConfig};
use crate::core::event::Event;
use crate::core::monitor::{Change, State, Track};
use crate::events::Bus;
use crate::inventory::Inventory;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Pings waiting for an answer at once, at most.
pub const IN_FLIGHT: usize = 512;
/// How long an alert's webhook or command may take.
pub const ALERT_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
struct Target {
    host: String,
    ip: Ipv4Addr,
    mac: crate::core::mac::Mac,
}

fn targets(inv: &Inventory, m: &MonitorConfig) -> Vec<Target> {
    let mut out: Vec<Target> = inv
        .machines()
        .iter()
        .filter(|x| {
            m.groups.is_empty()
                || x.params
                    .get("group")
                    .is_some_and(|g| m.groups.iter().any(|w| w == g))
        })
        .filter_map(|x| {
            Some(Target {
                host: x.hostname.clone().unwrap_or_else(|| x.mac.to_string()),
                ip: x.ip?,
                mac: x.mac,
            })
        })
        .collect();
    out.sort_by_key(|t| t.ip);
    out.dedup_by_key(|t| t.ip);
    out
}

pub async fn run(
    cfg: Arc<Config>,
    inv: watch::Receiver<Inventory>,
    bus: Bus,
    view: SharedPings,
    cancel: CancellationToken,
) {
    let Some(m) = cfg.monitor.clone() else {
        return;
    };
    let client = match surge_ping::Client::new(&surge_ping::Config::default()) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("ping monitor off: no ICMP socket: {e}");
            return;
        }
    };
    let mut tracks: HashMap<Ipv4Addr, Track> = HashMap::new();
    let mut tick = tokio::time::interval(m.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut seq: u16 = 0;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        seq = seq.wrapping_add(1);
        let list = targets(&inv.borrow(), &m);
        // `list` is sorted by address.
        tracks.retain(|ip, _| list.binary_search_by_key(ip, |t| t.ip).is_ok());
        let spread = m.interval / 2;
        let n = u32::try_from(list.len().max(1)).unwrap_or(u32::MAX);
        let mut round = tokio::task::JoinSet::new();
        for (i, t) in list.iter().cloned().enumerate() {
            let (client, slots, timeout) = (client.clone(), slots.clone(), m.timeout);
            let delay = spread * u32::try_from(i).unwrap_or(u32::MAX) / n;
            round.spawn(async move {
                tokio::time::sleep(delay).await;
                let _slot = slots.acquire_owned().await;
                let mut ident = [0u8; 2];
                let _ = getrandom::fill(&mut ident);
                let mut p = client
                    .pinger(
                        IpAddr::V4(t.ip),
                        surge_ping::PingIdentifier(u16::from_be_bytes(ident)),
                    )
                    .await;
                p.timeout(timeout);
                // surge-ping hands back ICMP errors quoting our request too (host
                // unreachable, from the server's own stack when ARP fails): only an echo
                // reply (type 0) is an answer.
                let rtt = match p
                    .ping(surge_ping::PingSequence(seq), b"pxelator monitor")
                    .await
                {
                    Ok((surge_ping::IcmpPacket::V4(r), d)) if r.get_icmp_type().0 == 0 => {
                        Some(d.as_secs_f64() * 1000.0)
                    }
                    _ => None,
                };
                (t, rtt)
            });
        }
        loop {
            let got = tokio::select! {
                _ = cancel.cancelled() => return,
                r = round.join_next() => r,
            };
            let (t, rtt) = match got {
                None => break,
                Some(Err(_)) => continue,
                Some(Ok(x)) => x,
            };
            bus.emit(Event::Ping {
                host: t.host.clone(),
                ip: t.ip,
                mac: t.mac,
                rtt,
                lost: rtt.is_none(),
            });
            let track = tracks.entry(t.ip).or_default();
            if let Some(change) = track.observe(rtt, &m.settings) {
                changed(&m, &bus, &t, change);
            }
        }
        let mut v: Vec<(String, String, bool, Option<f64>)> = list
            .iter()
            .filter_map(|t| {
                let tr = tracks.get(&t.ip)?;
                (tr.state != State::Unknown).then(|| {
                    (
                        t.host.clone(),
                        t.ip.to_string(),
                        tr.state == State::Up,
                        tr.last_rtt_ms.map(|ms| ms / 1000.0),
                    )
                })
            })
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        *view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = v;
    }
}

fn changed(m: &MonitorConfig, bus: &Bus, t: &Target, c: Change) {
    bus.emit(Event::MachineState {
        host: t.host.clone(),
        ip: t.ip,
        mac: t.mac,
        state: c.state.into(),
        reason: c.reason.clone(),
    });
    if !c.alert || (m.webhook.is_none() && m.command.is_none()) {
        return;
    }
    let (m, bus, t) = (m.clone(), bus.clone(), t.clone());
    tokio::task::spawn_blocking(move || {
        let time = crate::clock::rfc3339(crate::clock::unix_now());
        if let Some(url) = &m.webhook {
            let outcome = post(url, &t, &c, &time);
            bus.emit(Event::AlertSent {
                host: t.host.clone(),
                state: c.state.into(),
                via: "webhook",
                outcome,
            });
        }
        if let Some(program) = &m.command {
            let outcome = run_command(program, &t, &c);
            bus.emit(Event::AlertSent {
                host: t.host.clone(),
                state: c.state.into(),
                via: "command",
                outcome,
            });
        }
    });
}

/// The alert as JSON to `url`; "sent" or why not.
fn post(url: &str, t: &Target, c: &Change, time: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(ALERT_DEADLINE))
        .http_status_as_error(false)
        .build()
        .into();
    let body = serde_json::json!({
        "host": t.host, "ip": t.ip, "mac": t.mac.to_string(),
        "state": c.state, "reason": c.reason, "time": time,
    });
    match agent
        .post(url)
        .header("content-type", "application/json")
        .send(body.to_string().as_bytes())
    {
        Ok(r) if r.status().is_success() => "sent".into(),
        Ok(r) => format!("{url} answered {}", r.status()),
        Err(e) => format!("{url}: {e}"),
    }
}

/// Runs the alert command with the alert in its environment (no shell, no arguments from
/// data); "sent" when it exits 0 within [`ALERT_DEADLINE`], else why not (killed when late).
fn run_command(program: &std::path::Path, t: &Target, c: &Change) -> String {
    let child = std::process::Command::new(program)
        .env("PXELATOR_HOST", &t.host)
        .env("PXELATOR_IP", t.ip.to_string())
        .env("PXELATOR_MAC", t.mac.to_string())
        .env("PXELATOR_STATE", c.state)
        .env("PXELATOR_REASON", &c.reason)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return format!("{}: {e}", program.display()),
    };
    let watchdog = crate::deadline::Watchdog::start(&child, ALERT_DEADLINE);
    let status = child.wait();
    if watchdog.stop() {
        return format!("{} took over {ALERT_DEADLINE:?}; killed", program.display());
    }
    match status {
        Ok(s) if s.success() => "sent".into(),
        Ok(s) => format!("{} exited with {s}", program.display()),
        Err(e) => format!("{}: {e}", program.display()),
    }
}
