//! Issue 15: aggregations answered from the rollups equal the same aggregations computed from
//! the events (the store with its rollups turned off), over random event streams written in
//! random batches (replays included) and random time ranges — whole hours, partial hours,
//! open ends. Floats may differ in the last bits only (the order of additions).
use proptest::prelude::*;
use pxelator::audit::sqlite::SqliteStore;
use pxelator::audit::{record_id, AuditStore, Record};
use serde_json::{json, Value};
use std::borrow::Cow;

const T0: i64 = 1_790_000_000_000 - 1_790_000_000_000 % 3_600_000;

#[derive(Debug, Clone)]
struct Ev {
    at: i64,
    kind: u8,
    who: Option<u8>,
    rtt: Option<i32>,
    real: bool,
    bytes: Option<u16>,
}

fn ev() -> impl Strategy<Value = Ev> {
    (
        0i64..(5 * 3_600_000),
        0u8..2,
        proptest::option::of(0u8..4),
        proptest::option::of(-50i32..5000),
        any::<bool>(),
        proptest::option::of(any::<u16>()),
    )
        .prop_map(|(at, kind, who, rtt, real, bytes)| Ev {
            at,
            kind,
            who,
            rtt,
            real,
            bytes,
        })
}

fn record(i: usize, e: &Ev) -> Record {
    let time_ms = T0 + e.at;
    let kind = ["ping", "tftp_finished"][e.kind as usize];
    let mut doc = json!({"kind": kind});
    if let Some(r) = e.rtt {
        doc["rtt"] = if e.real {
            json!(f64::from(r) / 8.0)
        } else {
            json!(r)
        };
    }
    if let Some(b) = e.bytes {
        doc["bytes"] = json!(b);
    }
    let ip = e.who.map(|w| format!("10.0.0.{w}"));
    if let Some(ip) = &ip {
        doc["ip"] = json!(ip);
    }
    Record {
        id: record_id(time_ms, i as u64),
        time_ms,
        source: Cow::Borrowed("test"),
        kind: Cow::Borrowed(kind),
        mac: e
            .who
            .filter(|w| w % 2 == 0)
            .map(|w| format!("52:54:00:00:00:0{w}")),
        ip,
        host: None,
        doc,
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
            } else {
                x == y
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|d| d["_id"].to_string());
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn rollup_answers_equal_event_answers(
        events in proptest::collection::vec(ev(), 0..300),
        cuts in proptest::collection::vec(0usize..300, 0..6),
        replay in 0usize..50,
        restart_at in 0usize..8,
        crash in any::<bool>(),
        ranges in proptest::collection::vec((0i64..6, 0i64..3_600_000, 0i64..6, 0i64..3_600_000, any::<bool>()), 4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("a.db"), &[]).unwrap();
        let records: Vec<Record> = events.iter().enumerate().map(|(i, e)| record(i, e)).collect();
        // Written in batches cut at random points, then the first few again (a spool replay).
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c < records.len()).collect();
        cuts.push(0);
        cuts.push(records.len());
        cuts.sort_unstable();
        for (i, w) in cuts.windows(2).enumerate() {
            store.insert(&records[w[0]..w[1]]).unwrap();
            // A restart in the middle.
            if i == restart_at {
                if crash {
                    // Killed: the open hour's rows in memory are lost, and re-read.
                    std::mem::forget(store);
                } else {
                    // Closed: they are written first.
                    drop(store);
                }
                store = SqliteStore::open(&dir.path().join("a.db"), &[]).unwrap();
            }
        }
        store.insert(&records[..replay.min(records.len())]).unwrap();

        for (ha, ma, hb, mb, whole_hours) in ranges {
            let (mut a, mut b) = (T0 + ha * 3_600_000 + ma, T0 + hb * 3_600_000 + mb);
            if whole_hours {
                a = T0 + ha * 3_600_000;
                b = T0 + hb * 3_600_000;
            }
            for group in [json!(null), json!("$ip"), json!("$mac"), json!("$host")] {
                for kind in ["ping", "tftp_finished"] {
                    let p = json!([
                        {"$match": {"kind": kind, "time": {"$gte": a.min(b), "$lt": b.max(a)}}},
                        {"$group": {"_id": group, "n": {"$count": {}}, "c": {"$sum": 1},
                            "avg": {"$avg": "$rtt"}, "sum": {"$sum": "$rtt"},
                            "min": {"$min": "$rtt"}, "max": {"$max": "$rtt"},
                            "bytes": {"$sum": "$bytes"}}}
                    ]);
                    let plan = store.explain_aggregate(&p).unwrap();
                    prop_assert!(plan.iter().any(|l| l.starts_with("ROLLUPS") || l.starts_with("EVENTS")), "{plan:?}");
                    let from_rollups = sorted(store.aggregate(&p).unwrap());
                    store.set_rollups(false);
                    let from_events = sorted(store.aggregate(&p).unwrap());
                    store.set_rollups(true);
                    prop_assert_eq!(from_rollups.len(), from_events.len(), "{} vs {}", Value::from(from_rollups.clone()), Value::from(from_events.clone()));
                    for (x, y) in from_rollups.iter().zip(&from_events) {
                        prop_assert!(same(x, y), "{p}\nrollups {x}\nevents  {y}\nplan {plan:?}");
                    }
                }
            }
            // Open-ended: every event of a kind.
            let all = json!([{"$match": {"kind": "ping"}}, {"$group": {"_id": "$ip", "avg": {"$avg": "$rtt"}, "n": {"$count": {}}}}]);
            let x = sorted(store.aggregate(&all).unwrap());
            store.set_rollups(false);
            let y = sorted(store.aggregate(&all).unwrap());
            store.set_rollups(true);
            prop_assert!(same(&Value::from(x.clone()), &Value::from(y.clone())) || x.iter().zip(&y).all(|(a, b)| same(a, b)) && x.len() == y.len(), "{x:?} vs {y:?}");
        }
    }
}

