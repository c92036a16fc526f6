//! MongoDB-style filters, sorts and limits, translated to SQL over the embedded store's schema.
//! Pure: JSON in, SQL text + bound parameters out. Errors name the operator or field at fault.
//!
//! Supported: `{field: value}` (equality), `$eq $ne $gt $gte $lt $lte $in $nin $exists`,
//! `$and $or` (arrays of filters). `time`, `source`, `kind`, `mac`, `ip` and `host` are real
//! columns (indexed); any other field is read from the JSON document (`json_extract(doc, '$.f')`).
use serde_json::Value;

/// Columns of the `events` table that filters may use directly.
pub const COLUMNS: &[&str] = &["time", "source", "kind", "mac", "ip", "host"];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueryError {
    #[error("filter is not a JSON object: {0} (example: '{{\"mac\": \"52:54:00:12:34:56\"}}')")]
    NotObject(String),
    #[error("unknown operator {op} in field {field:?}; use one of $eq $ne $gt $gte $lt $lte $in $nin $exists")]
    UnknownOperator { field: String, op: String },
    #[error("{op} needs {what}, got {got}")]
    BadOperand {
        op: String,
        what: &'static str,
        got: String,
    },
    #[error("field name {0:?} is not allowed (letters, digits, '_' and '.' only)")]
    BadField(String),
    #[error("sort must be an object like '{{\"time\": -1}}' with 1 or -1 values, got {0}")]
    BadSort(String),
    #[error("the pipeline makes more than {0} groups; group coarser, $match a shorter time, or end it with a $limit")]
    TooManyGroups(usize),
}

/// A bound SQL parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int(i64),
    Real(f64),
    Text(String),
    Null,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Sql {
    pub where_clause: String,
    pub params: Vec<Param>,
}

pub fn column_expr(field: &str) -> Result<String, QueryError> {
    if field.is_empty()
        || !field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        return Err(QueryError::BadField(field.to_owned()));
    }
    Ok(match field {
        "time" | "time_ms" => "time_ms".into(),
        f if COLUMNS.contains(&f) => f.into(),
        f => format!("json_extract(doc, '$.{f}')"),
    })
}

fn param(v: &Value, op: &str) -> Result<Param, QueryError> {
    Ok(match v {
        Value::Null => Param::Null,
        Value::Bool(b) => Param::Int(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Param::Int(i),
            None => Param::Real(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Param::Text(s.clone()),
        other => {
            return Err(QueryError::BadOperand {
                op: op.into(),
                what: "a string, number, bool or null",
                got: other.to_string(),
            })
        }
    })
}

/// Translates a filter document to a WHERE clause ("1" when empty).
/// Documents a `find` over the API returns when it names no limit, and the most it may ask for.
pub const DEFAULT_LIMIT: u64 = 1_000;
pub const MAX_LIMIT: u64 = 100_000;

/// The most documents an aggregation may return (both backends stop reading past it).
pub const MAX_GROUPS: usize = 100_000;

/// The limit an API `find` runs with.
pub fn api_limit(asked: Option<u64>) -> Result<u64, QueryError> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if n <= MAX_LIMIT => Ok(n),
        Some(n) => Err(QueryError::BadOperand {
            op: "limit".into(),
            what: "at most 100000 (narrow the filter, e.g. by time, and ask again)",
            got: n.to_string(),
        }),
    }
}

pub fn filter_to_sql(filter: &Value) -> Result<Sql, QueryError> {
    let mut sql = Sql::default();
    sql.where_clause = clause(filter, &mut sql.params)?;
    Ok(sql)
}

