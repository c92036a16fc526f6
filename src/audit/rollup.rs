//! Rollups (issue 15): as events are written, exact aggregates of their numeric fields —
//! count, sum, min, max — per hour by kind and by each of mac/ip/host, and per minute by kind,
//! kept beside the events (like RRD archives, but exact and in the same transaction). The
//! query planner answers a `$group` by one of those keys (or null) with
//! `$sum/$avg/$min/$max/$count` over a time range from the hours inside the range, and from the
//! events for the partial hours at its ends (a rowid range: ids are in time order), merged.
//!
//! What counts as a numeric field: a top-level number (or boolean, as 0/1 — what SQLite's
//! `json_extract` makes of it) other than the columns. Sums of integers stay integers, as in
//! SQL; averages and float sums may differ from the events path in the last bits (the order of
//! additions), nothing more.
use super::Record;
use serde_json::Value;
use std::collections::BTreeMap;

pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 3_600_000;
/// The group keys rolled up besides the kind.
pub const DIMS: [&str; 3] = ["mac", "ip", "host"];
/// The key of events that have no value for a dimension (SQL's NULL group).
pub const NULL_KEY: &str = "\u{0}";

/// A number as SQL keeps it: integer while every part was one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Real(f64),
}

impl Num {
    pub fn f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Real(f) => f,
        }
    }
    fn plus(self, o: Num) -> Num {
        match (self, o) {
            (Num::Int(a), Num::Int(b)) => a
                .checked_add(b)
                .map_or(Num::Real(a as f64 + b as f64), Num::Int),
            (a, b) => Num::Real(a.f64() + b.f64()),
        }
    }
    pub fn json(self) -> Value {
        match self {
            Num::Int(i) => i.into(),
            Num::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        }
    }
    pub fn from_json(v: &Value) -> Option<Num> {
        match v {
            Value::Bool(b) => Some(Num::Int(i64::from(*b))),
            Value::Number(n) => Some(match n.as_i64() {
                Some(i) => Num::Int(i),
                None => Num::Real(n.as_f64()?),
            }),
            _ => None,
        }
    }
}

/// Count, sum, min, max of some values (or, for the field "", just the count of events).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Acc {
    pub n: i64,
    pub sum: Option<Num>,
    pub min: Option<Num>,
    pub max: Option<Num>,
}

impl Acc {
    pub fn add(&mut self, v: Num) {
        self.merge(&Acc {
            n: 1,
            sum: Some(v),
            min: Some(v),
            max: Some(v),
        });
    }
    pub fn merge(&mut self, o: &Acc) {
        self.n += o.n;
        self.sum = match (self.sum, o.sum) {
            (Some(a), Some(b)) => Some(a.plus(b)),
            (a, b) => a.or(b),
        };
        self.min = match (self.min, o.min) {
            (Some(a), Some(b)) => Some(if b.f64() < a.f64() { b } else { a }),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, o.max) {
            (Some(a), Some(b)) => Some(if b.f64() > a.f64() { b } else { a }),
            (a, b) => a.or(b),
        };
    }
}

/// One rollup row's identity: bucket width, bucket start, kind, dimension ("" = the kind
/// alone), its key, the field ("" = the events themselves).
pub type RowKey<'a> = (i64, i64, &'a str, &'static str, &'a str, &'a str);

/// A group's identity: the row key without the field.
type GroupKey<'a> = (i64, i64, &'a str, &'static str, &'a str);

/// The events of one group (`n`) and its numeric fields.
#[derive(Debug, Clone, Default)]
pub struct Group<F> {
    pub n: i64,
    pub fields: Vec<(F, Acc)>,
}

impl<F: AsRef<str>> Group<F> {
    fn field(&mut self, name: &str, make: impl FnOnce() -> F) -> &mut Acc {
        let i = match self.fields.iter().position(|(f, _)| f.as_ref() == name) {
            Some(i) => i,
            None => {
                self.fields.push((make(), Acc::default()));
                self.fields.len() - 1
            }
        };
        &mut self.fields[i].1
    }
    /// Its rows: the events ("" field), then each field.
    fn rows(&self) -> impl Iterator<Item = (&str, Acc)> + '_ {
        std::iter::once((
            "",
            Acc {
                n: self.n,
                ..Default::default()
            },
        ))
        .chain(self.fields.iter().map(|(f, a)| (f.as_ref(), *a)))
    }
}

/// The rollup rows of one written batch, summed in memory before they are written.
#[derive(Default)]
pub struct Batch<'a> {
    groups: rustc_hash::FxHashMap<GroupKey<'a>, Group<&'a str>>,
}

