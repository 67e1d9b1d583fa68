//! API errors and the metav1 `Status` objects they are answered with.
//!
//! Clients branch on `code` and `reason` (kube's watcher relists on 410,
//! controllers retry on 409), so each constructor mirrors the wording and
//! reason the real kube-apiserver uses for the same failure.

use serde_json::{Value, json};

use crate::resources::ResourceType;

/// A request that failed; it becomes a `Status` body with the same code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    code: u16,
    reason: &'static str,
    message: String,
    // Boxed to keep the error small: it rides in every Result.
    details: Option<Box<Details>>,
    retry_after: Option<u32>,
}

/// The `details` of a Status: which object the failure is about.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Details {
    name: String,
    group: String,
    kind: String,
}

// === impl ApiError ===

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn about(mut self, res: &ResourceType, name: &str) -> Self {
        self.details = Some(Box::new(Details {
            name: name.to_string(),
            group: res.group.clone(),
            // The real server puts the plural resource name here, not the Kind.
            kind: res.plural.clone(),
        }));
        self
    }

    /// 404 for an object that does not exist.
    pub fn not_found(res: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", res.group_resource()),
        )
        .about(res, name)
    }

    /// 404 for a path that names no resource this server knows.
    pub fn no_such_path() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 409 for a create whose name is taken.
    pub fn already_exists(res: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", res.group_resource()),
        )
        .about(res, name)
    }

    /// 409 for a write whose resourceVersion (or uid) precondition is stale.
    pub fn conflict(res: &ResourceType, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                res.group_resource()
            ),
        )
        .about(res, name)
    }

    /// The usual conflict: the object changed since the client read it.
    pub fn stale(res: &ResourceType, name: &str) -> Self {
        Self::conflict(
            res,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 410: the history needed to answer is compacted away.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 410 for a watch or exact list from a resourceVersion before compaction.
    pub fn too_old(requested: u64, oldest: u64) -> Self {
        Self::expired(format!("too old resource version: {requested} ({oldest})"))
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 422: the request is well-formed but the object or options are invalid.
    pub fn invalid(res: &ResourceType, name: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {message}", res.kind),
        )
        .about(res, name)
    }

    /// 422 for options that contradict each other (no object involved).
    pub fn invalid_options(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// 405: the path exists but not for this verb.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 415: a patch or body type the server does not read.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {content_type}"),
        )
    }

    /// 413: a body above the real server's 3 MiB request limit.
    pub fn too_large() -> Self {
        Self::new(413, "RequestEntityTooLarge", "request entity too large")
    }

    /// 504: a resourceVersion from the future; the real server waits ~3 s for
    /// it to appear and then gives up with this.
    /// Like the real one it asks clients to retry after a second.
    pub fn too_large_resource_version(requested: u64, current: u64) -> Self {
        let mut err = Self::new(
            504,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
        );
        err.retry_after = Some(1);
        err
    }

    /// 500: what the real server answers for writes its storage refuses.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The machine-readable reason (`NotFound`, `Conflict`, `Expired`, ...).
    pub fn reason(&self) -> &str {
        self.reason
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Seconds after which the client may retry (the `Retry-After` header).
    pub fn retry_after(&self) -> Option<u32> {
        self.retry_after
    }

    /// True for 404 NotFound.
    pub fn is_not_found(&self) -> bool {
        self.code == 404
    }

    /// True for 409 (AlreadyExists or Conflict).
    pub fn is_conflict(&self) -> bool {
        self.code == 409
    }

    /// The error as a metav1 `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = json!({
                "name": details.name,
                "group": details.group,
                "kind": details.kind,
            });
        }
        if let Some(seconds) = self.retry_after {
            status["details"]["retryAfterSeconds"] = json!(seconds);
        }
        status
    }
}

/// A `Status` with `status: Success`, as a delete without finalizers answers.
pub fn success_status(res: &ResourceType, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": name,
            "group": res.group,
            "kind": res.plural,
            "uid": uid,
        },
    })
}
