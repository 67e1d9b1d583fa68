//! Watch streams: one JSON event per line (`{"type": ..., "object": ...}`),
//! replayed from a resourceVersion and then live, with bookmarks, timeouts,
//! selector transitions and the in-stream 410 the real server sends.
//!
//! A watch from a compacted resourceVersion gets HTTP 200 and then a single
//! `ERROR` event carrying a 410 `Expired` Status, because that is what the
//! real watch cache does; kube-runtime's watcher relists on exactly that
//! (an HTTP-level 410 would make it retry the same watch forever).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::history::{Change, ChangeKind};
use crate::meta::{self, parse_rv};
use crate::query::Query;
use crate::resources::ResourceType;
use crate::respond::Body;
use crate::selector::Filter;
use crate::store::{Store, Subscription, WatchFrom};

/// How a watch behaves beyond what the request says.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    /// How often BOOKMARK events are sent to watches that allow them.
    pub bookmark_interval: Duration,
    /// How long a watch without `timeoutSeconds` lasts.
    pub default_timeout: Duration,
}

/// Everything the task feeding one watch stream needs.
struct Pump {
    store: Arc<Store>,
    res: Arc<ResourceType>,
    filter: Filter,
    bookmarks: bool,
    initial_events_end: bool,
    interval: Duration,
    deadline: Instant,
    shutdown: CancellationToken,
    tx: mpsc::Sender<Bytes>,
}

