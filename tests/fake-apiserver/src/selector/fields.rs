//! `fieldSelector`: `field=value`, `field==value`, `field!=value` on the
//! fields a type indexes (`metadata.name`, `metadata.namespace`, and e.g.
//! `type` for Secrets); backslash escapes `,` and `=` in values.

use serde_json::Value;

use crate::error::ApiError;
use crate::resources::ResourceType;

/// A parsed `fieldSelector`: `field=value`, `field==value`, `field!=value`.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector {
    requirements: Vec<(String, bool, String)>,
}

// === impl FieldSelector ===

impl FieldSelector {
    /// Parses `metadata.name=a,type!=b`, refusing fields `res` does not
    /// index, as the real server does ("field label not supported").
    pub fn parse(text: &str, res: &ResourceType) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in split_unescaped(text, ',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if !res.selectable(field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            requirements.push((field.to_string(), equal, unescape(value.trim())));
        }
        Ok(Self { requirements })
    }

    /// A selector for one name: what a path naming an object watches.
    pub fn name(name: &str) -> Self {
        Self {
            requirements: vec![("metadata.name".to_string(), true, name.to_string())],
        }
    }

    /// Adds the requirements of `other`.
    pub fn and(mut self, other: FieldSelector) -> Self {
        self.requirements.extend(other.requirements);
        self
    }

    /// Whether there is no requirement (everything matches).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether every `field (=|!=) value` holds; a missing field reads as "".
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|(field, equal, value)| {
            let actual = field_value(obj, field);
            (actual == *value) == *equal
        })
    }
}

fn field_value(obj: &Value, field: &str) -> String {
    let pointer: String = field.split('.').map(|p| format!("/{p}")).collect();
    match obj.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Splits on `sep` except where a backslash escapes it.
fn split_unescaped(text: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            if let Some(last) = parts.last_mut() {
                last.push('\\');
                last.push(c);
            }
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

fn unescape(value: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in value.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}, "type": "Opaque"})
    }

    #[test]
    fn field_selectors_match_and_reject_unknown_fields() {
        let secrets = ResourceType::new("", "v1", "secrets", "Secret", true).with_fields(&["type"]);
        let o = obj(json!({}));
        let sel =
            FieldSelector::parse("metadata.name=a,type!=kubernetes.io/tls", &secrets).unwrap();
        assert!(sel.matches(&o));
        let sel = FieldSelector::parse("metadata.namespace==other", &secrets).unwrap();
        assert!(!sel.matches(&o));
        let err = FieldSelector::parse("spec.foo=a", &secrets).unwrap_err();
        assert_eq!(err.code(), 400);
        assert!(FieldSelector::parse("metadata.name", &secrets).is_err());
    }
}