/// Fields that are columns (grouped by, not summed).
fn is_column(k: &str) -> bool {
    matches!(
        k,
        "time" | "time_ms" | "source" | "kind" | "mac" | "ip" | "host" | "_id"
    )
}

impl<'a> Batch<'a> {
    /// Adds one event.
    pub fn add(&mut self, r: &'a Record) {
        let mut fields: smallvec_like::Fields<'a> = Default::default();
        if let Value::Object(m) = &r.doc {
            for (k, v) in m {
                if !is_column(k) {
                    if let Some(n) = Num::from_json(v) {
                        fields.push((k.as_str(), n));
                    }
                }
            }
        }
        let kind = r.kind.as_ref();
        let minute = r.time_ms.div_euclid(MINUTE) * MINUTE;
        let hour = r.time_ms.div_euclid(HOUR) * HOUR;
        let keys: [GroupKey<'a>; 5] = [
            (MINUTE, minute, kind, "", ""),
            (HOUR, hour, kind, "", ""),
            (
                HOUR,
                hour,
                kind,
                "mac",
                r.mac.as_deref().unwrap_or(NULL_KEY),
            ),
            (HOUR, hour, kind, "ip", r.ip.as_deref().unwrap_or(NULL_KEY)),
            (
                HOUR,
                hour,
                kind,
                "host",
                r.host.as_deref().unwrap_or(NULL_KEY),
            ),
        ];
        for k in keys {
            let g = self.groups.entry(k).or_default();
            g.n += 1;
            for (f, v) in fields.iter() {
                g.field(f, || f).add(*v);
            }
        }
    }

