//! Audit store benchmark (issue 5): synthetic events with a realistic protocol mix over ~500
//! hosts, written through the same `SqliteStore::insert` the daemon uses, then the queries the
//! original system was judged by. Run: `scripts/bench-audit [EVENTS]` (default 10 000 000).
use pxelator::audit::sqlite::SqliteStore;
use pxelator::audit::{record_id, AuditStore, Record};
use serde_json::json;
use std::borrow::Cow;
use std::time::Instant;

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

const HOSTS: u64 = 500;

fn record(i: u64, rng: &mut Rng, t0: i64) -> Record {
    let h = rng.below(HOSTS);
    let mac = format!("52:54:00:00:{:02x}:{:02x}", h / 256, h % 256);
    let ip = format!("10.77.{}.{}", h / 250, h % 250 + 2);
    let host = format!("kiosk{h}");
    let time_ms = t0 + i as i64 * 10;
    // Mix: 40 % ping, 25 % DHCP, 15 % TFTP, 15 % HTTP, 5 % syslog.
    let (source, kind, doc) = match rng.below(100) {
        0..=39 => (
            "icmp",
            "ping",
            json!({"kind": "ping", "ip": ip, "rtt": (rng.below(2000) as f64) / 10.0}),
        ),
        40..=64 => (
            "dhcp",
            "dhcp_reply",
            json!({"kind": "dhcp_reply", "reply": if rng.below(2) == 0 { "offer" } else { "ack" }, "mac": mac, "ip": ip, "xid": rng.next() as u32, "iface": "br0", "host": host}),
        ),
        65..=79 => (
            "tftp",
            "tftp_finished",
            json!({"kind": "tftp_finished", "peer": format!("{ip}:{}", 1024 + rng.below(60000)), "file": "undionly.kpxe", "bytes": 70_000 + rng.below(1000), "duration_ms": rng.below(500)}),
        ),
        80..=94 => (
            "http",
            "http_served",
            json!({"kind": "http_served", "peer": format!("{ip}:{}", 1024 + rng.below(60000)), "file": "/files/k/vmlinuz", "status": 200, "bytes": 8_247_232}),
        ),
        _ => (
            "syslog",
            "syslog",
            json!({"kind": "syslog", "host": host, "message": "kernel: eth0 link up"}),
        ),
    };
    Record {
        id: record_id(time_ms, i),
        time_ms,
        source: Cow::Borrowed(source),
        kind: Cow::Borrowed(kind),
        mac: Some(mac),
        ip: Some(ip),
        host: Some(host),
        doc,
    }
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let dir = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "/var/tmp/pxelator-audit-bench".into());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = std::path::Path::new(&dir).join("audit.sqlite");
    let mut store = SqliteStore::open(&path, &[]).expect("open store");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let t0 = 1_790_000_000_000i64;
    // Under load the store thread coalesces queued batches up to 50 000 events per transaction.
    let batch = 50_000u64;
    // Only the store's work is timed: making the synthetic events is the daemon's
    // protocol tasks' work, not the store's (it is timed apart, for comparison).
    let mut ingest = std::time::Duration::ZERO;
    let mut generate = std::time::Duration::ZERO;
    let mut rows = Vec::with_capacity(batch as usize);
    let mut i = 0;
    while i < n {
        rows.clear();
        let g = Instant::now();
        for _ in 0..batch.min(n - i) {
            rows.push(record(i, &mut rng, t0));
            i += 1;
        }
        generate += g.elapsed();
        let s = Instant::now();
        store.insert(&rows).expect("insert");
        ingest += s.elapsed();
    }
    let size: u64 = ["audit.sqlite", "audit.sqlite-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(std::path::Path::new(&dir).join(f)).ok())
        .map(|m| m.len())
        .sum();
    println!("events: {n}");
    println!(
        "making the synthetic events (not part of ingest): {:.1} s, {:.0} events/s",
        generate.as_secs_f64(),
        n as f64 / generate.as_secs_f64()
    );
    println!(
        "ingest: {:.1} s, {:.0} events/s (transactions of {batch}, WAL, synchronous=NORMAL, postings for mac, ip, host, kind)",
        ingest.as_secs_f64(),
        n as f64 / ingest.as_secs_f64()
    );
    println!(
        "size on disk: {:.1} MB, {:.1} MB per million events",
        size as f64 / 1e6,
        size as f64 / 1e6 / (n as f64 / 1e6)
    );

    let mut lat = Vec::new();
    for _ in 0..1000 {
        let h = rng.below(HOSTS);
        let who = format!("52:54:00:00:{:02x}:{:02x}", h / 256, h % 256);
        let s = Instant::now();
        let doc = store.last_seen(&who).expect("last_seen");
        lat.push(s.elapsed().as_secs_f64() * 1e3);
        assert!(doc.is_some());
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "last-seen <mac> over 1000 random hosts: p50 {:.3} ms, p99 {:.3} ms",
        lat[500], lat[990]
    );

    // Every event of one host, in time order (what `audit find '{"mac": …}'` does).
    let mut lat = Vec::new();
    let mut found = 0;
    for _ in 0..20 {
        let h = rng.below(HOSTS);
        let mac = format!("52:54:00:00:{:02x}:{:02x}", h / 256, h % 256);
        let s = Instant::now();
        found = store
            .find(&json!({ "mac": mac }), Some(&json!({"time": 1})), None)
            .expect("find")
            .len();
        lat.push(s.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "find every event of one mac ({found} events), 20 random hosts: p50 {:.1} ms (plan: {})",
        lat[10],
        store
            .explain(
                &json!({"mac": "52:54:00:00:00:01"}),
                Some(&json!({"time": 1}))
            )
            .expect("explain")
            .join("; ")
    );

    let avg_pipeline = json!([{"$match": {"kind": "ping"}}, {"$group": {"_id": "$ip", "avg_rtt": {"$avg": "$rtt"}, "n": {"$count": {}}}}]);
    // Issue 15: the rollups answer it (best of 3), then the events alone (rollups off).
    let mut best = f64::MAX;
    let mut out = Vec::new();
    for _ in 0..3 {
        let s = Instant::now();
        out = store.aggregate(&avg_pipeline).expect("aggregate");
        best = best.min(s.elapsed().as_secs_f64());
    }
    println!(
        "avg(rtt) grouped by ip over all ping events, from the rollups: {best:.3} s best of 3 ({} groups; plan: {})",
        out.len(),
        store
            .explain_aggregate(&avg_pipeline)
            .expect("explain")
            .join("; ")
    );
    // One day (whole hours) and one day starting mid-hour (partial hours from the events).
    let day0 = t0 - t0 % 3_600_000 + 3_600_000;
    for (what, from) in [
        ("one day", day0),
        ("one day from mid-hour", day0 + 1_800_000),
    ] {
        let p = json!([{"$match": {"kind": "ping", "time": {"$gte": from, "$lt": from + 86_400_000}}},
            {"$group": {"_id": "$ip", "avg_rtt": {"$avg": "$rtt"}, "n": {"$count": {}}}}]);
        let mut best = f64::MAX;
        for _ in 0..3 {
            let s = Instant::now();
            store.aggregate(&p).expect("aggregate");
            best = best.min(s.elapsed().as_secs_f64());
        }
        println!(
            "avg(rtt) grouped by ip over {what}, from the rollups: {:.1} ms best of 3 (plan: {})",
            best * 1e3,
            store.explain_aggregate(&p).expect("explain").join("; ")
        );
    }
    store.set_rollups(false);
    let s = Instant::now();
    let from_events = store.aggregate(&avg_pipeline).expect("aggregate");
    println!(
        "the same over all pings from the events alone (rollups off), no user index: {:.2} s (plan: {})",
        s.elapsed().as_secs_f64(),
        store
            .explain_aggregate(&avg_pipeline)
            .expect("explain")
            .join("; ")
    );
    let key = |v: &serde_json::Value| v["_id"].to_string();
    let mut a = out.clone();
    let mut b = from_events;
    a.sort_by_key(key);
    b.sort_by_key(key);
    let close = a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| {
            x["n"] == y["n"]
                && (x["avg_rtt"].as_f64().unwrap_or(0.0) - y["avg_rtt"].as_f64().unwrap_or(0.0))
                    .abs()
                    < 1e-9
        });
    println!("rollup answer equals the events' answer: {close}");
    assert!(close);
    // The user-defined index an admin adds for this question (audit.indexes = ["kind,ip,rtt"]).
    drop(store);
    let s = Instant::now();
    let mut store = SqliteStore::open(&path, &["kind,ip,rtt".into()]).expect("reopen with index");
    store.set_rollups(false);
    println!(
        "creating the user index kind,ip,rtt on {n} events: {:.1} s",
        s.elapsed().as_secs_f64()
    );
    let mut best = f64::MAX;
    for _ in 0..3 {
        let s = Instant::now();
        let again = store.aggregate(&avg_pipeline).expect("aggregate");
        best = best.min(s.elapsed().as_secs_f64());
        assert_eq!(again.len(), out.len());
    }
    println!(
        "avg(rtt) grouped by ip with audit.indexes = [\"kind,ip,rtt\"]: {best:.2} s best of 3 (plan: {})",
        store.explain_aggregate(&avg_pipeline).expect("explain").join("; ")
    );
    drop(store);

    // CouchDB import: a dump shaped like the original's, 1/10 of the events (at least 10 000).
    let m = (n / 10).max(10_000);
    let dump = std::path::Path::new(&dir).join("all_docs.json");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&dump).expect("dump"));
        write!(w, "{{\"total_rows\": {m}, \"offset\": 0, \"rows\": [").unwrap();
        for i in 0..m {
            let r = record(i, &mut rng, t0);
            let secs = r.time_ms as f64 / 1000.0;
            let mut doc = r.doc.clone();
            doc["_id"] = json!(format!(
                "{}.{}.{i}",
                pxelator::clock::rfc3339(secs as u64),
                r.source
            ));
            doc["_rev"] = json!("1-abc");
            doc["package"] = json!({"time": secs, "name": r.source, "caller": r.kind, "line": 1});
            if i > 0 {
                w.write_all(b",").unwrap();
            }
            write!(
                w,
                "{}",
                json!({"id": doc["_id"], "key": doc["_id"], "value": {"rev": "1-abc"}, "doc": doc})
            )
            .unwrap();
        }
        w.write_all(b"]}").unwrap();
    }
    let size = std::fs::metadata(&dump).map(|m| m.len()).unwrap_or(0);
    let mut fresh = SqliteStore::open(&std::path::Path::new(&dir).join("imported.sqlite"), &[])
        .expect("import store");
    let s = Instant::now();
    let rep = pxelator::audit::migrate::import_couchdb(&dump, &mut fresh).expect("import");
    let secs = s.elapsed().as_secs_f64();
    println!(
        "CouchDB dump import: {} documents ({:.0} MB of JSON) in {secs:.1} s, {:.0} documents/s, {} rejected",
        rep.imported,
        size as f64 / 1e6,
        rep.imported as f64 / secs,
        rep.rejected
    );
}