fn clause(filter: &Value, params: &mut Vec<Param>) -> Result<String, QueryError> {
    let Value::Object(map) = filter else {
        return Err(QueryError::NotObject(filter.to_string()));
    };
    let mut parts = Vec::new();
    for (key, val) in map {
        match key.as_str() {
            "$and" | "$or" => {
                let Value::Array(items) = val else {
                    return Err(QueryError::BadOperand {
                        op: key.clone(),
                        what: "an array of filters",
                        got: val.to_string(),
                    });
                };
                if items.is_empty() {
                    return Err(QueryError::BadOperand {
                        op: key.clone(),
                        what: "a non-empty array",
                        got: "[]".into(),
                    });
                }
                let subs = items
                    .iter()
                    .map(|f| clause(f, params))
                    .collect::<Result<Vec<_>, _>>()?;
                let joiner = if key == "$and" { " AND " } else { " OR " };
                parts.push(format!("({})", subs.join(joiner)));
            }
            k if k.starts_with('$') => {
                return Err(QueryError::UnknownOperator {
                    field: "(top level)".into(),
                    op: k.into(),
                });
            }
            field => {
                let col = column_expr(field)?;
                match val {
                    Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => {
                        for (op, operand) in ops {
                            parts.push(operator(&col, field, op, operand, params)?);
                        }
                    }
                    v => parts.push(operator(&col, field, "$eq", v, params)?),
                }
            }
        }
    }
    Ok(if parts.is_empty() {
        "1".into()
    } else {
        parts.join(" AND ")
    })
}

fn operator(
    col: &str,
    field: &str,
    op: &str,
    operand: &Value,
    params: &mut Vec<Param>,
) -> Result<String, QueryError> {
    let is_time = col == "time_ms";
    let operand = &if is_time {
        time_operand(operand, op)?
    } else {
        operand.clone()
    };
    let cmp = |sym: &str, params: &mut Vec<Param>| -> Result<String, QueryError> {
        let p = param(operand, op)?;
        // Ids are (time_ms << 20) | sequence: a time bound is also a rowid range, which
        // SQLite reads without scanning the table.
        let id_bound = match (&p, sym) {
            (Param::Int(t), ">=" | ">" | "<" | "<=") if is_time => {
                let t = if matches!(sym, ">" | "<=") {
                    t.checked_add(1)
                } else {
                    Some(*t)
                };
                t.and_then(|t| t.checked_mul(1 << 20)).map(|b| {
                    let s = if matches!(sym, ">=" | ">") { ">=" } else { "<" };
                    (s, b)
                })
            }
            _ => None,
        };
        params.push(p);
        Ok(match id_bound {
            Some((s, b)) => {
                params.push(Param::Int(b));
                format!("({col} {sym} ? AND id {s} ?)")
            }
            None => format!("{col} {sym} ?"),
        })
    };
    match op {
        "$eq" if operand.is_null() => Ok(format!("{col} IS NULL")),
        "$ne" if operand.is_null() => Ok(format!("{col} IS NOT NULL")),
        "$eq" => cmp("=", params),
        "$ne" => {
            params.push(param(operand, op)?);
            Ok(format!("({col} IS NULL OR {col} != ?)"))
        }
        "$gt" => cmp(">", params),
        "$gte" => cmp(">=", params),
        "$lt" => cmp("<", params),
        "$lte" => cmp("<=", params),
        "$in" | "$nin" => {
            let Value::Array(items) = operand else {
                return Err(QueryError::BadOperand {
                    op: op.into(),
                    what: "an array",
                    got: operand.to_string(),
                });
            };
            if items.is_empty() {
                return Ok(if op == "$in" { "0".into() } else { "1".into() });
            }
            for v in items {
                params.push(param(v, op)?);
            }
            let marks = vec!["?"; items.len()].join(", ");
            Ok(if op == "$in" {
                format!("{col} IN ({marks})")
            } else {
                format!("({col} IS NULL OR {col} NOT IN ({marks}))")
            })
        }
        "$exists" => match operand {
            Value::Bool(true) => Ok(format!("{col} IS NOT NULL")),
            Value::Bool(false) => Ok(format!("{col} IS NULL")),
            other => Err(QueryError::BadOperand {
                op: op.into(),
                what: "true or false",
                got: other.to_string(),
            }),
        },
        other => Err(QueryError::UnknownOperator {
            field: field.into(),
            op: other.into(),
        }),
    }
}

