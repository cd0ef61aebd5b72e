//! Which TCP connections a listener takes, without I/O: the connection bounds of the MQTT front
//! and of the membership service, per listener and per source.
//!
//! ```text
//!  accept ── SourceKeys::key(peer ip) ── Admission::admit(source) ─┬─ Refused: close it now
//!                                                                  └─ Admitted { ticket, evict }
//!     handshake, CONNECT ... ── Admission::established(ticket)     (the front, once authenticated)
//!     the connection ends   ── Admission::closed(ticket)
//! ```
//!
//! A connection is **pending** from its accept until the shell calls
//! [`Admission::established`] (the front: a verified certificate and an acceptable CONNECT; the
//! membership service never does, its connections stay pending for their whole life). A source
//! holds at most [`AdmissionLimits::per_source_pending`] pending and
//! [`AdmissionLimits::per_source`] connections in all; beyond that, its new connection is refused.
//! When the listener holds [`AdmissionLimits::pending`] pending connections, or
//! [`AdmissionLimits::total`] in all, a new connection evicts the oldest pending one (the shell
//! closes it): idle sockets from many sources cannot keep a newcomer out, they only make the oldest
//! idle one go. Only when every connection is established is a new one refused.
//!
//! A source is an IPv4 address, or the /64 prefix of an IPv6 address (one host usually holds a
//! whole /64). It is kept only as [`SourceKey`], a keyed hash under a key drawn at start and never
//! written anywhere, in memory, while the source has a connection: nothing here can name an address
//! afterwards, and nothing is logged per connection. [`Admission::take_report`] gives the counts of
//! refusals and evictions, at most once per [`REPORT_EVERY`], for one log line.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Shortest time between two reports of refused and evicted connections.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The connection bounds of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Connections at once, pending and established.
    pub total: usize,
    /// Pending connections at once.
    pub pending: usize,
    /// Connections of one source at once, pending and established.
    pub per_source: usize,
    /// Pending connections of one source at once.
    pub per_source_pending: usize,
}

impl AdmissionLimits {
    /// The MQTT front: 10,000 connections, 1,024 of them pending; one source (a NAT may hide
    /// many users) holds up to 512, 16 of them pending.
    pub const FRONT: AdmissionLimits = AdmissionLimits {
        total: 10_000,
        pending: 1_024,
        per_source: 512,
        per_source_pending: 16,
    };

    /// The membership service: 512 connections, all pending; 64 per source (a device's HTTP
    /// client keeps idle connections open for reuse, and several devices may share an address).
    pub const MEMBERSHIP: AdmissionLimits = AdmissionLimits {
        total: 512,
        pending: 512,
        per_source: 64,
        per_source_pending: 64,
    };

    /// These limits with at most `total` connections (and pending ones), at least one.
    pub fn capped(self, total: usize) -> AdmissionLimits {
        let total = self.total.min(total).max(1);
        AdmissionLimits {
            total,
            pending: self.pending.min(total),
            ..self
        }
    }

    fn valid(self) -> AdmissionLimits {
        let total = self.total.max(1);
        let per_source = self.per_source.max(1);
        AdmissionLimits {
            total,
            pending: self.pending.clamp(1, total),
            per_source,
            per_source_pending: self.per_source_pending.clamp(1, per_source),
        }
    }
}

/// A source as the admission knows it: a keyed hash of its address (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceKey([u8; 8]);

/// Turns addresses into [`SourceKey`]s under one secret key.
pub struct SourceKeys {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SourceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceKeys(..)")
    }
}

impl SourceKeys {
    /// Keys under `key` (draw it from a secure random source, once per start).
    pub fn new(key: [u8; 32]) -> SourceKeys {
        SourceKeys {
            key: Zeroizing::new(key),
        }
    }

    /// The source of a peer address: the IPv4 address (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address) or the /64 prefix of an IPv6 address.
    pub fn key(&self, ip: IpAddr) -> SourceKey {
        let mut h = Sha256::new();
        h.update(&self.key[..]);
        match ip {
            IpAddr::V4(v4) => {
                h.update([4]);
                h.update(v4.octets());
            }
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => {
                    h.update([4]);
                    h.update(v4.octets());
                }
                None => {
                    h.update([6]);
                    h.update(&v6.octets()[..8]);
                }
            },
        }
        let digest = h.finalize();
        let mut out = [0u8; 8];
        out.copy_from_slice(&digest[..8]);
        SourceKey(out)
    }
}

/// One admitted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(u64);

/// Why a connection was refused at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its source already holds its share ([`AdmissionLimits::per_source`] or
    /// [`AdmissionLimits::per_source_pending`]).
    SourceFull,
    /// The listener is full of established connections: nothing pending to evict.
    Full,
}

