//! Who wants a request's record: the access log, the dashboard's live feed
//! ([`super::feed`]), both, or neither. With neither, the request path
//! builds nothing: [`Records::begin`] answers `None` after reading one
//! option and one atomic counter.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::time::Instant;

use super::access_log::{AccessLog, Pending, Record, TlsInfo};
use super::feed::Feed;

/// The record's possible destinations, shared by every request.
#[derive(Debug, Default)]
pub struct Records {
    /// `--access-log`; `None` when off.
    pub log: Option<AccessLog>,
    /// The dashboard's live feed; `None` without a dashboard.
    pub feed: Option<Arc<Feed>>,
}

/// Where one finished record goes.
#[derive(Debug)]
pub struct Delivery {
    records: Arc<Records>,
    /// The feed's sampling took this request.
    to_feed: bool,
}

impl Records {
    /// Whether anything could want records now: the access log is on or
    /// someone watches the feed (so a TLS connection keeps what its
    /// handshake settled).
    pub fn wanted(&self) -> bool {
        self.log.is_some() || self.feed.as_ref().is_some_and(|f| f.watchers() > 0)
    }

    /// Starts a request's record when something wants it; `client` is only
    /// worked out then.
    pub fn begin<B>(
        self: &Arc<Self>,
        req: &http::Request<B>,
        client: impl FnOnce() -> IpAddr,
        tls: Option<Arc<TlsInfo>>,
        started: Instant,
    ) -> Option<Box<Pending>> {
        let to_feed = self.feed.as_ref().is_some_and(|f| f.wants());
        if self.log.is_none() && !to_feed {
            return None;
        }
        let to = Delivery {
            records: self.clone(),
            to_feed,
        };
        Some(Box::new(Pending::begin(to, req, client(), tls, started)))
    }
}

impl Delivery {
    /// Hands a finished record to the log and the feed: one allocation
    /// shared by both.
    pub fn deliver(self, record: Record) {
        let record = Arc::new(record);
        if self.to_feed
            && let Some(feed) = &self.records.feed
        {
            feed.publish(record.clone());
        }
        if let Some(log) = &self.records.log {
            log.log(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> http::Request<()> {
        http::Request::get("/x").body(()).unwrap()
    }

    #[test]
    fn nothing_is_built_when_nobody_wants_it() {
        let feed = Feed::new();
        let records = Arc::new(Records {
            log: None,
            feed: Some(feed.clone()),
        });
        let asked = std::cell::Cell::new(false);
        let client = || {
            asked.set(true);
            IpAddr::from([127, 0, 0, 1])
        };
        assert!(
            records
                .begin(&request(), client, None, Instant::now())
                .is_none()
        );
        assert!(!asked.get(), "the client address is not even worked out");
        assert!(!records.wanted());

        let mut watch = feed.watch().unwrap();
        assert!(records.wanted());
        let pending = records
            .begin(
                &request(),
                || IpAddr::from([127, 0, 0, 1]),
                None,
                Instant::now(),
            )
            .expect("a watcher wants the record");
        pending.finish(12);
        let record = watch.rx.try_recv().unwrap();
        assert_eq!(record.path, "/x");
        assert_eq!(record.bytes_out, 12);
    }
}
