//! PATCH bodies: JSON patch (RFC 6902), merge patch (RFC 7386), strategic
//! merge patch (approximated) and server-side apply (approximated).
//!
//! Simplifications, versus the real server:
//! - strategic merge patch merges maps like a merge patch and replaces lists
//!   whole (no merge keys); `$patch: replace|delete` on maps is honoured and
//!   other `$` directives are dropped rather than stored;
//! - server-side apply merges the applied configuration into the live object
//!   (create when missing) without managedFields: no field ownership, no
//!   conflicts, and fields a manager stops applying are not removed.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The patch formats, by request Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/apply-patch+yaml`
    Apply,
}

// === impl PatchKind ===

impl PatchKind {
    /// The kind a Content-Type names; 415 for anything else.
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" => Ok(Self::Apply),
            _ => Err(ApiError::unsupported_media_type(content_type)),
        }
    }
}

/// Applies a JSON, merge or strategic merge patch to `current`.
pub fn patch(kind: PatchKind, current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let mut doc = current.clone();
    match kind {
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            // json_patch::patch is atomic: on error `doc` is left unchanged.
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                ApiError::invalid_options(format!("the JSON patch could not be applied: {e}"))
            })?;
        }
        PatchKind::Merge => json_patch::merge(&mut doc, &parse_object(body)?),
        PatchKind::Strategic => strategic_merge(&mut doc, &parse_object(body)?),
        PatchKind::Apply => {
            let applied = parse_apply(body)?;
            return Ok(apply(Some(current), &applied));
        }
    }
    Ok(doc)
}

/// Parses an apply body: YAML, of which JSON (what kube sends) is a subset.
pub fn parse_apply(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => serde_norway::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the applied configuration must be an object",
        ));
    }
    Ok(value)
}

/// Server-side apply, simplified: the applied configuration merged into the
/// live object, or the configuration itself when there is none.
pub fn apply(current: Option<&Value>, applied: &Value) -> Value {
    match current {
        Some(current) => {
            let mut doc = current.clone();
            json_patch::merge(&mut doc, applied);
            doc
        }
        None => {
            // Merging into nothing drops explicit nulls, as a create would.
            let mut doc = Value::Object(Map::new());
            json_patch::merge(&mut doc, applied);
            doc
        }
    }
}

fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid patch body: {e}")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(ApiError::bad_request("a merge patch must be a JSON object"))
    }
}

/// Merge-patch semantics plus the `$patch` map directives kubectl sends.
fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = without_directives(patch);
        return;
    };
    if fields.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = without_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else { return };
    for (key, value) in fields {
        if key.starts_with('$') {
            continue;
        }
        let delete =
            value.is_null() || value.get("$patch").and_then(Value::as_str) == Some("delete");
        if delete {
            map.remove(key);
        } else {
            strategic_merge(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn without_directives(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(kind: PatchKind, current: Value, body: Value) -> Result<Value, ApiError> {
        patch(kind, &current, body.to_string().as_bytes())
    }

    #[test]
    fn content_types_pick_the_format() {
        let cases = [
            ("application/json-patch+json", Some(PatchKind::Json)),
            (
                "application/merge-patch+json; charset=utf-8",
                Some(PatchKind::Merge),
            ),
            (
                "application/strategic-merge-patch+json",
                Some(PatchKind::Strategic),
            ),
            ("application/apply-patch+yaml", Some(PatchKind::Apply)),
            ("application/json", None),
        ];
        for (ct, want) in cases {
            assert_eq!(PatchKind::from_content_type(ct).ok(), want, "{ct}");
        }
        assert_eq!(
            PatchKind::from_content_type("text/plain")
                .unwrap_err()
                .code(),
            415
        );
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let got = run(
            PatchKind::Merge,
            json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]}),
            json!({"a": null, "b": {"c": 5}, "l": [3]}),
        )
        .unwrap();
        assert_eq!(got, json!({"b": {"c": 5, "d": 3}, "l": [3]}));
        assert_eq!(
            run(PatchKind::Merge, json!({}), json!([1]))
                .unwrap_err()
                .code(),
            400
        );
    }

    #[test]
    fn json_patch_supports_add_replace_remove_test() {
        let current = json!({"spec": {"rules": [{"host": "a"}]}, "x": 1});
        let body = json!([
            {"op": "test", "path": "/x", "value": 1},
            {"op": "add", "path": "/spec/rules/-", "value": {"host": "b"}},
            {"op": "replace", "path": "/x", "value": 2},
            {"op": "remove", "path": "/spec/rules/0"},
        ]);
        let got = run(PatchKind::Json, current.clone(), body).unwrap();
        assert_eq!(got, json!({"spec": {"rules": [{"host": "b"}]}, "x": 2}));
        let failing = json!([{"op": "test", "path": "/x", "value": 9}]);
        assert_eq!(
            run(PatchKind::Json, current.clone(), failing)
                .unwrap_err()
                .code(),
            422
        );
        assert_eq!(
            run(PatchKind::Json, current, json!({"op": "add"}))
                .unwrap_err()
                .code(),
            400
        );
    }

    #[test]
    fn strategic_merge_drops_directives_and_honours_patch_keys() {
        let got = run(
            PatchKind::Strategic,
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": {"y": 1}}}),
            json!({
                "$setElementOrder/ports": [{"port": 80}],
                "metadata": {"labels": {"a": null, "c": "3"}},
                "spec": {"x": {"$patch": "delete"}},
            }),
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {}})
        );
    }

    #[test]
    fn apply_reads_yaml_and_merges() {
        let body = b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  k: dg==\n";
        let applied = parse_apply(body).unwrap();
        let created = apply(None, &applied);
        assert_eq!(created["data"]["k"], "dg==");
        let live = json!({"metadata": {"name": "s", "uid": "u"}, "data": {"old": "x"}});
        let merged = apply(Some(&live), &applied);
        assert_eq!(merged["metadata"]["uid"], "u");
        assert_eq!(merged["data"], json!({"old": "x", "k": "dg=="}));
        assert_eq!(parse_apply(b"- a\n- b\n").unwrap_err().code(), 400);
    }
}