/// A `time` operand: unix milliseconds as given, or a date string (see
/// [`crate::clock::parse_ms`]) turned into them; arrays (`$in`) element by element.
pub fn time_operand(v: &Value, op: &str) -> Result<Value, QueryError> {
    match v {
        Value::String(s) => crate::clock::parse_ms(s).map(Value::from).ok_or_else(|| {
            QueryError::BadOperand {
                op: format!("time {op}"),
                what: "a time like \"2026-11-30\", \"2026-11-30 08:00\" or \"2026-11-30T08:00:00Z\" (UTC), or unix milliseconds",
                got: v.to_string(),
            }
        }),
        Value::Array(items) => items
            .iter()
            .map(|i| time_operand(i, op))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// `1` → ASC, `-1` → DESC (MongoDB sort directions).
fn direction(v: &Value) -> Option<&'static str> {
    match v.as_i64() {
        Some(1) => Some("ASC"),
        Some(-1) => Some("DESC"),
        _ => None,
    }
}

/// The same order as [`sort_to_sql`] as rowid order, for a sort by time alone (or none): ids
/// are (time_ms << 20) | sequence, so id order is time order, read straight off the table —
/// newest first with a limit stops after that many matching rows instead of sorting them all.
pub fn sort_by_id(sort: Option<&Value>) -> Option<&'static str> {
    let Some(sort) = sort else {
        return Some("id ASC");
    };
    let map = sort.as_object()?;
    match (map.len(), map.iter().next()) {
        (1, Some((k, dir))) if k == "time" || k == "time_ms" => match direction(dir)? {
            "ASC" => Some("id ASC"),
            _ => Some("id DESC"),
        },
        _ => None,
    }
}

