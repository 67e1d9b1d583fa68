//! Path matching with the Ingress v1 `Exact` and `Prefix` semantics.

use std::cmp::Ordering;
use std::fmt;

/// The path part of an Ingress rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathMatch {
    /// Case-sensitive, literal equality.
    Exact(String),
    /// Element-wise prefix. Stored without its trailing slash (`/` stays `/`),
    /// so `/aaa/` and `/aaa` are the same rule.
    Prefix(String),
}

// === impl PathMatch ===

impl PathMatch {
    pub fn prefix(path: &str) -> Self {
        let trimmed = path.trim_end_matches('/');
        PathMatch::Prefix(if trimmed.is_empty() {
            "/".to_string()
        } else {
            trimmed.to_string()
        })
    }

    pub fn exact(path: &str) -> Self {
        PathMatch::Exact(path.to_string())
    }

    /// The rule's path as the precedence rules measure it.
    pub fn path(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        }
    }

    /// Whether a request path (without query) matches.
    ///
    /// `Prefix /aaa` matches `/aaa`, `/aaa/` and `/aaa/bbb`, never `/aaaccc`:
    /// matching is by whole path elements.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) if p == "/" => true,
            PathMatch::Prefix(p) => match path.strip_prefix(p.as_str()) {
                Some(rest) => rest.is_empty() || rest.starts_with('/'),
                None => false,
            },
        }
    }

    /// Precedence: the longer path first; on equal paths `Exact` before
    /// `Prefix`. `Ordering::Less` means `self` is tried first.
    pub fn precedence(&self, other: &Self) -> Ordering {
        other
            .path()
            .len()
            .cmp(&self.path().len())
            .then_with(|| self.kind_rank().cmp(&other.kind_rank()))
            .then_with(|| self.path().cmp(other.path()))
    }

    fn kind_rank(&self) -> u8 {
        match self {
            PathMatch::Exact(_) => 0,
            PathMatch::Prefix(_) => 1,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            PathMatch::Exact(_) => "Exact",
            PathMatch::Prefix(_) => "Prefix",
        }
    }
}

impl fmt::Display for PathMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.path(), self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table from the Kubernetes Ingress documentation ("Examples").
    #[test]
    fn kubernetes_documentation_examples() {
        let cases: &[(PathMatch, &str, bool)] = &[
            (PathMatch::prefix("/"), "/anything", true),
            (PathMatch::exact("/foo"), "/foo", true),
            (PathMatch::exact("/foo"), "/bar", false),
            (PathMatch::exact("/foo"), "/foo/", false),
            (PathMatch::exact("/foo/"), "/foo", false),
            (PathMatch::prefix("/foo"), "/foo", true),
            (PathMatch::prefix("/foo"), "/foo/", true),
            (PathMatch::prefix("/foo/"), "/foo", true),
            (PathMatch::prefix("/foo/"), "/foo/", true),
            (PathMatch::prefix("/aaa/bb"), "/aaa/bbb", false),
            (PathMatch::prefix("/aaa/bbb"), "/aaa/bbb", true),
            (PathMatch::prefix("/aaa/bbb/"), "/aaa/bbb", true),
            (PathMatch::prefix("/aaa/bbb"), "/aaa/bbb/", true),
            (PathMatch::prefix("/aaa/bbb"), "/aaa/bbb/ccc", true),
            (PathMatch::prefix("/aaa/bbb"), "/aaa/bbbxyz", false),
            (PathMatch::prefix("/aaa"), "/aaaccc", false),
            (PathMatch::prefix("/aaa"), "/aaa/ccc", true),
            (PathMatch::exact("/foo"), "/FOO", false),
            (PathMatch::prefix("/foo"), "/FOO", false),
        ];
        for (rule, path, want) in cases {
            assert_eq!(rule.matches(path), *want, "{rule} vs {path}");
        }
    }

    #[test]
    fn longest_path_then_exact_first() {
        let mut rules = vec![
            PathMatch::prefix("/"),
            PathMatch::prefix("/a"),
            PathMatch::exact("/a"),
            PathMatch::prefix("/a/b"),
        ];
        rules.sort_by(PathMatch::precedence);
        assert_eq!(
            rules,
            vec![
                PathMatch::prefix("/a/b"),
                PathMatch::exact("/a"),
                PathMatch::prefix("/a"),
                PathMatch::prefix("/"),
            ]
        );
    }

    #[test]
    fn trailing_slash_is_ignored_in_prefix_rules() {
        assert_eq!(PathMatch::prefix("/aaa/"), PathMatch::prefix("/aaa"));
        assert_eq!(PathMatch::prefix("///"), PathMatch::prefix("/"));
    }
}
