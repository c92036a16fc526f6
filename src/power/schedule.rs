//! On/off schedules ("kiosks on at 7:30, off at 20:30 on weekdays"), from `power.toml` in the
//! conf repo:
//!
//! ```toml
//! timezone = "Europe/Zagreb"          # default: the appliance's
//! wol_port = 9                        # Wake-on-LAN UDP port (default 9; some cards use 7)
//! [group.reading-room]                # machines with param group = "reading-room"
//! on = "30 7 * * 1-5"
//! off = "30 20 * * 1-5"
//! [host.kiosk9]                       # a single machine (hostname)
//! on = "0 9 * * 6"
//! [[exception]]                       # a holiday: nothing is switched that day
//! date = "2026-12-25"
//! targets = ["reading-room"]          # default: every group and host
//! ```
//!
//! [`due`] is the whole decision and is pure: given the schedules, the last time they were
//! checked and now, it says what to do. Times are cron in the given time zone, so a rule at
//! 07:30 stays at 07:30 local time across DST changes. When the appliance was down, only the
//! latest missed action per target is carried out (the state it should be in now), and the
//! decision says which occurrences were missed.
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerFile {
    pub timezone: Option<String>,
    #[serde(default)]
    pub group: BTreeMap<String, Rule>,
    #[serde(default)]
    pub host: BTreeMap<String, Rule>,
    #[serde(default)]
    pub exception: Vec<Exception>,
    /// How machines without AMT are switched off: a command over ssh.
    pub ssh: Option<SshOff>,
    /// Credentials for machines with an `amt` param (Intel AMT over WS-Management).
    pub amt: Option<super::amt::AmtConfig>,
    /// The UDP port magic packets go to (default 9, discard; some cards listen on 7).
    pub wol_port: Option<u16>,
}

/// `[ssh]` in power.toml: the command that powers a machine off, run over ssh.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshOff {
    pub user: Option<String>,
    pub key: Option<std::path::PathBuf>,
    pub port: Option<u16>,
    /// Default "systemctl poweroff || poweroff".
    pub command: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub on: Option<String>,
    pub off: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    /// YYYY-MM-DD, local to the schedule's time zone.
    pub date: String,
    #[serde(default)]
    pub targets: Vec<String>,
}

/// Switch on or off (schedules), or reset (by hand, AMT only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    On,
    Off,
    Reset,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::On => "on",
            Action::Off => "off",
            Action::Reset => "reset",
        }
    }
}

/// One thing to do now.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// A group name or a hostname, as in power.toml.
    pub target: String,
    pub is_group: bool,
    pub action: Action,
    /// When it was scheduled (local time, RFC 3339 with offset).
    pub at: String,
    /// Earlier occurrences since the last check that were not carried out (appliance down),
    /// as "on 2026-11-26T07:30:00+01:00".
    pub missed: Vec<String>,
}

/// A parsed schedule, ready for [`due`].
pub struct Schedules {
    pub tz: jiff::tz::TimeZone,
    pub ssh: Option<SshOff>,
    pub amt: Option<super::amt::AmtConfig>,
    pub wol_port: Option<u16>,
    /// (target, is a group, action, cron text, cron).
    rules: Vec<(String, bool, Action, String, croner::Cron)>,
    exceptions: Vec<(jiff::civil::Date, Vec<String>)>,
}

impl Schedules {
    /// The rules as written: (target, is a group, action, cron text).
    pub fn rules(&self) -> impl Iterator<Item = (&str, bool, Action, &str)> {
        self.rules
            .iter()
            .map(|(t, g, a, spec, _)| (t.as_str(), *g, *a, spec.as_str()))
    }
    /// The `[[exception]]` dates and the targets each applies to (empty: all).
    pub fn exceptions(&self) -> &[(jiff::civil::Date, Vec<String>)] {
        &self.exceptions
    }
}

/// Parses power.toml text; errors name the key and say what is expected.
pub fn parse(text: &str, default_tz: jiff::tz::TimeZone) -> Result<Schedules, String> {
    let f: PowerFile =
        crate::tomlfile::parse(std::path::Path::new("power.toml"), text).map_err(|e| {
            match e.line {
                Some(l) => format!("line {l}: {}", e.message),
                None => e.message,
            }
        })?;
    let tz = match &f.timezone {
        Some(name) => jiff::tz::TimeZone::get(name).map_err(|e| {
            format!("timezone = {name:?}: {e} (a tz database name like \"Europe/Zagreb\")")
        })?,
        None => default_tz,
    };
    let mut rules = Vec::new();
    for (is_group, table) in [(true, &f.group), (false, &f.host)] {
        for (name, r) in table {
            for (action, spec) in [(Action::On, &r.on), (Action::Off, &r.off)] {
                if let Some(spec) = spec {
                    let cron = crate::backup::parse_schedule(spec).map_err(|e| {
                        format!(
                            "[{}.{name}] {}: {e}",
                            if is_group { "group" } else { "host" },
                            action.as_str()
                        )
                    })?;
                    rules.push((name.clone(), is_group, action, spec.clone(), cron));
                }
            }
        }
    }
    let mut exceptions = Vec::new();
    for e in &f.exception {
        let d: jiff::civil::Date = e
            .date
            .parse()
            .map_err(|err| format!("[[exception]] date = {:?}: {err} (YYYY-MM-DD)", e.date))?;
        exceptions.push((d, e.targets.clone()));
    }
    Ok(Schedules {
        tz,
        ssh: f.ssh.clone(),
        amt: f.amt.clone(),
        wol_port: f.wol_port,
        rules,
        exceptions,
    })
}