/// Starts a watch and returns the streaming response.
pub fn watch(
    store: &Arc<Store>,
    res: Arc<ResourceType>,
    filter: Filter,
    q: &Query,
    settings: &WatchSettings,
    shutdown: &CancellationToken,
) -> Result<Response<Body>, ApiError> {
    let bookmarks = q.flag("allowWatchBookmarks")?;
    let send_initial = if q.has("sendInitialEvents") {
        Some(q.flag("sendInitialEvents")?)
    } else {
        None
    };
    match (q.get("resourceVersionMatch"), send_initial) {
        (None, Some(true)) => {
            return Err(ApiError::invalid_options(
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        (Some("NotOlderThan"), Some(_)) | (None, _) => {}
        (Some(_), _) => {
            return Err(ApiError::invalid_options(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ));
        }
    }
    if send_initial == Some(true) && !bookmarks {
        return Err(ApiError::invalid_options(
            "allowWatchBookmarks: Forbidden: sendInitialEvents requires allowWatchBookmarks to be true",
        ));
    }
    let timeout = q
        .number("timeoutSeconds")?
        .map(Duration::from_secs)
        .unwrap_or(settings.default_timeout);

    let from = match (q.get("resourceVersion"), send_initial) {
        (_, Some(true)) => WatchFrom::Current,
        (None | Some("0"), Some(false)) => WatchFrom::Latest,
        (None | Some("0"), None) => WatchFrom::Current,
        (Some(rv), _) => WatchFrom::After(parse_rv(rv)?),
    };

    let (tx, rx) = mpsc::channel::<Bytes>(128);
    match store.subscribe(&res, from) {
        Ok(sub) => {
            let pump = Pump {
                store: store.clone(),
                res,
                filter,
                bookmarks,
                initial_events_end: send_initial == Some(true),
                interval: settings.bookmark_interval,
                deadline: Instant::now() + timeout,
                shutdown: shutdown.clone(),
                tx,
            };
            tokio::spawn(pump.run(sub));
        }
        Err(err) => {
            // The stream is already "open": errors go in it, not in the status line.
            let line = event_line("ERROR", &err.to_status());
            let _ = tx.try_send(line);
        }
    }
    Ok(stream_response(rx))
}

// === impl Pump ===

impl Pump {
    async fn run(self, sub: Subscription) {
        let Subscription {
            initial,
            mut rx,
            rv,
        } = sub;
        for change in &initial {
            if let Some(line) = render(change, &self.filter)
                && !self.send(line).await
            {
                return;
            }
        }
        // The watch has now caught up to `rv`: nothing older can arrive.
        let mut seen = rv;
        if self.initial_events_end && !self.send(self.bookmark(seen, true)).await {
            return;
        }
        let mut ticks = tokio::time::interval_at(Instant::now() + self.interval, self.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let expired = tokio::time::sleep_until(self.deadline);
        tokio::pin!(expired);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = &mut expired => return,
                _ = self.tx.closed() => return,
                change = rx.recv() => {
                    let Some(change) = change else { return };
                    seen = seen.max(change.rv);
                    if let Some(line) = render(&change, &self.filter)
                        && !self.send(line).await
                    {
                        return;
                    }
                }
                _ = ticks.tick(), if self.bookmarks => {
                    // Every change up to the store's current version is
                    // already queued; send those first so the bookmark
                    // never claims a version whose events are still pending.
                    let current = self.store.current_rv();
                    while let Ok(change) = rx.try_recv() {
                        seen = seen.max(change.rv);
                        if let Some(line) = render(&change, &self.filter)
                            && !self.send(line).await
                        {
                            return;
                        }
                    }
                    if !self.send(self.bookmark(current.max(seen), false)).await {
                        return;
                    }
                }
            }
        }
    }

    /// Sends one line; false when the client is gone or the server stops.
    async fn send(&self, line: Bytes) -> bool {
        tokio::select! {
            sent = self.tx.send(line) => sent.is_ok(),
            _ = self.shutdown.cancelled() => false,
        }
    }

    /// A BOOKMARK: an object of the watched kind with only a resourceVersion.
    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({
            "kind": self.res.kind,
            "apiVersion": self.res.api_version(),
            "metadata": metadata,
        });
        event_line("BOOKMARK", &object)
    }
}

/// The event a filtered watch sees for a change, if any. A change that moves
/// an object into the selection is ADDED, out of it DELETED, as in the real
/// watch cache.
fn render(change: &Change, filter: &Filter) -> Option<Bytes> {
    let now = filter.matches(&change.object);
    let before = change.prev.as_ref().is_some_and(|p| filter.matches(p));
    match change.kind {
        ChangeKind::Added if now => Some(event_line(ChangeKind::Added.as_str(), &change.object)),
        ChangeKind::Modified if now && before => {
            Some(event_line(ChangeKind::Modified.as_str(), &change.object))
        }
        ChangeKind::Modified if now => Some(event_line(ChangeKind::Added.as_str(), &change.object)),
        ChangeKind::Modified if before => {
            let mut gone = change.prev.as_deref().cloned().unwrap_or(Value::Null);
            meta::set_resource_version(&mut gone, change.rv);
            Some(event_line(ChangeKind::Deleted.as_str(), &gone))
        }
        ChangeKind::Deleted if now || before => {
            Some(event_line(ChangeKind::Deleted.as_str(), &change.object))
        }
        _ => None,
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A chunked response whose body is whatever the pump sends; it ends when
/// the pump drops its sender.
fn stream_response(mut rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let frames = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|line| line.map(|b| Ok(Frame::data(b))))
    });
    let mut resp = Response::new(StreamBody::new(frames).boxed());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::LabelSelector;

    fn obj(app: &str, rv: u64) -> Arc<Value> {
        Arc::new(
            json!({"metadata": {"name": "a", "namespace": "ns", "resourceVersion": rv.to_string(), "labels": {"app": app}}}),
        )
    }

    fn kind_of(line: Option<Bytes>) -> Option<String> {
        let v: Value = serde_json::from_slice(&line?).ok()?;
        Some(v["type"].as_str()?.to_string())
    }

    #[test]
    fn selector_transitions_become_added_and_deleted() {
        let filter = Filter {
            labels: LabelSelector::parse("app=web").unwrap(),
            ..Filter::default()
        };
        let change = |kind, object, prev| Change {
            rv: 9,
            resource: "x".into(),
            kind,
            object,
            prev,
        };
        let cases = [
            (
                change(ChangeKind::Modified, obj("web", 9), Some(obj("api", 8))),
                Some("ADDED"),
            ),
            (
                change(ChangeKind::Modified, obj("api", 9), Some(obj("web", 8))),
                Some("DELETED"),
            ),
            (
                change(ChangeKind::Modified, obj("web", 9), Some(obj("web", 8))),
                Some("MODIFIED"),
            ),
            (
                change(ChangeKind::Modified, obj("api", 9), Some(obj("db", 8))),
                None,
            ),
            (change(ChangeKind::Added, obj("api", 9), None), None),
            (
                change(ChangeKind::Deleted, obj("web", 9), Some(obj("web", 8))),
                Some("DELETED"),
            ),
        ];
        for (i, (c, want)) in cases.into_iter().enumerate() {
            assert_eq!(kind_of(render(&c, &filter)).as_deref(), want, "case {i}");
        }
    }
}