/// Translates `{"field": 1|-1, ...}` to an ORDER BY list (default: time ascending).
pub fn sort_to_sql(sort: Option<&Value>) -> Result<String, QueryError> {
    let Some(sort) = sort else {
        return Ok("time_ms ASC, id ASC".into());
    };
    let Value::Object(map) = sort else {
        return Err(QueryError::BadSort(sort.to_string()));
    };
    let mut parts = Vec::new();
    let mut last = "ASC";
    for (field, dir) in map {
        let d = direction(dir).ok_or_else(|| QueryError::BadSort(sort.to_string()))?;
        parts.push(format!("{} {d}", column_expr(field)?));
        last = d;
    }
    // Tie-break on insertion order in the same direction as the last key, so an index on
    // (column, time_ms) — which ends in the rowid — satisfies the whole ORDER BY.
    parts.push(format!("id {last}"));
    Ok(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn translation_table() {
        let cases = [
            (json!({}), "1", vec![]),
            (
                json!({"mac": "aa"}),
                "mac = ?",
                vec![Param::Text("aa".into())],
            ),
            (
                json!({"time": {"$gte": 5, "$lt": 9}}),
                "(time_ms >= ? AND id >= ?) AND (time_ms < ? AND id < ?)",
                vec![
                    Param::Int(5),
                    Param::Int(5 << 20),
                    Param::Int(9),
                    Param::Int(9 << 20),
                ],
            ),
            (
                json!({"time": {"$gt": "1970-01-01T00:00:01Z", "$lte": 2000}}),
                "(time_ms > ? AND id >= ?) AND (time_ms <= ? AND id < ?)",
                vec![
                    Param::Int(1000),
                    Param::Int(1001 << 20),
                    Param::Int(2000),
                    Param::Int(2001 << 20),
                ],
            ),
            (
                json!({"bytes": {"$gt": 1.5}}),
                "json_extract(doc, '$.bytes') > ?",
                vec![Param::Real(1.5)],
            ),
            (
                json!({"kind": {"$in": ["a", "b"]}}),
                "kind IN (?, ?)",
                vec![Param::Text("a".into()), Param::Text("b".into())],
            ),
            (json!({"host": null}), "host IS NULL", vec![]),
            (
                json!({"file": {"$exists": true}}),
                "json_extract(doc, '$.file') IS NOT NULL",
                vec![],
            ),
            (
                json!({"$or": [{"ip": "1"}, {"mac": "2"}]}),
                "(ip = ? OR mac = ?)",
                vec![Param::Text("1".into()), Param::Text("2".into())],
            ),
        ];
        for (filter, want, params) in cases {
            let got = filter_to_sql(&filter).unwrap();
            assert_eq!(got.where_clause, want, "{filter}");
            assert_eq!(got.params, params, "{filter}");
        }
    }

    #[test]
    fn errors_point_at_the_operator() {
        let e = filter_to_sql(&json!({"mac": {"$regex": "x"}})).unwrap_err();
        assert!(
            e.to_string().contains("$regex") && e.to_string().contains("mac"),
            "{e}"
        );
        assert!(matches!(
            filter_to_sql(&json!([1])),
            Err(QueryError::NotObject(_))
        ));
        assert!(matches!(
            filter_to_sql(&json!({"kind": {"$in": "x"}})),
            Err(QueryError::BadOperand { .. })
        ));
        assert!(matches!(
            filter_to_sql(&json!({"a') OR 1=1 --": 1})),
            Err(QueryError::BadField(_))
        ));
        assert!(matches!(
            filter_to_sql(&json!({"$where": 1})),
            Err(QueryError::UnknownOperator { .. })
        ));
        assert!(sort_to_sql(Some(&json!({"time": 2}))).is_err());
        assert_eq!(
            sort_to_sql(Some(&json!({"time": -1}))).unwrap(),
            "time_ms DESC, id DESC"
        );
        assert_eq!(sort_by_id(Some(&json!({"time": -1}))), Some("id DESC"));
        assert_eq!(sort_by_id(None), Some("id ASC"));
        assert_eq!(sort_by_id(Some(&json!({"host": 1, "time": -1}))), None);
        let e = filter_to_sql(&json!({"time": {"$gte": "last tuesday"}})).unwrap_err();
        assert!(e.to_string().contains("a time like"), "{e}");
    }
}

/// An aggregation pipeline translated to one SQL statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub sql: String,
    pub params: Vec<Param>,
    /// Output document keys, in SELECT order: `_id` parts first, then accumulators.
    pub id_keys: IdShape,
    pub fields: Vec<String>,
}

/// How `_id` is built from the first SELECT columns.
#[derive(Debug, Clone, PartialEq)]
pub enum IdShape {
    /// `_id: null` — one group over everything.
    Null,
    /// `_id: "$field"`.
    Single,
    /// `_id: {name: "$field", ...}`.
    Object(Vec<String>),
}

fn field_ref(v: &Value, op: &str) -> Result<String, QueryError> {
    match v.as_str().and_then(|s| s.strip_prefix('$')) {
        Some(f) => column_expr(f),
        None => Err(QueryError::BadOperand {
            op: op.into(),
            what: "a field reference like \"$ip\"",
            got: v.to_string(),
        }),
    }
}

