//! Why the embedded audit store ingests ~50 000 events/s and not 200 000 (issue 5): the same
//! row shape as `audit_bench` written straight through rusqlite with variants of the schema.
//! Run: `cargo run --release --example sqlite_ingest_ceiling -- VARIANT [ROWS]`, VARIANT one of
//! `plain` (no secondary index), `indexed` (the store's 4 text indexes), `indexed-int` (mac and
//! ip as integers), `bulk` (insert plain, then CREATE INDEX ×4), `sorted-tables` (each index a
//! WITHOUT ROWID table filled per batch in key order). `PAGE=16384` sets the page size.
use rusqlite::{params, Connection, Transaction};
use std::time::Instant;

const BATCH: u64 = 50_000;
const FIELDS: [&str; 4] = ["mac", "ip", "host", "kind"];
const KINDS: [&str; 5] = [
    "ping",
    "dhcp_reply",
    "tftp_finished",
    "http_served",
    "syslog",
];
const DOC: &str =
    r#"{"reply":"ack","xid":123456789,"iface":"br0","peer":"10.77.1.3:40000","bytes":70000}"#;

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

struct Row {
    id: i64,
    time_ms: i64,
    kind: &'static str,
    mac: String,
    ip: String,
    host: String,
}

fn row(i: u64, rng: &mut Rng) -> Row {
    let h = rng.next() % 500;
    let time_ms = 1_780_000_000_000 + i as i64 * 10;
    Row {
        id: (time_ms << 20) | i as i64,
        time_ms,
        kind: KINDS[(rng.next() % 5) as usize],
        mac: format!("52:54:00:00:{:02x}:{:02x}", h / 256, h % 256),
        ip: format!("10.77.{}.{}", h / 250, h % 250 + 2),
        host: format!("kiosk{h}"),
    }
}

fn insert(tx: &Transaction, r: &Row, int_keys: bool) -> rusqlite::Result<usize> {
    let mut st = tx.prepare_cached("INSERT INTO events VALUES (?1,?2,'dhcp',?3,?4,?5,?6,?7)")?;
    if int_keys {
        let mac = i64::from_str_radix(&r.mac.replace(':', ""), 16).unwrap_or(0);
        let ip = r.ip.parse::<std::net::Ipv4Addr>().map_or(0, u32::from);
        st.execute(params![r.id, r.time_ms, r.kind, mac, ip, r.host, DOC])
    } else {
        st.execute(params![r.id, r.time_ms, r.kind, r.mac, r.ip, r.host, DOC])
    }
}

/// Each "index" as a WITHOUT ROWID table, the batch's entries inserted in key order.
fn sorted_tables(tx: &Transaction, rows: &[Row]) -> rusqlite::Result<()> {
    for (j, field) in FIELDS.iter().enumerate() {
        let mut keys: Vec<(&str, i64, i64)> = rows
            .iter()
            .map(|r| {
                let k = [r.mac.as_str(), r.ip.as_str(), r.host.as_str(), r.kind][j];
                (k, r.time_ms, r.id)
            })
            .collect();
        keys.sort_unstable();
        let mut st = tx.prepare_cached(&format!("INSERT INTO ev_{field} VALUES (?1,?2,?3)"))?;
        for k in keys {
            st.execute(params![k.0, k.1, k.2])?;
        }
    }
    Ok(())
}

fn main() -> rusqlite::Result<()> {
    let variant = std::env::args().nth(1).unwrap_or_else(|| "indexed".into());
    let n: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let path = "/var/tmp/pxelator-ingest-ceiling.db";
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
    let conn = Connection::open(path)?;
    let page = std::env::var("PAGE").unwrap_or_else(|_| "4096".into());
    conn.pragma_update(None, "page_size", &page)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -262_144)?;
    let int_keys = variant == "indexed-int";
    let key_type = if int_keys { "INTEGER" } else { "TEXT" };
    conn.execute_batch(&format!(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, source TEXT NOT NULL,
         kind TEXT NOT NULL, mac {key_type}, ip {key_type}, host TEXT, doc TEXT NOT NULL)"
    ))?;
    let create_indexes = || -> rusqlite::Result<()> {
        for f in FIELDS {
            conn.execute_batch(&format!(
                "CREATE INDEX events_{f}_time ON events({f}, time_ms)"
            ))?;
        }
        Ok(())
    };
    match variant.as_str() {
        "indexed" | "indexed-int" => create_indexes()?,
        "sorted-tables" => {
            for f in FIELDS {
                conn.execute_batch(&format!(
                    "CREATE TABLE ev_{f} ({f} TEXT, time_ms INTEGER, id INTEGER,
                     PRIMARY KEY ({f}, time_ms, id)) WITHOUT ROWID"
                ))?;
            }
        }
        "plain" | "bulk" => {}
        other => {
            panic!("unknown variant {other}: plain, indexed, indexed-int, bulk, sorted-tables")
        }
    }
    let mut rng = Rng(42);
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let rows: Vec<Row> = (i..(i + BATCH).min(n)).map(|j| row(j, &mut rng)).collect();
        i += rows.len() as u64;
        let tx = conn.unchecked_transaction()?;
        for r in &rows {
            insert(&tx, r, int_keys)?;
        }
        if variant == "sorted-tables" {
            sorted_tables(&tx, &rows)?;
        }
        tx.commit()?;
    }
    let inserted = start.elapsed().as_secs_f64();
    if variant == "bulk" {
        create_indexes()?;
    }
    let overall = start.elapsed().as_secs_f64();
    println!(
        "{variant} page_size={page} rows={n}: inserts {:.0} rows/s, with indexes built {:.0} rows/s",
        n as f64 / inserted,
        n as f64 / overall
    );
    Ok(())
}
