//! Embedded audit store on SQLite (rusqlite, bundled), WAL mode. The schema is plain so the
//! stock `sqlite3` CLI can read it (ARCHITECTURE.md "The audit store"). mac, ip, host and kind
//! are indexed by postings — per written batch, each value's ids — instead of B-tree indexes,
//! which cost ~3 µs per entry and would cap ingest near 60 000 events/s.
use super::query::{column_expr, filter_to_sql, pipeline_to_sql, sort_to_sql, IdShape, Param, Sql};
use super::{rollup, AuditError, AuditStore, Record};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY, -- (time_ms << 20) | emit sequence: unique, in time order
    time_ms INTEGER NOT NULL,   -- unix milliseconds
    source  TEXT NOT NULL,      -- dhcp, tftp, http, inventory
    kind    TEXT NOT NULL,      -- Event kind, e.g. dhcp_reply
    mac     TEXT,
    ip      TEXT,
    host    TEXT,
    doc     TEXT NOT NULL       -- the whole event as JSON
);
-- The index of mac, ip, host and kind: for each value, the ids of its events, one row per
-- written batch (ids ascending, LEB128 deltas from first_id). Cheaper to write than four
-- B-tree indexes (one row per value per batch instead of four entries per event).
CREATE TABLE IF NOT EXISTS postings (
    field    TEXT NOT NULL,     -- mac, ip, host or kind
    key      TEXT NOT NULL,     -- its value
    first_id INTEGER NOT NULL,
    last_id  INTEGER NOT NULL,
    n        INTEGER NOT NULL,  -- how many ids
    ids      BLOB NOT NULL,
    PRIMARY KEY (field, key, first_id)
) WITHOUT ROWID;
-- Rollups (audit::rollup): exact count/sum/min/max of each numeric field per hour by kind and
-- by kind + mac/ip/host, per minute by kind; written in the events' own transaction. sum, min
-- and max have no type so integers stay integers.
CREATE TABLE IF NOT EXISTS rollups (
    period INTEGER NOT NULL,   -- bucket width, ms (60000, 3600000)
    bucket INTEGER NOT NULL,   -- bucket start, unix ms
    kind   TEXT NOT NULL,
    dim    TEXT NOT NULL,      -- '' (the kind alone), mac, ip or host
    key    TEXT NOT NULL,      -- its value ('' for dim ''; U+0000 for events without one)
    field  TEXT NOT NULL,      -- the numeric field; '' = the events themselves (n = count)
    n      INTEGER NOT NULL,
    sum, min, max,
    PRIMARY KEY (period, kind, dim, bucket, key, field)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;
";

/// The columns that have postings.
const POSTED: [&str; 4] = ["mac", "ip", "host", "kind"];

/// Indexes of stores written before postings replaced them.
const OLD_INDEXES: [&str; 4] = [
    "events_mac_time",
    "events_ip_time",
    "events_host_time",
    "events_kind_time",
];

/// A batch's postings: (field index, value) → ids ascending.
/// (Fx hashing: SipHash's DoS resistance buys nothing for our own column values and costs
/// ~2 % of ingest.)
type Postings<'a> = rustc_hash::FxHashMap<(usize, std::borrow::Cow<'a, str>), Vec<i64>>;

fn encode_ids(ids: &[i64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 2);
    let mut prev = ids[0];
    for &id in &ids[1..] {
        let mut d = (id - prev) as u64;
        prev = id;
        loop {
            let b = (d & 0x7f) as u8;
            d >>= 7;
            if d == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }
    out
}

fn decode_ids(first: i64, blob: &[u8], out: &mut Vec<i64>) {
    out.push(first);
    let (mut cur, mut d, mut shift) = (first, 0u64, 0);
    for &b in blob {
        d |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            cur += d as i64;
            out.push(cur);
            d = 0;
            shift = 0;
        } else {
            shift += 7;
        }
    }
}

fn write_postings(tx: &rusqlite::Transaction, postings: Postings) -> rusqlite::Result<()> {
    let mut st = tx.prepare_cached(
        "INSERT OR IGNORE INTO postings (field, key, first_id, last_id, n, ids) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for ((f, key), mut ids) in postings {
        ids.sort_unstable();
        st.execute(rusqlite::params![
            POSTED[f],
            key,
            ids[0],
            ids[ids.len() - 1],
            ids.len() as i64,
            encode_ids(&ids)
        ])?;
    }
    Ok(())
}

/// One way to narrow a filter by postings: every match has one of these (field, values) —
/// a single field for `{"mac": …}`, several for an `$or` whose every branch pins one.
type Pin = Vec<(usize, Vec<String>)>;