/// What [`Admission::admit`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Take the connection; close `evict`, the oldest pending one, to make room.
    Admitted {
        /// The new connection's ticket.
        ticket: Ticket,
        /// The pending connection to close now, if any.
        evict: Option<Ticket>,
    },
    /// Close the connection now.
    Refused(Refusal),
}

/// Refusals and evictions since the last report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Connections refused because their source held its share.
    pub source_full: u64,
    /// Connections refused because the listener was full of established ones.
    pub full: u64,
    /// Pending connections closed to make room for a newer one.
    pub evicted: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Held {
    all: usize,
    pending: usize,
}

/// The connection bounds of one listener (see the module docs).
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    next: u64,
    /// Pending connections, oldest first (tickets grow).
    pending: BTreeMap<Ticket, SourceKey>,
    established: HashMap<Ticket, SourceKey>,
    sources: HashMap<SourceKey, Held>,
    report: Report,
    reported_at: Option<Instant>,
}

impl Admission {
    /// An empty listener with `limits` (each at least 1; pending ones at most the totals).
    pub fn new(limits: AdmissionLimits) -> Admission {
        Admission {
            limits: limits.valid(),
            next: 0,
            pending: BTreeMap::new(),
            established: HashMap::new(),
            sources: HashMap::new(),
            report: Report::default(),
            reported_at: None,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    /// A connection from `source` was accepted by the socket.
    pub fn admit(&mut self, source: SourceKey) -> Admit {
        let held = self.sources.get(&source).copied().unwrap_or_default();
        if held.all >= self.limits.per_source || held.pending >= self.limits.per_source_pending {
            self.report.source_full += 1;
            return Admit::Refused(Refusal::SourceFull);
        }
        let mut evict = None;
        if self.len() >= self.limits.total || self.pending.len() >= self.limits.pending {
            let Some((&oldest, _)) = self.pending.first_key_value() else {
                self.report.full += 1;
                return Admit::Refused(Refusal::Full);
            };
            self.closed(oldest);
            self.report.evicted += 1;
            evict = Some(oldest);
        }
        let ticket = Ticket(self.next);
        self.next += 1;
        self.pending.insert(ticket, source);
        let held = self.sources.entry(source).or_default();
        held.all += 1;
        held.pending += 1;
        Admit::Admitted { ticket, evict }
    }

    /// The connection proved who it is (the front: an acceptable CONNECT): no longer pending,
    /// never evicted. `false` if it is no longer admitted (evicted meanwhile): close it.
    pub fn established(&mut self, ticket: Ticket) -> bool {
        let Some(source) = self.pending.remove(&ticket) else {
            return self.established.contains_key(&ticket);
        };
        if let Some(held) = self.sources.get_mut(&source) {
            held.pending = held.pending.saturating_sub(1);
        }
        self.established.insert(ticket, source);
        true
    }

    /// The connection ended (or was evicted): its place is free. Idempotent.
    pub fn closed(&mut self, ticket: Ticket) {
        let (source, was_pending) = match self.pending.remove(&ticket) {
            Some(s) => (s, true),
            None => match self.established.remove(&ticket) {
                Some(s) => (s, false),
                None => return,
            },
        };
        if let Some(held) = self.sources.get_mut(&source) {
            held.all = held.all.saturating_sub(1);
            if was_pending {
                held.pending = held.pending.saturating_sub(1);
            }
            if held.all == 0 {
                self.sources.remove(&source);
            }
        }
    }

    /// Whether `ticket` is still admitted (not closed, not evicted).
    pub fn holds(&self, ticket: Ticket) -> bool {
        self.pending.contains_key(&ticket) || self.established.contains_key(&ticket)
    }

    /// Connections held, pending and established.
    pub fn len(&self) -> usize {
        self.pending.len() + self.established.len()
    }

    /// Whether no connection is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pending connections held.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Sources with a connection.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// The refusals and evictions since the last report, if there were any and the last report is
    /// at least [`REPORT_EVERY`] old (for one log line).
    pub fn take_report(&mut self, now: Instant) -> Option<Report> {
        if self.report == Report::default() {
            return None;
        }
        if self
            .reported_at
            .is_some_and(|at| now.saturating_duration_since(at) < REPORT_EVERY)
        {
            return None;
        }
        self.reported_at = Some(now);
        Some(std::mem::take(&mut self.report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn keys() -> SourceKeys {
        SourceKeys::new([7; 32])
    }

    fn src(n: u8) -> SourceKey {
        keys().key(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)))
    }

    fn limits(total: usize, pending: usize, per_source: usize, per_pending: usize) -> Admission {
        Admission::new(AdmissionLimits {
            total,
            pending,
            per_source,
            per_source_pending: per_pending,
        })
    }

    fn ticket(a: Admit) -> Ticket {
        match a {
            Admit::Admitted { ticket, .. } => ticket,
            Admit::Refused(r) => panic!("refused: {r:?}"),
        }
    }

    #[test]
    fn a_source_holds_its_share_of_pending_connections() {
        let mut a = limits(100, 100, 10, 3);
        let t: Vec<Ticket> = (0..3).map(|_| ticket(a.admit(src(1)))).collect();
        assert_eq!(a.admit(src(1)), Admit::Refused(Refusal::SourceFull));
        // Another source is not affected.
        ticket(a.admit(src(2)));
        // An established connection frees a pending place, not a place in all.
        assert!(a.established(t[0]));
        ticket(a.admit(src(1)));
        assert_eq!(a.admit(src(1)), Admit::Refused(Refusal::SourceFull));
        a.closed(t[1]);
        ticket(a.admit(src(1)));
        assert_eq!(
            a.take_report(Instant::now()).map(|r| r.source_full),
            Some(2)
        );
    }

    #[test]
    fn a_source_holds_its_share_of_all_connections() {
        let mut a = limits(100, 100, 2, 2);
        let t0 = ticket(a.admit(src(1)));
        let t1 = ticket(a.admit(src(1)));
        assert!(a.established(t0) && a.established(t1));
        assert_eq!(a.admit(src(1)), Admit::Refused(Refusal::SourceFull));
        a.closed(t0);
        ticket(a.admit(src(1)));
        assert_eq!(a.sources(), 1);
    }

    #[test]
    fn a_full_listener_evicts_the_oldest_pending_connection() {
        let mut a = limits(3, 2, 10, 10);
        let t0 = ticket(a.admit(src(1)));
        let t1 = ticket(a.admit(src(2)));
        // Two pending: the third evicts the oldest.
        let Admit::Admitted { ticket: t2, evict } = a.admit(src(3)) else {
            panic!("refused")
        };
        assert_eq!(evict, Some(t0));
        assert!(
            !a.established(t0),
            "an evicted connection is no longer admitted"
        );
        assert!(a.established(t2));
        assert!(a.established(t1));
        // Two established, one free place.
        let t3 = ticket(a.admit(src(4)));
        assert!(a.established(t3));
        // Three established: nothing to evict.
        assert_eq!(a.admit(src(5)), Admit::Refused(Refusal::Full));
        a.closed(t3);
        ticket(a.admit(src(5)));
        let r = a.take_report(Instant::now()).expect("a report");
        assert_eq!((r.evicted, r.full), (1, 1));
    }

    #[test]
    fn closing_twice_or_after_an_eviction_changes_nothing() {
        let mut a = limits(1, 1, 5, 5);
        let t0 = ticket(a.admit(src(1)));
        let Admit::Admitted { evict, .. } = a.admit(src(1)) else {
            panic!("refused")
        };
        assert_eq!(evict, Some(t0));
        a.closed(t0);
        a.closed(t0);
        assert_eq!((a.len(), a.pending(), a.sources()), (1, 1, 1));
    }

    #[test]
    fn reports_come_at_most_once_per_period() {
        let mut a = limits(1, 1, 1, 1);
        let t0 = Instant::now();
        assert_eq!(a.take_report(t0), None, "nothing to report");
        ticket(a.admit(src(1)));
        assert!(matches!(a.admit(src(1)), Admit::Refused(_)));
        assert!(a.take_report(t0).is_some());
        assert!(matches!(a.admit(src(1)), Admit::Refused(_)));
        assert_eq!(a.take_report(t0 + Duration::from_secs(1)), None);
        assert_eq!(
            a.take_report(t0 + REPORT_EVERY).map(|r| r.source_full),
            Some(1)
        );
    }

    #[test]
    fn sources_are_keyed_addresses() {
        let k = keys();
        let v4 = Ipv4Addr::new(192, 0, 2, 1);
        assert_eq!(
            k.key(IpAddr::V4(v4)),
            k.key(IpAddr::V6(v4.to_ipv6_mapped()))
        );
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9"
            .parse()
            .unwrap_or(Ipv6Addr::LOCALHOST);
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        assert_eq!(
            k.key(IpAddr::V6(a)),
            k.key(IpAddr::V6(b)),
            "one /64, one source"
        );
        assert_ne!(k.key(IpAddr::V6(a)), k.key(IpAddr::V6(c)));
        // Another key, another mapping: the keys do not name the address.
        assert_ne!(
            k.key(IpAddr::V4(v4)),
            SourceKeys::new([8; 32]).key(IpAddr::V4(v4))
        );
    }

    #[test]
    fn limits_are_made_consistent() {
        let a = Admission::new(AdmissionLimits {
            total: 0,
            pending: 50,
            per_source: 0,
            per_source_pending: 9,
        });
        assert_eq!(
            a.limits(),
            AdmissionLimits {
                total: 1,
                pending: 1,
                per_source: 1,
                per_source_pending: 1
            }
        );
        assert_eq!(AdmissionLimits::FRONT.capped(100).pending, 100);
    }
}
