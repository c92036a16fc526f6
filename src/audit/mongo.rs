//! MongoDB backend (`audit.url = "mongodb://…"`), with the official driver's blocking API (the
//! store runs on its own thread). Database from the URL (default "pxelator"), collection
//! `events`. A document is the event's fields plus `_id` (the record id), `time` (RFC 3339),
//! `time_ms`, `source`, `kind`, `mac`, `ip`, `host`; the same indexes as the embedded store.
//!
//! Queries are validated by the same translator the embedded store uses (so both reject the
//! same input with the same message), then passed through with two rewrites: `time` means
//! `time_ms` (a number on both backends), and `{"$count": {}}` becomes `{"$sum": 1}` (servers
//! before 5.0 lack it). `$first`/`$last` get a time sort in front of `$group`.
use super::query::{filter_to_sql, pipeline_to_sql, sort_to_sql};
use super::{AuditError, AuditStore, Record};
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::sync::{Client, Collection, Database};
use mongodb::IndexModel;
use serde_json::{Map, Value};
use std::time::Duration;

pub struct MongoStore {
    url: String,
    db: Database,
    coll: Collection<Document>,
    indexes: Vec<String>,
    /// Server-side deadline of each query (`maxTimeMS`); None: the server's default.
    max_time: Option<Duration>,
}

const INDEXED: &[&str] = &["mac", "ip", "host", "kind"];

impl MongoStore {
    /// Builds the client; no I/O happens until the first operation (so an unreachable server
    /// at start only delays storing: the writer spools).
    pub fn open(url: &str, indexes: &[String]) -> Result<MongoStore, AuditError> {
        Self::open_in(url, None, indexes)
    }

    /// Like [`MongoStore::open`] but in the named database (tests use a throwaway one).
    pub fn open_database(
        url: &str,
        database: &str,
        indexes: &[String],
    ) -> Result<MongoStore, AuditError> {
        Self::open_in(url, Some(database), indexes)
    }

    fn open_in(
        url: &str,
        database: Option<&str>,
        indexes: &[String],
    ) -> Result<MongoStore, AuditError> {
        let err = |e: mongodb::error::Error| AuditError::Mongo {
            url: url.to_owned(),
            source: Box::new(e),
        };
        let mut opts = ClientOptions::parse(url).run().map_err(err)?;
        opts.app_name = Some("pxelator".into());
        opts.server_selection_timeout = Some(Duration::from_secs(3));
        opts.connect_timeout = Some(Duration::from_secs(3));
        let db_name = database
            .map(str::to_owned)
            .or_else(|| opts.default_database.clone())
            .unwrap_or_else(|| "pxelator".into());
        let client = Client::with_options(opts).map_err(err)?;
        let db = client.database(&db_name);
        Ok(MongoStore {
            url: url.to_owned(),
            coll: db.collection("events"),
            db,
            indexes: indexes.to_vec(),
            max_time: None,
        })
    }

    /// The same store whose queries MongoDB stops after `d` (`maxTimeMS`).
    pub fn with_max_time(mut self, d: Duration) -> MongoStore {
        self.max_time = Some(d);
        self
    }

    fn err(&self) -> impl Fn(mongodb::error::Error) -> AuditError + '_ {
        |e| AuditError::Mongo {
            url: self.url.clone(),
            source: Box::new(e),
        }
    }

    /// All documents of a cursor as JSON; `strip_id` drops `_id` (stored events) or keeps it
    /// (aggregation results, where `_id` is the group).
    fn docs(
        &self,
        cursor: mongodb::sync::Cursor<Document>,
        strip_id: bool,
    ) -> Result<Vec<Value>, AuditError> {
        cursor
            .map(|d| d.map(|d| doc_to_json(d, strip_id)).map_err(self.err()))
            .collect()
    }
}

impl AuditStore for MongoStore {
    fn prepare(&mut self) -> Result<(), AuditError> {
        let models: Vec<IndexModel> = INDEXED
            .iter()
            .map(|f| f.to_string())
            .chain(self.indexes.iter().cloned())
            .map(|spec| {
                let (name, fields) = super::index_spec(&spec);
                let mut keys = Document::new();
                for f in fields {
                    keys.insert(field(&f), 1);
                }
                IndexModel::builder()
                    .keys(keys)
                    .options(IndexOptions::builder().name(name).build())
                    .build()
            })
            .chain([IndexModel::builder().keys(doc! {"time_ms": 1}).build()])
            .collect();
        self.coll.create_indexes(models).run().map_err(self.err())?;
        Ok(())
    }

