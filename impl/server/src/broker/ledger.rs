//! The inbox ledger (BROKER-5), without I/O: how many envelopes and bytes the broker behind the
//! front holds for each inbox, counted from the packets the front relays, so that the front can
//! refuse a PUBLISH to a full inbox with a refusal notice ([`sotto_wire::notice`]) instead of
//! letting any broker drop or overwrite it. One enforcement point for every broker behind the
//! front (the embedded broker and Mosquitto).
//!
//! ```text
//!  sender  PUBLISH i/<r> (len)  ── reserve(r, len) ── full? ──> notice + PUBACK, not forwarded
//!  broker  PUBACK to the sender ── commit(ticket)        (the broker holds it now)
//!  sender's connection ends first ── release(ticket)     (the sender sends it again)
//!  broker  PUBLISH i/<r> pkid q ── delivered(r, q, len)
//!  r       PUBACK q             ── acked(r, q)           (the broker forgets it, Req6)
//! ```
//!
//! Reservations count against the limit, so concurrent senders cannot overshoot it. The counts
//! live in the front's memory: a broker restart that loses its queues resets them
//! ([`InboxLedger::reset`]); a front that restarts while Mosquitto keeps its queues starts from
//! zero and may let an inbox reach twice its limit (Mosquitto's own limit is set above that, see
//! `mosquitto.rs`). Accounts at zero are removed: the ledger keeps no list of users.
//!
//! Several fronts on one engine (NATS) each see only their own relays: the acks of a recipient
//! connected elsewhere never reach this front's count, which would then refuse for ever. So
//! before a refusal, the front asks the engine what it holds for the inbox (at most once per
//! [`RESYNC_INTERVAL_MS`] per inbox, [`InboxLedger::resync_due`]) and takes that as the count
//! ([`InboxLedger::resync`]): a refusal then means the engine holds the limit. What the other
//! fronts relayed since is not in this front's count, so an inbox can pass its limit by what
//! they let through on their own counts (at most the limit each).

use std::collections::BTreeMap;

/// BROKER-5: what one inbox holds at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboxLimits {
    /// Envelopes.
    pub max_envelopes: usize,
    /// Payload bytes.
    pub max_bytes: usize,
}

impl InboxLimits {
    /// The service's limits: 10,000 envelopes or 16 MiB per inbox, whichever comes first.
    pub const DEFAULT: InboxLimits = InboxLimits {
        max_envelopes: 10_000,
        max_bytes: 16 * 1024 * 1024,
    };
}

impl Default for InboxLimits {
    fn default() -> InboxLimits {
        InboxLimits::DEFAULT
    }
}

/// How often, at most, a front asks the engine for one inbox's count (several fronts on one
/// engine; see the module documentation).
pub const RESYNC_INTERVAL_MS: u64 = 1_000;

/// A PUBLISH to a full inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the recipient's inbox is full (BROKER-5)")]
pub struct InboxFull;

/// A reservation for one forwarded PUBLISH, until the broker's PUBACK or the connection's end.
#[derive(PartialEq, Eq)]
pub struct Ticket {
    recipient: String,
    len: usize,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The recipient is metadata.
        f.debug_struct("Ticket")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Account {
    envelopes: usize,
    bytes: usize,
    reserved_envelopes: usize,
    reserved_bytes: usize,
    /// Deliveries to the owner awaiting its PUBACK: packet id -> payload length.
    delivered: BTreeMap<u16, usize>,
    /// When the count was last taken from the engine (ms, the caller's clock).
    synced_at: Option<u64>,
    /// While the engine is being asked: the envelopes this front committed since the question
    /// left ([`InboxLedger::resync_begin`]); the answer may not show them yet.
    asking: Option<(usize, usize)>,
}

impl Account {
    fn is_empty(&self) -> bool {
        self.envelopes == 0
            && self.bytes == 0
            && self.reserved_envelopes == 0
            && self.reserved_bytes == 0
            && self.delivered.is_empty()
            && self.asking.is_none()
    }
}

/// The counts of every inbox with something in it.
#[derive(Default)]
pub struct InboxLedger {
    limits: InboxLimits,
    accounts: BTreeMap<String, Account>,
}

impl std::fmt::Debug for InboxLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxLedger")
            .field("limits", &self.limits)
            .field("accounts", &self.accounts.len())
            .finish()
    }
}

