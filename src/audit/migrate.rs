//! Migrations the original system needed: import a CouchDB dump
//! (`GET /pxelator/_all_docs?include_docs=true`), export to JSON lines (one document per line,
//! as `audit find` prints them) and to a BSON file that `mongorestore` loads
//! (`mongorestore --db pxelator --collection events events.bson`, or put it at
//! `dump/pxelator/events.bson`).
//!
//! The dump is read as a stream (one row at a time), so its size is bounded by disk, not RAM.
//!
//! CouchDB document → record (the original wrote `yyyy-mm-dd.HH:MM:SS.package.ident` ids and a
//! `package` key with `time`, `name`, `caller`, `line`):
//! - time: `package.time` (decimal unix seconds), else a numeric `time` (seconds, or
//!   milliseconds when > 10^11) or an RFC 3339 `time`, else the timestamp at the start of `_id`
//!   (taken as UTC); a document without any is rejected;
//! - source: `package.name`, else `source`, else "couchdb"; kind: `kind`, else
//!   `package.caller`, else the source;
//! - mac (normalised when it parses), ip, host (`host` or `hostname`) from the document;
//! - the document itself, without `_rev`, with `_id` kept as `couch_id`.
//!
//! Design documents (`_design/…`) are skipped. Rejected rows are written, whole, with the
//! reason, to a `.rejected.jsonl` file next to the dump: nothing is silently lost.
use super::{record_id, AuditError, AuditStore, Record};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What an import did.
#[derive(Debug, Default, PartialEq)]
pub struct ImportReport {
    pub imported: u64,
    pub skipped_design: u64,
    pub rejected: u64,
    /// Where rejected rows went (only when there were some).
    pub rejected_file: Option<PathBuf>,
}

/// Parses `2009-07-31.12:34:56`, `2009-07-31T12:34:56(.fff)Z` or `2009-07-31 12:34:56` at the
/// start of `s` as UTC; unix milliseconds.
pub fn leading_timestamp_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || !matches!(b[10], b'.' | b'T' | b' ') {
        return None;
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let norm = format!("{} {}", &s[..10], &s[11..19]);
    let t = time::PrimitiveDateTime::parse(&norm, fmt)
        .ok()?
        .assume_utc();
    let mut ms = t.unix_timestamp() * 1000;
    // Optional fraction after the seconds (RFC 3339 style).
    if let Some(frac) = s[19..].strip_prefix('.') {
        let digits: String = frac
            .chars()
            .take_while(char::is_ascii_digit)
            .take(3)
            .collect();
        if !digits.is_empty() {
            ms += digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
        }
    }
    Some(ms)
}

/// The record for one CouchDB document, or why it cannot be imported.
pub fn couch_record(doc: &Value, seq: u64) -> Result<Record, String> {
    let Value::Object(m) = doc else {
        return Err("doc is not a JSON object".into());
    };
    let couch_id = m.get("_id").and_then(Value::as_str).unwrap_or("");
    let package = m.get("package").and_then(Value::as_object);
    let time_ms = package
        .and_then(|p| p.get("time"))
        .and_then(Value::as_f64)
        .map(|s| (s * 1000.0).round() as i64)
        .or_else(|| match m.get("time") {
            Some(Value::Number(n)) => n.as_f64().map(|t| {
                if t > 1e11 {
                    t as i64
                } else {
                    (t * 1000.0).round() as i64
                }
            }),
            Some(Value::String(s)) => leading_timestamp_ms(s),
            _ => None,
        })
        .or_else(|| leading_timestamp_ms(couch_id))
        .ok_or_else(|| {
            format!(
                "document {couch_id:?} has no time: expected package.time, a time field or an _id \
                 starting with yyyy-mm-dd.HH:MM:SS"
            )
        })?;
    let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
    let source = package
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| text("source"))
        .unwrap_or_else(|| "couchdb".into());
    let kind = text("kind")
        .or_else(|| {
            package
                .and_then(|p| p.get("caller"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| source.clone());
    let mac = text("mac").map(|s| {
        s.parse::<crate::core::mac::Mac>()
            .map(|m| m.to_string())
            .unwrap_or(s)
    });
    let mut stored = Map::new();
    for (k, v) in m {
        match k.as_str() {
            "_rev" => {}
            "_id" => {
                stored.insert("couch_id".into(), v.clone());
            }
            _ if v.is_null() => {}
            _ => {
                stored.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Record {
        id: record_id(time_ms, seq),
        time_ms,
        source: Cow::Owned(source),
        kind: Cow::Owned(kind),
        mac,
        ip: text("ip"),
        host: text("host").or_else(|| text("hostname")),
        doc: Value::Object(stored),
    })
}

/// Calls `f` for each element of the top-level `rows` array, without holding the dump in memory.
struct Rows<'a>(&'a mut dyn FnMut(Value) -> Result<(), String>);

impl<'de> Visitor<'de> for Rows<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a CouchDB _all_docs response: {\"rows\": [...]}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "rows" {
                map.next_value_seed(RowSeq(&mut *self.0))?;
                seen = true;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if !seen {
            return Err(serde::de::Error::custom(
                "no \"rows\" array: is this the output of _all_docs?include_docs=true?",
            ));
        }
        Ok(())
    }
}

struct RowSeq<'a>(&'a mut dyn FnMut(Value) -> Result<(), String>);

impl<'de> DeserializeSeed<'de> for RowSeq<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeq<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of rows")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(row) = seq.next_element::<Value>()? {
            (self.0)(row).map_err(serde::de::Error::custom)?;
        }
        Ok(())
    }
}

