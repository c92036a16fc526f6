//! The web UI's pages as pure functions: typed data in, HTML out (maud escapes every value).
//! No JavaScript: links, forms and buttons only, so reading and editing work without it and
//! from the keyboard.
use crate::auth::Who;
use crate::commands::MachineRow;
use crate::confrepo::LogEntry;
use crate::core::seen::{self, Proto, State, Times};
use crate::core::story::{Boot, PhaseKind};
use maud::{html, Markup, PreEscaped, DOCTYPE};

/// What every page needs: its title, the user (None on the login page), the session's CSRF
/// token for the forms.
pub struct Frame<'a> {
    pub title: &'a str,
    pub who: Option<&'a Who>,
    pub csrf: Option<&'a str>,
}

const CSS: &str = "
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f23;background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.5rem;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
header a:focus,header button:focus{outline:3px solid #ffd166}
header .who{margin-left:auto;display:flex;gap:.8rem;align-items:center}
header button{background:transparent;color:#fff;border:1px solid #fff;border-radius:4px;padding:.2rem .6rem;cursor:pointer}
main{padding:1.2rem;max-width:1200px}
h1{font-size:1.4rem;margin:.2rem 0 1rem}
h2{font-size:1.1rem;margin:1.6rem 0 .6rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #e1e4e8;vertical-align:top}
th{background:#eef1f4;font-weight:600}
td.t{white-space:nowrap;color:#444}
a{color:#0b5cad}
a:focus,button:focus,input:focus,select:focus{outline:3px solid #ffb703;outline-offset:1px}
.state{display:inline-block;padding:0 .5rem;border-radius:9px;font-size:.85rem}
.s-up{background:#d8f3dc;color:#1b4332}.s-booting{background:#fff3bf;color:#7a5a00}
.s-quiet{background:#e9ecef;color:#495057}.s-unknown{background:#f1f3f5;color:#868e96}
form.inline{display:inline}
label{display:block;margin:.4rem 0 .1rem;font-weight:600}
input,select{font:inherit;padding:.3rem .4rem;border:1px solid #adb5bd;border-radius:4px}
button.primary{background:#1d3557;color:#fff;border:0;border-radius:4px;padding:.4rem .9rem;margin-top:.6rem;cursor:pointer}
.notice{background:#d8f3dc;border:1px solid #95d5b2;padding:.5rem .8rem;border-radius:4px}
.error{background:#ffe3e3;border:1px solid #ffa8a8;padding:.5rem .8rem;border-radius:4px}
.bar-dhcp{fill:#457b9d}.bar-tftp{fill:#e9c46a}.bar-http{fill:#2a9d8f}.bar-kernel{fill:#adb5bd}.bar-syslog{fill:#8e7dbe}
svg.story{background:#fff;border:1px solid #e1e4e8;display:block;margin:.4rem 0}
.grid{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;background:#fff;padding:.8rem;border:1px solid #e1e4e8}
pre.diff .add{background:#e6ffec;color:#1a7f37}pre.diff .del{background:#ffebe9;color:#b42318}pre.diff .hunk{color:#6f42c1}
pre{background:#fff;border:1px solid #e1e4e8;padding:.6rem;overflow:auto}
.muted{color:#6a737d}
figure.chart{margin:1rem 0;background:#fff;border:1px solid #e1e4e8;padding:.6rem}figure.chart svg{display:block;max-width:100%;height:auto}
.legend .swatch{display:inline-block;width:.9rem;height:.9rem;border-radius:2px;vertical-align:middle}
td.ok{color:#1a7f37;font-weight:600}td.failed{color:#b42318;font-weight:600}
div.power{margin:.6rem 0}div.power button{padding:.3rem .7rem;margin:.1rem 0}
table.calendar td{width:14%;min-height:3rem}.slot{padding:.1rem .3rem;margin:.1rem 0;border-left:3px solid #457b9d;background:#f1f6fa}
.slot.holiday{border-color:#adb5bd;background:#f1f3f5;color:#868e96;text-decoration:line-through}
.login{max-width:22rem;margin:4rem auto;background:#fff;padding:1.5rem;border:1px solid #e1e4e8;border-radius:6px}
.login input{width:100%}
";

pub fn layout(f: &Frame, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (f.title) " — pxelator" }
                // No favicon request (it would need a route of its own).
                link rel="icon" href="data:,";
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    a href="/ui/" { "pxelator" }
                    @if let Some(w) = f.who {
                        nav { a href="/ui/" { "Machines" } " " a href="/ui/groups" style="margin-left:1rem" { "Groups" } " " a href="/ui/images" style="margin-left:1rem" { "Images" } " " a href="/ui/graphs" style="margin-left:1rem" { "Graphs" } " " a href="/ui/pool" style="margin-left:1rem" { "Pool" } " " a href="/ui/audit" style="margin-left:1rem" { "Audit" } " " a href="/ui/health" style="margin-left:1rem" { "Health" } }
                        div.who {
                            span { (w.user) " (" (w.role.name()) ")" }
                            form.inline method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(f.csrf.unwrap_or(""));
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn login(error: Option<&str>, user: &str) -> Markup {
    let f = Frame {
        title: "Log in",
        who: None,
        csrf: None,
    };
    layout(
        &f,
        html! {
            div.login {
                h1 { "Log in" }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action="/ui/login" {
                    label for="user" { "User" }
                    input #user name="user" autocomplete="username" required autofocus value=(user);
                    label for="password" { "Password" }
                    input #password name="password" type="password" autocomplete="current-password" required;
                    button.primary type="submit" { "Log in" }
                }
            }
        },
    )
}

/// Refetches the overview's table when the daemon says machines were seen (`/ui/live`).
const LIVE_JS: &str = "(function(){if(!window.EventSource||!window.fetch)return;\
var es=new EventSource('/ui/live');es.addEventListener('seen',function(){\
fetch(location.href,{credentials:'same-origin'}).then(function(r){return r.ok?r.text():null}).then(function(t){\
if(!t)return;var d=new DOMParser().parseFromString(t,'text/html');\
var n=d.querySelector('#machines tbody'),o=document.querySelector('#machines tbody');if(n&&o)o.replaceWith(n);});});\
window.addEventListener('pagehide',function(){es.close();});})();";

/// "3 min ago" and the like; "never" for None.
pub fn ago(ms: Option<i64>, now_ms: i64) -> String {
    let Some(ms) = ms else { return "never".into() };
    let s = (now_ms - ms).max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

fn state_badge(s: State) -> Markup {
    let (class, text) = match s {
        State::Up => ("state s-up", "up".to_string()),
        State::Booting(p) => ("state s-booting", format!("booting: {}", p.name())),
        State::Quiet => ("state s-quiet", "quiet".to_string()),
        State::Unknown => ("state s-unknown", "never seen".to_string()),
    };
    html! { span class=(class) { (text) } }
}

fn machine_link(m: &MachineRow) -> String {
    format!("/ui/machines/{}", m.name())
}

/// One machine on the overview.
pub struct Row {
    pub machine: MachineRow,
    pub times: Times,
    pub state: State,
}

pub fn overview(f: &Frame, rows: &[Row], q: &str, total: usize, now_ms: i64) -> Markup {
    let registered: Vec<&Row> = rows
        .iter()
        .filter(|r| r.machine.registered.is_some())
        .collect();
    layout(
        f,
        html! {
            h1 { "Machines" }
            form method="get" action="/ui/" role="search" {
                label for="q" { "Filter (name, MAC, IP, group, profile)" }
                input #q name="q" value=(q) size="30";
                " " button.primary type="submit" { "Filter" }
                @if !q.is_empty() { " " a href="/ui/" { "show all" } }
            }
            p.muted { (rows.len()) " of " (total) " machines" }
            table #machines {
                thead { tr {
                    th scope="col" { "Hostname" } th scope="col" { "MAC" } th scope="col" { "IP" }
                    th scope="col" { "Group" } th scope="col" { "Profile" } th scope="col" { "State" }
                    @for p in Proto::ALL { th scope="col" { (p.name()) } }
                } }
                tbody {
                    @for r in rows {
                        tr {
                            td { a href=(machine_link(&r.machine)) { (r.machine.hostname.as_deref().unwrap_or("(no name)")) } }
                            td { code { (r.machine.mac) } }
                            td { (r.machine.ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into())) }
                            td { (r.machine.group.as_deref().unwrap_or("-")) }
                            td { (r.machine.profile.as_deref().unwrap_or("(default)")) }
                            td { (state_badge(r.state)) }
                            @for p in Proto::ALL { td.t { (ago(seen::at(&r.times, p), now_ms)) } }
                        }
                    }
                }
            }
            // Progressive enhancement: the table follows what the daemon sees, live.
            script { (PreEscaped(LIVE_JS)) }
            @if !registered.is_empty() {
                h2 { "Registered by themselves" }
                p.muted { "Machines that booted unknown and were given an address from the pool." }
                ul { @for r in registered { li {
                    a href=(machine_link(&r.machine)) { (r.machine.hostname.as_deref().unwrap_or("(no name)")) }
                    " " code { (r.machine.mac) } " — review and approve"
                } } }
            }
        },
    )
}

/// The machine page's data.
pub struct MachineView {
    pub machine: MachineRow,
    pub times: Times,
    pub state: State,
    /// Recent audit events (newest first), as stored.
    pub events: Vec<serde_json::Value>,
    pub history: Vec<LogEntry>,
    /// The newest result of each recipe on it (recipes.toml checks, admins' runs).
    pub recipes: Vec<crate::core::recipe::Latest>,
    /// Its recent boots, newest first.
    pub boots: Vec<Boot>,
    pub can_edit: bool,
    /// Sees the host-file backups.
    pub is_admin: bool,
    /// Its one-time boot override, if set.
    pub next_boot: Option<crate::core::boot::NextBoot>,
    /// Its group's defaults (already merged into its params; shown as where a value comes from).
    pub group_defaults: std::collections::BTreeMap<String, String>,
    /// The events listed are those before this time (unix ms), not the newest.
    pub before: Option<i64>,
    /// There may be older events (the page is full).
    pub more: bool,
    pub notice: Option<String>,
    pub error: Option<String>,
}

fn event_summary(e: &serde_json::Value) -> String {
    let s = |k: &str| e.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let n = |k: &str| e.get(k).and_then(|v| v.as_u64());
    let mut parts = Vec::new();
    for k in ["reply", "file", "reason", "message", "severity", "action"] {
        if let Some(v) = s(k) {
            parts.push(v);
        }
    }
    if let Some(b) = n("bytes") {
        parts.push(format!("{b} bytes"));
    }
    if let Some(d) = n("duration_ms") {
        parts.push(format!("{d} ms"));
    }
    if let Some(st) = n("status") {
        parts.push(format!("HTTP {st}"));
    }
    parts.join(" · ")
}

pub fn machine(f: &Frame, v: &MachineView, now_ms: i64) -> Markup {
    let m = &v.machine;
    let name = m.name();
    layout(
        f,
        html! {
            p { a href="/ui/" { "← Machines" } }
            h1 { (name) " " (state_badge(v.state)) }
            @if let Some(n) = &v.notice { p.notice role="status" { (n) } }
            @if let Some(e) = &v.error { p.error role="alert" { (e) } }
            div.grid {
                span { "MAC" } code { (m.mac) }
                span { "IP" } span { (m.ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into())) }
                span { "Profile" } span { (m.profile.as_deref().unwrap_or("(default)")) }
                span { "Group" } span { (m.group.as_deref().unwrap_or("-")) }
                span { "File" } code { (m.file) }
                @for p in Proto::ALL { span { "Last " (p.name()) } span { (ago(seen::at(&v.times, p), now_ms)) } }
            }
            h2 { "Parameters" }
            @if m.params.is_empty() { p.muted { "none" } } @else {
                table { thead { tr { th scope="col" { "Name" } th scope="col" { "Value" } } }
                    tbody { @for (k, val) in &m.params { tr { td { code { (k) } } td { (val)
                        @if v.group_defaults.get(k) == Some(val) { " " span.muted { "(default of group " (m.group.as_deref().unwrap_or("")) ")" } }
                    } } } } }
            }
            @if v.can_edit {
                h2 { "Power" }
                p.muted { "Intel AMT when it has an amt param; otherwise Wake-on-LAN to switch on and power.toml's [ssh] command to switch off." }
                (super::power::buttons(f, &format!("/ui/machines/{name}/power"), &name))
            }
            h2 { "Next boot" }
            p #next-boot {
                @match v.next_boot {
                    None => { "As its profile says (" (m.profile.as_deref().unwrap_or("default")) ")." }
                    Some(crate::core::boot::NextBoot::Local) => { strong { "Its local disk, once" } " — then as its profile says." }
                    Some(crate::core::boot::NextBoot::Netboot) => { strong { "From the network, once" } " — then as its profile says." }
                }
            }
            @if v.can_edit {
                div.power {
                    @for (next, label) in [("local", "Next boot: local disk"), ("netboot", "Next boot: network"), ("clear", "Clear")] {
                        @if next != "clear" || v.next_boot.is_some() {
                            form.inline method="post" action=(format!("/ui/machines/{name}/next-boot")) {
                                input type="hidden" name="csrf" value=(f.csrf.unwrap_or(""));
                                input type="hidden" name="next" value=(next);
                                button type="submit" id=(format!("next-{next}")) { (label) }
                            }
                            " "
                        }
                    }
                }
            }
            @if v.can_edit && m.registered.is_some() {
                h2 { "Approve" }
                p { "This machine registered itself when it first booted"
                    @if let Some(t) = m.registered { " (" (crate::clock::rfc3339(t.max(0) as u64)) ")" }
                    ". Approving keeps it: it is no longer reclaimed when unused." }
                form method="post" action=(format!("/ui/machines/{name}")) {
                    input type="hidden" name="csrf" value=(f.csrf.unwrap_or(""));
                    input type="hidden" name="approve" value="1";
                    label for="ap_name" { "Name" }
                    input #ap_name name="name" value=(m.hostname.as_deref().unwrap_or(""));
                    label for="ap_profile" { "Profile (empty: the default)" }
                    input #ap_profile name="profile" value=(m.profile.as_deref().unwrap_or(""));
                    label for="ap_group" { "Group" }
                    input #ap_group name="group" value=(m.group.as_deref().unwrap_or(""));
                    br;
                    button.primary #approve type="submit" { "Approve and commit" }
                }
            }
            @if v.can_edit {
                h2 { "Change" }
                form method="post" action=(format!("/ui/machines/{name}")) {
                    input type="hidden" name="csrf" value=(f.csrf.unwrap_or(""));
                    label for="profile" { "Profile (empty: leave as is)" }
                    input #profile name="profile" value="";
                    label for="param_key" { "Set parameter" }
                    input #param_key name="param_key" placeholder="homepage" aria-label="parameter name";
                    " = "
                    input #param_value name="param_value" placeholder="http://…" aria-label="parameter value";
                    label for="unset" { "Remove parameter" }
                    select #unset name="unset" {
                        option value="" { "—" }
                        @for k in m.params.keys() { option value=(k) { (k) } }
                    }
                    br;
                    button.primary type="submit" { "Commit change" }
                }
            }
            @if v.is_admin {
                h2 { "Host files" }
                p { a #backups href=(format!("/ui/machines/{name}/backups")) { "Backups of its files: pulls, changes, restore" } }
                p { a #root href=(format!("/ui/machines/{name}/root")) { "Its network root: what it changed, snapshots, reset" } }
            }
            @if !v.recipes.is_empty() {
                h2 #recipes { "Recipes" }
                table { thead { tr { th scope="col" { "Recipe" } th scope="col" { "Result" } th scope="col" { "When" } th scope="col" { "By" } th scope="col" { "Why" } } }
                    tbody { @for r in &v.recipes { tr {
                        td { code { (r.recipe) } }
                        td { span class=(if r.outcome == "ok" || r.outcome == "fixed" { "state s-up" } else { "state s-unknown" }) { (r.outcome) } }
                        td { (r.time) }
                        td { (r.user) }
                        td { (r.message.as_deref().unwrap_or("")) }
                    } } }
                }
            }
            h2 { "Boot story" }
            @if v.boots.is_empty() { p.muted { "no boot recorded" } }
            @for b in &v.boots { (boot_story(b)) }
            h2 #events { @if v.before.is_some() { "Older events" } @else { "Recent events" } }
            @if v.events.is_empty() { p.muted { "none recorded" } } @else {
                table {
                    thead { tr { th scope="col" { "Time" } th scope="col" { "Kind" } th scope="col" { "Details" } } }
                    tbody { @for e in &v.events { tr {
                        td.t { (e.get("time").and_then(|t| t.as_str()).unwrap_or("")) }
                        td { (e.get("kind").and_then(|t| t.as_str()).unwrap_or("")) }
                        td { (event_summary(e)) }
                    } } }
                }
            }
            p.pager {
                @if v.before.is_some() { a href=(format!("/ui/machines/{name}#events")) { "← newest" } " " }
                @if v.more { @if let Some(t) = v.events.last().and_then(|e| e.get("time_ms")).and_then(|t| t.as_i64()) {
                    a #older href=(format!("/ui/machines/{name}?before={t}#events")) { "older events →" }
                } }
            }
            h2 { "History of " code { (m.file) } }
            p { a href=(format!("/ui/machines/{name}/history")) { "Compare versions, see the file as of a date, restore a version" } }
            @if v.history.is_empty() { p.muted { "no commits yet" } } @else {
                table {
                    thead { tr { th scope="col" { "Commit" } th scope="col" { "When" } th scope="col" { "Author" } th scope="col" { "Message" } } }
                    tbody { @for h in &v.history { tr {
                        td { code { (h.commit.get(..12).unwrap_or(&h.commit)) } }
                        td.t { (crate::clock::rfc3339(h.time.max(0) as u64)) }
                        td { (h.author) " <" (h.email) ">" }
                        td { (h.message) }
                    } } }
                }
            }
        },
    )
}

fn secs(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn phase_class(k: PhaseKind) -> &'static str {
    match k {
        PhaseKind::Dhcp => "bar-dhcp",
        PhaseKind::Tftp => "bar-tftp",
        PhaseKind::Http => "bar-http",
        PhaseKind::Kernel => "bar-kernel",
        PhaseKind::Syslog => "bar-syslog",
    }
}

/// One boot: a timeline (SVG, one bar per phase on a shared time axis) and its phases.
fn boot_story(b: &Boot) -> Markup {
    const W: f64 = 900.0;
    let total = b.duration_ms().max(1) as f64;
    let x = |ms: i64| 110.0 + (ms - b.start_ms) as f64 / total * (W - 130.0);
    let rows = b.phases.len();
    let h = 24 * rows + 30;
    html! {
        h3 { "Boot at " (crate::clock::rfc3339((b.start_ms / 1000).max(0) as u64)) " — " (secs(b.duration_ms())) }
        svg.story width=(W) height=(h) viewBox=(format!("0 0 {W} {h}")) role="img"
            aria-label=(format!("timeline of {} phases over {}", rows, secs(b.duration_ms()))) {
            @for (i, p) in b.phases.iter().enumerate() {
                text x="8" y=(24 * i + 17) font-size="12" { (p.kind.name()) }
                rect class=(phase_class(p.kind)) x=(format!("{:.1}", x(p.start_ms)))
                    y=(24 * i + 5) height="16"
                    width=(format!("{:.1}", (x(p.end_ms) - x(p.start_ms)).max(3.0))) {}
            }
            line x1="110" x2=(W - 20.0) y1=(h - 22) y2=(h - 22) stroke="#868e96" {}
            text x="110" y=(h - 6) font-size="11" { "0 s" }
            text x=(W - 20.0) y=(h - 6) font-size="11" text-anchor="end" { (secs(b.duration_ms())) }
        }
        table {
            thead { tr { th scope="col" { "Phase" } th scope="col" { "From" } th scope="col" { "Took" } th scope="col" { "Files served" } } }
            tbody { @for p in &b.phases { tr {
                td { (p.kind.name()) }
                td.t { "+" (secs(p.start_ms - b.start_ms)) }
                td.t { (secs(p.end_ms - p.start_ms)) }
                td { @for f in &p.files {
                    code { (f.file) }
                    @if let Some(n) = f.bytes { " " (n) " bytes" }
                    @if let Some(ms) = f.duration_ms { " in " (ms) " ms" }
                    br;
                } }
            } } }
        }
    }
}

/// The audit explorer's data.
pub struct AuditView {
    pub filter: String,
    pub limit: u64,
    pub rows: Vec<serde_json::Value>,
    /// How the store runs the query (asked for with plan=1).
    pub plan: Option<Vec<String>>,
    /// The aggregation pipeline asked for, and its groups (None: a find was run).
    pub pipeline: String,
    pub groups: Option<Vec<serde_json::Value>>,
    pub error: Option<String>,
    /// emitted, stored, spooled, spool_pending, dropped.
    pub status: [(&'static str, u64); 5],
    pub enabled: bool,
}

const AUDIT_EXAMPLES: &[(&str, &str)] = &[
    ("{\"kind\": \"dhcp_reply\"}", "every DHCP reply"),
    (
        "{\"kind\": {\"$in\": [\"tftp_failed\", \"auth_failed\"]}}",
        "failed transfers and logins",
    ),
    (
        "{\"source\": \"syslog\", \"severity\": \"err\"}",
        "syslog errors",
    ),
    (
        "{\"time\": {\"$gte\": \"2026-11-30T00:00:00Z\"}}",
        "since a date",
    ),
];

const AGGREGATE_EXAMPLES: &[(&str, &str)] = &[
    (
        "[{\"$match\": {\"kind\": \"tftp_finished\"}}, {\"$group\": {\"_id\": \"$ip\", \"avg_ms\": {\"$avg\": \"$duration_ms\"}, \"n\": {\"$count\": {}}}}]",
        "average TFTP transfer time per IP",
    ),
    (
        "[{\"$group\": {\"_id\": {\"hour\": {\"$subtract\": [\"$time\", {\"$mod\": [\"$time\", 3600000]}]}, \"source\": \"$source\"}, \"n\": {\"$count\": {}}}}, {\"$sort\": {\"_id\": -1}}, {\"$limit\": 48}]",
        "events per hour and protocol",
    ),
];

/// The columns of an aggregation's groups: the `_id` parts (or `_id`), then the other fields
/// in the order the first groups name them.
fn group_columns(groups: &[serde_json::Value]) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    for g in groups.iter().take(100) {
        let Some(m) = g.as_object() else { continue };
        for (k, v) in m {
            let names: Vec<String> = match (k.as_str(), v) {
                ("_id", serde_json::Value::Object(parts)) => {
                    parts.keys().map(|p| format!("_id.{p}")).collect()
                }
                _ => vec![k.clone()],
            };
            for n in names {
                if !cols.contains(&n) {
                    cols.push(n);
                }
            }
        }
    }
    cols
}

fn group_cell(g: &serde_json::Value, col: &str) -> String {
    match col.strip_prefix("_id.") {
        Some(part) => cell(&g["_id"], part),
        None => cell(g, col),
    }
}

fn cell(e: &serde_json::Value, k: &str) -> String {
    match e.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

pub fn audit(f: &Frame, v: &AuditView) -> Markup {
    let q = serde_urlencoded::to_string([
        ("filter", v.filter.as_str()),
        ("limit", &v.limit.to_string()),
    ])
    .unwrap_or_default();
    layout(
        f,
        html! {
            h1 { "Audit" }
            form method="get" action="/ui/audit" role="search" {
                label for="filter" { "Filter (MongoDB style, the same as " code { "pxelator audit find" } ")" }
                input #filter name="filter" value=(v.filter) size="70" spellcheck="false";
                " "
                label for="limit" style="display:inline" { "Rows" }
                " "
                input #limit name="limit" value=(v.limit) size="6" inputmode="numeric";
                " "
                label for="plan" style="display:inline;font-weight:normal" {
                    input #plan type="checkbox" name="plan" value="1" checked[v.plan.is_some()];
                    " show the plan"
                }
                " " button.primary type="submit" { "Find" }
            }
            p.muted { "Examples: "
                @for (i, (ex, what)) in AUDIT_EXAMPLES.iter().enumerate() {
                    @if i > 0 { " · " }
                    a href=(format!("/ui/audit?{}", serde_urlencoded::to_string([("filter", *ex)]).unwrap_or_default())) { (what) }
                }
            }
            form method="get" action="/ui/audit" #aggregate {
                label for="pipeline" { "Or an aggregation pipeline (the same as " code { "pxelator audit aggregate" } ")" }
                textarea #pipeline name="pipeline" rows="3" cols="90" spellcheck="false" { (v.pipeline) }
                br;
                label for="agg-plan" style="display:inline;font-weight:normal" {
                    input #agg-plan type="checkbox" name="plan" value="1" checked[v.plan.is_some() && v.groups.is_some()];
                    " show the plan"
                }
                " " button.primary #run-aggregate type="submit" { "Aggregate" }
            }
            p.muted { "Examples: "
                @for (i, (ex, what)) in AGGREGATE_EXAMPLES.iter().enumerate() {
                    @if i > 0 { " · " }
                    a href=(format!("/ui/audit?{}", serde_urlencoded::to_string([("pipeline", *ex)]).unwrap_or_default())) { (what) }
                }
            }
            @if let Some(e) = &v.error { p.error role="alert" { (e) } }
            @if let Some(plan) = &v.plan {
                h2 { "Plan" }
                pre #query-plan { @for l in plan { (l) "\n" } }
            }
            @if let Some(groups) = &v.groups {
                @let cols = group_columns(groups);
                p.muted {
                    (groups.len()) " groups · download "
                    a href=(format!("/api/audit/aggregate?{}", serde_urlencoded::to_string([("pipeline", v.pipeline.as_str())]).unwrap_or_default())) { "JSON" }
                }
                table #groups {
                    thead { tr { @for c in &cols { th scope="col" { (c) } } } }
                    tbody { @for g in groups { tr { @for c in &cols { td { (group_cell(g, c)) } } } } }
                }
            } @else {
            p.muted {
                (v.rows.len()) " rows · download "
                a href=(format!("/api/audit/find?{q}")) { "JSON lines" } " · "
                a href=(format!("/ui/audit.csv?{q}")) { "CSV" }
            }
            table {
                thead { tr { @for h in ["time", "source", "kind", "mac", "ip", "host", "details"] { th scope="col" { (h) } } } }
                tbody { @for e in &v.rows { tr {
                    td.t { (cell(e, "time")) }
                    td { (cell(e, "source")) }
                    td { (cell(e, "kind")) }
                    td { code { (cell(e, "mac")) } }
                    td { (cell(e, "ip")) }
                    td { (cell(e, "host")) }
                    td { (event_summary(e)) }
                } } }
            }
            }
            h2 { "Store" }
            @if !v.enabled { p.muted { "Auditing is off in this config." } } @else {
                div.grid { @for (k, n) in &v.status { span { (k) } span { (n) } } }
            }
        },
    )
}

/// Rows as CSV (RFC 4180 quoting), the explorer's columns plus the whole document as JSON.
pub fn audit_csv(rows: &[serde_json::Value]) -> String {
    let q = |s: &str| {
        // A leading = + - @ would be a formula to a spreadsheet: quote it as text.
        let s = if s.starts_with(['=', '+', '-', '@']) {
            format!("'{s}")
        } else {
            s.to_string()
        };
        format!("\"{}\"", s.replace('"', "\"\""))
    };
    let mut out = String::from("time,source,kind,mac,ip,host,document\r\n");
    for e in rows {
        let cols: Vec<String> = ["time", "source", "kind", "mac", "ip", "host"]
            .iter()
            .map(|k| q(&cell(e, k)))
            .collect();
        out.push_str(&cols.join(","));
        out.push(',');
        out.push_str(&q(&e.to_string()));
        out.push_str("\r\n");
    }
    out
}

/// The health page's data.
pub struct HealthView {
    pub health: crate::core::health::Health,
    pub listening: Vec<(&'static str, String)>,
    /// The next power actions of power.toml (when, what); None without power.toml; Err when
    /// it cannot be read.
    pub schedule: Result<Option<Vec<(String, String)>>, String>,
    pub audit: Option<[(&'static str, u64); 5]>,
    pub version: &'static str,
}

fn notes(
    title: &str,
    list: &std::collections::VecDeque<crate::core::health::Note>,
    none: &str,
    now_ms: i64,
) -> Markup {
    html! {
        h2 { (title) }
        @if list.is_empty() { p.muted { (none) } } @else {
            table { tbody { @for (t, s) in list { tr { td.t { (ago(Some(*t), now_ms)) } td { (s) } } } } }
        }
    }
}

pub fn health(f: &Frame, v: &HealthView, now_ms: i64) -> Markup {
    let h = &v.health;
    layout(
        f,
        html! {
            h1 { "Health" }
            div.grid {
                span { "pxelator" } span { (v.version) }
                span { "running since" } span { (ago(h.started_ms, now_ms)) }
                @for (k, val) in &v.listening { span { (k) } span { (val) } }
            }
            h2 { "Inventory" }
            @match &h.last_load {
                None => p.muted { "not loaded yet" },
                Some(l) => {
                    p { "Loaded " (ago(Some(l.time_ms), now_ms)) ": " (l.machines) " machines, " (l.profiles) " profiles, "
                        (l.problems.len()) " problems." }
                    @if !l.problems.is_empty() {
                        ul.error { @for pr in &l.problems { li { code { (pr) } } } }
                    }
                }
            }
            h2 { "Audit store" }
            @match &v.audit {
                None => p.muted { "Auditing is off in this config." },
                Some(a) => div.grid { @for (k, n) in a { span { (k) } span { (n) } } },
            }
            h2 { "Power schedule" }
            @match &v.schedule {
                Ok(None) => p.muted { "no power.toml" },
                Ok(Some(next)) if next.is_empty() => p.muted { "nothing scheduled in the next 24 hours" },
                Ok(Some(next)) => table #next-power { tbody { @for (when, what) in next { tr { td.t { (when) } td { (what) } } } } },
                Err(e) => p.error { (e) },
            }
            (notes("Backups that failed", &h.backups_failed, "none", now_ms))
            (notes("Backups pulled", &h.backups_ok, "none since the daemon started", now_ms))
            (notes("Power problems", &h.power, "none", now_ms))
            (notes("Caught panics", &h.panics, "none", now_ms))
            h2 { "Rejected packets" }
            p { (h.rejected) " since the daemon started"
                @if let Some((t, s)) = &h.last_rejected { "; the last " (ago(Some(*t), now_ms)) ": " code { (s) } } }
        },
    )
}

pub fn error_page(f: &Frame, status: u16, msg: &str) -> Markup {
    layout(
        f,
        html! { h1 { "Error " (status) } p.error role="alert" { (msg) } p { a href="/ui/" { "Machines" } } },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::access::Role;

    fn row(name: &str) -> MachineRow {
        MachineRow {
            hostname: Some(name.into()),
            mac: "52:54:00:00:00:01".parse().unwrap(),
            ip: Some("10.0.0.5".parse().unwrap()),
            profile: None,
            group: Some("reading-room".into()),
            params: [("homepage".to_string(), "http://x/?a=1&b=<2>".to_string())].into(),
            file: format!("machines/{name}.toml"),
            registered: None,
        }
    }

    #[test]
    fn values_are_escaped_everywhere() {
        let who = Who {
            user: "amy".into(),
            role: Role::Operator,
            email: None,
        };
        let f = Frame {
            title: "<t>",
            who: Some(&who),
            csrf: Some("tok\"en"),
        };
        let v = MachineView {
            machine: row("k1"),
            times: [Some(0), None, None, None],
            state: State::Quiet,
            events: vec![
                serde_json::json!({"time": "2026", "kind": "syslog", "message": "<script>alert(1)</script>"}),
            ],
            history: vec![],
            // A recipe's message is the host's own output: text, never markup.
            recipes: vec![crate::core::recipe::Latest {
                host: "k1".into(),
                recipe: "motd".into(),
                outcome: "drift".into(),
                mode: "check".into(),
                time: "2026".into(),
                user: "schedule".into(),
                message: Some("<script>alert(2)</script>".into()),
            }],
            boots: vec![],
            can_edit: true,
            is_admin: false,
            next_boot: None,
            group_defaults: Default::default(),
            before: None,
            more: false,
            notice: None,
            error: Some("bad <b>".into()),
        };
        let html = machine(&f, &v, 1000).into_string();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(
            html.contains("id=\"recipes\"")
                && html.contains("&lt;script&gt;alert(2)&lt;/script&gt;")
        );
        assert!(html.contains("a=1&amp;b=&lt;2&gt;"));
        assert!(html.contains("value=\"tok&quot;en\""));
        assert!(html.contains("<title>&lt;t&gt; — pxelator</title>"));
        assert!(html.contains("bad &lt;b&gt;"));
    }

    #[test]
    fn a_boot_story_draws_one_bar_per_phase() {
        use crate::core::story::boots;
        let ev = |t: i64, source: &str, kind: &str, file: Option<&str>| {
            let mut v = serde_json::json!({"time_ms": t, "source": source, "kind": kind});
            if let Some(f) = file {
                v["file"] = serde_json::json!(f);
            }
            v
        };
        let docs = vec![
            ev(1_000, "dhcp", "dhcp_reply", None),
            ev(2_000, "http", "http_served", Some("/files/<k>/vmlinuz")),
            ev(9_000, "syslog", "syslog", None),
        ];
        let html = boot_story(&boots(&docs, 1)[0]).into_string();
        assert_eq!(
            html.matches("<rect class=\"bar-").count(),
            4,
            "DHCP, HTTP, kernel, syslog: {html}"
        );
        assert!(html.contains("&lt;k&gt;") && !html.contains("<k>"));
        assert!(html.contains("8.0 s"), "{html}");
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let rows = vec![
            serde_json::json!({"time": "t", "kind": "syslog", "host": "=cmd|' /C calc'!A0", "message": "a \"b\", c"}),
        ];
        let csv = audit_csv(&rows);
        assert!(csv.starts_with("time,source,kind,mac,ip,host,document\r\n"));
        assert!(csv.contains("\"'=cmd|' /C calc'!A0\""), "{csv}");
        assert!(csv.contains("\\\"\"b\\\"\""), "{csv}");
    }

    #[test]
    fn a_viewer_gets_no_edit_form_and_times_read_as_ages() {
        let who = Who {
            user: "v".into(),
            role: Role::Viewer,
            email: None,
        };
        let f = Frame {
            title: "x",
            who: Some(&who),
            csrf: Some("c"),
        };
        let v = MachineView {
            machine: row("k2"),
            times: [None; 4],
            state: State::Unknown,
            events: vec![],
            history: vec![],
            recipes: vec![],
            boots: vec![],
            can_edit: false,
            is_admin: false,
            next_boot: None,
            group_defaults: Default::default(),
            before: None,
            more: false,
            notice: None,
            error: None,
        };
        let html = machine(&f, &v, 0).into_string();
        assert!(!html.contains("Commit change"));
        assert_eq!(ago(Some(0), 90_000), "1 min ago");
        assert_eq!(ago(None, 0), "never");
    }
}