/// The pins of a filter: its posted fields at the top level or in a top-level `$and` (`"v"`,
/// `{"$eq": "v"}`, `{"$in": [...]}`), and an `$or` whose branches all pin a field.
fn pinned(filter: &Value, out: &mut Vec<Pin>) {
    let Value::Object(m) = filter else { return };
    for (k, v) in m {
        if k == "$and" {
            for f in v.as_array().into_iter().flatten() {
                pinned(f, out);
            }
            continue;
        }
        if k == "$or" {
            let mut union = Pin::new();
            let branches = v.as_array().map(Vec::as_slice).unwrap_or_default();
            for b in branches {
                let mut inner = Vec::new();
                pinned(b, &mut inner);
                match inner.into_iter().next() {
                    Some(p) => union.extend(p),
                    None => {
                        union.clear();
                        break;
                    }
                }
            }
            if !union.is_empty() {
                out.push(union);
            }
            continue;
        }
        let Some(f) = POSTED.iter().position(|p| p == k) else {
            continue;
        };
        let values: Option<Vec<String>> = match v {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Object(o) if o.len() == 1 => match o.iter().next() {
                Some((op, Value::String(s))) if op == "$eq" => Some(vec![s.clone()]),
                Some((op, Value::Array(a))) if op == "$in" => {
                    a.iter().map(|x| x.as_str().map(str::to_owned)).collect()
                }
                _ => None,
            },
            _ => None,
        };
        if let Some(v) = values {
            out.push(vec![(f, v)]);
        }
    }
}

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
            Value::String(crate::clock::rfc3339_ms(time_ms)),
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

/// The document as stored, written into `buf`: without the fields that equal a column
/// (`kind`, `mac`, `ip`, `host`), which [`row_doc`] puts back — a quarter less to write, and
/// one source of truth.
fn stored_doc<'b>(r: &Record, buf: &'b mut Vec<u8>) -> &'b str {
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
    buf.clear();
    let _ = match &r.doc {
        Value::Object(m) => serde_json::to_writer(&mut *buf, &Filtered(m, r)),
        other => serde_json::to_writer(&mut *buf, other),
    };
    // serde_json writes UTF-8.
    std::str::from_utf8(buf).unwrap_or("{}")
}