/// Imports a CouchDB `_all_docs?include_docs=true` dump into `store`, in batches of 10 000.
pub fn import_couchdb(path: &Path, store: &mut dyn AuditStore) -> Result<ImportReport, AuditError> {
    let io = |source| AuditError::Other(format!("{}: {source}", path.display()));
    let file = std::fs::File::open(path).map_err(io)?;
    let rejected_path = PathBuf::from(format!("{}.rejected.jsonl", path.display()));
    let mut rejected_out: Option<std::io::BufWriter<std::fs::File>> = None;
    let mut report = ImportReport::default();
    let mut batch: Vec<Record> = Vec::with_capacity(10_000);
    let mut seq = 0u64;
    let mut store_err: Option<AuditError> = None;
    {
        let mut on_row = |row: Value| -> Result<(), String> {
            seq += 1;
            let id = row.get("id").and_then(Value::as_str).unwrap_or("");
            if id.starts_with("_design/") {
                report.skipped_design += 1;
                return Ok(());
            }
            let rec = match row.get("doc") {
                Some(doc) => couch_record(doc, seq),
                None => Err(format!(
                    "row {id:?} has no doc: dump with ?include_docs=true"
                )),
            };
            match rec {
                Ok(r) => batch.push(r),
                Err(why) => {
                    report.rejected += 1;
                    if rejected_out.is_none() {
                        let f = std::fs::File::create(&rejected_path)
                            .map_err(|e| format!("{}: {e}", rejected_path.display()))?;
                        rejected_out = Some(std::io::BufWriter::new(f));
                    }
                    let line = serde_json::json!({"reason": why, "row": row});
                    let out = rejected_out.as_mut().expect("opened above");
                    writeln!(out, "{line}")
                        .map_err(|e| format!("{}: {e}", rejected_path.display()))?;
                }
            }
            if batch.len() >= 10_000 {
                if let Err(e) = store.insert(&batch) {
                    let msg = e.to_string();
                    store_err = Some(e);
                    return Err(msg);
                }
                report.imported += batch.len() as u64;
                batch.clear();
            }
            Ok(())
        };
        let mut de =
            serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 20, file));
        let res = de.deserialize_map(Rows(&mut on_row));
        if let Some(e) = store_err.take() {
            return Err(e);
        }
        res.map_err(|e| {
            AuditError::Other(format!(
                "{}: {e} ({} documents imported before this point)",
                path.display(),
                report.imported
            ))
        })?;
    }
    store.insert(&batch)?;
    report.imported += batch.len() as u64;
    if let Some(mut out) = rejected_out {
        out.flush().map_err(io)?;
        report.rejected_file = Some(rejected_path);
    }
    Ok(report)
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON document per line.
    Jsonl,
    /// Concatenated BSON documents, as mongodump writes and mongorestore reads.
    Bson,
}

