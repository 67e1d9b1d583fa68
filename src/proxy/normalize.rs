//! Path normalisation before routing (RFC 3986, 6.2.2 and 5.2.4): the path
//! a request is routed on is the path the backend is sent, and no spelling
//! of it (dot segments, percent-encoding, doubled slashes) can reach a
//! backend outside the rule that matched.
//!
//! - `%XX` of an unreserved character (letters, digits, `-._~`) is decoded;
//!   every other escape is kept, with upper-case hex digits.
//! - `.` and `..` segments are resolved, `%2e` spellings included; a path
//!   that climbs above the root is refused.
//! - Runs of slashes are merged into one, as nginx's `merge_slashes` does
//!   for routing; unlike nginx the merged path is also what is forwarded, so
//!   the backend and the routing agree.
//! - `%2F` and `%5C` (an encoded `/` and `\`) are kept encoded by default,
//!   so `/a%2Fb` stays one segment; a segment that would hold a `.` or `..`
//!   segment once they are decoded (`..%2F`, `%2E%2E%5C`) is refused,
//!   because a backend that decodes them would climb out of the route.
//!   `--encoded-slashes decode` turns them into real separators first;
//!   `reject` refuses every path with one.
//! - `%00` and malformed escapes (`%zz`, a `%` at the end) are refused.

use std::borrow::Cow;

/// What to do with `%2F` and `%5C` in a path (`--encoded-slashes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncodedSlashes {
    /// Kept encoded: part of a segment, never a separator.
    #[default]
    Keep,
    /// Decoded to `/` before dot segments are resolved and slashes merged.
    Decode,
    /// Any path holding one is refused with 400.
    Reject,
}

/// Why a path cannot be routed; the client gets 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the request target is not an absolute path")]
    NotAbsolute,
    #[error("the path holds a malformed percent-encoding")]
    BadEscape,
    #[error("the path holds an encoded NUL byte")]
    Nul,
    #[error("the path climbs above the root")]
    AboveRoot,
    #[error("the path holds an encoded dot segment behind an encoded slash")]
    EncodedTraversal,
    #[error("the path holds an encoded slash")]
    EncodedSlash,
}

/// The normal form of `path` (the part of the target before `?`): borrowed
/// when it already is one, which is the common case and costs one scan.
pub fn normalize(path: &str, slashes: EncodedSlashes) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(bytes, slashes)?;
    resolve(&decoded).map(Cow::Owned)
}

/// No escape, no doubled slash, no segment starting with a dot: nothing to
/// do. A `/.well-known` path takes the slow path, which returns it as it is.
fn is_normal(bytes: &[u8]) -> bool {
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'%' || b == b'\\' || (prev == b'/' && (b == b'/' || b == b'.')) {
            return false;
        }
        prev = b;
    }
    true
}

/// Decodes what RFC 3986 says may be decoded, upper-cases the hex of the
/// rest, and applies the encoded-slash rule.
fn decode(bytes: &[u8], slashes: EncodedSlashes) -> Result<String, PathError> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            // The URI parser admits only visible ASCII into a path.
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).and_then(|&h| hex(h)),
            bytes.get(i + 2).and_then(|&l| hex(l)),
        ) else {
            return Err(PathError::BadEscape);
        };
        let value = hi << 4 | lo;
        i += 3;
        match value {
            0 => return Err(PathError::Nul),
            b'/' | b'\\' => match slashes {
                EncodedSlashes::Reject => return Err(PathError::EncodedSlash),
                EncodedSlashes::Decode if value == b'/' => out.push('/'),
                _ => push_escape(&mut out, value),
            },
            v if is_unreserved(v) => out.push(char::from(v)),
            v => push_escape(&mut out, v),
        }
    }
    Ok(out)
}

