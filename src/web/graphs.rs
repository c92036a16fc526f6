//! Graphs over a chosen range (1, 7 or 30 days): boots per hour and median boot time per day,
//! per group (from the machines' boot stories); DHCP/TFTP/HTTP requests and bytes per bucket;
//! syslog messages by severity; backup pull durations. Each is one bounded query of the audit
//! store (an aggregation by time bucket, or the newest events of the range), turned into
//! series by [`crate::core::graphs`] and drawn here as SVG with axes and units.
use super::pages::{self, Frame};
use super::ui_page;
use crate::auth::Who;
use crate::core::graphs::{self, BootPoint, Chart};
use crate::services::http::HttpState;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use maud::{html, Markup};
use serde_json::{json, Value};

const HOUR: i64 = 3_600_000;
/// At most this many events are read to cut boots from (the newest of the range).
const BOOT_EVENTS: u64 = 200_000;
/// Lines per chart; the smaller series are summed as "other".
const LINES: usize = 6;

#[derive(serde::Deserialize, Default)]
pub struct GraphsQuery {
    days: Option<i64>,
}

/// A bucketed count (and sum) by a field, over the range.
fn bucketed(filter: Value, from_ms: i64, bucket_ms: i64, by: &str) -> Value {
    let mut m = filter;
    m["time"] = json!({"$gte": from_ms});
    json!([
        {"$match": m},
        {"$group": {
            "_id": {"t": {"$subtract": ["$time", {"$mod": ["$time", bucket_ms]}]}, "k": format!("${by}")},
            "n": {"$count": {}},
            "bytes": {"$sum": "$bytes"}
        }}
    ])
}

/// Runs a graph query with the API's turn-taking and deadline (nothing when auditing is off).
async fn query(
    st: &HttpState,
    run: impl FnOnce(&dyn crate::audit::AuditStore) -> Result<Vec<Value>, crate::audit::AuditError>
        + Send
        + 'static,
) -> Result<Vec<Value>, String> {
    super::with_store(st, run)
        .await
        .map(Option::unwrap_or_default)
}