impl InboxLedger {
    /// An empty ledger.
    pub fn new(limits: InboxLimits) -> InboxLedger {
        InboxLedger {
            limits,
            accounts: BTreeMap::new(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> InboxLimits {
        self.limits
    }

    /// A PUBLISH of `len` payload bytes to `recipient`'s inbox: reserved, or refused if the
    /// inbox would exceed a limit.
    pub fn reserve(&mut self, recipient: &str, len: usize) -> Result<Ticket, InboxFull> {
        let a = self.accounts.entry(recipient.to_owned()).or_default();
        let envelopes = a.envelopes + a.reserved_envelopes;
        let bytes = a.bytes + a.reserved_bytes;
        if envelopes >= self.limits.max_envelopes || bytes + len > self.limits.max_bytes {
            self.tidy(recipient);
            return Err(InboxFull);
        }
        a.reserved_envelopes += 1;
        a.reserved_bytes += len;
        Ok(Ticket {
            recipient: recipient.to_owned(),
            len,
        })
    }

    /// The broker acknowledged the PUBLISH of `t`: it holds the envelope now.
    pub fn commit(&mut self, t: Ticket) {
        if let Some(a) = self.accounts.get_mut(&t.recipient) {
            a.reserved_envelopes = a.reserved_envelopes.saturating_sub(1);
            a.reserved_bytes = a.reserved_bytes.saturating_sub(t.len);
            a.envelopes += 1;
            a.bytes += t.len;
            if let Some((envelopes, bytes)) = &mut a.asking {
                *envelopes += 1;
                *bytes += t.len;
            }
        }
    }

    /// The PUBLISH of `t` was not acknowledged (its connection ended): the sender will send it
    /// again.
    pub fn release(&mut self, t: Ticket) {
        if let Some(a) = self.accounts.get_mut(&t.recipient) {
            a.reserved_envelopes = a.reserved_envelopes.saturating_sub(1);
            a.reserved_bytes = a.reserved_bytes.saturating_sub(t.len);
        }
        self.tidy(&t.recipient);
    }

    /// The broker delivered an envelope of `len` bytes to `owner` as packet `pkid`.
    pub fn delivered(&mut self, owner: &str, pkid: u16, len: usize) {
        self.accounts
            .entry(owner.to_owned())
            .or_default()
            .delivered
            .insert(pkid, len);
    }

    /// `owner` acknowledged packet `pkid`: the broker no longer holds it.
    pub fn acked(&mut self, owner: &str, pkid: u16) {
        if let Some(a) = self.accounts.get_mut(owner) {
            if let Some(len) = a.delivered.remove(&pkid) {
                a.envelopes = a.envelopes.saturating_sub(1);
                a.bytes = a.bytes.saturating_sub(len);
            }
        }
        self.tidy(owner);
    }

    /// Whether [`InboxLedger::reserve`] refused `recipient` on a count the engine has not
    /// confirmed within [`RESYNC_INTERVAL_MS`] before `now_ms` (several fronts on one engine).
    pub fn resync_due(&self, recipient: &str, now_ms: u64) -> bool {
        self.accounts.get(recipient).is_none_or(|a| {
            a.synced_at
                .is_none_or(|t| now_ms.saturating_sub(t) >= RESYNC_INTERVAL_MS)
        })
    }

    /// The front is about to ask the engine what it holds for `recipient`: from now until
    /// [`InboxLedger::resync`], the envelopes this front commits are noted apart, since the
    /// engine's answer may have been taken before they were stored.
    pub fn resync_begin(&mut self, recipient: &str) {
        self.accounts
            .entry(recipient.to_owned())
            .or_default()
            .asking = Some((0, 0));
    }

    /// The engine was asked at `now_ms` what it holds for `recipient`: `Some(held)` is the count
    /// from now on, its bytes scaled to match (the engine counts messages, not payload bytes;
    /// reservations in flight stay), plus what this front committed while the question was out
    /// (counted twice at worst: a refusal too many, never an envelope too many); `None` (no
    /// answer) keeps the count. Either way the engine is not asked again for this inbox within
    /// [`RESYNC_INTERVAL_MS`].
    pub fn resync(&mut self, recipient: &str, held: Option<usize>, now_ms: u64) {
        let a = self.accounts.entry(recipient.to_owned()).or_default();
        let (since_envelopes, since_bytes) = a.asking.take().unwrap_or((0, 0));
        if let Some(held) = held {
            let before = a.envelopes.saturating_sub(since_envelopes);
            let before_bytes = a.bytes.saturating_sub(since_bytes);
            a.bytes = match before {
                0 => 0,
                n => before_bytes.saturating_mul(held) / n,
            } + since_bytes;
            a.envelopes = held + since_envelopes;
        }
        a.synced_at = Some(now_ms);
    }

    /// The broker lost every queue (a restart without persistence): start from zero.
    pub fn reset(&mut self) {
        self.accounts.clear();
    }

    /// Envelopes and bytes counted for `recipient` (held and reserved).
    pub fn count(&self, recipient: &str) -> (usize, usize) {
        self.accounts.get(recipient).map_or((0, 0), |a| {
            (
                a.envelopes + a.reserved_envelopes,
                a.bytes + a.reserved_bytes,
            )
        })
    }

    /// Envelopes and bytes counted over every inbox (held and reserved).
    pub fn totals(&self) -> (usize, usize) {
        self.accounts.values().fold((0, 0), |(e, b), a| {
            (
                e + a.envelopes + a.reserved_envelopes,
                b + a.bytes + a.reserved_bytes,
            )
        })
    }

    /// Inboxes the ledger counts something for.
    pub fn accounts(&self) -> usize {
        self.accounts.len()
    }

    fn tidy(&mut self, user: &str) {
        if self.accounts.get(user).is_some_and(Account::is_empty) {
            self.accounts.remove(user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "rrrrrrrrrrrrrrrr";

    fn ledger() -> InboxLedger {
        InboxLedger::new(InboxLimits {
            max_envelopes: 2,
            max_bytes: 100,
        })
    }

    #[test]
    fn refuses_at_the_envelope_limit_until_an_ack() {
        let mut l = ledger();
        let t1 = l.reserve(R, 10).expect("room");
        let t2 = l.reserve(R, 10).expect("room at the bound");
        assert_eq!(l.reserve(R, 10), Err(InboxFull), "reservations count");
        l.commit(t1);
        l.commit(t2);
        assert_eq!(l.count(R), (2, 20));
        assert_eq!(l.reserve(R, 1), Err(InboxFull));
        l.delivered(R, 5, 10);
        l.delivered(R, 5, 10); // a redelivery (DUP) of the same packet
        l.acked(R, 5);
        l.acked(R, 5); // a second PUBACK of the same packet changes nothing
        assert_eq!(l.count(R), (1, 10));
        assert!(l.reserve(R, 10).is_ok());
    }

    #[test]
    fn refuses_at_the_byte_limit_and_accepts_exactly_it() {
        let mut l = ledger();
        assert_eq!(l.reserve(R, 101), Err(InboxFull));
        assert_eq!(l.accounts(), 0, "a refusal leaves no account behind");
        let t = l.reserve(R, 100).expect("exactly the limit");
        assert_eq!(l.reserve(R, 1), Err(InboxFull));
        l.release(t);
        assert_eq!(l.count(R), (0, 0));
        assert_eq!(l.accounts(), 0);
    }

    #[test]
    fn drained_accounts_disappear_and_reset_forgets_everything() {
        let mut l = ledger();
        let t = l.reserve(R, 10).expect("room");
        l.commit(t);
        l.delivered(R, 1, 10);
        l.acked(R, 1);
        assert_eq!(l.accounts(), 0);
        let t = l.reserve(R, 10).expect("room");
        l.commit(t);
        l.reset();
        assert_eq!(l.count(R), (0, 0));
        // An ack the ledger never saw delivered (a front restarted under Mosquitto) saturates.
        l.acked(R, 9);
        assert_eq!(l.count(R), (0, 0));
    }

    #[test]
    fn a_count_the_engine_gives_replaces_this_fronts_broker_5() {
        let mut l = ledger();
        for _ in 0..2 {
            let t = l.reserve(R, 30).expect("room");
            l.commit(t);
        }
        // The recipient took both through another front: this one never saw the acks.
        assert_eq!(l.reserve(R, 10), Err(InboxFull));
        assert!(l.resync_due(R, 5_000));
        l.resync(R, Some(0), 5_000);
        assert_eq!(l.count(R), (0, 0));
        let t = l.reserve(R, 10).expect("room once the engine says so");
        l.commit(t);
        // Another front filled the inbox meanwhile: the engine holds 2, bytes scaled from 1 x 10.
        l.resync(R, Some(2), 5_100);
        assert_eq!(l.count(R), (2, 20));
        assert_eq!(l.reserve(R, 10), Err(InboxFull));
        assert!(
            !l.resync_due(R, 5_100 + RESYNC_INTERVAL_MS - 1),
            "at most once a second"
        );
        assert!(l.resync_due(R, 5_100 + RESYNC_INTERVAL_MS));
        // No answer: the count stays, and the engine is not asked again at once.
        l.resync(R, None, 7_000);
        assert_eq!(l.count(R), (2, 20));
        assert!(!l.resync_due(R, 7_001));
    }

    #[test]
    fn a_commit_while_the_engine_is_asked_is_not_lost_broker_5() {
        let mut l = ledger();
        let tickets: Vec<Ticket> = (0..2).map(|_| l.reserve(R, 30).expect("room")).collect();
        assert_eq!(l.reserve(R, 10), Err(InboxFull), "both reserved: full");
        l.resync_begin(R);
        // The engine's PUBACKs arrive while the question is out; its answer was taken before
        // it stored them.
        for t in tickets {
            l.commit(t);
        }
        l.resync(R, Some(0), 5_000);
        assert_eq!(l.count(R), (2, 60), "the two commits stay counted");
        assert_eq!(l.reserve(R, 10), Err(InboxFull));
        // The next answer, a second later, shows them: counted once.
        l.resync_begin(R);
        l.resync(R, Some(2), 6_000);
        assert_eq!(l.count(R), (2, 60));
    }
}
