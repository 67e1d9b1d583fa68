//! A backend: the endpoints of one Service port, as the proxy dials them.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::uri::Authority;

/// Where one endpoint lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointAddr {
    /// An address from an EndpointSlice.
    Ip(SocketAddr),
    /// A DNS name from an `ExternalName` Service (only with `--allow-external-name`).
    Name { host: String, port: u16 },
}

/// One endpoint with its pre-built URI authority, so the request path never
/// formats an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: EndpointAddr,
    authority: Authority,
}

/// The endpoints behind one Service port.
///
/// `ready` endpoints take new requests; `fallback` ones (serving but
/// terminating) are used only when no ready endpoint is left, as the
/// EndpointSlice conventions ask.
pub struct Backend {
    /// Stable label for logs and metrics: `namespace/service:port`.
    pub id: String,
    pub ready: Vec<Endpoint>,
    pub fallback: Vec<Endpoint>,
    /// Round-robin position. It lives with the backend because a table is
    /// immutable once published; a new table starts a new rotation.
    cursor: AtomicUsize,
}

// === impl EndpointAddr ===

impl fmt::Display for EndpointAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointAddr::Ip(addr) => addr.fmt(f),
            EndpointAddr::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

// === impl Endpoint ===

impl Endpoint {
    /// Builds an endpoint; `None` when the address cannot be a URI authority
    /// (an ExternalName with characters a host may not have).
    pub fn new(addr: EndpointAddr) -> Option<Self> {
        let authority = Authority::try_from(addr.to_string()).ok()?;
        Some(Self { addr, authority })
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr.fmt(f)
    }
}

// === impl Backend ===

impl Backend {
    pub fn new(id: String, ready: Vec<Endpoint>, fallback: Vec<Endpoint>) -> Self {
        Self {
            id,
            ready,
            fallback,
            cursor: AtomicUsize::new(0),
        }
    }

    /// Picks the next endpoint round-robin: ready ones first, serving but
    /// terminating ones only when none is ready. `None` means 503.
    pub fn pick(&self) -> Option<&Endpoint> {
        let set = if self.ready.is_empty() {
            &self.fallback
        } else {
            &self.ready
        };
        if set.is_empty() {
            return None;
        }
        let n = self.cursor.fetch_add(1, Ordering::Relaxed);
        set.get(n % set.len())
    }

    /// Whether two backends send traffic to the same place (used to tell a
    /// duplicate rule from a conflicting one).
    pub fn same_target(&self, other: &Backend) -> bool {
        self.id == other.id
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("id", &self.id)
            .field("ready", &self.ready)
            .field("fallback", &self.fallback)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16) -> Endpoint {
        Endpoint::new(EndpointAddr::Ip(SocketAddr::from(([127, 0, 0, 1], port)))).unwrap()
    }

    #[test]
    fn round_robin_rotates_evenly() {
        let b = Backend::new("ns/s:80".into(), vec![ep(1), ep(2), ep(3)], vec![]);
        let mut counts = [0; 3];
        for _ in 0..300 {
            let port = match b.pick().unwrap().addr {
                EndpointAddr::Ip(a) => a.port(),
                _ => unreachable!(),
            };
            counts[port as usize - 1] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn terminating_endpoints_only_when_nothing_is_ready() {
        let b = Backend::new("ns/s:80".into(), vec![ep(1)], vec![ep(9)]);
        assert!((0..10).all(|_| b.pick() == Some(&ep(1))));
        let b = Backend::new("ns/s:80".into(), vec![], vec![ep(9)]);
        assert_eq!(b.pick(), Some(&ep(9)));
        let b = Backend::new("ns/s:80".into(), vec![], vec![]);
        assert_eq!(b.pick(), None);
    }

    #[test]
    fn external_names_become_authorities() {
        let e = Endpoint::new(EndpointAddr::Name {
            host: "api.example.com".into(),
            port: 443,
        })
        .unwrap();
        assert_eq!(e.authority().as_str(), "api.example.com:443");
        assert!(
            Endpoint::new(EndpointAddr::Name {
                host: "bad host/".into(),
                port: 1
            })
            .is_none()
        );
    }
}
