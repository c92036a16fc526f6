//! Any bytes → JSON → the audit query translators (filter, sort, pipeline): the text behind
//! `/api/audit/find` and `/aggregate` and `pxelator audit`. Never panics; accepted SQL binds
//! only as many parameters as it names.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pxelator::audit::query::{filter_to_sql, pipeline_to_sql, sort_to_sql};

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(sql) = filter_to_sql(&v) {
        assert_eq!(sql.where_clause.matches('?').count(), sql.params.len(), "{}", sql.where_clause);
    }
    let _ = sort_to_sql(Some(&v));
    let _ = pipeline_to_sql(&v);
});