    /// Its rows.
    pub fn rows(&self) -> impl Iterator<Item = (RowKey<'_>, Acc)> + '_ {
        self.groups.iter().flat_map(|(&(p, b, k, d, key), g)| {
            g.rows().map(move |(f, a)| ((p, b, k, d, key, f), a))
        })
    }
}

/// A group's identity, owned: what the writer keeps across batches.
type OwnedGroupKey = (i64, i64, String, &'static str, String);

/// Rows of the hours still being written, kept in memory by the writer and written when their
/// hour is over (the query path reads that hour from the events meanwhile): one write per row
/// per hour instead of one per batch.
#[derive(Default)]
pub struct Pending {
    groups: rustc_hash::FxHashMap<OwnedGroupKey, Group<String>>,
}

/// Rows taken out of [`Pending`] to be written.
pub struct Done(Vec<(OwnedGroupKey, Group<String>)>);

impl Done {
    pub fn rows(&self) -> impl Iterator<Item = (RowKey<'_>, Acc)> + '_ {
        self.0.iter().flat_map(|((p, b, k, d, key), g)| {
            g.rows()
                .map(move |(f, a)| ((*p, *b, k.as_str(), *d, key.as_str(), f), a))
        })
    }
}

impl Pending {
    pub fn merge(&mut self, b: Batch<'_>) {
        for ((p, bucket, kind, dim, key), g) in b.groups {
            let mine = self
                .groups
                .entry((p, bucket, kind.to_owned(), dim, key.to_owned()))
                .or_default();
            mine.n += g.n;
            for (f, a) in g.fields {
                mine.field(f, || f.to_owned()).merge(&a);
            }
        }
    }
    /// Takes the rows of buckets that start before `until`.
    pub fn take_before(&mut self, until: i64) -> Done {
        let mut out = Vec::new();
        let keys: Vec<OwnedGroupKey> = self
            .groups
            .keys()
            .filter(|k| k.1 < until)
            .cloned()
            .collect();
        for k in keys {
            if let Some(g) = self.groups.remove(&k) {
                out.push((k, g));
            }
        }
        Done(out)
    }
}

/// A tiny inline list (an event has a handful of numeric fields).
mod smallvec_like {
    use super::Num;
    #[derive(Default)]
    pub struct Fields<'a> {
        inline: [(&'a str, Option<Num>); 8],
        len: usize,
        more: Vec<(&'a str, Num)>,
    }
    impl<'a> Fields<'a> {
        pub fn push(&mut self, x: (&'a str, Num)) {
            if self.len < 8 {
                self.inline[self.len] = (x.0, Some(x.1));
                self.len += 1;
            } else {
                self.more.push(x);
            }
        }
        pub fn iter(&self) -> impl Iterator<Item = (&'a str, &Num)> + '_ {
            self.inline[..self.len]
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
                .chain(self.more.iter().map(|(k, v)| (*k, v)))
        }
    }
}

/// The accumulators the rollups can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `{"$sum": 1}` / `{"$count": {}}`: events in the group.
    Count,
    Sum(String),
    Avg(String),
    Min(String),
    Max(String),
}

/// A pipeline the rollups can answer: `[{"$match": {"kind": K, "time": {range}}}, {"$group":
/// {"_id": null | "$mac" | "$ip" | "$host", name: accumulator, …}}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub kind: String,
    /// Half-open time range in ms.
    pub from: i64,
    pub to: i64,
    /// "" for `_id: null`.
    pub dim: &'static str,
    pub ops: Vec<(String, Op)>,
}

impl Plan {
    /// The fields whose rows are read.
    pub fn fields(&self) -> Vec<&str> {
        let mut f: Vec<&str> = self
            .ops
            .iter()
            .filter_map(|(_, op)| match op {
                Op::Count => None,
                Op::Sum(f) | Op::Avg(f) | Op::Min(f) | Op::Max(f) => Some(f.as_str()),
            })
            .collect();
        f.sort_unstable();
        f.dedup();
        f
    }
    /// The whole hours inside the range that the rollups hold (they cover events from
    /// `covered_from` until `written_to`), or None.
    pub fn hours(&self, covered_from: i64, written_to: i64) -> Option<(i64, i64)> {
        // Open ends and "never" are far out; bounded so the hour arithmetic cannot overflow.
        const FAR: i64 = 1 << 60;
        let bound = |t: i64| t.clamp(-FAR, FAR);
        let (covered_from, written_to) = (bound(covered_from), bound(written_to));
        let a = bound(self.from).max(covered_from);
        let h0 = a.div_euclid(HOUR) * HOUR + if a.rem_euclid(HOUR) == 0 { 0 } else { HOUR };
        let h1 = (bound(self.to).div_euclid(HOUR) * HOUR).min(written_to.div_euclid(HOUR) * HOUR);
        (h0 < h1).then_some((h0, h1))
    }
}

/// The plan for `pipeline` when the rollups can answer it, else None (the events answer).
pub fn plan(pipeline: &Value) -> Option<Plan> {
    let stages = pipeline.as_array()?;
    let [m, g] = stages.as_slice() else {
        return None;
    };
    let m = m.as_object()?.get("$match")?.as_object()?;
    let g = g.as_object()?.get("$group")?.as_object()?;
    let mut kind = None;
    let (mut from, mut to) = (i64::MIN / 4, i64::MAX / 4);
    for (k, v) in m {
        match k.as_str() {
            "kind" => kind = Some(v.as_str()?.to_owned()),
            "time" | "time_ms" => {
                for (op, x) in v.as_object()? {
                    let x = x.as_i64()?;
                    match op.as_str() {
                        "$gte" => from = from.max(x),
                        "$gt" => from = from.max(x.checked_add(1)?),
                        "$lt" => to = to.min(x),
                        "$lte" => to = to.min(x.checked_add(1)?),
                        _ => return None,
                    }
                }
            }
            _ => return None,
        }
    }
    let dim = match g.get("_id")? {
        Value::Null => "",
        Value::String(s) => DIMS.into_iter().find(|d| s.strip_prefix('$') == Some(d))?,
        _ => return None,
    };
    let field = |v: &Value| -> Option<String> {
        let f = v.as_str()?.strip_prefix('$')?;
        (!f.is_empty() && !is_column(f) && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .then(|| f.to_owned())
    };
    let mut ops = Vec::new();
    for (name, acc) in g.iter().filter(|(k, _)| k.as_str() != "_id") {
        let a = acc.as_object()?;
        if a.len() != 1 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let (op, arg) = a.iter().next()?;
        ops.push((
            name.clone(),
            match op.as_str() {
                "$count" => Op::Count,
                "$sum" if arg.as_i64() == Some(1) => Op::Count,
                "$sum" => Op::Sum(field(arg)?),
                "$avg" => Op::Avg(field(arg)?),
                "$min" => Op::Min(field(arg)?),
                "$max" => Op::Max(field(arg)?),
                _ => return None,
            },
        ));
    }
    Some(Plan {
        kind: kind?,
        from,
        to,
        dim,
        ops,
    })
}

/// Partial aggregates per group key (None = the null group) and field ("" = events).
pub type Parts = BTreeMap<Option<String>, BTreeMap<String, Acc>>;

/// The answer documents from merged parts: one per group (for `_id: null` always one), the
/// accumulators as the events path computes them.
pub fn answer(plan: &Plan, parts: &Parts) -> Vec<Value> {
    let empty = BTreeMap::new();
    let groups: Vec<(Option<&String>, &BTreeMap<String, Acc>)> = if plan.dim.is_empty() {
        vec![(None, parts.get(&None).unwrap_or(&empty))]
    } else {
        parts
            .iter()
            .filter(|(_, f)| f.get("").is_some_and(|a| a.n > 0))
            .map(|(k, f)| (k.as_ref(), f))
            .collect()
    };
    groups
        .into_iter()
        .map(|(key, fields)| {
            let mut doc = serde_json::Map::new();
            doc.insert(
                "_id".into(),
                key.map_or(Value::Null, |k| Value::String(k.clone())),
            );
            let acc = |f: &str| fields.get(f).copied().unwrap_or_default();
            for (name, op) in &plan.ops {
                let v = match op {
                    Op::Count => acc("").n.into(),
                    Op::Sum(f) => acc(f).sum.unwrap_or(Num::Int(0)).json(),
                    Op::Avg(f) => {
                        let a = acc(f);
                        match a.sum {
                            Some(s) if a.n > 0 => Num::Real(s.f64() / a.n as f64).json(),
                            _ => Value::Null,
                        }
                    }
                    Op::Min(f) => acc(f).min.map_or(Value::Null, Num::json),
                    Op::Max(f) => acc(f).max.map_or(Value::Null, Num::json),
                };
                doc.insert(name.clone(), v);
            }
            Value::Object(doc)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plans() {
        let p = plan(&json!([{"$match": {"kind": "ping", "time": {"$gte": 0, "$lt": 86_400_000}}},
            {"$group": {"_id": "$ip", "avg": {"$avg": "$rtt"}, "n": {"$count": {}}, "s": {"$sum": 1}}}]))
        .unwrap();
        assert_eq!(
            (p.kind.as_str(), p.from, p.to, p.dim),
            ("ping", 0, 86_400_000, "ip")
        );
        assert_eq!(p.ops[0], ("avg".into(), Op::Avg("rtt".into())));
        assert_eq!(p.ops[1].1, Op::Count);
        assert_eq!(p.ops[2].1, Op::Count);
        assert_eq!(p.hours(0, i64::MAX / 4), Some((0, 86_400_000)));
        assert_eq!(p.hours(0, 3_600_000 + 5), Some((0, 3_600_000)));
        // Not answerable: no kind, other filters, other keys, $first, more stages.
        for bad in [
            json!([{"$match": {}}, {"$group": {"_id": "$ip", "n": {"$count": {}}}}]),
            json!([{"$match": {"kind": "ping", "ip": "1"}}, {"$group": {"_id": null, "n": {"$count": {}}}}]),
            json!([{"$match": {"kind": "ping"}}, {"$group": {"_id": "$file", "n": {"$count": {}}}}]),
            json!([{"$match": {"kind": "ping"}}, {"$group": {"_id": null, "f": {"$first": "$rtt"}}}]),
            json!([{"$match": {"kind": "ping"}}, {"$group": {"_id": null, "s": {"$sum": "$ip"}}}]),
            json!([{"$match": {"kind": "ping"}}, {"$group": {"_id": null}}, {"$limit": 1}]),
        ] {
            assert_eq!(plan(&bad), None, "{bad}");
        }
        let p = plan(
            &json!([{"$match": {"kind": "k", "time_ms": {"$gt": 10, "$lte": 7_200_000}}},
            {"$group": {"_id": null, "n": {"$sum": 1}}}]),
        )
        .unwrap();
        assert_eq!((p.from, p.to), (11, 7_200_001));
        assert_eq!(p.hours(0, i64::MAX / 4), Some((HOUR, 2 * HOUR)));
        assert_eq!(p.hours(2 * HOUR, i64::MAX / 4), None);
        // A store read before any writer gave it rollups: "never" on both ends, no overflow.
        assert_eq!(p.hours(i64::MAX, i64::MIN), None);
        let open =
            plan(&json!([{"$match": {"kind": "k"}}, {"$group": {"_id": null, "n": {"$sum": 1}}}]))
                .unwrap();
        assert_eq!(open.hours(i64::MAX, i64::MIN), None);
        assert!(open.hours(0, i64::MAX).is_some());
    }

    #[test]
    fn accumulators_keep_integers() {
        let mut a = Acc::default();
        a.add(Num::Int(3));
        a.add(Num::Int(-1));
        assert_eq!(
            (a.n, a.sum, a.min, a.max),
            (2, Some(Num::Int(2)), Some(Num::Int(-1)), Some(Num::Int(3)))
        );
        a.add(Num::Real(0.5));
        assert_eq!(a.sum, Some(Num::Real(2.5)));
        let mut b = Acc::default();
        b.add(Num::Int(i64::MAX));
        b.add(Num::Int(1));
        assert!(matches!(b.sum, Some(Num::Real(_))));
    }
}