pub async fn page(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Query(q): Query<GraphsQuery>,
) -> Response {
    // 1, 7 or 30 days; anything else is the default, one day.
    let days = q.days.filter(|d| [1, 7, 30].contains(d)).unwrap_or(1);
    let now = crate::clock::unix_now_ms();
    let bucket_ms = if days == 30 { 6 * HOUR } else { HOUR };
    let from = graphs::bucket(now - days * 24 * HOUR, bucket_ms) + bucket_ms;
    let to = graphs::bucket(now, bucket_ms) + bucket_ms;
    let per = if bucket_ms == HOUR { "hour" } else { "6 hours" };
    let chart = |title: &str, unit: String, bucket: i64| Chart {
        title: title.into(),
        unit,
        from_ms: from,
        to_ms: to,
        bucket_ms: bucket,
        series: Vec::new(),
        note: None,
    };
    let mut charts = Vec::new();
    let enabled = st.audit.is_some();

    // Boots, from the machines' boot stories.
    let mut boots_c = chart("Boots", format!("boots per {per}"), bucket_ms);
    let mut median_c = chart("Median boot time", "seconds (per day)".into(), 24 * HOUR);
    median_c.from_ms = graphs::bucket(now - days * 24 * HOUR, 24 * HOUR) + 24 * HOUR;
    median_c.to_ms = graphs::bucket(now, 24 * HOUR) + 24 * HOUR;
    if enabled {
        let filter = json!({
            "source": {"$in": ["dhcp", "tftp", "http", "syslog"]},
            "mac": {"$exists": true},
            "time": {"$gte": from - crate::core::story::QUIET_MS},
        });
        match query(&st, move |s| {
            s.find(&filter, Some(&json!({"time": -1})), Some(BOOT_EVENTS))
        })
        .await
        {
            Ok(docs) => {
                let groups: std::collections::HashMap<String, String> = {
                    let inv = st.inventory.borrow();
                    inv.machines()
                        .iter()
                        .map(|m| {
                            (
                                m.mac.to_string(),
                                m.params
                                    .get("group")
                                    .cloned()
                                    .unwrap_or_else(|| "(no group)".into()),
                            )
                        })
                        .collect()
                };
                let cut = docs.len() as u64 == BOOT_EVENTS;
                let oldest = docs
                    .last()
                    .and_then(|d| d["time_ms"].as_i64())
                    .unwrap_or(from);
                let mut by_mac: std::collections::HashMap<String, Vec<Value>> = Default::default();
                for d in docs {
                    if let Some(m) = d["mac"].as_str() {
                        by_mac.entry(m.to_string()).or_default().push(d);
                    }
                }
                // A cut read starts mid-range: boots before its oldest event may be partial.
                let floor = if cut { from.max(oldest) } else { from };
                let mut points = Vec::new();
                for (mac, evs) in &by_mac {
                    let group = groups
                        .get(mac)
                        .cloned()
                        .unwrap_or_else(|| "(unknown)".into());
                    for b in crate::core::story::boots(evs, usize::MAX) {
                        if b.start_ms >= floor {
                            points.push(BootPoint {
                                start_ms: b.start_ms,
                                duration_ms: b.boot_time_ms(),
                                group: group.clone(),
                            });
                        }
                    }
                }
                boots_c.series = graphs::top_series(
                    graphs::boots_per_bucket(&points, bucket_ms),
                    LINES,
                    from,
                    to,
                    bucket_ms,
                );
                median_c.series = graphs::top_series(
                    graphs::median_per_day(&points),
                    LINES,
                    median_c.from_ms,
                    median_c.to_ms,
                    24 * HOUR,
                );
                if cut {
                    let note = format!(
                        "from the newest {BOOT_EVENTS} events, back to {}",
                        crate::clock::rfc3339_ms(oldest)
                    );
                    boots_c.note = Some(note.clone());
                    median_c.note = Some(note);
                }
            }
            Err(e) => {
                boots_c.note = Some(e.clone());
                median_c.note = Some(e);
            }
        }
    }
    charts.push(boots_c);
    charts.push(median_c);

    // Traffic: requests and bytes per bucket, by kind.
    let mut req_c = chart("Requests", format!("per {per}"), bucket_ms);
    let mut bytes_c = chart("Bytes served", format!("MB per {per}"), bucket_ms);
    let mut sys_c = chart(
        "Syslog messages",
        format!("per {per}, by severity"),
        bucket_ms,
    );
    if enabled {
        let p = bucketed(
            json!({"kind": {"$in": ["dhcp_reply", "tftp_finished", "http_served"]}}),
            from,
            bucket_ms,
            "kind",
        );
        match query(&st, move |s| s.aggregate(&p)).await {
            Ok(rows) => {
                let names = |m: std::collections::BTreeMap<String, _>| {
                    m.into_iter()
                        .map(|(k, v)| {
                            let n = match k.as_str() {
                                "dhcp_reply" => "DHCP replies",
                                "tftp_finished" => "TFTP transfers",
                                "http_served" => "HTTP responses",
                                _ => "other",
                            };
                            (n.to_string(), v)
                        })
                        .collect()
                };
                req_c.series = graphs::top_series(
                    names(graphs::from_rows(&rows, "k", "n", 1.0)),
                    LINES,
                    from,
                    to,
                    bucket_ms,
                );
                let mut b = names(graphs::from_rows(&rows, "k", "bytes", 1e6));
                b.remove("DHCP replies");
                bytes_c.series = graphs::top_series(b, LINES, from, to, bucket_ms);
            }
            Err(e) => {
                req_c.note = Some(e.clone());
                bytes_c.note = Some(e);
            }
        }
        let p = bucketed(json!({"source": "syslog"}), from, bucket_ms, "severity");
        match query(&st, move |s| s.aggregate(&p)).await {
            Ok(rows) => {
                sys_c.series = graphs::top_series(
                    graphs::from_rows(&rows, "k", "n", 1.0),
                    LINES,
                    from,
                    to,
                    bucket_ms,
                )
            }
            Err(e) => sys_c.note = Some(e),
        }
    }
    charts.push(req_c);
    charts.push(bytes_c);
    charts.push(sys_c);

    // Backups: each pull's duration, by host (the slowest few named).
    let mut backup_c = chart("Backup pulls", "seconds per pull".into(), bucket_ms);
    if enabled {
        let f = json!({"kind": "backup_pulled", "time": {"$gte": from}});
        match query(&st, move |s| s.find(&f, None, Some(10_000))).await {
            Ok(docs) => {
                let mut m: std::collections::BTreeMap<
                    String,
                    std::collections::BTreeMap<i64, f64>,
                > = Default::default();
                for d in &docs {
                    let (Some(t), Some(ms)) = (d["time_ms"].as_i64(), d["duration_ms"].as_f64())
                    else {
                        continue;
                    };
                    let host = d["host"].as_str().unwrap_or("?").to_string();
                    let slot = m
                        .entry(host)
                        .or_default()
                        .entry(graphs::bucket(t, bucket_ms))
                        .or_default();
                    *slot = slot.max(ms / 1000.0);
                }
                backup_c.series = graphs::top_series(m, LINES, from, to, bucket_ms);
                backup_c.unit = format!("seconds, the longest pull per {per}");
            }
            Err(e) => backup_c.note = Some(e),
        }
    }
    charts.push(backup_c);

    ui_page(&st, &headers, &who, "Graphs", false, |f| {
        render(f, days, &charts, enabled)
    })
}

