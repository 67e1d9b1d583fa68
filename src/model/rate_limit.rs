//! Per-client-address limits (`limit-rps`, `limit-rpm`,
//! `limit-connections`): their settings, and the counters, which outlive
//! routing tables.
//!
//! The table is rebuilt on every change to any object, so the counters
//! cannot live in it: an edit to one Ingress must not hand every client of
//! another a fresh budget. Each Ingress with limits gets one [`Zone`] (as
//! nginx gets one shared memory zone per Ingress and kind), from a registry
//! keyed by the Ingress (namespace, name, uid) and its limit settings. The
//! registry holds zones weakly and the routes strongly: a compile finds the
//! zone the live table still holds and reuses it, so its counters carry
//! over; an Ingress deleted, or its limits changed, lets its old zone go
//! with the last table (and the last request) that used it.
//!
//! Memory is bounded. A zone tracks at most [`MAX_CLIENTS`] addresses for
//! its request rates, and as many for its connection counts. A rate entry
//! that has fully recovered (its next allowed time is past) says nothing a
//! missing entry would not, so it is dropped: two at each request, as nginx
//! does, and all of them every [`SWEEP_EVERY`] by a background thread. When
//! a zone is full, the entry closest to recovering is evicted to make room
//! (nginx evicts the least recently used one): a flood of new addresses,
//! each with one request behind it, evicts its own entries before those of
//! a client that has used up its burst, so the flood cannot reset that
//! client's limit. A connection entry exists only while its address has a
//! request in flight; when all are taken, a new address is refused, as
//! nginx refuses when its zone is full.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Once, Weak};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use parking_lot::Mutex;

/// The most client addresses one zone tracks for its rates, and for its
/// connection counts. About 100 bytes each: under 2 MiB per zone at most
/// (nginx gives each zone 5 MiB).
pub const MAX_CLIENTS: usize = 16_384;
/// Locks per zone, so that clients rarely wait for each other.
const SHARDS: usize = 16;
const PER_SHARD: usize = MAX_CLIENTS / SHARDS;
/// How often recovered entries of every zone are dropped.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Fully recovered entries dropped by each request, as nginx does.
const EXPIRE_PER_REQUEST: usize = 2;

/// A request rate: `requests` per second or minute, with nginx's
/// `limit_req burst=... nodelay`: `burst` requests more may come at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    pub requests: u32,
    pub per_minute: bool,
    pub burst: u64,
}

/// What one Ingress limits, per client address. The zone's key with the
/// Ingress: other settings, other counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LimitSettings {
    /// `limit-connections`: requests in flight at once.
    pub connections: Option<u32>,
    /// `limit-rps`.
    pub rps: Option<Rate>,
    /// `limit-rpm`.
    pub rpm: Option<Rate>,
}

/// What a route carries: the addresses exempt, and its Ingress's zone.
#[derive(Clone)]
pub struct ClientLimits {
    /// `limit-allowlist` / `limit-whitelist`: never limited.
    pub allow: Vec<IpNet>,
    pub zone: Arc<Zone>,
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    Connections,
    Rps,
    Rpm,
}

/// A refused request: which limit, and when to try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: LimitKind,
    pub retry_after: Duration,
}

/// The counters of one Ingress's limits.
pub struct Zone {
    settings: LimitSettings,
    /// Picks the shard of an address. Keyed (SipHash with a random key): the
    /// addresses are the client's choice.
    pick: RandomState,
    rates: Box<[Mutex<RateShard>]>,
    connections: Box<[Mutex<HashMap<IpAddr, u32>>]>,
}

/// Held while a request is in flight; gives its connection back on drop.
pub struct Slot {
    zone: Arc<Zone>,
    client: IpAddr,
}

/// Each address's theoretical arrival times (GCRA), and the addresses by
/// the time they will have fully recovered.
#[derive(Default)]
struct RateShard {
    clients: HashMap<IpAddr, Arrivals>,
    by_recovery: BTreeSet<(u64, IpAddr)>,
}

/// The next allowed arrival per rate, in nanoseconds since [`BASE`]; the
/// request is allowed when that is at most the burst's worth ahead.
#[derive(Clone, Copy)]
struct Arrivals {
    rps: u64,
    rpm: u64,
}

