//! What a request must be before it is routed: a method the proxy forwards,
//! exactly one valid host, and a path in normal form ([`super::normalize`]).
//! Everything refused here is the client's fault (400 or 405) and never
//! reaches a backend.

use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Version};

use super::ProxyError;
use super::normalize::{self, EncodedSlashes};

/// The host a request is routed on and forwarded with.
#[derive(Debug)]
pub struct Admitted {
    /// As the client sent it (`Host`, or the URI's authority), port included;
    /// `None` only for an HTTP/1.0 request without one.
    pub host: Option<HeaderValue>,
}

/// Checks `req` and puts its path in normal form (in place: the normal
/// form is both routed on and forwarded). `max_head` bounds the request
/// line and headers together.
pub fn admit<B>(
    req: &mut Request<B>,
    slashes: EncodedSlashes,
    max_head: usize,
) -> Result<Admitted, ProxyError> {
    // hyper bounds its HTTP/1.1 read buffer, not the head itself: a head
    // that completes within a read crossing the limit gets through (up to
    // twice the limit), so the limit is checked here, for both protocols.
    if head_size(req) > max_head {
        return Err(ProxyError::HeadTooLarge);
    }
    // CONNECT would make the proxy an open tunnel to anywhere, and TRACE
    // echoes credentials back (cross-site tracing); nginx refuses both.
    if req.method() == Method::CONNECT || req.method() == Method::TRACE {
        return Err(ProxyError::MethodNotAllowed);
    }
    let host = host(req)?;
    let normal = match normalize::normalize(req.uri().path(), slashes) {
        Ok(std::borrow::Cow::Borrowed(_)) => None,
        Ok(std::borrow::Cow::Owned(path)) => Some(path),
        Err(error) => return Err(ProxyError::BadPath(error)),
    };
    if let Some(mut path) = normal {
        if let Some(query) = req.uri().query() {
            path.push('?');
            path.push_str(query);
        }
        // The normal form of a valid path is a valid path.
        let target = PathAndQuery::try_from(path)
            .map_err(|_| ProxyError::BadRequest("the path cannot be normalised"))?;
        *req.uri_mut() = Uri::from(target);
    }
    Ok(Admitted { host })
}

/// The size of the request head as HTTP/1.1 would spell it: request line
/// and `name: value` lines.
fn head_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, |s| s.len() + 3);
    // " ", " HTTP/1.1", CRLF.
    let line = req.method().as_str().len() + target + 12;
    req.headers().iter().fold(line, |sum, (name, value)| {
        sum + name.as_str().len() + value.len() + 4
    })
}