pub struct SqliteStore {
    conn: Connection,
    /// Events from this time on are in the rollups (a store made before them has older ones
    /// only as events).
    rollups_from: i64,
    /// Whether aggregations may be answered from the rollups.
    use_rollups: bool,
    /// The writer's rollup rows of the hours not yet written (events from `rollups_to` on).
    pending: rollup::Pending,
    /// The rollups table holds every event from `rollups_from` until here (an hour start,
    /// or after a clean close the time after the newest event); the writer's own view
    /// (readers read it from `meta` per query).
    rollups_to: i64,
    /// The newest event time in `pending`.
    pending_newest: i64,
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
        rusqlite::vtab::array::load_module(&conn).map_err(err)?;
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
        let had_postings: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'postings'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(err)?
            > 0;
        conn.execute_batch(SCHEMA).map_err(err)?;
        if !had_postings {
            build_postings(&conn).map_err(err)?;
        }
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
        // A store older than its rollups: they cover what is written from now on.
        conn.execute(
            "INSERT OR IGNORE INTO meta (name, value) SELECT 'rollups_from_ms', coalesce(max(time_ms) + 1, 0) FROM events",
            [],
        )
        .map_err(err)?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (name, value) SELECT 'rollups_to_ms', value FROM meta WHERE name = 'rollups_from_ms'",
            [],
        )
        .map_err(err)?;
        let rollups_from = rollups_from(&conn).map_err(err)?;
        let rollups_to = rollups_to(&conn).map_err(err)?;
        let mut store = SqliteStore {
            conn,
            rollups_from,
            use_rollups: true,
            pending: Default::default(),
            rollups_to,
            pending_newest: i64::MIN,
        };
        store.reload_pending().map_err(err)?;
        Ok(store)
    }

    /// The rows of the hours not yet written, from their events (after a restart).
    fn reload_pending(&mut self) -> rusqlite::Result<()> {
        let from = self.rollups_to.max(self.rollups_from);
        let mut st = self.conn.prepare(&format!(
            "SELECT {OUT_COLUMNS}, id FROM events WHERE id >= ?1 ORDER BY id"
        ))?;
        let mut rows = st.query([from.clamp(0, i64::MAX >> 21) << 20])?;
        let mut chunk: Vec<Record> = Vec::new();
        loop {
            let next = rows.next()?;
            let done = next.is_none();
            if let Some(r) = next {
                let text = |i: usize| -> rusqlite::Result<Option<String>> { r.get(i) };
                chunk.push(Record {
                    id: r.get(7)?,
                    time_ms: r.get(0)?,
                    source: std::borrow::Cow::Owned(r.get(1)?),
                    kind: std::borrow::Cow::Owned(r.get(2)?),
                    mac: text(3)?,
                    ip: text(4)?,
                    host: text(5)?,
                    doc: row_doc(r)?,
                });
            }
            if chunk.len() >= 50_000 || (done && !chunk.is_empty()) {
                let mut b = rollup::Batch::default();
                for r in chunk.iter().filter(|r| r.time_ms >= from) {
                    b.add(r);
                    self.pending_newest = self.pending_newest.max(r.time_ms);
                }
                self.pending.merge(b);
                chunk.clear();
            }
            if done {
                return Ok(());
            }
        }
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
        rusqlite::vtab::array::load_module(&conn).map_err(|source| AuditError::Open {
            path: path.to_owned(),
            source,
        })?;
        // A store written before rollups existed has none until a writer opens it.
        let rollups_from = rollups_from(&conn).unwrap_or(i64::MAX);
        Ok(SqliteStore {
            conn,
            rollups_from,
            use_rollups: true,
            pending: Default::default(),
            rollups_to: i64::MIN,
            pending_newest: i64::MIN,
        })
    }

    /// Whether aggregations may be answered from the rollups (on by default; off, the events
    /// answer everything — what the rollups are checked against).
    pub fn set_rollups(&mut self, on: bool) {
        self.use_rollups = on;
    }

    /// An aggregation the rollups can answer: the whole hours inside its range from them,
    /// the rest (partial hours at the ends, times before the rollups began) from the events
    /// by rowid range, merged.
    fn rollup_aggregate(&self, plan: &rollup::Plan) -> Result<Vec<Value>, AuditError> {
        let mut parts = rollup::Parts::new();
        let fields = plan.fields();
        let hours = plan.hours(self.rollups_from, self.written_to());
        let mut event_ranges = Vec::new();
        match hours {
            Some((h0, h1)) => {
                event_ranges.push((plan.from, h0));
                event_ranges.push((h1, plan.to));
                self.rollup_part(plan, &fields, h0, h1, &mut parts)?;
            }
            None => event_ranges.push((plan.from, plan.to)),
        }
        for (a, b) in event_ranges {
            if a < b {
                self.event_part(plan, &fields, a, b, &mut parts)?;
            }
        }
        let out = rollup::answer(plan, &parts);
        if out.len() > super::query::MAX_GROUPS {
            return Err(super::query::QueryError::TooManyGroups(super::query::MAX_GROUPS).into());
        }
        Ok(out)
    }

    /// Writes the open hour's rows too (a clean close): the table is then complete until just
    /// after the newest event, so the next open has nothing to read again, and later events
    /// of that hour are added to its rows as they come.
    fn flush_pending(&mut self) -> Result<(), AuditError> {
        if self.pending_newest == i64::MIN {
            return Ok(());
        }
        let to = self.rollups_to.max(self.pending_newest.saturating_add(1));
        let done = self.pending.take_before(i64::MAX);
        let tx = self.conn.transaction()?;
        write_rollups(&tx, done.rows())?;
        tx.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('rollups_to_ms', ?1)",
            [to],
        )?;
        tx.commit()?;
        self.rollups_to = to;
        self.pending_newest = i64::MIN;
        Ok(())
    }

    /// Until when the rollups table is complete: the writer knows; a reader asks `meta`.
    fn written_to(&self) -> i64 {
        if self.rollups_to != i64::MIN {
            return self.rollups_to;
        }
        rollups_to(&self.conn).unwrap_or(i64::MIN)
    }

    fn rollup_part(
        &self,
        plan: &rollup::Plan,
        fields: &[&str],
        h0: i64,
        h1: i64,
        parts: &mut rollup::Parts,
    ) -> Result<(), AuditError> {
        let mut st = self.conn.prepare_cached(
            "SELECT key, field, sum(n), sum(sum), min(min), max(max) FROM rollups \
             WHERE period = ?1 AND kind = ?2 AND dim = ?3 AND bucket >= ?4 AND bucket < ?5 \
             AND (field = '' OR field IN (SELECT value FROM rarray(?6))) GROUP BY key, field",
        )?;
        let wanted = std::rc::Rc::new(
            fields
                .iter()
                .map(|f| rusqlite::types::Value::Text((*f).to_owned()))
                .collect::<Vec<_>>(),
        );
        let mut rows = st.query(rusqlite::params![
            rollup::HOUR,
            plan.kind,
            plan.dim,
            h0,
            h1,
            wanted
        ])?;
        while let Some(r) = rows.next()? {
            let key: String = r.get(0)?;
            let key = (!plan.dim.is_empty() && key != rollup::NULL_KEY).then_some(key);
            let field: String = r.get(1)?;
            let acc = acc_at(r, 2)?;
            parts
                .entry(key)
                .or_default()
                .entry(field)
                .or_default()
                .merge(&acc);
        }
        Ok(())
    }

    fn event_part(
        &self,
        plan: &rollup::Plan,
        fields: &[&str],
        from: i64,
        to: i64,
        parts: &mut rollup::Parts,
    ) -> Result<(), AuditError> {
        let group = if plan.dim.is_empty() {
            "NULL"
        } else {
            plan.dim
        };
        let mut cols = String::new();
        for f in fields {
            let e = column_expr(f)?;
            cols.push_str(&format!(", count({e}), sum({e}), min({e}), max({e})"));
        }
        let sql = format!(
            "SELECT {group}, count(*){cols} FROM events WHERE id >= ?1 AND id < ?2 AND kind = ?3 GROUP BY 1"
        );
        let mut st = self.conn.prepare(&sql)?;
        let lo = from.clamp(0, i64::MAX >> 21) << 20;
        let hi = to.clamp(0, i64::MAX >> 21) << 20;
        let mut rows = st.query(rusqlite::params![lo, hi, plan.kind])?;
        while let Some(r) = rows.next()? {
            let key: Option<String> = r.get(0)?;
            let e = parts.entry(key).or_default();
            e.entry(String::new()).or_default().merge(&rollup::Acc {
                n: r.get(1)?,
                ..Default::default()
            });
            for (i, f) in fields.iter().enumerate() {
                let acc = acc_at(r, 2 + i * 4)?;
                e.entry((*f).to_owned()).or_default().merge(&acc);
            }
        }
        Ok(())
    }

    /// Makes running statements fail ("interrupted") once `stop` returns true; checked every
    /// 10 000 virtual machine steps.
    pub fn interrupt_when(
        &mut self,
        stop: Box<dyn FnMut() -> bool + Send>,
    ) -> Result<(), AuditError> {
        Ok(self.conn.progress_handler(10_000, Some(stop))?)
    }

    /// The ids of the events a filter can only match, from the postings of its most selective
    /// pinned field — when selective enough (a tenth of the events at most, or 10 000) that
    /// looking rows up by id beats reading the table. None: read the table.
    fn narrow(&self, filter: &Value) -> Option<(String, Vec<i64>)> {
        let mut pins = Vec::new();
        pinned(filter, &mut pins);
        let sum = |f: &str, k: &str| -> Option<i64> {
            self.conn
                .query_row(
                    "SELECT coalesce(sum(n), 0) FROM postings WHERE field = ?1 AND key = ?2",
                    [f, k],
                    |r| r.get(0),
                )
                .ok()
        };
        let mut best: Option<(&Pin, i64)> = None;
        for pin in &pins {
            let mut n = 0;
            for (f, values) in pin {
                for v in values {
                    n += sum(POSTED[*f], v)?;
                }
            }
            if best.is_none_or(|b| n < b.1) {
                best = Some((pin, n));
            }
        }
        let (pin, n) = best?;
        let total: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(sum(n), 0) FROM postings WHERE field = 'kind'",
                [],
                |r| r.get(0),
            )
            .ok()?;
        if n > 10_000 && n * 10 > total {
            return None;
        }
        let mut ids = Vec::with_capacity(n as usize);
        let mut st = self
            .conn
            .prepare_cached("SELECT first_id, ids FROM postings WHERE field = ?1 AND key = ?2")
            .ok()?;
        for (f, values) in pin {
            for v in values {
                let mut rows = st.query([POSTED[*f], v.as_str()]).ok()?;
                while let Ok(Some(r)) = rows.next() {
                    let first: i64 = r.get(0).ok()?;
                    let blob = r.get_ref(1).ok()?.as_blob().ok()?;
                    decode_ids(first, blob, &mut ids);
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let what: Vec<String> = pin
            .iter()
            .map(|(f, values)| format!("{} = {}", POSTED[*f], values.join(" | ")))
            .collect();
        Some((
            format!(
                "POSTINGS {} ({} ids, looked up by rowid)",
                what.join(" OR "),
                ids.len()
            ),
            ids,
        ))
    }
}

/// The ORDER BY of a find: rowid order for a time sort when the filter reads only columns
/// (a document field may have a user-defined index, which SQLite should be free to use and
/// then sort), else the general translation.
fn find_order(w: &Sql, sort: Option<&Value>) -> Result<String, AuditError> {
    match super::query::sort_by_id(sort) {
        Some(o) if !w.where_clause.contains("json_extract") => {
            sort_to_sql(sort)?; // still checked
            Ok(o.to_string())
        }
        _ => Ok(sort_to_sql(sort)?),
    }
}

/// `FROM events WHERE …` narrowed to `ids` (as the first parameter, `?1`; the translator's
/// own parameters are anonymous and follow it).
fn narrowed_sql(sql: &str, narrowed: bool) -> String {
    if narrowed {
        sql.replacen(
            "FROM events WHERE ",
            "FROM events WHERE id IN rarray(?1) AND ",
            1,
        )
    } else {
        sql.to_owned()
    }
}

/// The statement's parameters: the id array (if narrowed) then the translator's.
fn bind<'a>(
    ids: &'a Option<rusqlite::vtab::array::Array>,
    params: &'a [Param],
) -> Vec<&'a dyn rusqlite::ToSql> {
    let mut out: Vec<&dyn rusqlite::ToSql> = Vec::new();
    if let Some(a) = ids {
        out.push(a);
    }
    out.extend(params.iter().map(|p| p as &dyn rusqlite::ToSql));
    out
}