const COLORS: [&str; 7] = [
    "#1d3557", "#e76f51", "#2a9d8f", "#e9c46a", "#8e7dbe", "#457b9d", "#adb5bd",
];

/// A number for an axis or a legend: whole numbers as they are, others with three
/// significant digits (0.0800 → "0.08", 12.26 → "12.3").
fn num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    if v.fract() == 0.0 || v.abs() >= 100.0 {
        return format!("{v:.0}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A line chart: y axis from 0 with round ticks and the unit, x axis with dates, a legend.
pub fn svg(c: &Chart) -> Markup {
    const W: f64 = 900.0;
    const H: f64 = 220.0;
    const L: f64 = 60.0;
    const R: f64 = 20.0;
    const T: f64 = 16.0;
    const B: f64 = 40.0;
    let max = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let ticks = graphs::ticks(max);
    let top = *ticks.last().unwrap_or(&1.0);
    let span = (c.to_ms - c.from_ms).max(1) as f64;
    let x = |t: i64| L + (t - c.from_ms) as f64 / span * (W - L - R);
    let y = |v: f64| T + (1.0 - v / top) * (H - T - B);
    // Date labels: about six along the axis, at whole buckets.
    let step = ((c.to_ms - c.from_ms) / 6).max(c.bucket_ms);
    let step = step - step % c.bucket_ms.max(1);
    let labels: Vec<i64> = (0..7)
        .map(|i| graphs::bucket(c.from_ms, c.bucket_ms.max(1)) + i * step.max(1))
        .filter(|t| *t >= c.from_ms && *t < c.to_ms)
        .collect();
    let label = |t: i64| {
        let s = crate::clock::rfc3339_ms(t);
        if c.bucket_ms >= 24 * HOUR {
            s[5..10].to_string()
        } else {
            format!("{} {}", &s[5..10], &s[11..16])
        }
    };
    let total: f64 = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .sum();
    html! {
        figure.chart {
            figcaption { strong { (c.title) } " — " (c.unit)
                @if let Some(n) = &c.note { " " span.muted { "(" (n) ")" } } }
            svg width=(W) height=(H) viewBox=(format!("0 0 {W} {H}")) role="img"
                aria-label=(format!("{}: {} over the range, in {}", c.title, num(total), c.unit)) {
                @for t in &ticks {
                    line x1=(L) x2=(W - R) y1=(format!("{:.1}", y(*t))) y2=(format!("{:.1}", y(*t))) stroke="#e9ecef" {}
                    text x=(L - 6.0) y=(format!("{:.1}", y(*t) + 4.0)) font-size="11" text-anchor="end" { (num(*t)) }
                }
                line x1=(L) x2=(L) y1=(T) y2=(H - B) stroke="#868e96" {}
                line x1=(L) x2=(W - R) y1=(H - B) y2=(H - B) stroke="#868e96" {}
                @for t in &labels {
                    text x=(format!("{:.1}", x(*t))) y=(H - B + 16.0) font-size="11" text-anchor="middle" { (label(*t)) }
                }
                text x=(W - R) y=(H - 6.0) font-size="11" fill="#6a737d" text-anchor="end" { "time (UTC)" }
                @for (i, s) in c.series.iter().enumerate() {
                    @let pts: Vec<String> = s.points.iter()
                        .map(|(t, v)| format!("{:.1},{:.1}", x(*t + c.bucket_ms / 2), y(*v)))
                        .collect();
                    polyline class="series" points=(pts.join(" ")) fill="none"
                        stroke=(COLORS[i.min(COLORS.len() - 1)]) stroke-width="2" {}
                }
            }
            @if c.series.is_empty() { p.muted { "nothing recorded in this range" } } @else {
                p.legend { @for (i, s) in c.series.iter().enumerate() {
                    span.swatch style=(format!("background:{}", COLORS[i.min(COLORS.len() - 1)])) {} " "
                    (s.name) " (" (num(s.points.iter().map(|p| p.1).sum())) ")" "  "
                } }
            }
        }
    }
}

pub fn render(f: &Frame, days: i64, charts: &[Chart], enabled: bool) -> Markup {
    pages::layout(
        f,
        html! {
            h1 { "Graphs" }
            nav.range aria-label="range" {
                "Range: "
                @for (d, name) in [(1, "last day"), (7, "last 7 days"), (30, "last 30 days")] {
                    @if d == days { strong { (name) } } @else { a href=(format!("/ui/graphs?days={d}")) { (name) } }
                    " "
                }
            }
            @if !enabled { p.muted { "Auditing is off in this config: there is nothing to draw." } }
            @for c in charts { (svg(c)) }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::graphs::Series;

    #[test]
    fn a_chart_has_axes_units_and_one_line_per_series() {
        let c = Chart {
            title: "Boots".into(),
            unit: "boots per hour".into(),
            from_ms: 0,
            to_ms: 4 * HOUR,
            bucket_ms: HOUR,
            series: vec![
                Series {
                    name: "room <1>".into(),
                    points: vec![(0, 1.0), (HOUR, 4.0), (2 * HOUR, 0.0), (3 * HOUR, 2.0)],
                },
                Series {
                    name: "lab".into(),
                    points: vec![(0, 0.0), (HOUR, 1.0), (2 * HOUR, 1.0), (3 * HOUR, 0.0)],
                },
            ],
            note: None,
        };
        let h = svg(&c).into_string();
        assert_eq!(h.matches("<polyline").count(), 2, "{h}");
        assert!(
            h.contains("boots per hour") && h.contains(">time (UTC)<"),
            "{h}"
        );
        assert!(
            h.contains("room &lt;1&gt; (7)"),
            "legend with totals, escaped: {h}"
        );
        assert!(h.contains(">01-01 01:00<"), "date labels: {h}");
        assert!(h.contains(">4<"), "the y axis reaches the maximum: {h}");
        assert_eq!(
            [
                num(0.08),
                num(0.02),
                num(12.26),
                num(3.0),
                num(1234.6),
                num(0.0)
            ],
            ["0.08", "0.02", "12.3", "3", "1235", "0"]
        );
    }
}
