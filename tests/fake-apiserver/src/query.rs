//! Query parameters, decoded and typed; a malformed value is a 400.

use std::collections::HashMap;

use crate::error::ApiError;

/// The decoded query string of one request.
#[derive(Debug, Default, Clone)]
pub struct Query {
    params: HashMap<String, String>,
}

// === impl Query ===

impl Query {
    /// Decodes `a=1&b=x%2Cy`; a repeated key keeps its last value.
    pub fn parse(query: Option<&str>) -> Self {
        let params = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        Self { params }
    }

    /// A parameter, None when absent or empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A boolean the way Go's `strconv.ParseBool` reads it; absent is false.
    pub fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid boolean for {key}: \"{other}\""
            ))),
        }
    }

    /// Whether a boolean parameter was given at all (`sendInitialEvents`
    /// means something different when absent and when false).
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A non-negative integer.
    pub fn number(&self, key: &str) -> Result<Option<u64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: \"{v}\"")))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_types_parameters() {
        let q = Query::parse(Some("watch=1&labelSelector=app%20in%20(a%2Cb)&limit=5&x="));
        assert!(q.flag("watch").unwrap());
        assert_eq!(q.get("labelSelector"), Some("app in (a,b)"));
        assert_eq!(q.number("limit").unwrap(), Some(5));
        assert_eq!(q.get("x"), None);
        assert!(!q.flag("missing").unwrap());
        assert_eq!(
            Query::parse(Some("watch=yes"))
                .flag("watch")
                .unwrap_err()
                .code(),
            400
        );
        assert_eq!(
            Query::parse(Some("limit=-1"))
                .number("limit")
                .unwrap_err()
                .code(),
            400
        );
    }
}