/// A `$group._id` part: `"$field"`, or the field rounded down to a multiple of N — written
/// as MongoDB runs it, `{"$subtract": ["$time", {"$mod": ["$time", 3600000]}]}` (hours), so
/// both backends give the same buckets.
fn group_key(v: &Value) -> Result<String, QueryError> {
    if v.is_string() {
        return field_ref(v, "$group._id");
    }
    let bad = || {
        QueryError::BadOperand {
        op: "$group._id".into(),
        what: "\"$field\" or {\"$subtract\": [\"$field\", {\"$mod\": [\"$field\", N]}]} (N a whole number above 0)",
        got: v.to_string(),
    }
    };
    let sub = v
        .as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.get("$subtract"))
        .and_then(Value::as_array)
        .filter(|a| a.len() == 2)
        .ok_or_else(bad)?;
    let m = sub[1]
        .as_object()
        .filter(|m| m.len() == 1)
        .and_then(|m| m.get("$mod"))
        .and_then(Value::as_array)
        .filter(|a| a.len() == 2)
        .ok_or_else(bad)?;
    let n = m[1]
        .as_i64()
        .filter(|n| (1..=1_000_000_000_000_000).contains(n))
        .ok_or_else(bad)?;
    if sub[0] != m[0] {
        return Err(bad());
    }
    let e = field_ref(&sub[0], "$group._id")?;
    Ok(format!("({e} - ({e} % {n}))"))
}

