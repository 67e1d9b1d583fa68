//! Reading and stamping `metadata`: the fields the server, not the client,
//! owns (uid, creationTimestamp, generation, resourceVersion) and the checks
//! every write makes on names, namespaces and types.

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::resources::ResourceType;

/// Fields a client cannot change after create; updates keep the stored ones.
const SERVER_OWNED: [&str; 5] = [
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
];

/// The `metadata` map of an object, created if absent.
pub fn metadata_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request("the object is not a JSON object"));
    };
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if meta.is_null() {
        *meta = json!({});
    }
    meta.as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// `metadata.<field>` as a string, "" when absent.
pub fn get_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    crate::selector::meta_str(obj, field)
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(obj: &mut Value, rv: u64) {
    if let Ok(meta) = metadata_mut(obj) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

/// Parses a resourceVersion the client sent back; they are opaque to
/// clients, so anything that is not one of ours is a bad request.
pub fn parse_rv(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version \"{text}\"")))
}

/// Checks `apiVersion`/`kind` against the type the path names, filling them
/// in when the body left them out.
pub fn check_type(obj: &mut Value, res: &ResourceType) -> Result<(), ApiError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request("the object is not a JSON object"));
    };
    let api_version = res.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(v) if !v.is_empty() && v != api_version => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
        _ => {}
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(k) if !k.is_empty() && k != res.kind => {
            return Err(ApiError::bad_request(format!(
                "{k} in version \"{}\" cannot be handled as a {}",
                res.version, res.kind
            )));
        }
        _ => {}
    }
    map.insert("apiVersion".into(), Value::String(api_version));
    map.insert("kind".into(), Value::String(res.kind.clone()));
    Ok(())
}

/// Makes `metadata.namespace` agree with the path: filled in when empty, a
/// 400 when different, removed for cluster-scoped kinds.
pub fn check_namespace(
    obj: &mut Value,
    res: &ResourceType,
    ns: Option<&str>,
) -> Result<(), ApiError> {
    let meta = metadata_mut(obj)?;
    if !res.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    let Some(ns) = ns else {
        return Err(ApiError::bad_request(
            "a namespace is required for this resource",
        ));
    };
    match meta.get("namespace").and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            meta.insert("namespace".into(), Value::String(ns.to_string()));
            Ok(())
        }
    }
}

/// Picks the name on create: `metadata.name`, else `generateName` plus five
/// random characters; then checks it is a DNS subdomain.
pub fn assign_name(obj: &mut Value, res: &ResourceType) -> Result<String, ApiError> {
    let meta = metadata_mut(obj)?;
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = if name.is_empty() {
        let prefix = meta
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if prefix.is_empty() {
            return Err(ApiError::invalid(
                res,
                "",
                "metadata.name: Required value: name or generateName is required",
            ));
        }
        // The alphabet the real name generator uses: no vowels, no 0/1/3.
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let suffix: String = (0..5)
            .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
            .collect();
        format!("{prefix}{suffix}")
    } else {
        name
    };
    validate_name(res, &name)?;
    meta.insert("name".into(), Value::String(name.clone()));
    Ok(name)
}

/// DNS-1123 subdomain: what most kinds require of a name.
pub fn validate_name(res: &ResourceType, name: &str) -> Result<(), ApiError> {
    let bytes = name.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ok = !bytes.is_empty()
        && bytes.len() <= 253
        && bytes.iter().all(|&b| alnum(b) || b == b'-' || b == b'.')
        && bytes.first().is_some_and(|&b| alnum(b))
        && bytes.last().is_some_and(|&b| alnum(b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            res,
            name,
            format!(
                "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ),
        ))
    }
}

/// Stamps what create sets: uid, creationTimestamp, generation 1; clears
/// deletion fields a client cannot set.
pub fn stamp_create(obj: &mut Value) -> Result<(), ApiError> {
    let meta = metadata_mut(obj)?;
    meta.insert("uid".into(), Value::String(new_uid()));
    meta.insert("creationTimestamp".into(), Value::String(now()));
    meta.insert("generation".into(), json!(1));
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    Ok(())
}

/// Copies the server-owned metadata of `old` over `new`.
pub fn keep_server_owned(new: &mut Value, old: &Value) -> Result<(), ApiError> {
    let old_meta = old.get("metadata").and_then(Value::as_object);
    let meta = metadata_mut(new)?;
    for field in SERVER_OWNED {
        match old_meta.and_then(|m| m.get(field)) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    Ok(())
}

/// Whether anything besides `metadata` and `status` differs: what bumps
/// `metadata.generation`.
pub fn spec_changed(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            map.remove("metadata");
            map.remove("status");
        }
        v
    };
    strip(new) != strip(old)
}

/// `metadata.generation`, 0 when absent.
pub fn generation(obj: &Value) -> i64 {
    obj.pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Sets `metadata.generation`.
pub fn set_generation(obj: &mut Value, generation: i64) -> Result<(), ApiError> {
    metadata_mut(obj)?.insert("generation".into(), json!(generation));
    Ok(())
}

/// Whether `metadata.finalizers` is non-empty.
pub fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// Whether `metadata.deletionTimestamp` is set.
pub fn is_deleting(obj: &Value) -> bool {
    !get_str(obj, "deletionTimestamp").is_empty()
}

/// The current time as Kubernetes writes it: RFC 3339, whole seconds, UTC.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A random v4-style UUID.
fn new_uid() -> String {
    let hex = format!("{:032x}", fastrand::u128(..));
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingresses() -> ResourceType {
        ResourceType::new("networking.k8s.io", "v1", "ingresses", "Ingress", true)
    }

    #[test]
    fn names_must_be_dns_subdomains() {
        let res = ingresses();
        for ok in ["a", "web-1", "a.b.c", "0abc"] {
            assert!(validate_name(&res, ok).is_ok(), "{ok}");
        }
        for bad in ["", "Web", "-a", "a-", "a_b", "a/b"] {
            assert_eq!(validate_name(&res, bad).unwrap_err().code(), 422, "{bad}");
        }
    }

    #[test]
    fn generate_name_appends_five_characters() {
        let mut obj = json!({"metadata": {"generateName": "web-"}});
        let name = assign_name(&mut obj, &ingresses()).unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    }

    #[test]
    fn type_mismatch_is_a_bad_request() {
        let mut obj = json!({"apiVersion": "v1", "kind": "Service"});
        assert_eq!(check_type(&mut obj, &ingresses()).unwrap_err().code(), 400);
        let mut obj = json!({"metadata": {}});
        check_type(&mut obj, &ingresses()).unwrap();
        assert_eq!(obj["apiVersion"], "networking.k8s.io/v1");
    }

    #[test]
    fn uids_look_like_uuids() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(uid.matches('-').count(), 4);
    }
}
