//! Prometheus metrics (`GET /metrics`, the classic text format), counted from the event bus —
//! the audit vocabulary is the metrics' vocabulary: every event kind is counted
//! (`pxelator_events_total{kind,source}`), and the protocols' outcomes get counters of their
//! own (DHCP replies, HTTP status classes and bytes, TFTP bytes, DNS answers by path and
//! rcode, power actions by method). Gauges are read when scraped: leases by state, pool
//! sizes, machines in the inventory, the audit writer's counts and spool, and each machine's
//! ping state and rtt from the monitor (`services::ping`).
//!
//! `/metrics` needs a viewer (an API token: Prometheus' `authorization` with a
//! `credentials_file`), or a source address in `[metrics] allow_from`.
use crate::core::event::Event;
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The ping monitor's view for `/metrics`: (host, ip, up, rtt seconds) per machine.
pub type SharedPings = std::sync::Arc<std::sync::Mutex<Vec<(String, String, bool, Option<f64>)>>>;

/// The counters, fed by [`Metrics::observe`]; one per daemon.
pub struct Metrics {
    registry: Registry,
    events: IntCounterVec,
    dhcp_replies: IntCounterVec,
    http_requests: IntCounterVec,
    http_bytes: IntCounter,
    tftp_bytes: IntCounter,
    dns_queries: IntCounterVec,
    power: IntCounterVec,
    lagged: IntCounter,
}

/// What `/metrics` reads at scrape time besides the counters.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// (state, count)
    pub leases: Vec<(&'static str, i64)>,
    /// (subnet CIDR, addresses in its pool)
    pub pool_sizes: Vec<(String, i64)>,
    pub machines: i64,
    pub audit: Option<AuditGauges>,
    /// (host, ip, up, rtt seconds): the ping monitor's view.
    pub pings: Vec<(String, String, bool, Option<f64>)>,
}