    fn insert(&mut self, rows: &[Record]) -> Result<usize, AuditError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let docs: Vec<Document> = rows.iter().map(record_to_doc).collect();
        match self.coll.insert_many(docs).ordered(false).run() {
            Ok(r) => Ok(r.inserted_ids.len()),
            Err(e) => {
                // Already stored (a spool replay): duplicate-key errors only, nothing lost.
                if let mongodb::error::ErrorKind::InsertMany(im) = e.kind.as_ref() {
                    let dups_only = im.write_concern_error.is_none()
                        && im
                            .write_errors
                            .as_ref()
                            .is_some_and(|w| w.iter().all(|x| x.code == 11000));
                    if dups_only {
                        let n = im.write_errors.as_ref().map_or(0, Vec::len);
                        return Ok(rows.len() - n);
                    }
                }
                Err(self.err()(e))
            }
        }
    }

    fn prune(&mut self, before_ms: i64) -> Result<u64, AuditError> {
        let r = self
            .coll
            .delete_many(doc! {"time_ms": {"$lt": before_ms}})
            .run()
            .map_err(self.err())?;
        Ok(r.deleted_count)
    }

    fn count(&self) -> Result<u64, AuditError> {
        self.coll.count_documents(doc! {}).run().map_err(self.err())
    }

    /// Reads the cursor one batch at a time, handing each document on; an error from `f`
    /// drops the cursor (the server kills it).
    fn find_each(
        &self,
        filter: &Value,
        sort: Option<&Value>,
        limit: Option<u64>,
        f: &mut dyn FnMut(Value) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        filter_to_sql(filter)?;
        sort_to_sql(sort)?;
        let mut q = self
            .coll
            .find(to_doc(&mongo_filter(filter))?)
            .sort(to_doc(&mongo_sort(sort))?)
            .batch_size(1000);
        if let Some(n) = limit {
            q = q.limit(n.min(i64::MAX as u64) as i64);
        }
        if let Some(t) = self.max_time {
            q = q.max_time(t);
        }
        for d in q.run().map_err(self.err())? {
            f(doc_to_json(d.map_err(self.err())?, true))?;
        }
        Ok(())
    }

    fn aggregate(&self, pipeline: &Value) -> Result<Vec<Value>, AuditError> {
        pipeline_to_sql(pipeline)?;
        let mut stages = mongo_pipeline(pipeline)
            .iter()
            .map(to_doc)
            .collect::<Result<Vec<_>, _>>()?;
        // One more than the cap, so too many groups is an error rather than a silent cut.
        stages.push(doc! {"$limit": (super::query::MAX_GROUPS + 1) as i64});
        let mut q = self.coll.aggregate(stages).allow_disk_use(true);
        if let Some(t) = self.max_time {
            q = q.max_time(t);
        }
        let out = self.docs(q.run().map_err(self.err())?, false)?;
        if out.len() > super::query::MAX_GROUPS {
            return Err(super::query::QueryError::TooManyGroups(super::query::MAX_GROUPS).into());
        }
        Ok(out)
    }

    fn explain_aggregate(&self, pipeline: &Value) -> Result<Vec<String>, AuditError> {
        pipeline_to_sql(pipeline)?;
        let stages = mongo_pipeline(pipeline)
            .iter()
            .map(to_doc)
            .collect::<Result<Vec<_>, _>>()?;
        self.explain_command(doc! {
            "explain": {"aggregate": "events", "pipeline": stages, "cursor": {}},
            "verbosity": "queryPlanner",
        })
    }

    fn explain(&self, filter: &Value, sort: Option<&Value>) -> Result<Vec<String>, AuditError> {
        filter_to_sql(filter)?;
        self.explain_command(doc! {
            "explain": {
                "find": "events",
                "filter": to_doc(&mongo_filter(filter))?,
                "sort": to_doc(&mongo_sort(sort))?,
            },
            "verbosity": "queryPlanner",
        })
    }

    fn scan(
        &self,
        f: &mut dyn FnMut(i64, Value) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        let cur = self
            .coll
            .find(doc! {})
            .sort(doc! {"time_ms": 1, "_id": 1})
            .run()
            .map_err(self.err())?;
        for d in cur {
            let d = d.map_err(self.err())?;
            let id = match d.get("_id") {
                Some(Bson::Int64(i)) => *i,
                Some(Bson::Int32(i)) => i64::from(*i),
                _ => 0,
            };
            f(id, doc_to_json(d, true))?;
        }
        Ok(())
    }
}