/// Translates `[{$match}, {$group}, {$sort}, {$limit}, {$project}]` (each optional, in this
/// order) to SQL. `$first`/`$last` follow time order.
pub fn pipeline_to_sql(pipeline: &Value) -> Result<Aggregate, QueryError> {
    let Value::Array(stages) = pipeline else {
        return Err(QueryError::BadOperand {
            op: "pipeline".into(),
            what: "an array of stages",
            got: pipeline.to_string(),
        });
    };
    let mut filter = Sql {
        where_clause: "1".into(),
        params: vec![],
    };
    let mut group: Option<&serde_json::Map<String, Value>> = None;
    let mut sort: Option<&serde_json::Map<String, Value>> = None;
    let mut limit: Option<u64> = None;
    let mut project: Option<&serde_json::Map<String, Value>> = None;
    for stage in stages {
        let Value::Object(m) = stage else {
            return Err(QueryError::NotObject(stage.to_string()));
        };
        let (name, body) = match m.iter().next() {
            Some(x) if m.len() == 1 => x,
            _ => {
                return Err(QueryError::BadOperand {
                    op: "stage".into(),
                    what: "exactly one $operator per stage",
                    got: stage.to_string(),
                })
            }
        };
        let late = |what: &str| QueryError::BadOperand {
            op: name.clone(),
            what: "to come earlier in the pipeline",
            got: what.to_owned(),
        };
        match name.as_str() {
            "$match" if group.is_none() && sort.is_none() => filter = filter_to_sql(body)?,
            "$match" => {
                return Err(late(
                    "$match after $group/$sort (only one leading $match is supported)",
                ))
            }
            "$group" if group.is_none() => {
                group = Some(
                    body.as_object()
                        .ok_or_else(|| QueryError::NotObject(body.to_string()))?,
                );
            }
            "$sort" => {
                sort = Some(
                    body.as_object()
                        .ok_or_else(|| QueryError::BadSort(body.to_string()))?,
                )
            }
            "$limit" => {
                limit = Some(body.as_u64().ok_or_else(|| QueryError::BadOperand {
                    op: "$limit".into(),
                    what: "a positive integer",
                    got: body.to_string(),
                })?)
            }
            "$project" => {
                let p = body
                    .as_object()
                    .ok_or_else(|| QueryError::NotObject(body.to_string()))?;
                // Inclusion or exclusion only: an expression here ({"$function": …}) would
                // be run by MongoDB as it stands, server-side JavaScript included.
                for (k, v) in p {
                    if !matches!(v, Value::Bool(_)) && !matches!(v.as_i64(), Some(0 | 1)) {
                        return Err(QueryError::BadOperand {
                            op: format!("$project.{k}"),
                            what: "0, 1, true or false (expressions such as $function are not run)",
                            got: v.to_string(),
                        });
                    }
                }
                project = Some(p);
            }
            other => {
                return Err(QueryError::UnknownOperator {
                    field: "(pipeline)".into(),
                    op: format!("{other} (stages: $match $group $sort $limit $project)"),
                })
            }
        }
    }
    let Some(group) = group else {
        return Err(QueryError::BadOperand {
            op: "pipeline".into(),
            what: "a $group stage (use `audit find` for plain queries)",
            got: pipeline.to_string(),
        });
    };
    let mut select = Vec::new();
    let mut group_by = Vec::new();
    let id = group.get("_id").ok_or_else(|| QueryError::BadOperand {
        op: "$group".into(),
        what: "an _id",
        got: Value::Object(group.clone()).to_string(),
    })?;
    let id_keys = match id {
        Value::Null => IdShape::Null,
        Value::String(_) => {
            let e = field_ref(id, "$group._id")?;
            select.push(format!("{e} AS g0"));
            group_by.push("g0".to_string());
            IdShape::Single
        }
        Value::Object(parts) if parts.contains_key("$subtract") => {
            select.push(format!("{} AS g0", group_key(id)?));
            group_by.push("g0".to_string());
            IdShape::Single
        }
        Value::Object(parts) => {
            let mut keys = Vec::new();
            for (i, (k, v)) in parts.iter().enumerate() {
                select.push(format!("{} AS g{i}", group_key(v)?));
                group_by.push(format!("g{i}"));
                keys.push(k.clone());
            }
            IdShape::Object(keys)
        }
        other => {
            return Err(QueryError::BadOperand {
                op: "$group._id".into(),
                what: "null, \"$field\" or {name: \"$field\"}",
                got: other.to_string(),
            })
        }
    };
    let mut fields = Vec::new();
    // $first/$last need the rows in time order; everything else reads them as the index gives.
    let mut time_ordered = false;
    for (name, acc) in group.iter().filter(|(k, _)| k.as_str() != "_id") {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(QueryError::BadField(name.clone()));
        }
        let (op, arg) = match acc
            .as_object()
            .and_then(|m| (m.len() == 1).then(|| m.iter().next()).flatten())
        {
            Some(x) => x,
            None => {
                return Err(QueryError::BadOperand {
                    op: format!("$group.{name}"),
                    what: "one accumulator like {\"$sum\": 1}",
                    got: acc.to_string(),
                })
            }
        };
        let expr = match op.as_str() {
            "$sum" if arg.is_number() => format!("coalesce(sum({arg}), 0)"),
            "$sum" => format!("coalesce(sum({}), 0)", field_ref(arg, op)?),
            "$avg" => format!("avg({})", field_ref(arg, op)?),
            "$min" => format!("min({})", field_ref(arg, op)?),
            "$max" => format!("max({})", field_ref(arg, op)?),
            "$count" => "count(*)".to_string(),
            "$first" => {
                time_ordered = true;
                format!(
                    "json_extract(json_group_array({}), '$[0]')",
                    field_ref(arg, op)?
                )
            }
            "$last" => {
                time_ordered = true;
                format!(
                    "json_extract(json_group_array({}), '$[#-1]')",
                    field_ref(arg, op)?
                )
            }
            other => {
                return Err(QueryError::UnknownOperator {
                    field: name.clone(),
                    op: format!("{other} (accumulators: $sum $avg $min $max $count $first $last)"),
                })
            }
        };
        select.push(format!("{expr} AS \"{name}\""));
        fields.push(name.clone());
    }
    if let Some(p) = project {
        let keep: Vec<&String> = p
            .iter()
            .filter(|(_, v)| v.as_i64() == Some(1) || v.as_bool() == Some(true))
            .map(|(k, _)| k)
            .collect();
        if !keep.is_empty() {
            fields.retain(|f| keep.contains(&f));
        }
        for (k, v) in p {
            if v.as_i64() == Some(0) || v.as_bool() == Some(false) {
                fields.retain(|f| f != k);
            }
        }
    }
    let select = if select.is_empty() {
        "1".into()
    } else {
        select.join(", ")
    };
    let mut sql = if time_ordered {
        format!(
            "SELECT {select} FROM (SELECT * FROM events WHERE {} ORDER BY time_ms, id)",
            filter.where_clause
        )
    } else {
        format!("SELECT {select} FROM events WHERE {}", filter.where_clause)
    };
    if !group_by.is_empty() {
        sql.push_str(&format!(" GROUP BY {}", group_by.join(", ")));
    }
    if let Some(sort) = sort {
        let mut order = Vec::new();
        for (k, dir) in sort {
            let d = direction(dir)
                .ok_or_else(|| QueryError::BadSort(Value::Object(sort.clone()).to_string()))?;
            let col = if k == "_id" && !group_by.is_empty() {
                group_by.join(", ")
            } else if group.contains_key(k) {
                format!("\"{k}\"")
            } else {
                return Err(QueryError::BadOperand {
                    op: "$sort".into(),
                    what: "_id or a $group output field",
                    got: k.clone(),
                });
            };
            order.push(format!("{col} {d}"));
        }
        sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
    }
    if let Some(n) = limit {
        sql.push_str(&format!(" LIMIT {n}"));
    }
    Ok(Aggregate {
        sql,
        params: filter.params,
        id_keys,
        fields,
    })
}

