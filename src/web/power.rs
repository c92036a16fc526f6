//! Power from the web UI: a machine's on/off/reset/status buttons, and the groups page — each
//! group's defaults, members and power buttons (one result per machine), and the power
//! schedule of power.toml as a week calendar with its holidays and the actions missed while
//! the daemon was down. The same operation as `pxelator power` ([`power::request`]); every
//! result is an event on the bus (so in the audit store).
use super::pages::{self, Frame};
use super::{find_machine, newest_events, ui_page, wait_for_commit};
use crate::auth::Who;
use crate::core::access::Role;
use crate::core::event::Event;
use crate::power::{self, schedule};
use crate::services::http::HttpState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use maud::{html, Markup};
use std::collections::BTreeMap;

#[derive(serde::Deserialize)]
pub struct PowerForm {
    action: String,
}

/// The form's action: on, off, reset, or status (None).
fn action(s: &str) -> Result<Option<schedule::Action>, String> {
    use schedule::Action;
    match s {
        "on" => Ok(Some(Action::On)),
        "off" => Ok(Some(Action::Off)),
        "reset" => Ok(Some(Action::Reset)),
        "status" => Ok(None),
        other => Err(format!(
            "{:?} is not a power action: on, off, reset or status",
            other.chars().take(32).collect::<String>()
        )),
    }
}