#[derive(Debug, Default, Clone)]
pub struct AuditGauges {
    pub emitted: u64,
    pub stored: u64,
    pub spooled: u64,
    pub spool_pending: u64,
    pub dropped: u64,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("a valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        Metrics {
            events: counter_vec(
                &r,
                "pxelator_events_total",
                "Events recorded, by kind and source (the audit vocabulary).",
                &["kind", "source"],
            ),
            dhcp_replies: counter_vec(
                &r,
                "pxelator_dhcp_replies_total",
                "DHCP/BOOTP replies sent, by message type.",
                &["reply"],
            ),
            http_requests: counter_vec(
                &r,
                "pxelator_http_requests_total",
                "HTTP requests answered, by status class.",
                &["code"],
            ),
            http_bytes: counter(
                &r,
                "pxelator_http_sent_bytes_total",
                "Body bytes sent over HTTP.",
            ),
            tftp_bytes: counter(
                &r,
                "pxelator_tftp_sent_bytes_total",
                "Bytes of finished TFTP transfers.",
            ),
            dns_queries: counter_vec(
                &r,
                "pxelator_dns_queries_total",
                "DNS queries answered, by path (inventory, forwarded, command, refused, error) and rcode.",
                &["via", "rcode"],
            ),
            power: counter_vec(
                &r,
                "pxelator_power_actions_total",
                "Power actions, by action and method (failed when none worked).",
                &["action", "method"],
            ),
            lagged: counter(
                &r,
                "pxelator_metrics_events_missed_total",
                "Events the metrics counter missed because it fell behind the bus.",
            ),
            registry: r,
        }
    }

    pub fn missed(&self, n: u64) {
        self.lagged.inc_by(n);
    }

    /// Counts one event.
    pub fn observe(&self, e: &Event) {
        self.events
            .with_label_values(&[e.kind(), crate::audit::source_of(e)])
            .inc();
        match e {
            Event::DhcpReply { reply, .. } => self.dhcp_replies.with_label_values(&[reply]).inc(),
            Event::HttpServed { status, bytes, .. } => {
                let class = format!("{}xx", status / 100);
                self.http_requests.with_label_values(&[&class]).inc();
                self.http_bytes.inc_by(bytes.unwrap_or(0));
            }
            Event::TftpFinished { bytes, .. } => self.tftp_bytes.inc_by(*bytes),
            Event::DnsAnswered { via, rcode, .. } => {
                let rcode = rcode.split(' ').next().unwrap_or_default();
                self.dns_queries.with_label_values(&[via, rcode]).inc();
            }
            Event::DnsCommand { outcome, .. } => {
                let rcode = if outcome == "done" {
                    "NOERROR"
                } else {
                    "SERVFAIL"
                };
                self.dns_queries
                    .with_label_values(&["command", rcode])
                    .inc();
            }
            Event::DnsRefused { .. } => self
                .dns_queries
                .with_label_values(&["refused", "REFUSED"])
                .inc(),
            Event::PowerRequested { action, method, .. } => {
                self.power.with_label_values(&[action, method]).inc()
            }
            Event::PowerFailed { action, .. } => {
                self.power.with_label_values(&[action, "failed"]).inc()
            }
            _ => {}
        }
    }

    /// The text exposition: the counters, then `g` as gauges.
    pub fn render(&self, g: &Gauges) -> String {
        let r = Registry::new();
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
            r.register(Box::new(v.clone())).expect("registered once");
            v
        };
        let leases = gauge_vec(
            "pxelator_dhcp_leases",
            "Leases held now, by state.",
            &["state"],
        );
        for (state, n) in &g.leases {
            leases.with_label_values(&[state]).set(*n);
        }
        let pools = gauge_vec(
            "pxelator_dhcp_pool_addresses",
            "Addresses in each subnet's dynamic pool.",
            &["subnet"],
        );
        for (subnet, n) in &g.pool_sizes {
            pools.with_label_values(&[subnet]).set(*n);
        }
        let machines = IntGauge::new("pxelator_inventory_machines", "Machines in the inventory.")
            .expect("a valid metric");
        machines.set(g.machines);
        r.register(Box::new(machines)).expect("registered once");
        if let Some(a) = &g.audit {
            let audit = gauge_vec(
                "pxelator_audit_events",
                "The audit writer's counts since start: emitted, stored, spooled, dropped; and events waiting in the spool (spool_pending).",
                &["what"],
            );
            for (what, n) in [
                ("emitted", a.emitted),
                ("stored", a.stored),
                ("spooled", a.spooled),
                ("spool_pending", a.spool_pending),
                ("dropped", a.dropped),
            ] {
                audit
                    .with_label_values(&[what])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        if !g.pings.is_empty() {
            let up = gauge_vec(
                "pxelator_machine_up",
                "1 when the machine answers ping (after the monitor's hysteresis), else 0.",
                &["host", "ip"],
            );
            let rtt = prometheus::GaugeVec::new(
                Opts::new(
                    "pxelator_machine_rtt_seconds",
                    "The machine's last ping round trip.",
                ),
                &["host", "ip"],
            )
            .expect("a valid metric");
            r.register(Box::new(rtt.clone())).expect("registered once");
            for (host, ip, is_up, secs) in &g.pings {
                up.with_label_values(&[host, ip]).set(i64::from(*is_up));
                if let Some(s) = secs {
                    rtt.with_label_values(&[host, ip]).set(*s);
                }
            }
        }
        let mut families = self.registry.gather();
        families.extend(r.gather());
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("text encoding into memory");
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_counters_and_gauges_render() {
        let m = Metrics::new();
        let peer: std::net::SocketAddr = "10.77.1.20:5353".parse().unwrap();
        m.observe(&Event::DnsAnswered {
            peer,
            name: "kiosk1.lab".into(),
            qtype: "A".into(),
            rcode: "NOERROR".into(),
            via: "inventory",
        });
        m.observe(&Event::HttpServed {
            peer,
            file: "/files/k".into(),
            status: 206,
            bytes: Some(1000),
            mac: None,
            user: None,
        });
        let text = m.render(&Gauges {
            leases: vec![("bound", 3)],
            machines: 7,
            pings: vec![("k1".into(), "10.77.1.31".into(), true, Some(0.0012))],
            ..Gauges::default()
        });
        for want in [
            "pxelator_events_total{kind=\"dns_answered\",source=\"dns\"} 1",
            "pxelator_dns_queries_total{rcode=\"NOERROR\",via=\"inventory\"} 1",
            "pxelator_http_requests_total{code=\"2xx\"} 1",
            "pxelator_http_sent_bytes_total 1000",
            "pxelator_dhcp_leases{state=\"bound\"} 3",
            "pxelator_inventory_machines 7",
            "pxelator_machine_up{host=\"k1\",ip=\"10.77.1.31\"} 1",
            "pxelator_machine_rtt_seconds{host=\"k1\",ip=\"10.77.1.31\"} 0.0012",
            "# TYPE pxelator_dns_queries_total counter",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
    }
}
