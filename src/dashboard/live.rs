//! `GET /api/feed`: the live activity feed as server-sent events.
//!
//! Each finished request the feed's sampling took is one `request` event
//! (the access log's JSON fields); every second a `meta` event says how
//! many watch, one request in how many is shown, and how many records this
//! watcher lost by falling behind. Filters in the query string (`host`: a
//! part of the host; `status`: a class such as `5xx` or a code; `backend`:
//! a part of the backend id) are applied here, so a script gets only what
//! it asked for. Leaving (closing the stream) ends the watcher: with none
//! left the request path builds no record again.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Frame;
use tokio::sync::broadcast::error::RecvError;

use crate::proxy::access_log::{Record, json_object};
use crate::proxy::feed::{Feed, Watch};

/// How often the `meta` event comes (it also keeps proxies from closing an
/// idle stream).
const META_EVERY: Duration = Duration::from_secs(1);

/// What a watcher asked to see.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub host: Option<String>,
    /// `(low, high)`: codes from low to high, inclusive.
    pub status: Option<(u16, u16)>,
    pub backend: Option<String>,
}

impl Filter {
    /// From the query string: `host=`, `status=` (`5xx`, `404`), `backend=`.
    pub fn parse(query: Option<&str>) -> Self {
        let mut filter = Filter::default();
        let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
        for (key, value) in pairs {
            let value = value.trim().to_string();
            if value.is_empty() {
                continue;
            }
            match key.as_ref() {
                "host" => filter.host = Some(value.to_ascii_lowercase()),
                "backend" => filter.backend = Some(value),
                "status" => filter.status = status_range(&value),
                _ => {}
            }
        }
        filter
    }

    pub fn matches(&self, record: &Record) -> bool {
        let host_ok = self.host.as_ref().is_none_or(|want| {
            record
                .host
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .is_some_and(|h| h.to_ascii_lowercase().contains(want.as_str()))
        });
        let status_ok = self
            .status
            .is_none_or(|(low, high)| (low..=high).contains(&record.status));
        let backend_ok = self.backend.as_ref().is_none_or(|want| {
            record
                .backend
                .as_deref()
                .is_some_and(|b| b.contains(want.as_str()))
        });
        host_ok && status_ok && backend_ok
    }
}

/// `5xx` -> 500..=599, `404` -> 404..=404.
fn status_range(value: &str) -> Option<(u16, u16)> {
    let lower = value.to_ascii_lowercase();
    if let Some(class) = lower.strip_suffix("xx") {
        let class: u16 = class.parse().ok().filter(|c| (1..=5).contains(c))?;
        return Some((class * 100, class * 100 + 99));
    }
    let code: u16 = lower.parse().ok()?;
    Some((code, code))
}

/// The event stream of one watcher.
pub fn stream(watch: Watch, feed: Arc<Feed>, filter: Filter) -> UnsyncBoxBody<Bytes, Infallible> {
    struct State {
        watch: Watch,
        feed: Arc<Feed>,
        filter: Filter,
        meta: tokio::time::Interval,
        lost: u64,
    }
    let mut meta = tokio::time::interval(META_EVERY);
    meta.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = State {
        watch,
        feed,
        filter,
        meta,
        lost: 0,
    };
    let events = futures::stream::unfold(state, |mut s| async move {
        loop {
            tokio::select! {
                received = s.watch.rx.recv() => match received {
                    Ok(record) if s.filter.matches(&record) => {
                        let mut event = String::from("event: request\ndata: ");
                        json_object(&record, &mut event);
                        event.push_str("\n\n");
                        return Some((Ok(Frame::data(Bytes::from(event))), s));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => s.lost += n,
                    Err(RecvError::Closed) => return None,
                },
                _ = s.meta.tick() => {
                    let meta = serde_json::json!({
                        "watchers": s.feed.watchers(),
                        "sample_every": s.feed.sample_every(),
                        "lost": s.lost,
                    });
                    let event = format!("event: meta\ndata: {meta}\n\n");
                    return Some((Ok(Frame::data(Bytes::from(event))), s));
                }
            }
        }
    });
    http_body_util::StreamBody::new(events).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filters_take_classes_and_codes() {
        assert_eq!(status_range("5xx"), Some((500, 599)));
        assert_eq!(status_range("2XX"), Some((200, 299)));
        assert_eq!(status_range("404"), Some((404, 404)));
        assert_eq!(status_range("9xx"), None);
        assert_eq!(status_range("abc"), None);
        let f = Filter::parse(Some("host=Shop&status=4xx&backend=web&other=1"));
        assert_eq!(f.host.as_deref(), Some("shop"));
        assert_eq!(f.status, Some((400, 499)));
        assert_eq!(f.backend.as_deref(), Some("web"));
    }
}