fn id_array(ids: Vec<i64>) -> rusqlite::vtab::array::Array {
    std::rc::Rc::new(ids.into_iter().map(rusqlite::types::Value::from).collect())
}

/// Builds the postings of every event (a store written before postings existed) and drops
/// the B-tree indexes they replace.
fn build_postings(conn: &Connection) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    let mut last = i64::MIN;
    loop {
        let mut postings = Postings::default();
        {
            let mut st = tx.prepare_cached(
                "SELECT id, mac, ip, host, kind FROM events WHERE id > ?1 ORDER BY id LIMIT 50000",
            )?;
            let mut rows = st.query([last])?;
            while let Some(r) = rows.next()? {
                last = r.get(0)?;
                for f in 0..POSTED.len() {
                    if let Some(v) = r.get::<_, Option<String>>(f + 1)? {
                        postings.entry((f, v.into())).or_default().push(last);
                    }
                }
            }
        }
        if postings.is_empty() {
            break;
        }
        write_postings(&tx, postings)?;
    }
    for i in OLD_INDEXES {
        tx.execute_batch(&format!("DROP INDEX IF EXISTS {i}"))?;
    }
    tx.commit()
}

impl SqliteStore {
    /// One batch in one transaction: events, postings, rollups.
    fn insert_batch(&mut self, rows: &[Record]) -> Result<usize, AuditError> {
        let tx = self.conn.transaction()?;

        let mut postings = Postings::default();
        let mut rollups = rollup::Batch::default();
        let mut late = rollup::Batch::default();
        let mut newest = i64::MIN;
        {
            let mut st = tx.prepare_cached("INSERT OR IGNORE INTO events (id, time_ms, source, kind, mac, ip, host, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
            let mut buf = Vec::with_capacity(512);
            for r in rows {
                let added = st.execute(rusqlite::params![
                    r.id,
                    r.time_ms,
                    r.source.as_ref(),
                    r.kind.as_ref(),
                    r.mac,
                    r.ip,
                    r.host,
                    stored_doc(r, &mut buf)
                ])?;
                // A replayed event is already posted (and rolled up). One older than the
                // rollups written so far is added to them now, with this batch.
                if added == 1 && r.time_ms >= self.rollups_from {
                    if r.time_ms < self.rollups_to {
                        late.add(r);
                    } else {
                        rollups.add(r);
                    }
                    newest = newest.max(r.time_ms);
                }
                if added == 1 {
                    let values = [
                        r.mac.as_deref(),
                        r.ip.as_deref(),
                        r.host.as_deref(),
                        Some(r.kind.as_ref()),
                    ];
                    for (f, v) in values.into_iter().enumerate() {
                        if let Some(v) = v {
                            postings.entry((f, v.into())).or_default().push(r.id);
                        }
                    }
                }
            }
        }
        write_postings(&tx, postings)?;
        write_rollups(&tx, late.rows())?;
        self.pending.merge(rollups);
        self.pending_newest = self.pending_newest.max(newest);
        // Hours before the newest event's are over: their rows are written (once each).
        let hour = (newest != i64::MIN).then(|| newest.div_euclid(rollup::HOUR) * rollup::HOUR);
        let mut to = self.rollups_to;
        if let Some(hour) = hour.filter(|&h| h > self.rollups_to) {
            let done = self.pending.take_before(hour);
            write_rollups(&tx, done.rows())?;
            tx.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('rollups_to_ms', ?1)",
                [hour],
            )?;
            to = hour;
        }
        tx.commit()?;
        self.rollups_to = to;
        Ok(rows.len())
    }
}