static BASE: LazyLock<Instant> = LazyLock::new(Instant::now);
/// Entries of every live zone, for `rate_limit_tracked_clients`.
static TRACKED: AtomicUsize = AtomicUsize::new(0);
type Registry = HashMap<(String, LimitSettings), Weak<Zone>>;
static ZONES: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);

/// Nanoseconds since the process's base instant.
fn now() -> u64 {
    u64::try_from(BASE.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The zone for an Ingress (`owner` names it, uid included) with these
/// settings: the one the live table uses when there is one, so its counters
/// carry over to the new table.
pub fn zone(owner: &str, settings: LimitSettings) -> Arc<Zone> {
    let key = (owner.to_string(), settings);
    let mut zones = ZONES.lock();
    if let Some(zone) = zones.get(&key).and_then(Weak::upgrade) {
        return zone;
    }
    zones.retain(|_, zone| zone.strong_count() > 0);
    let zone = Arc::new(Zone::new(key.1.clone()));
    zones.insert(key, Arc::downgrade(&zone));
    drop(zones);
    start_sweeper();
    zone
}

/// Client addresses tracked by every live zone, rates and connections.
pub fn tracked_clients() -> usize {
    TRACKED.load(Ordering::Relaxed)
}

/// Drops recovered entries of every live zone every [`SWEEP_EVERY`], so
/// that an idle zone gives its memory back. Started with the first zone.
fn start_sweeper() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        // Without the thread, entries still go two at a time with requests,
        // and never above the cap.
        let _ = std::thread::Builder::new()
            .name("rate-limit-sweep".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(SWEEP_EVERY);
                    let live: Vec<Arc<Zone>> =
                        ZONES.lock().values().filter_map(Weak::upgrade).collect();
                    for zone in live {
                        zone.sweep(now());
                    }
                }
            });
    });
}

// === impl Rate ===

impl Rate {
    /// Nanoseconds between two requests at this rate (nginx's leak).
    fn interval(&self) -> u64 {
        let period: u64 = if self.per_minute { 60 } else { 1 } * 1_000_000_000;
        period / u64::from(self.requests.max(1))
    }

    /// How far ahead of now the next allowed arrival may be: the burst.
    fn tolerance(&self) -> u64 {
        self.interval().saturating_mul(self.burst)
    }
}

// === impl LimitSettings ===

impl LimitSettings {
    pub fn is_empty(&self) -> bool {
        self.connections.is_none() && self.rps.is_none() && self.rpm.is_none()
    }
}

// === impl ClientLimits ===

/// The same zone and exemptions: the counters are not compared.
impl PartialEq for ClientLimits {
    fn eq(&self, other: &Self) -> bool {
        self.allow == other.allow && Arc::ptr_eq(&self.zone, &other.zone)
    }
}

impl Eq for ClientLimits {}

impl fmt::Debug for ClientLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientLimits")
            .field("allow", &self.allow)
            .field("settings", &self.zone.settings)
            .finish()
    }
}

impl ClientLimits {
    /// Whether the address is exempt (`limit-allowlist`).
    pub fn exempt(&self, client: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(&client))
    }
}

// === impl Zone ===