/// The one host of the request: the URI's authority (HTTP/2's `:authority`,
/// or an HTTP/1.1 absolute-form target, which wins over `Host` as RFC 9112
/// 3.2.2 says), else the one `Host` header. As nginx: a second `Host`, an
/// empty or malformed one, none at all in HTTP/1.1 or HTTP/2, or an HTTP/2
/// `Host` that disagrees with `:authority`, is a 400.
fn host<B>(req: &Request<B>) -> Result<Option<HeaderValue>, ProxyError> {
    let mut headers = req.headers().get_all(header::HOST).iter();
    let header = headers.next();
    if headers.next().is_some() {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    let authority = req
        .uri()
        .authority()
        .map(|a| HeaderValue::from_str(a.as_str()))
        .transpose()
        .map_err(|_| ProxyError::BadRequest("the request target has an invalid host"))?;
    if req.version() == Version::HTTP_2
        && let (Some(authority), Some(header)) = (&authority, header)
        && !authority.as_bytes().eq_ignore_ascii_case(header.as_bytes())
    {
        return Err(ProxyError::BadRequest("Host and :authority disagree"));
    }
    let host = authority.or_else(|| header.cloned());
    match &host {
        Some(value) if !valid_host(value.as_bytes()) => {
            Err(ProxyError::BadRequest("invalid Host header"))
        }
        None if req.version() >= Version::HTTP_11 => {
            Err(ProxyError::BadRequest("the request has no Host header"))
        }
        _ => Ok(host),
    }
}

/// `name`, `name:port`, `[v6]` or `[v6]:port`, where a name is letters,
/// digits, `-`, `_` and dots between labels (as nginx's host validation:
/// no `..`, no `/`, `\` or `@`).
fn valid_host(host: &[u8]) -> bool {
    let (name, port) = match host.iter().rposition(|&b| b == b':') {
        Some(i) if !host.starts_with(b"[") || host[..i].ends_with(b"]") => {
            (&host[..i], Some(&host[i + 1..]))
        }
        _ => (host, None),
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit))
    {
        return false;
    }
    if let Some(literal) = name.strip_prefix(b"[") {
        let Some(inner) = literal.strip_suffix(b"]") else {
            return false;
        };
        return !inner.is_empty()
            && inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    !name.is_empty()
        && !name.starts_with(b".")
        && !name.windows(2).any(|w| w == b"..")
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut req = Request::builder().version(version).uri(uri);
        for h in hosts {
            req = req.header(header::HOST, *h);
        }
        req.body(()).unwrap()
    }

    fn admitted(mut req: Request<()>) -> Result<(Option<String>, String), ProxyError> {
        let a = admit(&mut req, EncodedSlashes::Keep, 64 * 1024)?;
        let host = a.host.map(|h| h.to_str().unwrap().to_string());
        Ok((host, req.uri().to_string()))
    }

    #[test]
    fn hosts() {
        let ok = |v, uri, hosts: &[&str], want: Option<&str>| {
            let (host, _) = admitted(request(v, uri, hosts)).unwrap();
            assert_eq!(host.as_deref(), want, "{uri} {hosts:?}");
        };
        ok(Version::HTTP_11, "/", &["a.example"], Some("a.example"));
        ok(
            Version::HTTP_11,
            "/",
            &["a.example:8000"],
            Some("a.example:8000"),
        );
        ok(Version::HTTP_11, "/", &["[::1]:8000"], Some("[::1]:8000"));
        ok(Version::HTTP_11, "/", &["10.0.0.1"], Some("10.0.0.1"));
        ok(Version::HTTP_10, "/", &[], None);
        ok(
            Version::HTTP_11,
            "http://b.example/x",
            &["a.example"],
            Some("b.example"),
        );
        ok(
            Version::HTTP_2,
            "http://b.example/x",
            &["B.example"],
            Some("b.example"),
        );
        ok(
            Version::HTTP_2,
            "http://b.example/x",
            &[],
            Some("b.example"),
        );

        let bad = |v, uri, hosts: &[&str]| {
            assert!(
                matches!(
                    admitted(request(v, uri, hosts)),
                    Err(ProxyError::BadRequest(_))
                ),
                "{uri} {hosts:?}"
            );
        };
        bad(Version::HTTP_11, "/", &[]);
        bad(Version::HTTP_11, "/", &["a.example", "b.example"]);
        bad(Version::HTTP_11, "/", &["a.example", "a.example"]);
        bad(Version::HTTP_11, "/", &[""]);
        bad(Version::HTTP_11, "/", &["a..example"]);
        bad(Version::HTTP_11, "/", &["a/b"]);
        bad(Version::HTTP_11, "/", &["user@a.example"]);
        bad(Version::HTTP_11, "/", &["a.example:80x"]);
        bad(Version::HTTP_11, "/", &["[::1"]);
        bad(Version::HTTP_2, "http://b.example/x", &["a.example"]);
        bad(Version::HTTP_2, "/x", &[]);
    }

    #[test]
    fn the_head_is_bounded() {
        let mut req = request(Version::HTTP_11, "/", &["a"]);
        req.headers_mut().insert(
            "x-big",
            http::HeaderValue::from_str(&"b".repeat(1000)).unwrap(),
        );
        assert!(admit(&mut req, EncodedSlashes::Keep, 2000).is_ok());
        assert!(matches!(
            admit(&mut req, EncodedSlashes::Keep, 1000),
            Err(ProxyError::HeadTooLarge)
        ));
    }

    #[test]
    fn methods_and_paths() {
        for method in [Method::CONNECT, Method::TRACE] {
            let mut req = request(Version::HTTP_11, "/", &["a"]);
            *req.method_mut() = method;
            assert!(matches!(
                admit(&mut req, EncodedSlashes::Keep, 64 * 1024),
                Err(ProxyError::MethodNotAllowed)
            ));
        }
        let (_, uri) = admitted(request(
            Version::HTTP_11,
            "/public/../admin/%7e?q=/../x",
            &["a"],
        ))
        .unwrap();
        assert_eq!(uri, "/admin/~?q=/../x", "the query is left as it is");
        let (_, uri) = admitted(request(Version::HTTP_2, "https://a/x/./y", &[])).unwrap();
        assert_eq!(uri, "/x/y");
        assert!(matches!(
            admitted(request(Version::HTTP_11, "/..", &["a"])),
            Err(ProxyError::BadPath(_))
        ));
    }
}