fn rollups_from(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT value FROM meta WHERE name = 'rollups_from_ms'",
        [],
        |r| r.get(0),
    )
}

fn num(v: rusqlite::types::ValueRef<'_>) -> Option<rollup::Num> {
    use rusqlite::types::ValueRef as V;
    match v {
        V::Integer(i) => Some(rollup::Num::Int(i)),
        V::Real(f) => Some(rollup::Num::Real(f)),
        _ => None,
    }
}

/// count, sum, min, max from four columns of a row, starting at `c`.
fn acc_at(r: &rusqlite::Row<'_>, c: usize) -> rusqlite::Result<rollup::Acc> {
    Ok(rollup::Acc {
        n: r.get(c)?,
        sum: num(r.get_ref(c + 1)?),
        min: num(r.get_ref(c + 2)?),
        max: num(r.get_ref(c + 3)?),
    })
}

fn num_sql(n: Option<rollup::Num>) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match n {
        Some(rollup::Num::Int(i)) => V::Integer(i),
        Some(rollup::Num::Real(f)) => V::Real(f),
        None => V::Null,
    }
}

fn rollups_to(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT value FROM meta WHERE name = 'rollups_to_ms'",
        [],
        |r| r.get(0),
    )
}

/// Rollup rows added to the stored ones.
fn write_rollups<'a>(
    tx: &rusqlite::Transaction<'_>,
    rows: impl Iterator<Item = (rollup::RowKey<'a>, rollup::Acc)>,
) -> Result<(), AuditError> {
    let mut st = tx.prepare_cached(
        "INSERT INTO rollups (period, bucket, kind, dim, key, field, n, sum, min, max) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT DO UPDATE SET n = n + excluded.n, \
         sum = CASE WHEN sum IS NULL THEN excluded.sum WHEN excluded.sum IS NULL THEN sum ELSE sum + excluded.sum END, \
         min = CASE WHEN min IS NULL OR excluded.min < min THEN excluded.min ELSE min END, \
         max = CASE WHEN max IS NULL OR excluded.max > max THEN excluded.max ELSE max END",
    )?;
    for ((period, bucket, kind, dim, key, field), a) in rows {
        st.execute(rusqlite::params![
            period,
            bucket,
            kind,
            dim,
            key,
            field,
            a.n,
            num_sql(a.sum),
            num_sql(a.min),
            num_sql(a.max)
        ])?;
    }
    Ok(())
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Err(e) = self.flush_pending() {
            // The next writer re-reads the open hour from the events.
            tracing::warn!("audit rollups of the open hour not written at close: {e}");
        }
    }
}