impl Zone {
    fn new(settings: LimitSettings) -> Self {
        Self {
            settings,
            pick: RandomState::new(),
            rates: (0..SHARDS).map(|_| Mutex::default()).collect(),
            connections: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    pub fn settings(&self) -> &LimitSettings {
        &self.settings
    }

    fn shard(&self, client: IpAddr) -> usize {
        // The remainder is below SHARDS, so it fits.
        (self.pick.hash_one(client) % SHARDS as u64) as usize
    }

    /// Takes one of the address's connections, `None` when there is no
    /// connection limit; refused when it has them all in flight, or when
    /// the zone tracks as many addresses as it may.
    pub fn acquire(self: &Arc<Self>, client: IpAddr) -> Result<Option<Slot>, Refusal> {
        let Some(limit) = self.settings.connections else {
            return Ok(None);
        };
        let refused = Refusal {
            kind: LimitKind::Connections,
            retry_after: Duration::from_secs(1),
        };
        let mut counts = self.connections[self.shard(client)].lock();
        let full = counts.len() >= PER_SHARD;
        match counts.get_mut(&client) {
            Some(n) if *n >= limit => return Err(refused),
            Some(n) => *n += 1,
            None if full => return Err(refused),
            None => {
                counts.insert(client, 1);
                TRACKED.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(Some(Slot {
            zone: self.clone(),
            client,
        }))
    }

    /// Counts one request against the address's rates, now.
    pub fn check(&self, client: IpAddr) -> Result<(), Refusal> {
        self.check_at(client, now())
    }

    /// Counts one request at `now` (ns since [`BASE`]) when every rate
    /// allows it; a refused request counts against none (as nginx's
    /// `limit_req` with several zones).
    fn check_at(&self, client: IpAddr, now: u64) -> Result<(), Refusal> {
        if self.settings.rps.is_none() && self.settings.rpm.is_none() {
            return Ok(());
        }
        let mut shard = self.rates[self.shard(client)].lock();
        shard.expire(now, EXPIRE_PER_REQUEST);
        let old = shard.clients.get(&client).copied();
        let fresh = Arrivals { rps: now, rpm: now };
        let mut next = old.unwrap_or(fresh);
        let mut refused: Option<Refusal> = None;
        let rates = [
            (LimitKind::Rps, self.settings.rps, &mut next.rps),
            (LimitKind::Rpm, self.settings.rpm, &mut next.rpm),
        ];
        for (kind, rate, arrival) in rates {
            let Some(rate) = rate else { continue };
            let due = (*arrival).max(now);
            let ahead = due - now;
            if ahead > rate.tolerance() {
                let wait = Duration::from_nanos(ahead - rate.tolerance());
                if refused.is_none_or(|r| wait > r.retry_after) {
                    refused = Some(Refusal {
                        kind,
                        retry_after: wait,
                    });
                }
            } else {
                *arrival = due.saturating_add(rate.interval());
            }
        }
        if let Some(refusal) = refused {
            return Err(refusal);
        }
        match old {
            Some(old) => {
                shard.by_recovery.remove(&(old.recovered(), client));
            }
            None => {
                if shard.clients.len() >= PER_SHARD {
                    shard.evict_first();
                }
                TRACKED.fetch_add(1, Ordering::Relaxed);
            }
        }
        shard.clients.insert(client, next);
        shard.by_recovery.insert((next.recovered(), client));
        Ok(())
    }

    /// Drops every fully recovered rate entry.
    fn sweep(&self, now: u64) {
        for shard in self.rates.iter() {
            shard.lock().expire(now, usize::MAX);
        }
    }

    /// Rate entries tracked now.
    #[cfg(test)]
    fn rate_entries(&self) -> usize {
        self.rates.iter().map(|s| s.lock().clients.len()).sum()
    }
}

impl Drop for Zone {
    fn drop(&mut self) {
        // Connection entries are held by slots, which hold the zone: none
        // are left here.
        let entries: usize = self.rates.iter().map(|s| s.lock().clients.len()).sum();
        TRACKED.fetch_sub(entries, Ordering::Relaxed);
    }
}

// === impl RateShard ===

impl RateShard {
    /// Drops up to `max` entries that have fully recovered by `now`.
    fn expire(&mut self, now: u64, max: usize) {
        for _ in 0..max {
            match self.by_recovery.first() {
                Some(&(at, _)) if at <= now => self.evict_first(),
                _ => return,
            }
        }
    }

    /// Drops the entry that recovers first.
    fn evict_first(&mut self) {
        if let Some((_, client)) = self.by_recovery.pop_first() {
            self.clients.remove(&client);
            TRACKED.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

// === impl Arrivals ===

impl Arrivals {
    /// When the entry says no more than a missing one would.
    fn recovered(&self) -> u64 {
        self.rps.max(self.rpm)
    }
}

// === impl Slot ===

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.zone.connections[self.zone.shard(self.client)].lock();
        if let Some(n) = counts.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.client);
                TRACKED.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("client", &self.client)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn rps(requests: u32, burst: u64) -> Option<Rate> {
        Some(Rate {
            requests,
            per_minute: false,
            burst,
        })
    }

    fn zone_with(settings: LimitSettings) -> Arc<Zone> {
        Arc::new(Zone::new(settings))
    }

    #[test]
    fn a_burst_passes_at_once_then_the_rate_refills_it() {
        // nginx: a new client's first request leaves no excess, each next
        // one adds one; burst + 1 requests pass at once.
        let zone = zone_with(LimitSettings {
            rps: rps(2, 10),
            ..Default::default()
        });
        let a = ip("192.0.2.1");
        let t = 10 * SECOND;
        for i in 0..11 {
            assert!(zone.check_at(a, t).is_ok(), "request {i}");
        }
        let refused = zone.check_at(a, t).unwrap_err();
        assert_eq!(refused.kind, LimitKind::Rps);
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        // Half a second later, one more.
        assert!(zone.check_at(a, t + SECOND / 2).is_ok());
        assert!(zone.check_at(a, t + SECOND / 2).is_err());
        // Another address has its own budget.
        assert!(zone.check_at(ip("192.0.2.2"), t).is_ok());
    }

    #[test]
    fn a_refused_request_counts_against_no_rate() {
        let zone = zone_with(LimitSettings {
            rps: rps(100, 0),
            rpm: Some(Rate {
                requests: 1,
                per_minute: true,
                burst: 0,
            }),
            ..Default::default()
        });
        let a = ip("192.0.2.1");
        let t = SECOND;
        assert!(zone.check_at(a, t).is_ok());
        // The rpm refuses; the rps must not have counted the request.
        let refused = zone.check_at(a, t + SECOND).unwrap_err();
        assert_eq!(refused.kind, LimitKind::Rpm);
        assert_eq!(refused.retry_after, Duration::from_secs(59));
        let rps_only = zone.rates[zone.shard(a)].lock().clients[&a].rps;
        assert_eq!(rps_only, t + SECOND / 100);
    }

    #[test]
    fn a_full_zone_evicts_the_entry_closest_to_recovering() {
        let zone = zone_with(LimitSettings {
            rps: rps(1, 5),
            ..Default::default()
        });
        let t = SECOND;
        // A heavy client uses up its burst.
        let heavy = ip("198.51.100.7");
        for _ in 0..6 {
            zone.check_at(heavy, t).unwrap();
        }
        // A flood of new addresses, one request each.
        for i in 0..(MAX_CLIENTS as u32 * 2) {
            let flood = IpAddr::from(std::net::Ipv6Addr::from(u128::from(i) + 1));
            zone.check_at(flood, t).unwrap();
            assert!(zone.rate_entries() <= MAX_CLIENTS);
        }
        // The heavy client is still limited.
        assert!(zone.check_at(heavy, t).is_err());
        // Recovered entries are dropped by the sweep.
        zone.sweep(t + 10 * SECOND);
        assert_eq!(zone.rate_entries(), 0);
    }

    #[test]
    fn connections_are_counted_while_in_flight() {
        let zone = zone_with(LimitSettings {
            connections: Some(2),
            ..Default::default()
        });
        let a = ip("192.0.2.1");
        let one = zone.acquire(a).unwrap();
        let two = zone.acquire(a).unwrap();
        assert_eq!(zone.acquire(a).unwrap_err().kind, LimitKind::Connections);
        assert!(zone.acquire(ip("192.0.2.2")).unwrap().is_some());
        drop(one);
        let three = zone.acquire(a).unwrap();
        drop((two, three));
        assert!(zone.connections.iter().all(|s| s.lock().is_empty()));
    }

    #[test]
    fn the_registry_hands_out_the_live_zone() {
        let settings = LimitSettings {
            rps: rps(1, 1),
            ..Default::default()
        };
        let first = zone("test/registry#1", settings.clone());
        let again = zone("test/registry#1", settings.clone());
        assert!(Arc::ptr_eq(&first, &again));
        let other = zone("test/registry#1", LimitSettings::default());
        assert!(!Arc::ptr_eq(&first, &other));
        drop((first, again));
        // Let go by every table: a new zone, fresh counters.
        let fresh = zone("test/registry#1", settings);
        assert_eq!(fresh.rate_entries(), 0);
    }
}
