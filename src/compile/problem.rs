//! Problems found while compiling: what is wrong, with which object.

use std::fmt;

use crate::source::ObjectKey;

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The object, or a part of it, is not served as written.
    Rejected,
    /// Served, but probably not what was meant.
    Warning,
}

/// One finding about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// `Ingress`, `Service`, `EndpointSlice`, ...
    pub kind: &'static str,
    pub object: ObjectKey,
    pub message: String,
}

// === impl Problem ===

impl Problem {
    pub fn rejected(kind: &'static str, object: &ObjectKey, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Rejected,
            kind,
            object: object.clone(),
            message: message.into(),
        }
    }

    pub fn warning(kind: &'static str, object: &ObjectKey, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            kind,
            object: object.clone(),
            message: message.into(),
        }
    }

    /// Logs the problem with its object as structured fields.
    pub fn log(&self) {
        let object = self.object.to_string();
        match self.severity {
            Severity::Rejected => {
                tracing::warn!(kind = self.kind, %object, "rejected: {}", self.message)
            }
            Severity::Warning => tracing::warn!(kind = self.kind, %object, "{}", self.message),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Rejected => "rejected",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{severity}: {} {}: {}",
            self.kind, self.object, self.message
        )
    }
}
