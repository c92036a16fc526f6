//! The wall clock and its text forms: the one place the daemon reads the time (decisions get
//! `now` passed in). Shared by services, audit and the CLI, so neither imports the other.

/// Unix seconds now.
pub fn unix_now() -> u64 {
    (unix_now_ms() / 1000).max(0) as u64
}

/// Unix milliseconds now.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC timestamp (seconds) without pulling in a date crate.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// RFC 3339 UTC timestamp with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let base = rfc3339(secs.max(0) as u64);
    format!("{}.{:03}Z", base.trim_end_matches('Z'), ms.rem_euclid(1000))
}

/// Unix milliseconds of a time as people write it in a query: RFC 3339 (`2026-11-30T08:00:00Z`,
/// with an offset or fractions), or UTC `2026-11-30` (midnight), `2026-11-30 08:00[:00]`.
pub fn parse_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Some(t.as_millisecond());
    }
    let civil = s.replacen(' ', "T", 1);
    if let Ok(d) = civil.parse::<jiff::civil::DateTime>() {
        return d
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp().as_millisecond());
    }
    s.parse::<jiff::civil::Date>()
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_times_parse_to_milliseconds() {
        use super::parse_ms;
        assert_eq!(parse_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_ms("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_ms("1970-01-01 01:00"), Some(3_600_000));
        assert_eq!(parse_ms("1970-01-01T02:00:00+01:00"), Some(3_600_000));
        assert_eq!(parse_ms("yesterday"), None);
    }

    #[test]
    fn rfc3339_ms_keeps_milliseconds() {
        assert_eq!(super::rfc3339_ms(1_500), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951782400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1795694645), "2026-11-26T12:04:05Z");
    }
}
