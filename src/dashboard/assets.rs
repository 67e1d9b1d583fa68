//! The page's files, embedded in the binary: nothing is fetched from
//! anywhere at run time. Charts are drawn by the page itself as SVG, so
//! there is no charting library to ship.

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, Full};

use super::Body;

const INDEX: &str = include_str!("assets/index.html");
const LOGIN: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// A static file.
pub struct Asset {
    body: &'static str,
    kind: &'static str,
}

/// The public files (the login page needs the style sheet before any
/// token is known; neither file holds anything secret).
pub fn get(path: &str) -> Option<Asset> {
    match path {
        "/app.js" => Some(Asset {
            body: APP_JS,
            kind: "text/javascript; charset=utf-8",
        }),
        "/app.css" => Some(Asset {
            body: APP_CSS,
            kind: "text/css; charset=utf-8",
        }),
        _ => None,
    }
}

impl Asset {
    pub fn response(&self) -> Response<Body> {
        let mut resp =
            Response::new(Full::new(Bytes::from_static(self.body.as_bytes())).boxed_unsync());
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(self.kind));
        // Embedded, so they change only with the binary; revalidating on
        // each load costs nothing worth saving.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        resp
    }
}

/// The page, with this process's CSRF token for its POSTs.
pub fn index(csrf: &str) -> Response<Body> {
    let page = INDEX.replace("__CSRF__", csrf);
    let mut resp = Response::new(Full::new(Bytes::from(page)).boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

/// The login form, with a message (fixed text, never user input).
pub fn login_html(message: &str) -> String {
    LOGIN.replace("__MESSAGE__", message)
}

/// Bytes a browser fetches on first load: the page and its two files.
pub fn first_load_bytes() -> usize {
    INDEX.len() + APP_JS.len() + APP_CSS.len()
}
