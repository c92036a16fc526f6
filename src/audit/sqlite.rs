//! Embedded audit store on SQLite (rusqlite, bundled), WAL mode. The schema is plain so the
//! stock `sqlite3` CLI can read it; see README "Audit".
use super::query::{column_expr, filter_to_sql, pipeline_to_sql, sort_to_sql, IdShape, Param};
use super::{AuditError, AuditStore, Record};
use rusqlite::{params_from_iter, Connection, OpenFlags};
use serde_json::Value;
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY, -- (time_ms << 20) | emit sequence: unique per event
    time_ms INTEGER NOT NULL,   -- unix milliseconds
    source  TEXT NOT NULL,      -- dhcp, tftp, http, inventory
    kind    TEXT NOT NULL,      -- Event kind, e.g. dhcp_reply
    mac     TEXT,
    ip      TEXT,
    host    TEXT,
    doc     TEXT NOT NULL       -- the whole event as JSON
);
CREATE INDEX IF NOT EXISTS events_mac_time  ON events(mac, time_ms);
CREATE INDEX IF NOT EXISTS events_ip_time   ON events(ip, time_ms);
CREATE INDEX IF NOT EXISTS events_host_time ON events(host, time_ms);
CREATE INDEX IF NOT EXISTS events_kind_time ON events(kind, time_ms);
";

/// Columns read back for a document, in the order [`row_doc`] expects.
const OUT_COLUMNS: &str = "time_ms, source, kind, mac, ip, host, doc";

/// A stored row as the document queries return: the event's fields plus `time` (RFC 3339),
/// `time_ms`, `source`, `kind` and the enriched `mac`/`ip`/`host`.
fn row_doc(r: &rusqlite::Row) -> rusqlite::Result<Value> {
    let time_ms: i64 = r.get(0)?;
    let mut doc: Value = serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut doc {
        m.insert(
            "time".into(),
            Value::String(crate::services::rfc3339_ms(time_ms)),
        );
        m.insert("time_ms".into(), time_ms.into());
        m.insert("source".into(), Value::String(r.get(1)?));
        m.insert("kind".into(), Value::String(r.get(2)?));
        for (i, k) in [(3, "mac"), (4, "ip"), (5, "host")] {
            if let Some(v) = r.get::<_, Option<String>>(i)? {
                m.insert(k.into(), Value::String(v));
            }
        }
    }
    Ok(doc)
}

/// The document as stored: without the fields that equal a column (`kind`, `mac`, `ip`,
/// `host`), which [`row_doc`] puts back — a quarter less to write, and one source of truth.
fn stored_doc(r: &Record) -> String {
    struct Filtered<'a>(&'a serde_json::Map<String, Value>, &'a Record);
    impl serde::Serialize for Filtered<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let r = self.1;
            s.collect_map(self.0.iter().filter(|(k, v)| {
                let col = match k.as_str() {
                    "kind" => Some(r.kind.as_ref()),
                    "mac" => r.mac.as_deref(),
                    "ip" => r.ip.as_deref(),
                    "host" => r.host.as_deref(),
                    _ => None,
                };
                col.is_none() || v.as_str() != col
            }))
        }
    }
    match &r.doc {
        Value::Object(m) => serde_json::to_string(&Filtered(m, r)).unwrap_or_default(),
        other => other.to_string(),
    }
}

pub struct SqliteStore {
    conn: Connection,
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value as V};
        Ok(ToSqlOutput::Owned(match self {
            Param::Int(i) => V::Integer(*i),
            Param::Real(f) => V::Real(*f),
            Param::Text(s) => V::Text(s.clone()),
            Param::Null => V::Null,
        }))
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store for writing, with `(field, time)` indexes on the
    /// given document fields (`events_by_<field>`).
    pub fn open(path: &Path, indexes: &[String]) -> Result<SqliteStore, AuditError> {
        let err = |source| AuditError::Open {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        // The index pages being appended to must stay in memory: SQLite's default page cache
        // (2 MB) makes every batch re-read them. 256 MB, allocated only as used.
        conn.pragma_update(None, "cache_size", -262_144)
            .map_err(err)?;
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        // A writer held up by another (e.g. `sqlite3` holding a lock) gives up after 1 s and
        // the batch goes to the spool.
        conn.busy_timeout(std::time::Duration::from_secs(1))
            .map_err(err)?;
        for spec in indexes {
            let (name, fields) = super::index_spec(spec);
            let exprs = fields
                .iter()
                .map(|f| column_expr(f))
                .collect::<Result<Vec<_>, _>>()?;
            conn.execute_batch(&format!(
                "CREATE INDEX IF NOT EXISTS \"{name}\" ON events({})",
                exprs.join(", ")
            ))
            .map_err(err)?;
        }
        Ok(SqliteStore { conn })
    }

    /// Opens an existing store read-only (the CLI, while the daemon writes).
    pub fn open_read_only(path: &Path) -> Result<SqliteStore, AuditError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| AuditError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(SqliteStore { conn })
    }
}