impl MongoStore {
    fn explain_command(&self, cmd: Document) -> Result<Vec<String>, AuditError> {
        let out = self.db.run_command(cmd).run().map_err(self.err())?;
        let plan = doc_to_json(out, false);
        // find: queryPlanner at the top; aggregate: inside the first stage's $cursor.
        let winning = plan
            .pointer("/queryPlanner/winningPlan")
            .or_else(|| plan.pointer("/stages/0/$cursor/queryPlanner/winningPlan"))
            .cloned()
            .unwrap_or(plan);
        let mut lines = Vec::new();
        plan_stages(&winning, &mut lines);
        if lines.is_empty() {
            lines.push(format!("(server gave no plan stages) {winning}"));
        }
        Ok(lines)
    }
}

/// `STAGE index-name` lines from an explain plan, outermost first.
fn plan_stages(v: &Value, out: &mut Vec<String>) {
    if let Some(stage) = v.get("stage").and_then(Value::as_str) {
        match v.get("indexName").and_then(Value::as_str) {
            Some(ix) => out.push(format!("{stage} {ix}")),
            None => out.push(stage.to_owned()),
        }
    }
    for key in ["inputStage", "queryPlan"] {
        if let Some(child) = v.get(key) {
            plan_stages(child, out);
        }
    }
    if let Some(Value::Array(children)) = v.get("inputStages") {
        for c in children {
            plan_stages(c, out);
        }
    }
}

/// The document stored for a record.
pub fn record_to_doc(r: &Record) -> Document {
    let mut d = match json_to_bson(&r.doc) {
        Bson::Document(d) => d,
        other => doc! {"value": other},
    };
    d.insert("_id", r.id);
    d.insert("time", crate::clock::rfc3339_ms(r.time_ms));
    d.insert("time_ms", r.time_ms);
    d.insert("source", r.source.as_ref());
    d.insert("kind", r.kind.as_ref());
    for (k, v) in [("mac", &r.mac), ("ip", &r.ip), ("host", &r.host)] {
        if let Some(v) = v {
            d.insert(k, v.as_str());
        }
    }
    d
}

/// JSON → BSON with integers as Int64 and other numbers as Double.
pub fn json_to_bson(v: &Value) -> Bson {
    match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(a) => Bson::Array(a.iter().map(json_to_bson).collect()),
        Value::Object(m) => Bson::Document(
            m.iter()
                .map(|(k, v)| (k.clone(), json_to_bson(v)))
                .collect(),
        ),
    }
}

fn to_doc(v: &Value) -> Result<Document, AuditError> {
    match json_to_bson(v) {
        Bson::Document(d) => Ok(d),
        other => Err(AuditError::Other(format!(
            "expected a JSON object, got {other}"
        ))),
    }
}

/// BSON → plain JSON (numbers as numbers, dates and ids as strings); `strip_id` drops `_id`.
pub fn doc_to_json(d: Document, strip_id: bool) -> Value {
    let mut m = Map::new();
    for (k, v) in d {
        if strip_id && k == "_id" {
            continue;
        }
        m.insert(k, bson_to_json(v));
    }
    Value::Object(m)
}