/// What to do at `now`, given that everything up to `last_check` was already done. For each
/// target and action, the latest occurrence in (last_check, now] counts; if a target has both
/// an on and an off due, the later one wins (and the other is reported as missed). Occurrences
/// on an exception date for that target are skipped.
pub fn due(s: &Schedules, last_check: jiff::Timestamp, now: jiff::Timestamp) -> Vec<Due> {
    // Bound the catch-up search: at most 400 days back.
    let floor = now
        .checked_sub(jiff::SignedDuration::from_hours(24 * 400))
        .unwrap_or(last_check);
    let mut per_target: BTreeMap<(String, bool), Vec<(jiff::Zoned, Action)>> = BTreeMap::new();
    for o in occurrences(s, last_check.max(floor), now) {
        if !o.holiday {
            per_target
                .entry((o.target, o.is_group))
                .or_default()
                .push((o.at, o.action));
        }
    }
    let mut out = Vec::new();
    for ((target, is_group), mut occ) in per_target {
        occ.sort_by_key(|o| o.0.timestamp());
        let (at, action) = occ.pop().expect("non-empty");
        out.push(Due {
            target,
            is_group,
            action,
            at: at.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            missed: occ
                .iter()
                .map(|(z, a)| format!("{} {}", a.as_str(), z.strftime("%Y-%m-%dT%H:%M:%S%:z")))
                .collect(),
        });
    }
    out
}

/// One scheduled action at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Occurrence {
    /// A group name or a hostname, as in power.toml.
    pub target: String,
    pub is_group: bool,
    pub action: Action,
    /// Local time in the schedule's time zone.
    pub at: jiff::Zoned,
    /// On an `[[exception]]` date for this target: nothing is switched.
    pub holiday: bool,
}

