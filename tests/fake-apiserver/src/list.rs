//! List requests: selectors, `limit`/`continue` paging over one consistent
//! snapshot, and the `resourceVersion`/`resourceVersionMatch` semantics.
//!
//! | resourceVersion | match        | served from                              |
//! | --------------- | ------------ | ---------------------------------------- |
//! | unset           | -            | the latest state                         |
//! | `"0"`           | unset/NotOlderThan | the latest state ("any")           |
//! | X               | NotOlderThan | the latest; 410 if X is compacted away   |
//! | X               | unset, no limit | as NotOlderThan (legacy rule)         |
//! | X               | unset + limit, or Exact | the state at X; 410 if compacted |
//!
//! A `continue` token carries the snapshot's resourceVersion, so every page
//! of one list shows the same state; after compaction it expires with 410.

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::history::ObjKey;
use crate::meta::parse_rv;
use crate::query::Query;
use crate::resources::ResourceType;
use crate::selector::Filter;
use crate::store::Store;

/// Answers a list request with an `XList` document.
pub fn list(
    store: &Store,
    res: &ResourceType,
    filter: &Filter,
    q: &Query,
) -> Result<Value, ApiError> {
    let limit = q.number("limit")?.unwrap_or(0);
    let (at, start) = read_position(store, q, limit)?;
    let snapshot = store.snapshot(res, at)?;

    let mut items = Vec::new();
    let mut last_key: Option<&ObjKey> = None;
    let mut remaining = 0u64;
    let after_start = |key: &ObjKey| start.as_ref().is_none_or(|s| key > s);
    for (key, obj) in snapshot.items.iter().filter(|(k, _)| after_start(k)) {
        if !filter.matches(obj) {
            continue;
        }
        if limit > 0 && items.len() as u64 == limit {
            remaining += 1;
            continue;
        }
        items.push(list_item(res, obj));
        last_key = Some(key);
    }

    let mut metadata = json!({"resourceVersion": snapshot.rv.to_string()});
    if remaining > 0
        && let Some(key) = last_key
    {
        metadata["continue"] = json!(encode_continue(snapshot.rv, key));
        // The real server only knows the count when no selector filters.
        if !filter.has_selectors() {
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    Ok(json!({
        "kind": format!("{}List", res.kind),
        "apiVersion": res.api_version(),
        "metadata": metadata,
        "items": items,
    }))
}

/// Which snapshot to read (None: the latest) and the key to continue after.
fn read_position(
    store: &Store,
    q: &Query,
    limit: u64,
) -> Result<(Option<u64>, Option<ObjKey>), ApiError> {
    let rv = q.get("resourceVersion");
    let matching = q.get("resourceVersionMatch");
    if let Some(m) = matching {
        if m != "NotOlderThan" && m != "Exact" {
            return Err(ApiError::invalid_options(format!(
                "resourceVersionMatch: Unsupported value: \"{m}\": supported values: \"Exact\", \"NotOlderThan\""
            )));
        }
        if rv.is_none() {
            return Err(ApiError::invalid_options(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if q.has("continue") {
            return Err(ApiError::invalid_options(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue is provided",
            ));
        }
        if m == "Exact" && rv == Some("0") {
            return Err(ApiError::invalid_options(
                "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
    }

    if let Some(token) = q.get("continue") {
        if rv.is_some_and(|v| v != "0") {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let (at, key) = decode_continue(token)?;
        if at < store.compacted_rv() {
            return Err(ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter.",
            ));
        }
        return Ok((Some(at), Some(key)));
    }

    match (rv, matching) {
        (None, _) | (Some("0"), _) => Ok((None, None)),
        (Some(x), Some("Exact")) => Ok((Some(parse_rv(x)?), None)),
        (Some(x), None) if limit > 0 => Ok((Some(parse_rv(x)?), None)),
        (Some(x), _) => {
            let x = parse_rv(x)?;
            let current = store.current_rv();
            if x > current {
                return Err(ApiError::too_large_resource_version(x, current));
            }
            let compacted = store.compacted_rv();
            if x < compacted {
                return Err(ApiError::too_old(x, compacted));
            }
            Ok((None, None))
        }
    }
}

/// Built-in lists leave `apiVersion`/`kind` off their items.
fn list_item(res: &ResourceType, obj: &Value) -> Value {
    let mut item = obj.clone();
    if res.builtin
        && let Some(map) = item.as_object_mut()
    {
        map.remove("apiVersion");
        map.remove("kind");
    }
    item
}

/// An opaque token: hex of `rv/namespace/name` (neither may contain `/`).
fn encode_continue(rv: u64, key: &ObjKey) -> String {
    format!("{rv}/{}/{}", key.0, key.1)
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Result<(u64, ObjKey), ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    if !token.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or_else(invalid)?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, '/');
    let (Some(rv), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    let rv = rv.parse().map_err(|_| invalid())?;
    Ok((rv, (ns.to_string(), name.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let key = ("default".to_string(), "web".to_string());
        let token = encode_continue(42, &key);
        assert_eq!(decode_continue(&token).unwrap(), (42, key));
        for bad in ["zz", "abc", "", "3132"] {
            assert_eq!(decode_continue(bad).unwrap_err().code(), 400, "{bad}");
        }
    }
}