impl AuditStore for SqliteStore {
    fn prepare(&mut self) -> Result<(), AuditError> {
        Ok(())
    }

    fn insert(&mut self, rows: &[Record]) -> Result<usize, AuditError> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached("INSERT OR IGNORE INTO events (id, time_ms, source, kind, mac, ip, host, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
            for r in rows {
                st.execute(rusqlite::params![
                    r.id,
                    r.time_ms,
                    r.source.as_ref(),
                    r.kind.as_ref(),
                    r.mac,
                    r.ip,
                    r.host,
                    stored_doc(r)
                ])?;
            }
        }
        tx.commit()?;
        Ok(rows.len())
    }

    fn prune(&mut self, before_ms: i64) -> Result<u64, AuditError> {
        Ok(self
            .conn
            .execute("DELETE FROM events WHERE time_ms < ?1", [before_ms])? as u64)
    }

    fn count(&self) -> Result<u64, AuditError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    fn find(
        &self,
        filter: &Value,
        sort: Option<&Value>,
        limit: Option<u64>,
    ) -> Result<Vec<Value>, AuditError> {
        let w = filter_to_sql(filter)?;
        let order = sort_to_sql(sort)?;
        let mut sql = format!(
            "SELECT {OUT_COLUMNS} FROM events WHERE {} ORDER BY {order}",
            w.where_clause
        );
        if let Some(n) = limit {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        let mut st = self.conn.prepare(&sql)?;
        let rows = st.query_map(params_from_iter(w.params.iter()), row_doc)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn scan(
        &self,
        f: &mut dyn FnMut(i64, Value) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {OUT_COLUMNS}, id FROM events ORDER BY time_ms, id"
        ))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            f(r.get(7)?, row_doc(r)?)?;
        }
        Ok(())
    }

    fn aggregate(&self, pipeline: &Value) -> Result<Vec<Value>, AuditError> {
        let a = pipeline_to_sql(pipeline)?;
        let mut st = self.conn.prepare(&a.sql)?;
        let names: Vec<String> = st.column_names().map(str::to_owned).collect();
        let rows = st.query_map(params_from_iter(a.params.iter()), |r| {
            let cell = |i: usize| -> rusqlite::Result<Value> {
                use rusqlite::types::ValueRef as V;
                Ok(match r.get_ref(i)? {
                    V::Null => Value::Null,
                    V::Integer(n) => n.into(),
                    V::Real(f) => serde_json::Number::from_f64(f)
                        .map(Value::Number)
                        .unwrap_or(Value::Null),
                    V::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
                    V::Blob(_) => Value::Null,
                })
            };
            let mut doc = serde_json::Map::new();
            let id = match &a.id_keys {
                IdShape::Null => Value::Null,
                IdShape::Single => cell(0)?,
                IdShape::Object(keys) => {
                    let mut o = serde_json::Map::new();
                    for (i, k) in keys.iter().enumerate() {
                        o.insert(k.clone(), cell(i)?);
                    }
                    Value::Object(o)
                }
            };
            doc.insert("_id".into(), id);
            for f in &a.fields {
                if let Some(i) = names.iter().position(|n| n == f) {
                    doc.insert(f.clone(), cell(i)?);
                }
            }
            Ok(Value::Object(doc))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// `EXPLAIN QUERY PLAN` for a filter: says which index SQLite uses.
    fn explain_aggregate(&self, pipeline: &Value) -> Result<Vec<String>, AuditError> {
        let a = pipeline_to_sql(pipeline)?;
        let mut st = self
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", a.sql))?;
        let rows = st.query_map(params_from_iter(a.params.iter()), |r| r.get::<_, String>(3))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn explain(&self, filter: &Value, sort: Option<&Value>) -> Result<Vec<String>, AuditError> {
        let w = filter_to_sql(filter)?;
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT doc FROM events WHERE {} ORDER BY {}",
            w.where_clause,
            sort_to_sql(sort)?
        );
        let mut st = self.conn.prepare(&sql)?;
        let rows = st.query_map(params_from_iter(w.params.iter()), |r| r.get::<_, String>(3))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Enricher, Record};
    use crate::core::event::Event;
    use crate::core::mac::Mac;
    use serde_json::json;
    use std::net::Ipv4Addr;

    fn sample(store: &mut SqliteStore) {
        let mac = Mac([0x52, 0x54, 0, 0, 0, 1]);
        let ip = Some(Ipv4Addr::new(10, 0, 0, 5));
        let events = [
            Event::DhcpReply {
                reply: "offer".into(),
                mac,
                ip,
                xid: 1,
                iface: "br0".into(),
                host: Some("kiosk1".into()),
                file: None,
            },
            Event::DhcpReply {
                reply: "ack".into(),
                mac,
                ip,
                xid: 1,
                iface: "br0".into(),
                host: Some("kiosk1".into()),
                file: None,
            },
            Event::TftpFinished {
                peer: "10.0.0.5:2000".parse().unwrap(),
                file: "undionly.kpxe".into(),
                bytes: 70000,
                duration_ms: 12,
            },
            Event::HttpServed {
                peer: "10.0.0.5:3000".parse().unwrap(),
                file: "/files/k/vmlinuz".into(),
                status: 200,
                bytes: Some(8_000_000),
                mac: None,
            },
            Event::TftpFinished {
                peer: "10.0.0.9:2000".parse().unwrap(),
                file: "other".into(),
                bytes: 5,
                duration_ms: 1,
            },
        ];
        let mut enr = Enricher::default();
        let rows: Vec<Record> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut r = Record::from_event(e, 1_000 + i as i64, i as u64);
                enr.enrich(&mut r);
                r
            })
            .collect();
        store.insert(&rows).unwrap();
    }

    #[test]
    fn find_by_mac_returns_that_machines_dhcp_tftp_http_in_order() {
        let d = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&d.path().join("audit.db"), &[]).unwrap();
        sample(&mut s);
        let docs = s
            .find(&json!({"mac": "52:54:00:00:00:01"}), None, None)
            .unwrap();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["dhcp_reply", "dhcp_reply", "tftp_finished", "http_served"]
        );
        assert_eq!(docs[2]["host"], "kiosk1");
        assert_eq!(s.count().unwrap(), 5);
    }

    #[test]
    fn aggregate_groups_sums_and_averages() {
        let d = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&d.path().join("audit.db"), &[]).unwrap();
        sample(&mut s);
        let out = s
            .aggregate(&json!([
                {"$match": {"source": "tftp"}},
                {"$group": {"_id": "$ip", "bytes": {"$sum": "$bytes"}, "n": {"$count": {}}, "first": {"$first": "$file"}}},
                {"$sort": {"bytes": -1}}
            ]))
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            json!({"_id": "10.0.0.5", "bytes": 70000, "n": 1, "first": "undionly.kpxe"})
        );
        assert_eq!(out[1]["_id"], "10.0.0.9");
        let all = s
            .aggregate(&json!([{"$group": {"_id": null, "n": {"$sum": 1}}}]))
            .unwrap();
        assert_eq!(all, vec![json!({"_id": null, "n": 5})]);
        let by = s
            .aggregate(&json!([{"$group": {"_id": {"k": "$kind", "m": "$mac"}, "c": {"$sum": 1}}}, {"$sort": {"_id": 1}}, {"$limit": 1}]))
            .unwrap();
        assert_eq!(
            by[0]["_id"],
            json!({"k": "dhcp_reply", "m": "52:54:00:00:00:01"})
        );
        assert_eq!(by[0]["c"], 2);
    }

    #[test]
    fn prune_deletes_only_older_events() {
        let d = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&d.path().join("audit.db"), &[]).unwrap();
        sample(&mut s);
        assert_eq!(s.prune(1002).unwrap(), 2);
        assert_eq!(s.count().unwrap(), 3);
        assert_eq!(
            s.find(&json!({}), None, Some(1)).unwrap()[0]["time_ms"],
            1002
        );
    }

    #[test]
    fn last_seen_by_mac_ip_and_host() {
        let d = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&d.path().join("audit.db"), &[]).unwrap();
        sample(&mut s);
        for who in ["52-54-00-00-00-01", "10.0.0.5", "kiosk1"] {
            let doc = s.last_seen(who).unwrap().unwrap();
            assert_eq!(doc["kind"], "http_served", "{who}");
            assert_eq!(doc["time_ms"], 1003);
        }
        assert!(s.last_seen("nobody").unwrap().is_none());
        assert!(matches!(s.last_seen("a b"), Err(AuditError::BadWho(_))));
    }

    #[test]
    fn document_fields_sort_limit_and_index_use() {
        let d = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&d.path().join("audit.db"), &[]).unwrap();
        sample(&mut s);
        let big = s
            .find(
                &json!({"bytes": {"$gte": 70000}}),
                Some(&json!({"bytes": -1})),
                Some(1),
            )
            .unwrap();
        assert_eq!(big[0]["file"], "/files/k/vmlinuz");
        let plan = s
            .explain(&json!({"mac": "52:54:00:00:00:01"}), None)
            .unwrap()
            .join(" ");
        assert!(plan.contains("events_mac_time"), "{plan}");
        let e = s
            .find(&json!({"mac": {"$regex": "52"}}), None, None)
            .unwrap_err();
        assert!(e.to_string().contains("$regex"), "{e}");
    }
}