/// Removes dot segments and empty segments (doubled slashes), keeping a
/// trailing slash; refuses a climb above the root and a dot segment hidden
/// behind an encoded slash.
fn resolve(decoded: &str) -> Result<String, PathError> {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing = false;
    // The first element is the empty string before the leading slash.
    for segment in decoded.split('/').skip(1) {
        trailing = false;
        match segment {
            "" => trailing = true,
            "." => trailing = true,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing = true;
            }
            s => {
                if hides_dot_segment(s) {
                    return Err(PathError::EncodedTraversal);
                }
                segments.push(s);
            }
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing || segments.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Whether `segment`, cut at encoded slashes and backslashes as a decoding
/// backend would, holds a `.` or `..` piece.
fn hides_dot_segment(segment: &str) -> bool {
    if !segment.contains('%') && !segment.contains('\\') {
        return false;
    }
    segment
        .replace("%2F", "/")
        .replace("%5C", "/")
        .replace('\\', "/")
        .split('/')
        .any(|piece| piece == "." || piece == "..")
}

fn push_escape(out: &mut String, value: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(value >> 4)]));
    out.push(char::from(HEX[usize::from(value & 0xf)]));
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986, 2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::model::PathMatch;

    fn keep(path: &str) -> Result<String, PathError> {
        normalize(path, EncodedSlashes::Keep).map(Cow::into_owned)
    }

    #[test]
    fn examples() {
        let ok = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("//a///b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/public/../admin/secret.txt", "/admin/secret.txt"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2e/admin", "/admin"),
            ("/%7Euser/%41%62c", "/~user/Abc"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%20b/%e2%82%ac", "/a%20b/%E2%82%AC"),
            ("/.well-known/acme", "/.well-known/acme"),
            ("/a/..", "/"),
            ("/..a/b..", "/..a/b.."),
        ];
        for (raw, want) in ok {
            assert_eq!(keep(raw).as_deref(), Ok(want), "{raw}");
        }
        let bad = [
            ("/..", PathError::AboveRoot),
            ("/a/../..", PathError::AboveRoot),
            ("/%2e%2e/etc", PathError::AboveRoot),
            ("/public/..%2fadmin", PathError::EncodedTraversal),
            ("/public/..%2Fadmin", PathError::EncodedTraversal),
            ("/public/%2e%2e%5cadmin", PathError::EncodedTraversal),
            ("/public/..\\admin", PathError::EncodedTraversal),
            ("/a%00b", PathError::Nul),
            ("/a%zz", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/a%", PathError::BadEscape),
            ("*", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
        ];
        for (raw, want) in bad {
            assert_eq!(keep(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn the_encoded_slash_modes() {
        let decode = |p| normalize(p, EncodedSlashes::Decode).map(Cow::into_owned);
        assert_eq!(decode("/a%2Fb").as_deref(), Ok("/a/b"));
        assert_eq!(decode("/public/..%2Fadmin").as_deref(), Ok("/admin"));
        assert_eq!(decode("/a%5Cb").as_deref(), Ok("/a%5Cb"));
        let reject = |p| normalize(p, EncodedSlashes::Reject).map(Cow::into_owned);
        assert_eq!(reject("/a%2fb"), Err(PathError::EncodedSlash));
        assert_eq!(reject("/a%5cb"), Err(PathError::EncodedSlash));
        assert_eq!(reject("/a/b").as_deref(), Ok("/a/b"));
    }

    #[test]
    fn a_normal_path_is_borrowed() {
        assert!(matches!(
            normalize("/api/v1/items", EncodedSlashes::Keep),
            Ok(Cow::Borrowed(_))
        ));
    }

    // ------------------------------------------------------------ properties

    /// What a backend that decodes every escape and treats `\` as `/` sees:
    /// the path it would serve, or `None` when it would climb above the
    /// root. The reference the normal form is checked against.
    fn backend_view(path: &str) -> Option<String> {
        let bytes = path.as_bytes();
        let mut decoded = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && let (Some(h), Some(l)) = (
                    bytes.get(i + 1).and_then(|&b| hex(b)),
                    bytes.get(i + 2).and_then(|&b| hex(b)),
                )
            {
                decoded.push(h << 4 | l);
                i += 3;
            } else {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
        let text = String::from_utf8_lossy(&decoded).replace('\\', "/");
        let mut stack: Vec<&str> = Vec::new();
        let mut trailing = false;
        for s in text.split('/').skip(1) {
            trailing = matches!(s, "" | "." | "..");
            match s {
                "" | "." => {}
                ".." => {
                    stack.pop()?;
                }
                s => stack.push(s),
            }
        }
        let slash = if trailing && !stack.is_empty() {
            "/"
        } else {
            ""
        };
        Some(format!("/{}{slash}", stack.join("/")))
    }

    fn segment(with_slashes: bool) -> BoxedStrategy<&'static str> {
        let mut pieces = vec![
            "a", "b", "public", "admin", "api", ".", "..", "%2e", "%2E%2e", ".%2e", "%41", "%7e",
            "", "x%20y", "%C3%A9", "..a", "v1",
        ];
        if with_slashes {
            pieces.extend(["%2f", "%2F", "..%2f", "%2e%2e%2F", "%5c", "..%5C", "a%2Fb"]);
        }
        proptest::sample::select(pieces).boxed()
    }

    fn raw_path(with_slashes: bool) -> impl Strategy<Value = String> {
        proptest::collection::vec(segment(with_slashes), 0..8)
            .prop_map(|segments| format!("/{}", segments.join("/")))
    }

    /// The rules of one host, in precedence order (as the table keeps them).
    fn rules() -> Vec<PathMatch> {
        let mut rules = vec![
            PathMatch::prefix("/public"),
            PathMatch::prefix("/public/a"),
            PathMatch::exact("/admin"),
            PathMatch::prefix("/api/v1"),
            PathMatch::prefix("/"),
        ];
        rules.sort_by(|a, b| a.precedence(b));
        rules
    }

    fn route<'a>(rules: &'a [PathMatch], path: &str) -> Option<&'a PathMatch> {
        rules.iter().find(|r| r.matches(path))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn normal_forms_are_fixed_points(raw in raw_path(true)) {
            if let Ok(normal) = keep(&raw) {
                let again = keep(&normal);
                prop_assert_eq!(again.as_deref(), Ok(normal.as_str()));
                prop_assert!(!normal.contains("//"), "{}", normal);
                prop_assert!(!normal.contains("/./") && !normal.contains("/../"), "{}", normal);
                prop_assert!(!normal.ends_with("/.") && !normal.ends_with("/.."), "{}", normal);
            }
        }

        /// Without encoded slashes, routing on the normal form is routing on
        /// what a decoding backend resolves, and a climb above the root is
        /// refused exactly when the backend would see one.
        #[test]
        fn the_route_is_the_route_of_what_the_backend_sees(raw in raw_path(false)) {
            let rules = rules();
            match (keep(&raw), backend_view(&raw)) {
                (Ok(normal), Some(view)) => {
                    prop_assert_eq!(route(&rules, &normal), route(&rules, &view), "{} -> {}", raw, normal);
                }
                (Err(PathError::AboveRoot), None) => {}
                (got, view) => prop_assert!(false, "{raw}: {got:?} but the backend sees {view:?}"),
            }
        }

        /// With encoded slashes and backslashes too: a path routed to a
        /// Prefix rule is, as a decoding backend resolves it, inside that
        /// prefix.
        #[test]
        fn no_path_leaves_the_prefix_it_was_routed_to(raw in raw_path(true)) {
            let rules = rules();
            if let Ok(normal) = keep(&raw)
                && let Some(rule) = route(&rules, &normal)
            {
                let view = backend_view(&normal);
                prop_assert!(view.is_some(), "{raw} -> {normal} climbs above the root");
                let view = view.unwrap_or_default();
                if rule.kind() == "Prefix" {
                    prop_assert!(rule.matches(&view), "{raw} -> {normal} routed to {rule}, backend sees {view}");
                }
            }
        }
    }
}