/// `n` pings one minute apart from T0; `who_rtt(i)` gives the i-th one's host and rtt.
fn pings_a_minute(n: usize, who_rtt: impl Fn(usize) -> (u8, i32)) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let (who, rtt) = who_rtt(i);
            record(
                i,
                &Ev {
                    at: i as i64 * 60_000,
                    kind: 0,
                    who: Some(who),
                    rtt: Some(rtt),
                    real: false,
                    bytes: None,
                },
            )
        })
        .collect()
}

#[test]
fn whole_hours_come_from_the_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("a.db"), &[]).unwrap();
    // 150 minutes: hours 0 and 1 are over (written), hour 2 is still being written.
    let evs = pings_a_minute(150, |i| ((i % 3) as u8, i as i32));
    store.insert(&evs).unwrap();
    let day = json!([{"$match": {"kind": "ping", "time": {"$gte": T0, "$lt": T0 + 86_400_000}}},
        {"$group": {"_id": "$ip", "avg": {"$avg": "$rtt"}}}]);
    let plan = store.explain_aggregate(&day).unwrap();
    assert_eq!(plan.len(), 2, "{plan:?}");
    assert!(
        plan[0].starts_with("ROLLUPS hourly, kind = \"ping\", by ip"),
        "{plan:?}"
    );
    assert!(plan[0].ends_with("T16:00:00Z"), "two whole hours: {plan:?}");
    assert!(plan[1].starts_with("EVENTS"), "the open hour: {plan:?}");
    let partial = json!([{"$match": {"kind": "ping", "time": {"$gte": T0 + 1_800_000, "$lt": T0 + 86_400_000}}},
        {"$group": {"_id": null, "n": {"$count": {}}}}]);
    let plan = store.explain_aggregate(&partial).unwrap();
    assert!(
        plan[0].starts_with("ROLLUPS")
            && plan[1].starts_with("EVENTS")
            && plan[2].starts_with("EVENTS"),
        "{plan:?}"
    );
    assert_eq!(store.aggregate(&partial).unwrap()[0]["n"], json!(120));
    let rows = store.aggregate(&day).unwrap();
    assert_eq!(rows.len(), 3);
    // A reader (the CLI, the API) sees the same plan from the store's meta.
    let reader = SqliteStore::open_read_only(&dir.path().join("a.db")).unwrap();
    assert_eq!(
        reader.explain_aggregate(&partial).unwrap(),
        store.explain_aggregate(&partial).unwrap()
    );
    assert_eq!(reader.aggregate(&partial).unwrap()[0]["n"], json!(120));
}

/// Retention: pruning events leaves the rollups (trends outlive their events); pruning
/// rollups is separate.
#[test]
fn rollups_outlive_their_events_until_their_own_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("a.db"), &[]).unwrap();
    let evs = pings_a_minute(240, |_| (1, 2));
    store.insert(&evs).unwrap();
    let first_hour = json!([{"$match": {"kind": "ping", "time": {"$gte": T0, "$lt": T0 + 3_600_000}}},
        {"$group": {"_id": null, "n": {"$count": {}}, "s": {"$sum": "$rtt"}}}]);
    assert_eq!(store.aggregate(&first_hour).unwrap()[0]["n"], json!(60));
    // The events of the first two hours go (the audit's max_age_days)…
    assert_eq!(store.prune(T0 + 2 * 3_600_000).unwrap(), 120);
    store.set_rollups(false);
    assert_eq!(store.aggregate(&first_hour).unwrap()[0]["n"], json!(0));
    store.set_rollups(true);
    // …their hour's rollup stays and still answers,
    let r = store.aggregate(&first_hour).unwrap();
    assert_eq!(
        (r[0]["n"].clone(), r[0]["s"].clone()),
        (json!(60), json!(120))
    );
    // until the rollups' own retention (rollup_max_age_days) takes it.
    assert!(store.prune_rollups(T0 + 3_600_000).unwrap() > 0);
    assert_eq!(store.aggregate(&first_hour).unwrap()[0]["n"], json!(0));
}