fn bson_to_json(v: Bson) -> Value {
    match v {
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Boolean(b) => b.into(),
        Bson::Int32(i) => i.into(),
        Bson::Int64(i) => i.into(),
        Bson::Double(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Bson::String(s) => s.into(),
        Bson::Array(a) => a.into_iter().map(bson_to_json).collect(),
        Bson::Document(d) => doc_to_json(d, false),
        Bson::DateTime(t) => t.timestamp_millis().into(),
        Bson::ObjectId(o) => o.to_hex().into(),
        other => other.into_relaxed_extjson(),
    }
}

/// `time` is `time_ms` in MongoDB documents too (a number); everything else passes through.
fn field(name: &str) -> String {
    if name == "time" {
        "time_ms".into()
    } else {
        name.to_owned()
    }
}

/// A filter with field names mapped by [`field`] (recursing through `$and`/`$or`).
pub fn mongo_filter(filter: &Value) -> Value {
    match filter {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| match k.as_str() {
                    "$and" | "$or" => (
                        k.clone(),
                        Value::Array(
                            v.as_array()
                                .map(|a| a.iter().map(mongo_filter).collect())
                                .unwrap_or_default(),
                        ),
                    ),
                    "time" | "time_ms" => (field(k), time_values(v)),
                    _ => (field(k), v.clone()),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A `time` condition with date strings as unix milliseconds (what `time_ms` holds), as the
/// embedded store reads them. Strings that are not dates were refused by `filter_to_sql`,
/// which every query runs first.
fn time_values(v: &Value) -> Value {
    let one = |x: &Value| super::query::time_operand(x, "").unwrap_or_else(|_| x.clone());
    match v {
        Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => {
            Value::Object(ops.iter().map(|(op, x)| (op.clone(), one(x))).collect())
        }
        other => one(other),
    }
}

/// The sort, defaulting to time order, with `_id` (insertion order) as the last tie-break.
pub fn mongo_sort(sort: Option<&Value>) -> Value {
    let mut out = Map::new();
    let mut last = Value::from(1);
    if let Some(Value::Object(m)) = sort {
        for (k, v) in m {
            out.insert(field(k), v.clone());
            last = v.clone();
        }
    } else {
        out.insert("time_ms".into(), 1.into());
    }
    out.insert("_id".into(), last);
    Value::Object(out)
}

/// `"$time"` → `"$time_ms"` in a field reference.
fn field_ref(v: &Value) -> Value {
    match v {
        Value::String(s) => match s.strip_prefix('$') {
            Some(f) => Value::String(format!("${}", field(f))),
            None => v.clone(),
        },
        // Expressions (a time bucket in `_id`): their field references too.
        Value::Array(a) => Value::Array(a.iter().map(field_ref).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, x)| (k.clone(), field_ref(x))).collect())
        }
        other => other.clone(),
    }
}

/// The pipeline as MongoDB runs it (see the module doc for the rewrites).
pub fn mongo_pipeline(pipeline: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for stage in pipeline.as_array().into_iter().flatten() {
        let Some((name, body)) = stage.as_object().and_then(|m| m.iter().next()) else {
            continue;
        };
        match name.as_str() {
            "$match" => out.push(serde_json::json!({ "$match": mongo_filter(body) })),
            "$group" => {
                let mut g = Map::new();
                let mut ordered = false;
                for (k, v) in body.as_object().into_iter().flatten() {
                    if k == "_id" {
                        let id = match v {
                            Value::Object(parts) => Value::Object(
                                parts
                                    .iter()
                                    .map(|(n, r)| (n.clone(), field_ref(r)))
                                    .collect(),
                            ),
                            other => field_ref(other),
                        };
                        g.insert(k.clone(), id);
                        continue;
                    }
                    let acc = match v.as_object().and_then(|m| m.iter().next()) {
                        Some((op, _)) if op == "$count" => serde_json::json!({"$sum": 1}),
                        Some((op, arg)) => {
                            ordered |= op == "$first" || op == "$last";
                            let mut m = Map::new();
                            m.insert(op.clone(), field_ref(arg));
                            Value::Object(m)
                        }
                        None => v.clone(),
                    };
                    g.insert(k.clone(), acc);
                }
                if ordered {
                    out.push(serde_json::json!({"$sort": {"time_ms": 1, "_id": 1}}));
                }
                out.push(serde_json::json!({ "$group": g }));
            }
            _ => out.push(stage.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn time_is_time_ms_and_count_is_sum() {
        assert_eq!(
            mongo_filter(&json!({"time": {"$gt": 5}, "$or": [{"time": 1}, {"mac": "x"}]})),
            json!({"time_ms": {"$gt": 5}, "$or": [{"time_ms": 1}, {"mac": "x"}]})
        );
        assert_eq!(
            mongo_filter(
                &json!({"time": {"$gte": "1970-01-01T00:00:02Z", "$in": ["1970-01-01", 7]}})
            ),
            json!({"time_ms": {"$gte": 2000, "$in": [0, 7]}}),
            "dates as the milliseconds time_ms holds"
        );
        assert_eq!(
            mongo_sort(Some(&json!({"time": -1}))),
            json!({"time_ms": -1, "_id": -1})
        );
        assert_eq!(mongo_sort(None), json!({"time_ms": 1, "_id": 1}));
        assert_eq!(
            mongo_pipeline(&json!([
                {"$match": {"time": {"$gte": 1}}},
                {"$group": {"_id": {"d": "$time"}, "n": {"$count": {}}, "f": {"$first": "$file"}}},
                {"$sort": {"n": -1}}
            ])),
            vec![
                json!({"$match": {"time_ms": {"$gte": 1}}}),
                json!({"$sort": {"time_ms": 1, "_id": 1}}),
                json!({"$group": {"_id": {"d": "$time_ms"}, "n": {"$sum": 1}, "f": {"$first": "$file"}}}),
                json!({"$sort": {"n": -1}}),
            ]
        );
    }

    #[test]
    fn documents_round_trip_through_bson() {
        let v = json!({"a": 1, "b": 1.5, "c": "x", "d": [true, null], "e": {"f": -7}});
        assert_eq!(doc_to_json(to_doc(&v).unwrap(), false), v);
    }
}