/// Every rule's occurrences in (from, to], holidays included and marked, by time then target.
/// Bounded: at most 600 000 per rule (one a minute over 400 days).
pub fn occurrences(s: &Schedules, from: jiff::Timestamp, to: jiff::Timestamp) -> Vec<Occurrence> {
    let start = from.to_zoned(s.tz.clone());
    let mut out = Vec::new();
    for (name, is_group, action, _, cron) in &s.rules {
        let mut t = start.clone();
        for _ in 0..600_000 {
            let Ok(next) = cron.find_next_occurrence(&t, false) else {
                break;
            };
            if next.timestamp() > to {
                break;
            }
            let holiday = s.exceptions.iter().any(|(d, targets)| {
                *d == next.date() && (targets.is_empty() || targets.contains(name))
            });
            out.push(Occurrence {
                target: name.clone(),
                is_group: *is_group,
                action: *action,
                at: next.clone(),
                holiday,
            });
            t = next;
        }
    }
    out.sort_by(|a, b| (a.at.timestamp(), &a.target).cmp(&(b.at.timestamp(), &b.target)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIOSKS: &str = "timezone = \"Europe/Zagreb\"\n[group.reading-room]\non = \"30 7 * * 1-5\"\noff = \"30 20 * * 1-5\"\n\
                          [[exception]]\ndate = \"2026-12-25\"\n";

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn sched(text: &str) -> Option<Schedules> {
        match parse(text, jiff::tz::TimeZone::UTC) {
            Ok(s) => Some(s),
            Err(e) if e.contains("timezone") => {
                println!("SKIPPED: power schedule test: no tz database (apt-get install tzdata)");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_week_of_occurrences_marks_the_holiday() {
        let Some(s) = sched(KIOSKS) else { return };
        // Monday 2026-12-21 00:00 to Sunday 2026-12-27 24:00, CET.
        let week = occurrences(&s, at("2026-12-20T23:00:00Z"), at("2026-12-27T23:00:00Z"));
        assert_eq!(week.len(), 10, "on and off, Monday to Friday: {week:?}");
        let holidays: Vec<String> = week
            .iter()
            .filter(|o| o.holiday)
            .map(|o| format!("{} {}", o.action.as_str(), o.at.strftime("%a %H:%M")))
            .collect();
        assert_eq!(holidays, ["on Fri 07:30", "off Fri 20:30"]);
        assert!(week.windows(2).all(|w| w[0].at <= w[1].at), "in time order");
        assert_eq!(
            week[0].at.strftime("%Y-%m-%d %H:%M %Z").to_string(),
            "2026-12-21 07:30 CET"
        );
    }

    #[test]
    fn weekday_rules_in_local_time() {
        let Some(s) = sched(KIOSKS) else { return };
        // Thursday 2026-11-26, CET (UTC+1): 07:30 local is 06:30 UTC.
        assert!(due(&s, at("2026-11-26T06:00:00Z"), at("2026-11-26T06:29:59Z")).is_empty());
        let d = due(&s, at("2026-11-26T06:29:00Z"), at("2026-11-26T06:30:20Z"));
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].target.as_str(), d[0].action),
            ("reading-room", Action::On)
        );
        assert_eq!(d[0].at, "2026-11-26T07:30:00+01:00");
        assert!(d[0].missed.is_empty());
        let off = due(&s, at("2026-11-26T19:29:00Z"), at("2026-11-26T19:31:00Z"));
        assert_eq!(off[0].action, Action::Off);
        // Saturday: nothing.
        assert!(due(&s, at("2026-11-28T00:00:00Z"), at("2026-11-28T23:59:00Z")).is_empty());
    }

    #[test]
    fn dst_change_keeps_local_time() {
        let Some(s) = sched(KIOSKS) else { return };
        // Monday 2026-03-30, after the spring change (CEST, UTC+2): 07:30 local = 05:30 UTC.
        let d = due(&s, at("2026-03-30T05:00:00Z"), at("2026-03-30T05:31:00Z"));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].at, "2026-03-30T07:30:00+02:00");
        // Friday before, still CET: 07:30 local = 06:30 UTC; at 05:31 UTC nothing yet.
        assert!(due(&s, at("2026-03-27T05:00:00Z"), at("2026-03-27T05:31:00Z")).is_empty());
    }

    #[test]
    fn missed_runs_do_the_latest_and_say_what_was_missed() {
        let Some(s) = sched(KIOSKS) else { return };
        // Down from Thursday 06:00 to 10:00 UTC: the 07:30 on was missed → do it now, once.
        let d = due(&s, at("2026-11-26T06:00:00Z"), at("2026-11-26T10:00:00Z"));
        assert_eq!((d[0].action, d[0].missed.len()), (Action::On, 0));
        // Down from Thursday 06:00 to Friday 10:00: on, off, on → the Friday on, two missed.
        let d = due(&s, at("2026-11-26T06:00:00Z"), at("2026-11-27T10:00:00Z"));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].action, Action::On);
        assert_eq!(d[0].at, "2026-11-27T07:30:00+01:00");
        assert_eq!(
            d[0].missed,
            [
                "on 2026-11-26T07:30:00+01:00",
                "off 2026-11-26T20:30:00+01:00"
            ]
        );
    }

    #[test]
    fn holidays_are_skipped() {
        let Some(s) = sched(KIOSKS) else { return };
        // Friday 2026-12-25 is an exception for everyone.
        assert!(due(&s, at("2026-12-25T00:00:00Z"), at("2026-12-25T23:00:00Z")).is_empty());
        let only_office = KIOSKS.replace(
            "date = \"2026-12-25\"\n",
            "date = \"2026-12-25\"\ntargets = [\"office\"]\n",
        );
        let s2 = sched(&only_office).unwrap();
        assert_eq!(
            due(&s2, at("2026-12-25T00:00:00Z"), at("2026-12-25T23:00:00Z")).len(),
            1
        );
    }

    #[test]
    fn bad_input_is_named() {
        let e = parse("[group.x]\non = \"at dawn\"\n", jiff::tz::TimeZone::UTC)
            .err()
            .unwrap();
        assert!(
            e.contains("[group.x] on") && e.contains("cron syntax"),
            "{e}"
        );
        let e = parse("timezone = \"Mars/Olympus\"\n", jiff::tz::TimeZone::UTC)
            .err()
            .unwrap();
        assert!(e.contains("Mars/Olympus"), "{e}");
        let e = parse(
            "[[exception]]\ndate = \"25.12.2026\"\n",
            jiff::tz::TimeZone::UTC,
        )
        .err()
        .unwrap();
        assert!(e.contains("YYYY-MM-DD"), "{e}");
        let e = parse("[group.x]\nonn = \"0 7 * * *\"\n", jiff::tz::TimeZone::UTC)
            .err()
            .unwrap();
        assert!(e.starts_with("line 2"), "{e}");
    }
}