/// Writes every stored document in time order; returns how many.
pub fn export(
    store: &dyn AuditStore,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    let mut n = 0u64;
    let io = |e: std::io::Error| AuditError::Other(format!("export: {e}"));
    store.scan(&mut |id, doc| {
        match format {
            ExportFormat::Jsonl => {
                serde_json::to_writer(&mut *out, &doc)
                    .map_err(|e| AuditError::Other(format!("export: {e}")))?;
                out.write_all(b"\n").map_err(io)?;
            }
            ExportFormat::Bson => {
                let mut d = mongodb::bson::Document::new();
                d.insert("_id", id);
                if let mongodb::bson::Bson::Document(rest) = super::mongo::json_to_bson(&doc) {
                    d.extend(rest);
                }
                d.to_writer(&mut *out)
                    .map_err(|e| AuditError::Other(format!("export: {e}")))?;
            }
        }
        n += 1;
        Ok(())
    })?;
    out.flush().map_err(io)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::sqlite::SqliteStore;
    use serde_json::json;

    #[test]
    fn timestamps_in_ids_and_fields() {
        assert_eq!(
            leading_timestamp_ms("2009-07-31.12:34:56.dhcp.ident"),
            Some(1_249_043_696_000)
        );
        assert_eq!(
            leading_timestamp_ms("2009-07-31T12:34:56.25Z"),
            Some(1_249_043_696_250)
        );
        assert_eq!(leading_timestamp_ms("2009-13-31.12:34:56"), None);
        assert_eq!(leading_timestamp_ms("abc"), None);
    }

    #[test]
    fn couch_documents_map_to_records() {
        let r = couch_record(
            &json!({"_id": "2009-07-31.12:34:56.amt.x", "_rev": "3-abc",
                    "package": {"time": 1249043696.5, "name": "amt", "caller": "power_state", "line": 42},
                    "mac": "00-1A-2B-3C-4D-5E", "ip": "10.0.0.9", "hostname": "kiosk9", "SystemPowerState": 2}),
            1,
        )
        .unwrap();
        assert_eq!(r.time_ms, 1_249_043_696_500);
        assert_eq!((r.source.as_ref(), r.kind.as_ref()), ("amt", "power_state"));
        assert_eq!(r.mac.as_deref(), Some("00:1a:2b:3c:4d:5e"));
        assert_eq!(r.host.as_deref(), Some("kiosk9"));
        assert_eq!(r.doc["couch_id"], "2009-07-31.12:34:56.amt.x");
        assert!(r.doc.get("_rev").is_none());
        let by_id = couch_record(&json!({"_id": "2009-07-31.12:34:56.dhcp.x"}), 2).unwrap();
        assert_eq!(by_id.time_ms, 1_249_043_696_000);
        assert_eq!(by_id.source, "couchdb");
        let e = couch_record(&json!({"_id": "nodate"}), 3).unwrap_err();
        assert!(
            e.contains("\"nodate\"") && e.contains("package.time"),
            "{e}"
        );
    }

    #[test]
    fn import_streams_rows_and_keeps_rejects() {
        let d = tempfile::tempdir().unwrap();
        let dump = d.path().join("dump.json");
        std::fs::write(
            &dump,
            json!({"total_rows": 4, "offset": 0, "rows": [
                {"id": "_design/amt", "key": "_design/amt", "value": {"rev": "1"}, "doc": {"_id": "_design/amt", "views": {}}},
                {"id": "a", "doc": {"_id": "2009-07-31.12:00:00.dhcp.1", "package": {"name": "dhcp"}, "mac": "52:54:00:00:00:01"}},
                {"id": "b", "doc": {"_id": "b", "time": "2009-08-01T00:00:00Z", "kind": "ping", "ip": "10.0.0.1", "rtt": 1.5}},
                {"id": "c", "doc": {"_id": "c", "text": "undated"}}
            ]})
            .to_string(),
        )
        .unwrap();
        let mut s = SqliteStore::open(&d.path().join("a.db"), &[]).unwrap();
        let rep = import_couchdb(&dump, &mut s).unwrap();
        assert_eq!((rep.imported, rep.skipped_design, rep.rejected), (2, 1, 1));
        let rej = std::fs::read_to_string(rep.rejected_file.unwrap()).unwrap();
        assert!(rej.contains("\"c\"") && rej.contains("undated"), "{rej}");
        assert_eq!(s.count().unwrap(), 2);
        let ping = s.find(&json!({"kind": "ping"}), None, None).unwrap();
        assert_eq!(ping[0]["rtt"], 1.5);

        let mut out = Vec::new();
        assert_eq!(export(&s, ExportFormat::Jsonl, &mut out).unwrap(), 2);
        let lines: Vec<Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines[0]["source"], "dhcp");
        assert_eq!(lines[1]["kind"], "ping");

        let mut bson = Vec::new();
        assert_eq!(export(&s, ExportFormat::Bson, &mut bson).unwrap(), 2);
        let mut r = &bson[..];
        let first = mongodb::bson::Document::from_reader(&mut r).unwrap();
        assert_eq!(first.get_str("source").unwrap(), "dhcp");
        assert!(first.get_i64("_id").is_ok());
        let second = mongodb::bson::Document::from_reader(&mut r).unwrap();
        assert_eq!(second.get_f64("rtt").unwrap(), 1.5);
        assert!(r.is_empty());

        std::fs::write(&dump, "{\"rows\": [ {\"id\": \"a\", ").unwrap();
        let e = import_couchdb(&dump, &mut s).unwrap_err().to_string();
        assert!(e.contains("dump.json"), "{e}");
    }
}
