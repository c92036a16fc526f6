//! When hosts are due: `schedule` (cron) per host, in the system time zone (pure: plans,
//! last results and now in, hosts out).
use super::*;

/// Parses a schedule: cron syntax with 5 fields (minute hour day month weekday) or 6 with
/// seconds first; nicknames like `@daily` too.
pub fn parse_schedule(s: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(s)
        .map_err(|e| {
            format!("schedule {s:?}: {e} (cron syntax, e.g. \"0 3 * * *\" for 03:00 daily)")
        })
}

/// When a host's next scheduled pull is due, in `tz`: the first occurrence after its last
/// run, or after `since` (the daemon's start) when it never ran. A due time already in the
/// past means "run now": occurrences missed while the appliance was down are made up once.
pub fn next_due(
    cron: &croner::Cron,
    last_run: Option<jiff::Timestamp>,
    since: jiff::Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Option<jiff::Zoned> {
    let from = last_run.unwrap_or(since).to_zoned(tz.clone());
    cron.find_next_occurrence(&from, false).ok()
}

/// Which hosts are due at `now`, and for each whether a run was missed (due more than a
/// minute ago). Pure: the daemon's scheduler and the tests call it with their own clock.
pub fn due_hosts(
    plans: &Plans,
    status: &[HostResult],
    since: jiff::Timestamp,
    now: jiff::Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for p in &plans.hosts {
        let Some(Ok(cron)) = p.schedule.as_deref().map(parse_schedule) else {
            continue;
        };
        let last = status
            .iter()
            .find(|r| r.host == p.name)
            .and_then(|r| jiff::Timestamp::from_second(r.time as i64).ok());
        if let Some(due) = next_due(&cron, last, since, tz) {
            if due.timestamp() <= now {
                let missed = now.as_second() - due.timestamp().as_second() > 60;
                out.push((p.name.clone(), missed));
            }
        }
    }
    out
}