#[cfg(test)]
mod pipeline_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn group_avg_by_ip_translates() {
        let a = pipeline_to_sql(&json!([
            {"$match": {"kind": "ping"}},
            {"$group": {"_id": "$ip", "avg_rtt": {"$avg": "$rtt"}, "n": {"$sum": 1}}},
            {"$sort": {"avg_rtt": -1}},
            {"$limit": 5}
        ]))
        .unwrap();
        assert_eq!(
            a.sql,
            "SELECT ip AS g0, avg(json_extract(doc, '$.rtt')) AS \"avg_rtt\", coalesce(sum(1), 0) AS \"n\" FROM events WHERE kind = ? GROUP BY g0 ORDER BY \"avg_rtt\" DESC LIMIT 5"
        );
        assert_eq!(a.params, vec![Param::Text("ping".into())]);
        assert_eq!(
            (a.id_keys, a.fields),
            (
                IdShape::Single,
                vec!["avg_rtt".to_string(), "n".to_string()]
            )
        );
    }

    #[test]
    fn group_by_time_bucket() {
        let hour = json!({"$subtract": ["$time", {"$mod": ["$time", 3600000]}]});
        let a = pipeline_to_sql(
            &json!([{"$group": {"_id": {"h": hour, "s": "$source"}, "n": {"$count": {}}}}]),
        )
        .unwrap();
        assert!(
            a.sql.contains("(time_ms - (time_ms % 3600000)) AS g0"),
            "{}",
            a.sql
        );
        for bad in [
            json!({"$subtract": ["$time", {"$mod": ["$ip", 60]}]}),
            json!({"$subtract": ["$time", {"$mod": ["$time", 0]}]}),
            json!({"$subtract": ["$time", {"$mod": ["$time", "1; DROP TABLE events"]}]}),
            json!({"$add": ["$time", 1]}),
        ] {
            let e = pipeline_to_sql(&json!([{"$group": {"_id": {"h": bad}}}])).unwrap_err();
            assert!(e.to_string().contains("$mod"), "{e}");
        }
    }

    #[test]
    fn pipeline_errors_name_the_stage_or_accumulator() {
        let e = pipeline_to_sql(&json!([{"$group": {"_id": "$ip", "x": {"$median": "$rtt"}}}]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("$median"), "{e}");
        let e = pipeline_to_sql(&json!([{"$unwind": "$x"}]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("$unwind"), "{e}");
        let e = pipeline_to_sql(&json!([{"$group": {"_id": "ip"}}]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"$ip\""), "{e}");
        assert!(
            pipeline_to_sql(&json!([{"$match": {}}])).is_err(),
            "no $group"
        );
        assert!(
            pipeline_to_sql(&json!({"$group": {}})).is_err(),
            "not an array"
        );
    }
}