/// Runs the request off the async threads and puts every result on the bus.
async fn run(
    st: &HttpState,
    target: String,
    act: Option<schedule::Action>,
) -> Result<Vec<Event>, String> {
    let (cfg, inv) = (st.config.clone(), st.inventory.borrow().clone());
    let events = tokio::task::spawn_blocking(move || {
        power::request(&cfg, &inv, &[target], act, None).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    for e in &events {
        st.bus.emit(e.clone());
    }
    Ok(events)
}

/// The power buttons: one small form per action (a POST with the CSRF token).
pub fn buttons(f: &Frame, action_url: &str, what: &str) -> Markup {
    html! {
        div.power {
            @for (a, label) in [("on", "Power on"), ("off", "Power off"), ("reset", "Reset"), ("status", "Read state")] {
                form.inline method="post" action=(action_url) {
                    input type="hidden" name="csrf" value=(f.csrf.unwrap_or(""));
                    input type="hidden" name="action" value=(a);
                    button type="submit" id=(format!("power-{a}")) aria-label=(format!("{label}: {what}")) { (label) }
                }
                " "
            }
        }
    }
}

/// One row per machine: what was done, how, or why not.
pub fn results(events: &[Event]) -> Markup {
    html! {
        table #power-results {
            thead { tr { th scope="col" { "Machine" } th scope="col" { "Result" } th scope="col" { "Method" } th scope="col" { "Details" } } }
            tbody { @for e in events { tr {
                @match e {
                    Event::PowerRequested { host, mac, action, method, target } => {
                        td { (host) " " code { (mac) } } td.ok { (action) " sent" } td { (method) } td { "via " (target) }
                    }
                    Event::PowerStateSeen { host, mac, state, value, target } => {
                        td { (host) " " code { (mac) } } td.ok { (state) } td { "amt" } td { "PowerState " (value) " from " (target) }
                    }
                    Event::PowerFailed { host, action, reason } => {
                        td { (host) } td.failed { (action) " failed" } td { "-" } td { (reason) }
                    }
                    other => { td { "-" } td { (other.kind()) } td { "-" } td { "-" } }
                }
            } } }
        }
    }
}

fn result_page(f: &Frame, back: &str, title: &str, r: &Result<Vec<Event>, String>) -> Markup {
    pages::layout(
        f,
        html! {
            p { a href=(back) { "← back" } }
            h1 { (title) }
            @match r {
                Ok(events) => {
                    @let failed = events.iter().filter(|e| matches!(e, Event::PowerFailed { .. })).count();
                    p role="status" class=(if failed == 0 { "notice" } else { "error" }) {
                        (events.len() - failed) " of " (events.len()) " machines done"
                        @if failed > 0 { "; " (failed) " failed (see why below)" }
                    }
                    (results(events))
                }
                Err(e) => p.error role="alert" { (e) },
            }
        },
    )
}

async fn respond(
    st: &HttpState,
    who: &Who,
    headers: &HeaderMap,
    target: String,
    back: String,
    form: &PowerForm,
) -> Response {
    let r = match action(&form.action) {
        Ok(a) => run(st, target.clone(), a).await,
        Err(e) => Err(e),
    };
    let title = format!("Power {} — {target}", form.action);
    ui_page(st, headers, who, &title, r.is_err(), |f| {
        result_page(f, &back, &title, &r)
    })
}

/// The guard has checked the role (operator) and the form's CSRF token.
pub async fn machine(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Form(form): Form<PowerForm>,
) -> Response {
    let m = match find_machine(&st, &key) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    let name = m.name();
    // By MAC: exactly this machine, whatever its name.
    respond(
        &st,
        &who,
        &headers,
        m.mac.to_string(),
        format!("/ui/machines/{name}"),
        &form,
    )
    .await
}

/// The guard has checked the role (operator) and the form's CSRF token.
pub async fn group(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<PowerForm>,
) -> Response {
    if !groups_of(&st).contains_key(&name) {
        return (
            StatusCode::NOT_FOUND,
            format!("no group {name:?}: no machine has the param group = {name:?}\n"),
        )
            .into_response();
    }
    respond(&st, &who, &headers, name, "/ui/groups".into(), &form).await
}

/// The guard has checked the role (operator) and the form's CSRF token.
pub async fn defaults(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<super::ParamFields>,
) -> Response {
    let (set, unset) = match form.changes() {
        Ok(c) => c,
        Err(e) => {
            return ui_page(&st, &headers, &who, "Groups and power", true, |f| {
                pages::error_page(f, 400, &e)
            })
        }
    };
    let (cfg, author, group) = (st.config.clone(), who.author(), name.clone());
    match wait_for_commit(&st, move || {
        crate::commands::group_edit(&cfg, &group, &set, &unset, &author)
    })
    .await
    {
        Ok(c) => {
            let short: String = c.commit.unwrap_or_default().chars().take(12).collect();
            axum::response::Redirect::to(&format!("/ui/groups?done={short}#group-{name}"))
                .into_response()
        }
        Err(e) => ui_page(&st, &headers, &who, "Groups and power", true, |f| {
            pages::error_page(f, 400, &e)
        }),
    }
}

/// Every group: machines whose `group` param names it, and groups with a defaults file.
fn groups_of(st: &HttpState) -> BTreeMap<String, Group> {
    let inv = st.inventory.borrow();
    let mut out: BTreeMap<String, Group> = inv
        .group_defaults()
        .iter()
        .map(|(n, d)| {
            (
                n.clone(),
                Group {
                    defaults: d.clone(),
                    members: Vec::new(),
                },
            )
        })
        .collect();
    for m in inv.machines() {
        if let Some(g) = m.params.get("group") {
            out.entry(g.clone())
                .or_default()
                .members
                .push(power::label(m));
        }
    }
    for g in out.values_mut() {
        g.members.sort();
    }
    out
}

#[derive(Default)]
pub struct Group {
    pub defaults: BTreeMap<String, String>,
    pub members: Vec<String>,
}

/// One day of the calendar: its date and what is scheduled (time, action, target, holiday).
pub struct Day {
    pub date: String,
    pub entries: Vec<(String, schedule::Action, String, bool)>,
}

pub struct GroupsView {
    pub groups: BTreeMap<String, Group>,
    /// power.toml's rules: target, is a group, action, cron text.
    pub rules: Vec<(String, bool, schedule::Action, String)>,
    pub holidays: Vec<(String, Vec<String>)>,
    pub timezone: String,
    /// The week shown (Monday first), its offset from this week.
    pub week: Vec<Day>,
    pub week_offset: i64,
    /// power_missed and power_failed events, newest first.
    pub problems: Vec<serde_json::Value>,
    pub can_power: bool,
    pub notice: Option<String>,
    pub error: Option<String>,
}

#[derive(serde::Deserialize, Default)]
pub struct GroupsQuery {
    #[serde(default)]
    week: i64,
    done: Option<String>,
}

/// The week `offset` weeks from the one holding `now`, Monday to Sunday in the schedule's zone.
pub fn week_of(s: &schedule::Schedules, now: jiff::Timestamp, offset: i64) -> Vec<Day> {
    use jiff::ToSpan;
    let today = now.to_zoned(s.tz.clone()).date();
    let monday = today
        .checked_sub(i64::from(today.weekday().to_monday_zero_offset()).days())
        .and_then(|d| d.checked_add((offset.clamp(-520, 520) * 7).days()))
        .unwrap_or(today);
    let start = monday.to_zoned(s.tz.clone());
    let end = monday
        .checked_add(7.days())
        .and_then(|d| d.to_zoned(s.tz.clone()));
    let mut days: Vec<Day> = (0..7)
        .filter_map(|i| monday.checked_add(i.days()).ok())
        .map(|d| Day {
            date: d.strftime("%a %Y-%m-%d").to_string(),
            entries: Vec::new(),
        })
        .collect();
    let (Ok(start), Ok(end)) = (start, end) else {
        return days;
    };
    // (start - 1 s, end - 1 s]: a rule at 00:00 on Monday belongs to this week.
    let from = start.timestamp() - jiff::SignedDuration::from_secs(1);
    let to = end.timestamp() - jiff::SignedDuration::from_secs(1);
    for o in schedule::occurrences(s, from, to) {
        let i = monday
            .until(o.at.date())
            .map(|sp| sp.get_days())
            .unwrap_or(0);
        if let Some(d) = usize::try_from(i).ok().and_then(|i| days.get_mut(i)) {
            d.entries.push((
                o.at.strftime("%H:%M").to_string(),
                o.action,
                o.target,
                o.holiday,
            ));
        }
    }
    days
}

pub async fn page(
    State(st): State<HttpState>,
    Extension(who): Extension<Who>,
    headers: HeaderMap,
    Query(q): Query<GroupsQuery>,
) -> Response {
    let cfg = st.config.clone();
    let offset = q.week.clamp(-520, 520);
    let sched = tokio::task::spawn_blocking(move || power::load_schedules(&cfg))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let mut v = GroupsView {
        groups: groups_of(&st),
        rules: Vec::new(),
        holidays: Vec::new(),
        timezone: String::new(),
        week: Vec::new(),
        week_offset: offset,
        problems: Vec::new(),
        can_power: who.role >= Role::Operator,
        notice: q
            .done
            .filter(|d| d.len() <= 40 && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|d| format!("Committed {d}")),
        error: None,
    };
    match sched {
        Ok(Some(s)) => {
            v.rules = s
                .rules()
                .map(|(t, g, a, spec)| (t.to_string(), g, a, spec.to_string()))
                .collect();
            v.holidays = s
                .exceptions()
                .iter()
                .map(|(d, t)| (d.to_string(), t.clone()))
                .collect();
            v.timezone = s.tz.iana_name().unwrap_or("local time").to_string();
            v.week = week_of(&s, jiff::Timestamp::now(), offset);
        }
        Ok(None) => {}
        Err(e) => v.error = Some(e),
    }
    match newest_events(
        &st,
        serde_json::json!({"kind": {"$in": ["power_missed", "power_failed"]}}),
        20,
    )
    .await
    {
        Ok(p) => v.problems = p,
        Err(e) => v.error = Some(format!("audit store: {e}")),
    }
    ui_page(&st, &headers, &who, "Groups and power", false, |f| {
        render(f, &v)
    })
}

pub fn render(f: &Frame, v: &GroupsView) -> Markup {
    pages::layout(
        f,
        html! {
            h1 { "Groups and power" }
            @if let Some(n) = &v.notice { p.notice role="status" { (n) } }
            @if let Some(e) = &v.error { p.error role="alert" { (e) } }
            @if v.groups.is_empty() { p.muted { "No groups: give machines a param group = \"…\" (and defaults in groups/NAME.toml)." } }
            @for (name, g) in &v.groups {
                section.group {
                    h2 id=(format!("group-{name}")) { (name) " " span.muted { "(" (g.members.len()) @if g.members.len() == 1 { " machine)" } @else { " machines)" } } }
                    div.grid {
                        span { "Machines" }
                        span { @if g.members.is_empty() { "none" } @for (i, m) in g.members.iter().enumerate() {
                            @if i > 0 { ", " } a href=(format!("/ui/machines/{m}")) { (m) } } }
                        span { "Defaults" }
                        span { @if g.defaults.is_empty() { "none" } @for (k, val) in &g.defaults { code { (k) " = " (val) } br; } }
                        span { "Schedule" }
                        span { @let mine: Vec<_> = v.rules.iter().filter(|r| r.1 && &r.0 == name).collect();
                            @if mine.is_empty() { "none" }
                            @for r in mine { (r.2.as_str()) " at " code { (r.3) } br; } }
                    }
                    @if v.can_power && !g.members.is_empty() {
                        (buttons(f, &format!("/ui/groups/{name}/power"), &format!("every machine of {name}")))
                    }
                    @if v.can_power {
                        details {
                            summary { "Change the defaults of " (name) }
                            form method="post" action=(format!("/ui/groups/{name}/defaults")) {
                                input type="hidden" name="csrf" value=(f.csrf.unwrap_or(""));
                                label for=(format!("key-{name}")) { "Set a default" }
                                input id=(format!("key-{name}")) name="param_key" placeholder="homepage" aria-label="default name";
                                " = "
                                input id=(format!("value-{name}")) name="param_value" placeholder="https://…" aria-label="default value";
                                label for=(format!("unset-{name}")) { "Remove a default" }
                                select id=(format!("unset-{name}")) name="unset" {
                                    option value="" { "—" }
                                    @for k in g.defaults.keys() { option value=(k) { (k) } }
                                }
                                br;
                                button.primary type="submit" { "Commit" }
                            }
                        }
                    }
                }
            }
            h2 { "Power schedule" }
            @if v.rules.is_empty() { p.muted { "No schedule: power.toml has no [group.NAME] or [host.NAME] with on/off." } } @else {
                p.muted { "power.toml, in " (v.timezone) ". "
                    a href=(format!("/ui/groups?week={}", v.week_offset - 1)) { "← previous week" } " · "
                    a href="/ui/groups" { "this week" } " · "
                    a href=(format!("/ui/groups?week={}", v.week_offset + 1)) { "next week →" } }
                table.calendar #calendar {
                    thead { tr { @for d in &v.week { th scope="col" { (d.date) } } } }
                    tbody { tr { @for d in &v.week { td {
                        @if d.entries.is_empty() { span.muted { "—" } }
                        @for (t, a, target, holiday) in &d.entries {
                            div class=(if *holiday { "slot holiday" } else { "slot" }) {
                                (t) " " strong { (a.as_str()) } " " (target)
                                @if *holiday { " (holiday: skipped)" }
                            }
                        }
                    } } } }
                }
                @if !v.holidays.is_empty() {
                    h3 { "Holidays" }
                    ul { @for (d, t) in &v.holidays { li { (d) ": " @if t.is_empty() { "everything" } @else { (t.join(", ")) } } } }
                }
            }
            h2 { "Missed and failed power actions" }
            @if v.problems.is_empty() { p.muted { "none recorded" } } @else {
                table { thead { tr { th scope="col" { "Time" } th scope="col" { "Kind" } th scope="col" { "Target" } th scope="col" { "Details" } } }
                    tbody { @for e in &v.problems { tr {
                        td.t { (e.get("time").and_then(|t| t.as_str()).unwrap_or("")) }
                        td { (e.get("kind").and_then(|t| t.as_str()).unwrap_or("")) }
                        td { (e.get("target").or(e.get("host")).and_then(|t| t.as_str()).unwrap_or("")) }
                        td { (e.get("reason").and_then(|t| t.as_str()).map(str::to_owned)
                                .or_else(|| e.get("missed").map(|m| format!("missed: {m}"))).unwrap_or_default()) }
                    } } }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_from_forms() {
        assert_eq!(action("on").unwrap(), Some(schedule::Action::On));
        assert_eq!(action("status").unwrap(), None);
        let e = action("explode; rm -rf /").unwrap_err();
        assert!(e.contains("on, off, reset or status"), "{e}");
    }

    #[test]
    fn the_week_starts_on_monday_and_holds_the_holiday() {
        let text = "timezone = \"UTC\"\n[group.reading-room]\non = \"30 7 * * 1-5\"\noff = \"30 20 * * 1-5\"\n\
                    [[exception]]\ndate = \"2026-12-25\"\n";
        let Ok(s) = schedule::parse(text, jiff::tz::TimeZone::UTC) else {
            println!("SKIPPED: no tz database");
            return;
        };
        // Wednesday 2026-12-23.
        let week = week_of(&s, "2026-12-23T12:00:00Z".parse().unwrap(), 0);
        assert_eq!(week.len(), 7);
        assert_eq!(week[0].date, "Mon 2026-12-21");
        assert_eq!(week[4].entries.len(), 2);
        assert!(
            week[4].entries.iter().all(|e| e.3),
            "Friday the 25th is a holiday"
        );
        assert!(week[5].entries.is_empty() && week[6].entries.is_empty());
        let next = week_of(&s, "2026-12-23T12:00:00Z".parse().unwrap(), 1);
        assert_eq!(next[0].date, "Mon 2026-12-28");
        assert!(!next[0].entries[0].3);
    }

    #[test]
    fn results_name_each_machine_and_escape_reasons() {
        let ev = vec![
            Event::PowerRequested {
                host: "kiosk1".into(),
                mac: "52:54:00:00:00:01".parse().unwrap(),
                action: "on".into(),
                method: "wol".into(),
                target: "10.0.0.255:9".into(),
            },
            Event::PowerFailed {
                host: "kiosk2".into(),
                action: "on".into(),
                reason: "<no subnet>".into(),
            },
        ];
        let h = results(&ev).into_string();
        assert_eq!(h.matches("<tr>").count(), 3, "{h}");
        assert!(
            h.contains("via 10.0.0.255:9") && h.contains("&lt;no subnet&gt;"),
            "{h}"
        );
    }
}
