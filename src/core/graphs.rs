//! The numbers behind the web UI's graphs, as pure functions: aggregation rows and boot
//! stories in, time series out (bucketed, the largest few named and the rest summed as
//! "other"), plus the axis ticks a chart needs. Drawing is the web UI's.
use serde_json::Value;
use std::collections::BTreeMap;

/// One line of a chart: (bucket start in unix ms, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(i64, f64)>,
}

/// A chart over [from_ms, to_ms), one point per bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    /// What the y axis counts, e.g. "boots per hour", "MB per hour", "seconds".
    pub unit: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub bucket_ms: i64,
    pub series: Vec<Series>,
    /// Something the reader should know (a cut, a failed query).
    pub note: Option<String>,
}

/// The start of the bucket holding `t`.
pub fn bucket(t: i64, size: i64) -> i64 {
    t - t.rem_euclid(size.max(1))
}

/// Values by series name and bucket, from aggregation rows shaped
/// `{_id: {t: BUCKET, <key>: NAME}, <value>: N}`; `scale` divides the value (bytes → MB).
pub fn from_rows(
    rows: &[Value],
    key: &str,
    value: &str,
    scale: f64,
) -> BTreeMap<String, BTreeMap<i64, f64>> {
    let mut out: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for r in rows {
        let id = &r["_id"];
        let (Some(t), Some(v)) = (id["t"].as_i64(), r[value].as_f64()) else {
            continue;
        };
        let name = match &id[key] {
            Value::String(s) => s.clone(),
            Value::Null => "(none)".into(),
            other => other.to_string(),
        };
        *out.entry(name).or_default().entry(t).or_default() += v / scale;
    }
    out
}

/// The `keep` series with the largest totals by name, the others summed as "other"; every
/// series has a point (0 when absent) in each bucket of [from, to).
pub fn top_series(
    map: BTreeMap<String, BTreeMap<i64, f64>>,
    keep: usize,
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
) -> Vec<Series> {
    let mut named: Vec<(String, BTreeMap<i64, f64>)> = map.into_iter().collect();
    named.sort_by(|a, b| {
        let total = |m: &BTreeMap<i64, f64>| m.values().sum::<f64>();
        total(&b.1)
            .partial_cmp(&total(&a.1))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.0.cmp(&b.0))
    });
    let mut other: Option<BTreeMap<i64, f64>> = None;
    if named.len() > keep {
        let mut sum = BTreeMap::new();
        for (_, m) in named.drain(keep..) {
            for (t, v) in m {
                *sum.entry(t).or_default() += v;
            }
        }
        other = Some(sum);
    }
    let buckets: Vec<i64> = (0..)
        .map(|i| bucket(from_ms, bucket_ms) + i * bucket_ms.max(1))
        .take_while(|t| *t < to_ms)
        .take(10_000)
        .collect();
    named
        .into_iter()
        .chain(other.map(|m| ("other".to_string(), m)))
        .map(|(name, m)| Series {
            name,
            points: buckets
                .iter()
                .map(|t| (*t, m.get(t).copied().unwrap_or(0.0)))
                .collect(),
        })
        .collect()
}

/// One boot for the graphs: when it started, how long it took, the machine's group.
#[derive(Debug, Clone, PartialEq)]
pub struct BootPoint {
    pub start_ms: i64,
    pub duration_ms: i64,
    pub group: String,
}

/// Boots per bucket, per group.
pub fn boots_per_bucket(
    boots: &[BootPoint],
    bucket_ms: i64,
) -> BTreeMap<String, BTreeMap<i64, f64>> {
    let mut out: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for b in boots {
        *out.entry(b.group.clone())
            .or_default()
            .entry(bucket(b.start_ms, bucket_ms))
            .or_default() += 1.0;
    }
    out
}

/// The median boot duration (seconds) per day (UTC), per group; days without boots have none
/// (drawn as 0 by [`top_series`], so the chart shows gaps as zero).
pub fn median_per_day(boots: &[BootPoint]) -> BTreeMap<String, BTreeMap<i64, f64>> {
    const DAY: i64 = 86_400_000;
    let mut all: BTreeMap<(String, i64), Vec<i64>> = BTreeMap::new();
    for b in boots {
        all.entry((b.group.clone(), bucket(b.start_ms, DAY)))
            .or_default()
            .push(b.duration_ms);
    }
    let mut out: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
    for ((g, day), mut d) in all {
        d.sort_unstable();
        let n = d.len();
        let median = if n % 2 == 1 {
            d[n / 2] as f64
        } else {
            (d[n / 2 - 1] + d[n / 2]) as f64 / 2.0
        };
        out.entry(g).or_default().insert(day, median / 1000.0);
    }
    out
}

/// Axis ticks from 0 to at least `max`: 1, 2 or 5 × a power of ten apart, about five of them.
pub fn ticks(max: f64) -> Vec<f64> {
    if !max.is_finite() || max <= 0.0 {
        return vec![0.0, 1.0];
    }
    let raw = max / 5.0;
    let pow = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * pow)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * pow);
    let n = (max / step).ceil() as usize;
    (0..=n.max(1))
        .map(|i| (i as f64 * step * 1e9).round() / 1e9)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_become_series_with_every_bucket() {
        let rows = vec![
            json!({"_id": {"t": 0, "k": "tftp_finished"}, "n": 3}),
            json!({"_id": {"t": 7_200_000, "k": "tftp_finished"}, "n": 1}),
            json!({"_id": {"t": 0, "k": "http_served"}, "n": 10}),
        ];
        let m = from_rows(&rows, "k", "n", 1.0);
        let s = top_series(m, 5, 0, 3 * 3_600_000, 3_600_000);
        assert_eq!(s[0].name, "http_served", "largest first");
        assert_eq!(s[1].points, [(0, 3.0), (3_600_000, 0.0), (7_200_000, 1.0)]);
    }

    #[test]
    fn small_series_are_summed_as_other() {
        let mut m = BTreeMap::new();
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            m.insert(name.to_string(), BTreeMap::from([(0, (i + 1) as f64)]));
        }
        let s = top_series(m, 2, 0, 1, 10);
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["d", "c", "other"]);
        assert_eq!(s[2].points, [(0, 3.0)], "a + b");
    }

    #[test]
    fn boots_and_medians_per_group() {
        let b = |start, secs: i64, g: &str| BootPoint {
            start_ms: start,
            duration_ms: secs * 1000,
            group: g.into(),
        };
        let boots = [
            b(1_000, 30, "room"),
            b(2_000, 50, "room"),
            b(3_000, 40, "room"),
            b(86_400_000 + 5, 20, "room"),
            b(4_000, 90, "lab"),
        ];
        let per_hour = boots_per_bucket(&boots, 3_600_000);
        assert_eq!(per_hour["room"][&0], 3.0);
        assert_eq!(per_hour["room"][&86_400_000], 1.0);
        let med = median_per_day(&boots);
        assert_eq!(med["room"][&0], 40.0);
        assert_eq!(med["room"][&86_400_000], 20.0);
        assert_eq!(med["lab"][&0], 90.0);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(9.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(430.0), [0.0, 100.0, 200.0, 300.0, 400.0, 500.0]);
        assert_eq!(ticks(0.0), [0.0, 1.0]);
        assert_eq!(ticks(1.0), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
    }
}