impl AuditStore for SqliteStore {
    fn prepare(&mut self) -> Result<(), AuditError> {
        Ok(())
    }

    fn insert(&mut self, rows: &[Record]) -> Result<usize, AuditError> {
        let r = self.insert_batch(rows);
        if r.is_err() {
            // The batch is not stored (the writer spools it and tries again): the rows kept in
            // memory are made again from what is.
            self.pending = Default::default();
            self.pending_newest = i64::MIN;
            let _ = self.reload_pending();
        }
        r
    }

    fn prune(&mut self, before_ms: i64) -> Result<u64, AuditError> {
        // Ids are in time order: the rowid range holds exactly the older events.
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM events WHERE id < ?1 AND time_ms < ?2",
            [before_ms << 20, before_ms],
        )?;
        // Postings wholly before the cut go; a straddling one keeps ids that no longer match.
        tx.execute("DELETE FROM postings WHERE last_id < ?1", [before_ms << 20])?;
        tx.commit()?;
        Ok(n as u64)
    }

    fn prune_rollups(&mut self, before_ms: i64) -> Result<u64, AuditError> {
        Ok(self
            .conn
            .execute("DELETE FROM rollups WHERE bucket < ?1", [before_ms])? as u64)
    }

    fn count(&self) -> Result<u64, AuditError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    fn find_each(
        &self,
        filter: &Value,
        sort: Option<&Value>,
        limit: Option<u64>,
        f: &mut dyn FnMut(Value) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        let w = filter_to_sql(filter)?;
        let order = find_order(&w, sort)?;
        let ids = self.narrow(filter).map(|(_, ids)| id_array(ids));
        let mut sql = narrowed_sql(
            &format!(
                "SELECT {OUT_COLUMNS} FROM events WHERE {} ORDER BY {order}",
                w.where_clause
            ),
            ids.is_some(),
        );
        if let Some(n) = limit {
            sql.push_str(&format!(" LIMIT {n}"));
        }
        let mut st = self.conn.prepare(&sql)?;
        for row in st.query_map(bind(&ids, &w.params).as_slice(), row_doc)? {
            f(row?)?;
        }
        Ok(())
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
        if let Some(plan) = rollup::plan(pipeline).filter(|_| self.use_rollups) {
            return self.rollup_aggregate(&plan);
        }
        let ids = first_match(pipeline)
            .and_then(|m| self.narrow(m))
            .map(|(_, ids)| id_array(ids));
        let mut st = self.conn.prepare(&narrowed_sql(&a.sql, ids.is_some()))?;
        let names: Vec<String> = st.column_names().map(str::to_owned).collect();
        let rows = st.query_map(bind(&ids, &a.params).as_slice(), |r| {
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
        let mut out = Vec::new();
        for r in rows {
            if out.len() == super::query::MAX_GROUPS {
                return Err(
                    super::query::QueryError::TooManyGroups(super::query::MAX_GROUPS).into(),
                );
            }
            out.push(r?);
        }
        Ok(out)
    }

    /// `EXPLAIN QUERY PLAN` for a pipeline: the postings used (if any), then SQLite's plan.
    fn explain_aggregate(&self, pipeline: &Value) -> Result<Vec<String>, AuditError> {
        let a = pipeline_to_sql(pipeline)?;
        if let Some(plan) = rollup::plan(pipeline).filter(|_| self.use_rollups) {
            // Open ends are printed as such (the plan's bounds are far past any real time).
            let ms = |t: i64| {
                if t <= 0 {
                    "the start".to_owned()
                } else if t >= i64::MAX / 8 {
                    "now".to_owned()
                } else {
                    crate::clock::rfc3339((t / 1000) as u64)
                }
            };
            let mut out = Vec::new();
            let events = |a: i64, b: i64| {
                format!(
                    "EVENTS kind = {:?}, time {} to {} (rowid range)",
                    plan.kind,
                    ms(a),
                    ms(b)
                )
            };
            match plan.hours(self.rollups_from, self.written_to()) {
                Some((h0, h1)) => {
                    out.push(format!(
                        "ROLLUPS hourly, kind = {:?}, by {}, {} to {}",
                        plan.kind,
                        if plan.dim.is_empty() {
                            "kind"
                        } else {
                            plan.dim
                        },
                        ms(h0),
                        ms(h1),
                    ));
                    // Before the first event: nothing to read, not shown.
                    if plan.from < h0 && plan.from > 0 {
                        out.push(events(plan.from, h0));
                    }
                    if h1 < plan.to {
                        out.push(events(h1, plan.to));
                    }
                }
                None => out.push(events(plan.from, plan.to)),
            }
            return Ok(out);
        }
        let narrowed = first_match(pipeline).and_then(|m| self.narrow(m));
        self.plan(&a.sql, &a.params, narrowed)
    }

    fn explain(&self, filter: &Value, sort: Option<&Value>) -> Result<Vec<String>, AuditError> {
        let w = filter_to_sql(filter)?;
        let sql = format!(
            "SELECT doc FROM events WHERE {} ORDER BY {}",
            w.where_clause,
            find_order(&w, sort)?
        );
        self.plan(&sql, &w.params, self.narrow(filter))
    }

    /// The latest event for a MAC, IP or hostname: the newest id in its postings, then that
    /// one row.
    fn last_seen(&self, who: &str) -> Result<Option<Value>, AuditError> {
        let filter = super::who_filter(who)?;
        let Some((field, Value::String(key))) = filter.as_object().and_then(|m| m.iter().next())
        else {
            return Ok(None);
        };
        let last: Option<i64> = self.conn.query_row(
            "SELECT max(last_id) FROM postings WHERE field = ?1 AND key = ?2",
            [field.as_str(), key.as_str()],
            |r| r.get(0),
        )?;
        let Some(id) = last else { return Ok(None) };
        let mut st = self
            .conn
            .prepare_cached(&format!("SELECT {OUT_COLUMNS} FROM events WHERE id = ?1"))?;
        match st.query_row([id], row_doc) {
            Ok(doc) => Ok(Some(doc)),
            // Pruned meanwhile: ask the long way.
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(self
                .find(&filter, Some(&serde_json::json!({"time": -1})), Some(1))?
                .into_iter()
                .next()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The filter of a pipeline's leading `$match`.
fn first_match(pipeline: &Value) -> Option<&Value> {
    pipeline.as_array()?.first()?.get("$match")
}

impl SqliteStore {
    fn plan(
        &self,
        sql: &str,
        params: &[Param],
        narrowed: Option<(String, Vec<i64>)>,
    ) -> Result<Vec<String>, AuditError> {
        let mut out = Vec::new();
        let ids = narrowed.map(|(what, ids)| {
            out.push(what);
            id_array(ids)
        });
        let mut st = self.conn.prepare(&format!(
            "EXPLAIN QUERY PLAN {}",
            narrowed_sql(sql, ids.is_some())
        ))?;
        let rows = st.query_map(bind(&ids, params).as_slice(), |r| r.get::<_, String>(3))?;
        for r in rows {
            out.push(r?);
        }
        Ok(out)
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
                user: None,
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
        assert!(
            plan.contains("POSTINGS mac = 52:54:00:00:00:01 (4 ids") && plan.contains("rowid"),
            "{plan}"
        );
        let e = s
            .find(&json!({"mac": {"$regex": "52"}}), None, None)
            .unwrap_err();
        assert!(e.to_string().contains("$regex"), "{e}");
    }

    /// Ids are (time_ms << 20) | sequence: a time sort is rowid order (no sort step; newest
    /// first with a limit reads only that many rows), a time range is a rowid range, dates
    /// are accepted as strings, and an `$or` of posted fields is narrowed by their postings.
    #[test]
    fn time_sorts_and_ranges_read_rowids() {
        let d = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&d.path().join("audit.db"), &[]).unwrap();
        sample(&mut s);
        let times = |docs: Vec<Value>| -> Vec<i64> {
            docs.iter()
                .map(|d| d["time_ms"].as_i64().unwrap())
                .collect()
        };
        let newest = s
            .find(&json!({}), Some(&json!({"time": -1})), Some(2))
            .unwrap();
        assert_eq!(times(newest), [1004, 1003]);
        let plan = s
            .explain(&json!({}), Some(&json!({"time": -1})))
            .unwrap()
            .join(" ");
        assert!(!plan.contains("TEMP B-TREE"), "no sort step: {plan}");
        let range = json!({"time": {"$gte": 1002, "$lt": 1004}});
        assert_eq!(times(s.find(&range, None, None).unwrap()), [1002, 1003]);
        let plan = s.explain(&range, None).unwrap().join(" ");
        assert!(
            plan.contains("rowid>? AND rowid<?"),
            "a rowid range: {plan}"
        );
        let since = json!({"time": {"$gt": "1970-01-01T00:00:01.002Z"}});
        assert_eq!(times(s.find(&since, None, None).unwrap()), [1003, 1004]);
        let either = json!({"$or": [{"mac": "52:54:00:00:00:01"}, {"ip": "10.0.0.9"}]});
        assert_eq!(
            times(s.find(&either, Some(&json!({"time": -1})), None).unwrap()),
            [1004, 1003, 1002, 1001, 1000]
        );
        let plan = s.explain(&either, None).unwrap().join(" ");
        assert!(
            plan.contains("POSTINGS mac = 52:54:00:00:00:01 OR ip = 10.0.0.9 (5 ids"),
            "{plan}"
        );
        // An $or with a branch no posting covers reads the table.
        let plan = s
            .explain(
                &json!({"$or": [{"mac": "52:54:00:00:00:01"}, {"bytes": 5}]}),
                None,
            )
            .unwrap()
            .join(" ");
        assert!(!plan.contains("POSTINGS"), "{plan}");
    }

    #[test]
    fn ids_round_trip_through_the_delta_encoding() {
        let ids = [5i64, 6, 300, 1 << 40, (1 << 40) + 1, i64::MAX / 2];
        let mut out = Vec::new();
        decode_ids(ids[0], &encode_ids(&ids), &mut out);
        assert_eq!(out, ids);
        out.clear();
        decode_ids(9, &encode_ids(&[9]), &mut out);
        assert_eq!(out, [9]);
    }

    /// A store written before postings (4 B-tree indexes, no postings table) gets its
    /// postings built on open and the old indexes dropped; queries answer the same.
    #[test]
    fn old_store_gets_postings_on_open() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("audit.db");
        let mut s = SqliteStore::open(&path, &[]).unwrap();
        sample(&mut s);
        s.conn
            .execute_batch(
                "DROP TABLE postings;
                 CREATE INDEX events_mac_time ON events(mac, time_ms);
                 CREATE INDEX events_kind_time ON events(kind, time_ms);",
            )
            .unwrap();
        drop(s);
        let s = SqliteStore::open(&path, &[]).unwrap();
        let left: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name LIKE 'events_%_time'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0, "old indexes dropped");
        let kinds: Vec<String> = s
            .find(&json!({"mac": "52:54:00:00:00:01"}), None, None)
            .unwrap()
            .iter()
            .map(|d| d["kind"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            kinds,
            ["dhcp_reply", "dhcp_reply", "tftp_finished", "http_served"]
        );
        assert_eq!(s.last_seen("10.0.0.9").unwrap().unwrap()["file"], "other");
        let n: i64 = s
            .conn
            .query_row(
                "SELECT sum(n) FROM postings WHERE field = 'kind'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 5, "every event posted once under its kind");
    }
}
