//! Label and field selectors, parsed from the query strings list and watch
//! take, with the grammar and matching rules of `k8s.io/apimachinery`.

use serde_json::Value;

pub use fields::FieldSelector;
pub use labels::LabelSelector;

mod fields;
mod labels;

/// What a list or watch keeps: a namespace, label and field selectors.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only objects in this namespace (None: every namespace).
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`, plus the name when the path names one object.
    pub fields: FieldSelector,
}

// === impl Filter ===

impl Filter {
    /// Whether `obj` passes the namespace and both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && meta_str(obj, "namespace") != ns
        {
            return false;
        }
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// Whether a selector, rather than only the namespace, narrows the set:
    /// the real server then leaves out `remainingItemCount`.
    pub fn has_selectors(&self) -> bool {
        !self.labels.is_empty() || !self.fields.is_empty()
    }
}

/// `metadata.<field>` as a string, "" when absent.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}
