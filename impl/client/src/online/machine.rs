//! The online loop's decisions, without I/O (the quinn-proto split). The machine decides which
//! inbox PUBLISHes form a burst and hands their acknowledgements out only for a committed burst
//! (RX-4, in the order they arrived); maps packet ids to outbox rows and reads each PUBACK as a
//! publish or, after a refusal notice, a refusal (RX-6, BROKER-5); chooses which due outbox rows
//! go out within the window; strikes the rows a lost connection had in flight; paces the
//! reconnections; and says when a sync is done. The shell (`online`) moves MQTT packets, runs
//! the store and keeps the clock: it tells the machine what happened and does what it answers.
//! The unit tests below drive it without a broker.
//!
//! ```text
//!  connecting ── on_connack ─> subscribe ── on_suback ─> Connected
//!     │  on_publish ─> burst ── take_burst ─> (shell commits) ── committed ─> acks, in order
//!     │  choose(due rows) ─> publish ── on_publish_sent(pkid) ── on_puback ─> Published | Refused
//!     └─ connection_ended ─> rows to strike, the delay before the next attempt
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use sotto_core::{MessageId, UserId};
use sotto_wire::notice::{NOTICE_TOPIC, RefusalNotice, RefusalReason};

/// An outbox row: (message id, recipient).
pub(crate) type RowKey = (MessageId, UserId);

/// Longest sleep of the loop without an event.
pub(crate) const TICK: Duration = Duration::from_secs(30);
/// How often the loop looks again while publishes are in flight.
pub(crate) const INFLIGHT_TICK: Duration = Duration::from_secs(1);
/// Shortest sleep, so that nothing spins.
pub(crate) const MIN_SLEEP: Duration = Duration::from_millis(10);
/// Connections lost with a row in flight before that row is pushed back by the backoff.
pub(crate) const STRIKES: u32 = 3;
/// Most inbox PUBLISHes opened and committed in one transaction (a burst): what the broker
/// already delivered, up to this many, is committed together and then acknowledged (RX-4).
pub(crate) const MAX_BURST: usize = 512;
/// How long a PUBACK mark waits before it rides with a burst. A receipt usually follows its
/// PUBACK within this time: it deletes the row, and the mark, when it comes, finds nothing to
/// write (the row and its message are written once, not twice). A mark that never reaches the
/// store costs a resend at most (RX-6).
pub(crate) const MARK_DELAY: Duration = Duration::from_millis(200);
/// Mutation `AckBeforeCommit`: how long an acknowledged envelope waits before its commit.
#[cfg(feature = "mutations")]
pub(crate) const ACK_BEFORE_COMMIT_DELAY: Duration = Duration::from_millis(300);

/// A PUBLISH the broker delivered, as the machine sees it (the shell's packet type).
pub(crate) trait Packet {
    /// Its topic.
    fn topic(&self) -> &str;
    /// Its payload.
    fn payload(&self) -> &[u8];
}

/// How the loop runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    /// Until the inbox is quiet for `quiet` and the outbox flushed, or `deadline`.
    Sync { quiet: Duration, deadline: Instant },
    /// Until the app shuts it down.
    Forever,
}

/// What a PUBACK meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PubAck {
    /// The broker queued the row's envelope: it is marked published with the next burst (RX-6).
    Published(RowKey),
    /// The service refused it (BROKER-5): the row stays in the outbox and waits its backoff.
    Refused(RowKey, RefusalReason),
    /// A packet id this connection did not publish: nothing to do.
    Unknown,
}

/// A burst to commit: the inbox PUBLISHes delivered since the last one (opened and committed in
/// one transaction, with the PUBACK marks) and the others (acknowledged, not committed).
#[derive(Debug)]
pub(crate) struct Burst<P> {
    /// Every PUBLISH of the burst in arrival order; `true`: on the own inbox, to commit.
    packets: Vec<(P, bool)>,
    /// Outbox rows the broker acknowledged since the last burst (RX-6).
    pub(crate) published: Vec<RowKey>,
}

impl<P: Packet> Burst<P> {
    /// The envelopes to open and commit, in arrival order.
    pub(crate) fn envelopes(&self) -> Vec<&[u8]> {
        self.packets
            .iter()
            .filter(|(_, inbox)| *inbox)
            .map(|(p, _)| p.payload())
            .collect()
    }
}

/// What a connection's end leaves to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ended {
    /// Rows struck out [`STRIKES`] times in a row: the shell pushes them back by their backoff.
    pub(crate) strike_out: Vec<RowKey>,
    /// How long to wait before the next connection, if there is one.
    pub(crate) delay: Duration,
}

/// What the loop does before it waits for the next event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Turn {
    /// Ask for a graceful DISCONNECT (a sync is done).
    pub(crate) disconnect: bool,
    /// How long to wait for an event at most.
    pub(crate) wake: Duration,
}

/// When the next outbox row falls due, as the store knows it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NextDue {
    /// In this long (zero: now).
    In(Duration),
    /// No row waits.
    Nothing,
    /// The store could not say.
    Unknown,
}

/// The state of one connection: it dies with the connection.
#[derive(Debug)]
struct Link<P> {
    /// CONNACK received.
    connected: bool,
    /// SUBACK for the inbox received.
    subscribed: bool,
    /// A DISCONNECT was requested.
    closing: bool,
    /// Publishes requested, waiting for their packet id (FIFO).
    unassigned: VecDeque<RowKey>,
    /// Packet id -> row, waiting for the PUBACK.
    by_pkid: HashMap<u16, RowKey>,
    /// Rows requested or awaiting their PUBACK.
    inflight: HashSet<RowKey>,
    /// Packet ids the service refused with a notice (BROKER-5): their PUBACK is a refusal.
    refused: HashMap<u16, RefusalReason>,
    /// Rows the service refused on this connection (BROKER-5). A sync does not publish them
    /// again before it ends (the inbox is still full); the online loop retries them after their
    /// backoff.
    held: HashSet<RowKey>,
    /// PUBLISHes received and not yet committed, in order (`true`: on the own inbox).
    burst: Vec<(P, bool)>,
    /// Outbox rows the broker acknowledged and not yet marked, with when, oldest first.
    published: VecDeque<(RowKey, Instant)>,
    /// Last CONNACK, SUBACK, PUBLISH or PUBACK (a sync ends after a quiet period).
    last_activity: Instant,
}

impl<P> Link<P> {
    fn new(now: Instant) -> Self {
        Link {
            connected: false,
            subscribed: false,
            closing: false,
            unassigned: VecDeque::new(),
            by_pkid: HashMap::new(),
            inflight: HashSet::new(),
            refused: HashMap::new(),
            held: HashSet::new(),
            burst: Vec::new(),
            published: VecDeque::new(),
            last_activity: now,
        }
    }
}

/// The online loop's state machine; `P` is the shell's PUBLISH, handed back to acknowledge it.
#[derive(Debug)]
pub(crate) struct Machine<P> {
    /// `i/<own user id>`.
    inbox: String,
    mode: Mode,
    max_inflight: usize,
    reconnect_first: Duration,
    reconnect_max: Duration,
    /// The delay before the next reconnection.
    delay: Duration,
    /// Connections lost in a row with each row in flight.
    strikes: HashMap<RowKey, u32>,
    link: Link<P>,
    /// Inbox envelopes committed (and so acknowledged).
    received: usize,
    /// Outbox rows the broker acknowledged.
    published: usize,
    /// Mutation `AckBeforeCommit`: envelopes acknowledged but not yet committed, with their
    /// arrival time. Lost if the process stops before they are committed (the RX-4 bug).
    #[cfg(feature = "mutations")]
    pending: VecDeque<(Instant, P)>,
}

impl<P: Packet + Clone> Machine<P> {
    /// A machine for the device whose inbox topic is `inbox`.
    pub(crate) fn new(
        inbox: String,
        mode: Mode,
        max_inflight: usize,
        reconnect: (Duration, Duration),
        now: Instant,
    ) -> Self {
        Machine {
            inbox,
            mode,
            max_inflight,
            reconnect_first: reconnect.0,
            reconnect_max: reconnect.1,
            delay: reconnect.0,
            strikes: HashMap::new(),
            link: Link::new(now),
            received: 0,
            published: 0,
            #[cfg(feature = "mutations")]
            pending: VecDeque::new(),
        }
    }

    /// How the loop runs.
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// Inbox envelopes committed so far.
    pub(crate) fn received(&self) -> usize {
        self.received
    }

    /// Outbox rows the broker acknowledged so far.
    pub(crate) fn published(&self) -> usize {
        self.published
    }

    /// CONNACK received on this connection.
    pub(crate) fn connected(&self) -> bool {
        self.link.connected
    }

    /// A DISCONNECT was requested on this connection.
    pub(crate) fn is_closing(&self) -> bool {
        self.link.closing
    }

    /// A new connection attempt starts: the last one's state is gone.
    pub(crate) fn connecting(&mut self, now: Instant) {
        self.link = Link::new(now);
    }

    /// `true` if a sync's deadline passed: it ends now without waiting for quiet.
    pub(crate) fn timed_out(&self, now: Instant) -> bool {
        matches!(self.mode, Mode::Sync { deadline, .. } if now >= deadline)
    }

    /// CONNACK: the shell subscribes to the returned topic (rumqttc does not resubscribe).
    pub(crate) fn on_connack(&mut self, now: Instant) -> &str {
        self.link.connected = true;
        self.link.last_activity = now;
        &self.inbox
    }

    /// SUBACK: `true` if the inbox is subscribed (the loop is `Connected`), `false` if the
    /// broker refused the subscription.
    pub(crate) fn on_suback(&mut self, refused: bool, now: Instant) -> bool {
        if refused {
            return false;
        }
        self.link.subscribed = true;
        self.link.last_activity = now;
        true
    }

    /// A PUBLISH arrived. It joins the burst (committed, then acknowledged), unless it is a
    /// refusal notice (BROKER-5: remembered for the PUBACK that follows, never acknowledged: it
    /// is QoS 0). `Some` only under the mutation `AckBeforeCommit`: acknowledge it at once.
    pub(crate) fn on_publish(&mut self, packet: P, now: Instant) -> Option<P> {
        if packet.topic() == NOTICE_TOPIC {
            match RefusalNotice::from_bytes(packet.payload()) {
                Ok(n) => {
                    self.link.refused.insert(n.pkid, n.reason);
                }
                Err(e) => tracing::warn!(error = %e, "malformed refusal notice ignored"),
            }
            return None;
        }
        self.link.last_activity = now;
        let inbox = packet.topic() == self.inbox;
        if inbox {
            #[cfg(feature = "mutations")]
            if sotto_core::mutation::active(sotto_core::mutation::Mutation::AckBeforeCommit) {
                self.pending.push_back((now, packet.clone()));
                return Some(packet);
            }
        } else {
            tracing::warn!("PUBLISH on a foreign topic ignored");
        }
        self.link.burst.push((packet, inbox));
        None
    }

    /// The burst holds [`MAX_BURST`] PUBLISHes: commit it before taking more.
    pub(crate) fn burst_full(&self) -> bool {
        self.link.burst.len() >= MAX_BURST
    }

    /// The burst to commit now, if any PUBLISH or PUBACK mark is waiting for one. In the online
    /// loop a mark rides once it is [`MARK_DELAY`] old, or at once when the shell is ending the
    /// connection; a sync (a command that ends when the outbox is flushed) marks at once.
    pub(crate) fn take_burst(&mut self, now: Instant) -> Option<Burst<P>> {
        let waits = matches!(self.mode, Mode::Forever) && !self.link.closing;
        let link = &mut self.link;
        let mut published = Vec::new();
        while let Some(&(key, at)) = link.published.front() {
            if waits && now.saturating_duration_since(at) < MARK_DELAY {
                break;
            }
            link.published.pop_front();
            published.push(key);
        }
        if link.burst.is_empty() && published.is_empty() {
            return None;
        }
        Some(Burst {
            packets: std::mem::take(&mut link.burst),
            published,
        })
    }

    /// The shell committed `burst`: its PUBLISHes may now be acknowledged, in the order they
    /// arrived (RX-4; MQTT 3.1.1, 4.6). A burst whose commit failed is dropped instead: nothing
    /// of it is acknowledged and the broker delivers it again on the next connection.
    pub(crate) fn committed(&mut self, burst: Burst<P>) -> Vec<P> {
        self.received += burst.packets.iter().filter(|(_, inbox)| *inbox).count();
        burst.packets.into_iter().map(|(p, _)| p).collect()
    }

    /// How many due outbox rows the shell should read (oldest first), or `None` if nothing may
    /// be published now (not connected, closing, or the window full).
    pub(crate) fn outbox_query(&self) -> Option<usize> {
        let link = &self.link;
        if !link.connected || link.closing {
            return None;
        }
        let room = self.max_inflight.saturating_sub(link.inflight.len());
        if room == 0 {
            return None;
        }
        Some(link.inflight.len() + link.published.len() + self.skipped_held() + room)
    }

    /// Rows refused on this connection that a sync does not retry (the online loop retries
    /// them after their backoff).
    fn skipped_held(&self) -> usize {
        match self.mode {
            Mode::Sync { .. } => self.link.held.len(),
            Mode::Forever => 0,
        }
    }

    fn retries_held(&self) -> bool {
        matches!(self.mode, Mode::Forever)
    }

    /// Of the due rows `due` (oldest first), the ones to publish now, in order: not already in
    /// flight, not acknowledged and waiting for their mark, not refused on this connection (in
    /// a sync), and within the window. They count as
    /// in flight from here; the shell gives back with [`Machine::not_published`] what it could
    /// not hand to the connection.
    pub(crate) fn choose<R>(&mut self, due: Vec<R>, key: impl Fn(&R) -> RowKey) -> Vec<R> {
        let mut chosen = Vec::new();
        for row in due {
            if self.link.inflight.len() >= self.max_inflight {
                break;
            }
            let k = key(&row);
            if self.link.inflight.contains(&k)
                || self.link.published.iter().any(|(p, _)| *p == k)
                || (!self.retries_held() && self.link.held.contains(&k))
            {
                continue;
            }
            self.link.inflight.insert(k);
            self.link.unassigned.push_back(k);
            chosen.push(row);
        }
        chosen
    }

    /// The shell could not publish `key` (its request channel is full): it is no longer in
    /// flight. Called for the rows of a [`Machine::choose`] from the first one refused on, last
    /// first.
    pub(crate) fn not_published(&mut self, key: RowKey) {
        self.link.inflight.remove(&key);
        if self.link.unassigned.back() == Some(&key) {
            self.link.unassigned.pop_back();
        }
    }

    /// The connection assigned `pkid` to the oldest publish without one. rumqttc reports each
    /// QoS 1 publish with its packet id in request order (one that collided on its id is
    /// reported when it finally goes out, after the PUBACK that freed the id).
    pub(crate) fn on_publish_sent(&mut self, pkid: u16) {
        if let Some(key) = self.link.unassigned.pop_front() {
            self.link.by_pkid.insert(pkid, key);
        }
    }

    /// A PUBACK arrived.
    pub(crate) fn on_puback(&mut self, pkid: u16, now: Instant) -> PubAck {
        self.link.last_activity = now;
        let refused = self.link.refused.remove(&pkid);
        let Some(key) = self.link.by_pkid.remove(&pkid) else {
            return PubAck::Unknown;
        };
        self.link.inflight.remove(&key);
        match refused {
            Some(reason) => {
                self.link.held.insert(key);
                PubAck::Refused(key, reason)
            }
            None => {
                self.link.held.remove(&key);
                self.strikes.remove(&key);
                self.published += 1;
                self.link.published.push_back((key, now));
                PubAck::Published(key)
            }
        }
    }

    /// Before waiting: whether a sync is done (quiet for its period, every acknowledgement
    /// handed out, nothing in flight, and no due row but those refused on this connection) and
    /// how long to wait at most. `acks_waiting`: acknowledgements the connection has not taken
    /// yet; `due_rows(n)` reads up to `n` due rows (`None` if the store cannot say);
    /// `next_due`: when the next row falls due.
    pub(crate) fn turn(
        &mut self,
        now: Instant,
        acks_waiting: bool,
        due_rows: impl FnOnce(usize) -> Option<Vec<RowKey>>,
        next_due: impl FnOnce() -> NextDue,
    ) -> Turn {
        let mut wake = TICK;
        let mut disconnect = false;
        let link = &self.link;
        if let Mode::Sync { quiet, deadline } = self.mode {
            wake = wake.min(deadline.saturating_duration_since(now));
            if link.subscribed && !link.closing {
                let idle = now.saturating_duration_since(link.last_activity);
                if idle >= quiet && !acks_waiting && self.flushed(due_rows) {
                    disconnect = true;
                } else {
                    wake = wake.min(quiet.saturating_sub(idle));
                }
            }
        }
        if link.connected && !link.closing && !disconnect {
            wake = wake.min(if link.inflight.is_empty() {
                match next_due() {
                    NextDue::In(d) => d,
                    NextDue::Nothing => TICK,
                    NextDue::Unknown => INFLIGHT_TICK,
                }
            } else {
                INFLIGHT_TICK
            });
        }
        if let (Mode::Forever, Some((_, at))) = (self.mode, link.published.front()) {
            wake = wake.min((*at + MARK_DELAY).saturating_duration_since(now));
        }
        #[cfg(feature = "mutations")]
        if let Some((at, _)) = self.pending.front() {
            let due = *at + ACK_BEFORE_COMMIT_DELAY;
            wake = wake.min(due.saturating_duration_since(now));
        }
        Turn {
            disconnect,
            wake: wake.max(MIN_SLEEP),
        }
    }

    fn flushed(&self, due_rows: impl FnOnce(usize) -> Option<Vec<RowKey>>) -> bool {
        #[cfg(feature = "mutations")]
        if !self.pending.is_empty() {
            return false;
        }
        let link = &self.link;
        link.burst.is_empty()
            && link.published.is_empty()
            && link.inflight.is_empty()
            && due_rows(link.held.len() + 1)
                .is_some_and(|due| due.iter().all(|k| link.held.contains(k)))
    }

    /// The shell asked for a DISCONNECT and the connection took the request.
    pub(crate) fn closing(&mut self) {
        self.link.closing = true;
    }

    /// The connection ended (lost, closed or shut down). What it did not commit is delivered
    /// again on the next one (RX-4) and its packet ids mean nothing there; unmarked PUBACKs only
    /// cost a resend (RX-6). Each row it had in flight takes a strike; after [`STRIKES`] in a
    /// row the row waits its backoff (a poison envelope must not keep killing connections).
    /// The delay before the next attempt starts again from the first after a connection that
    /// got subscribed, and doubles up to the longest otherwise.
    pub(crate) fn connection_ended(&mut self, now: Instant) -> Ended {
        let link = std::mem::replace(&mut self.link, Link::new(now));
        let mut strike_out = Vec::new();
        for key in link.inflight {
            let n = self.strikes.entry(key).or_insert(0);
            *n += 1;
            if *n >= STRIKES {
                self.strikes.remove(&key);
                strike_out.push(key);
            }
        }
        strike_out.sort();
        if link.subscribed {
            self.delay = self.reconnect_first;
        }
        let delay = self.delay;
        self.delay = (self.delay * 2).min(self.reconnect_max);
        Ended { strike_out, delay }
    }

    /// Mutation `AckBeforeCommit`: the acknowledged envelopes that arrived at least
    /// [`ACK_BEFORE_COMMIT_DELAY`] ago, to commit now. A failed commit loses the envelope: the
    /// broker no longer has it.
    #[cfg(feature = "mutations")]
    pub(crate) fn pending_due(&mut self, now: Instant) -> Vec<P> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.pending.front() {
            if now.saturating_duration_since(*at) < ACK_BEFORE_COMMIT_DELAY {
                break;
            }
            if let Some((_, p)) = self.pending.pop_front() {
                due.push(p);
            }
        }
        self.received += due.len();
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PUBLISH as the shell would hand it over.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Pub {
        topic: String,
        payload: Vec<u8>,
    }

    impl Packet for Pub {
        fn topic(&self) -> &str {
            &self.topic
        }
        fn payload(&self) -> &[u8] {
            &self.payload
        }
    }

    fn user(n: u8) -> UserId {
        UserId([n; 10])
    }

    fn row(n: u8) -> RowKey {
        (MessageId([n; 16]), user(9))
    }

    fn inbox() -> String {
        user(1).inbox_topic()
    }

    fn text(n: u8) -> Pub {
        Pub {
            topic: inbox(),
            payload: vec![n],
        }
    }

    fn notice(pkid: u16, reason: u8) -> Pub {
        let [a, b] = pkid.to_be_bytes();
        Pub {
            topic: NOTICE_TOPIC.to_owned(),
            payload: vec![a, b, reason],
        }
    }

    const FIRST: Duration = Duration::from_millis(500);
    const LONGEST: Duration = Duration::from_secs(4);

    fn machine(mode: Mode, window: usize, t0: Instant) -> Machine<Pub> {
        let mut m = Machine::new(inbox(), mode, window, (FIRST, LONGEST), t0);
        m.connecting(t0);
        assert_eq!(
            m.on_connack(t0),
            inbox(),
            "every CONNACK subscribes the own inbox"
        );
        assert!(m.on_suback(false, t0));
        m
    }

    /// Publishes what the machine chooses of `due` and gives each its packet id in order.
    fn publish(m: &mut Machine<Pub>, due: &[RowKey], first_pkid: u16) -> Vec<RowKey> {
        let chosen = m.choose(due.to_vec(), |k| *k);
        for (i, _) in chosen.iter().enumerate() {
            m.on_publish_sent(first_pkid + i as u16);
        }
        chosen
    }

    #[test]
    fn a_burst_is_acknowledged_only_once_committed_and_in_order_rx_4() {
        let t0 = Instant::now();
        let mut m = machine(Mode::Forever, 8, t0);
        let foreign = Pub {
            topic: user(2).inbox_topic(),
            payload: vec![7],
        };
        for p in [text(1), foreign.clone(), text(2)] {
            assert_eq!(
                m.on_publish(p, t0),
                None,
                "nothing is acknowledged on arrival"
            );
        }
        let burst = m.take_burst(t0 + MARK_DELAY).expect("a burst");
        assert_eq!(
            burst.envelopes(),
            vec![&[1u8][..], &[2u8][..]],
            "foreign not opened"
        );
        assert!(
            m.take_burst(t0 + MARK_DELAY).is_none(),
            "the burst left the machine"
        );
        assert_eq!(m.received(), 0);
        let acks = m.committed(burst);
        assert_eq!(
            acks,
            vec![text(1), foreign, text(2)],
            "every one, in arrival order"
        );
        assert_eq!(m.received(), 2);
    }

    #[test]
    fn a_lost_connection_acknowledges_nothing_of_its_burst_rx_4() {
        let t0 = Instant::now();
        let mut m = machine(Mode::Forever, 8, t0);
        m.on_publish(text(1), t0);
        m.connection_ended(t0);
        m.connecting(t0);
        assert!(
            m.take_burst(t0 + MARK_DELAY).is_none(),
            "delivered again by the broker instead"
        );
        assert_eq!(m.received(), 0);
    }

    #[test]
    fn a_burst_stops_at_its_limit() {
        let t0 = Instant::now();
        let mut m = machine(Mode::Forever, 8, t0);
        for i in 0..MAX_BURST {
            assert!(!m.burst_full(), "{i}");
            m.on_publish(text(i as u8), t0);
        }
        assert!(m.burst_full());
        assert_eq!(
            m.take_burst(t0 + MARK_DELAY).map(|b| b.envelopes().len()),
            Some(MAX_BURST)
        );
        assert!(!m.burst_full());
    }

    #[test]
    fn pubacks_ride_with_the_next_burst_rx_6() {
        let t0 = Instant::now();
        let mut m = machine(Mode::Forever, 8, t0);
        assert_eq!(publish(&mut m, &[row(1), row(2)], 10), vec![row(1), row(2)]);
        assert_eq!(m.on_puback(11, t0), PubAck::Published(row(2)));
        assert_eq!(
            m.on_puback(99, t0),
            PubAck::Unknown,
            "a packet id never sent"
        );
        assert_eq!(m.on_puback(11, t0), PubAck::Unknown, "a PUBACK counts once");
        m.on_publish(text(5), t0);
        let burst = m.take_burst(t0 + MARK_DELAY).expect("a burst");
        assert_eq!(
            burst.published,
            vec![row(2)],
            "marked in the burst's transaction"
        );
        m.committed(burst);
        assert_eq!(m.on_puback(10, t0), PubAck::Published(row(1)));
        let alone = m
            .take_burst(t0 + MARK_DELAY)
            .expect("PUBACKs without a PUBLISH are marked alone");
        assert_eq!(
            (alone.envelopes().len(), alone.published),
            (0, vec![row(1)])
        );
        assert_eq!(m.published(), 2);
    }

    #[test]
    fn a_mark_rides_once_it_is_old_enough_rx_6() {
        let t0 = Instant::now();
        let half = MARK_DELAY / 2;
        let mut m = machine(Mode::Forever, 8, t0);
        assert_eq!(publish(&mut m, &[row(1), row(2)], 10), vec![row(1), row(2)]);
        assert_eq!(m.on_puback(10, t0), PubAck::Published(row(1)));
        assert!(m.take_burst(t0).is_none(), "a young mark waits");
        let wake = m.turn(t0, false, |_| None, || NextDue::Nothing).wake;
        assert!(wake <= MARK_DELAY, "the loop wakes for it: {wake:?}");
        assert_eq!(m.on_puback(11, t0 + half), PubAck::Published(row(2)));
        // A PUBLISH rides at once, with the marks old enough only; the others wait.
        m.on_publish(text(1), t0 + MARK_DELAY);
        let burst = m.take_burst(t0 + MARK_DELAY).expect("the PUBLISH");
        assert_eq!(
            (burst.envelopes().len(), burst.published.clone()),
            (1, vec![row(1)])
        );
        m.committed(burst);
        // The store lists row 2 until its mark: it does not go out again meanwhile.
        assert_eq!(publish(&mut m, &[row(2)], 20), vec![]);
        let alone = m
            .take_burst(t0 + half + MARK_DELAY)
            .expect("row 2 old enough");
        assert_eq!(
            (alone.envelopes().len(), alone.published),
            (0, vec![row(2)])
        );
        // Ending the connection: every mark rides at once.
        assert_eq!(publish(&mut m, &[row(5)], 30), vec![row(5)]);
        assert_eq!(m.on_puback(30, t0), PubAck::Published(row(5)));
        m.closing();
        let last = m.take_burst(t0).expect("closing: marked before the end");
        assert_eq!(last.published, vec![row(5)]);
        // A sync marks at once: it ends as soon as its outbox is flushed.
        let sync = Mode::Sync {
            quiet: Duration::from_millis(50),
            deadline: t0 + Duration::from_secs(10),
        };
        let mut s = machine(sync, 8, t0);
        assert_eq!(publish(&mut s, &[row(6)], 40), vec![row(6)]);
        assert_eq!(s.on_puback(40, t0), PubAck::Published(row(6)));
        assert_eq!(s.take_burst(t0).map(|b| b.published), Some(vec![row(6)]));
    }

    #[test]
    fn the_window_bounds_what_is_in_flight() {
        let t0 = Instant::now();
        let mut m = machine(Mode::Forever, 2, t0);
        assert_eq!(m.outbox_query(), Some(2));
        let due = [row(1), row(2), row(3)];
        assert_eq!(publish(&mut m, &due, 1), vec![row(1), row(2)]);
        assert_eq!(m.outbox_query(), None, "window full: no read of the store");
        assert_eq!(m.on_puback(1, t0), PubAck::Published(row(1)));
        assert_eq!(
            m.outbox_query(),
            Some(3),
            "row 1 still listed, row 2 in flight, one free"
        );
        // The store lists row 1 until the burst marks it, row 2 is in flight: neither again.
        assert_eq!(publish(&mut m, &due, 3), vec![row(3)]);
        let marks = m.take_burst(t0 + MARK_DELAY).expect("the mark of row 1");
        m.committed(marks);
        assert_eq!(m.outbox_query(), None);
    }

    #[test]
    fn a_publish_the_connection_did_not_take_is_not_in_flight() {
        let t0 = Instant::now();
        let mut m = machine(Mode::Forever, 4, t0);
        let chosen = m.choose(vec![row(1), row(2), row(3)], |k| *k);
        assert_eq!(chosen.len(), 3);
        // The shell handed row 1 over; the request channel refused row 2, so 3 is not tried.
        m.not_published(row(3));
        m.not_published(row(2));
        m.on_publish_sent(7);
        assert_eq!(m.on_puback(7, t0), PubAck::Published(row(1)));
        assert_eq!(publish(&mut m, &[row(2), row(3)], 8), vec![row(2), row(3)]);
        assert_eq!(m.on_puback(9, t0), PubAck::Published(row(3)));
    }

    #[test]
    fn a_notice_turns_the_next_puback_into_a_refusal_broker_5() {
        let t0 = Instant::now();
        let mut m = machine(
            Mode::Sync {
                quiet: Duration::from_secs(1),
                deadline: t0 + Duration::from_secs(60),
            },
            8,
            t0,
        );
        publish(&mut m, &[row(1), row(2)], 1);
        assert_eq!(
            m.on_publish(notice(1, 1), t0),
            None,
            "a notice is not acknowledged"
        );
        assert!(m.on_publish(notice(2, 0xff), t0).is_none());
        let garbage = Pub {
            topic: NOTICE_TOPIC.to_owned(),
            payload: vec![1],
        };
        assert!(m.on_publish(garbage, t0).is_none(), "malformed: ignored");
        assert_eq!(
            m.on_puback(1, t0),
            PubAck::Refused(row(1), RefusalReason::InboxFull)
        );
        assert_eq!(
            m.on_puback(2, t0),
            PubAck::Refused(row(2), RefusalReason::Other(0xff))
        );
        assert!(
            m.take_burst(t0 + MARK_DELAY).is_none(),
            "a notice is not a PUBLISH to commit"
        );
        assert_eq!(m.published(), 0);
        // A sync does not publish them again on this connection; its window is free again.
        assert_eq!(m.outbox_query(), Some(2 + 8));
        assert!(publish(&mut m, &[row(1), row(2)], 3).is_empty());
        // Nor does a notice outlive the PUBACK it was for.
        assert_eq!(publish(&mut m, &[row(3)], 1), vec![row(3)]);
        assert_eq!(m.on_puback(1, t0), PubAck::Published(row(3)));
    }

    #[test]
    fn the_online_loop_retries_refused_rows_on_the_same_connection() {
        let t0 = Instant::now();
        let mut m = machine(Mode::Forever, 8, t0);
        publish(&mut m, &[row(1)], 1);
        m.on_publish(notice(1, 1), t0);
        assert!(matches!(m.on_puback(1, t0), PubAck::Refused(..)));
        assert_eq!(m.outbox_query(), Some(8), "held rows are not skipped");
        assert_eq!(publish(&mut m, &[row(1)], 2), vec![row(1)]);
        assert_eq!(m.on_puback(2, t0), PubAck::Published(row(1)));
    }

    #[test]
    fn three_lost_connections_in_a_row_strike_a_row_out() {
        let t0 = Instant::now();
        let mut m = machine(Mode::Forever, 8, t0);
        for round in 1..=STRIKES {
            publish(&mut m, &[row(1), row(2)], 1);
            if round == 2 {
                // Row 2 got through once: its strikes start again.
                assert_eq!(m.on_puback(2, t0), PubAck::Published(row(2)));
                let marks = m.take_burst(t0 + MARK_DELAY).expect("its mark");
                m.committed(marks);
                // Sent again (a copy the receiver drops): in flight with a fresh count.
                assert_eq!(publish(&mut m, &[row(2)], 3), vec![row(2)]);
            }
            let ended = m.connection_ended(t0);
            let expected = if round == STRIKES {
                vec![row(1)]
            } else {
                vec![]
            };
            assert_eq!(ended.strike_out, expected, "round {round}");
            m.connecting(t0);
            m.on_connack(t0);
        }
        publish(&mut m, &[row(2)], 1);
        assert_eq!(m.connection_ended(t0).strike_out, vec![row(2)]);
    }

    #[test]
    fn reconnections_back_off_and_start_again_after_a_subscription() {
        let t0 = Instant::now();
        let mut m = machine(Mode::Forever, 8, t0);
        assert_eq!(
            m.connection_ended(t0).delay,
            FIRST,
            "subscribed: from the first"
        );
        let delays: Vec<_> = (0..5)
            .map(|_| {
                m.connecting(t0);
                m.on_connack(t0);
                m.connection_ended(t0).delay
            })
            .collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(delays, [ms(1000), ms(2000), ms(4000), LONGEST, LONGEST]);
        m.connecting(t0);
        m.on_connack(t0);
        m.on_suback(false, t0);
        assert_eq!(m.connection_ended(t0).delay, FIRST);
    }

    #[test]
    fn a_refused_subscription_is_not_connected() {
        let t0 = Instant::now();
        let mut m = Machine::<Pub>::new(inbox(), Mode::Forever, 8, (FIRST, LONGEST), t0);
        m.on_connack(t0);
        assert!(!m.on_suback(true, t0));
        assert_eq!(m.connection_ended(t0).delay, FIRST);
        assert_eq!(
            m.connection_ended(t0).delay,
            FIRST * 2,
            "it never subscribed"
        );
    }

    #[test]
    fn a_sync_ends_when_quiet_and_flushed() {
        let t0 = Instant::now();
        let quiet = Duration::from_secs(2);
        let deadline = t0 + Duration::from_secs(60);
        let mut m = machine(Mode::Sync { quiet, deadline }, 8, t0);
        let nothing_due = |_: usize| Some(Vec::new());
        let never = || NextDue::Nothing;
        let early = m.turn(t0 + Duration::from_secs(1), false, nothing_due, never);
        assert_eq!(
            early,
            Turn {
                disconnect: false,
                wake: Duration::from_secs(1)
            }
        );
        let t = t0 + quiet;
        assert!(m.turn(t, false, nothing_due, never).disconnect);
        assert!(
            !m.turn(t, true, nothing_due, never).disconnect,
            "acks not handed over"
        );
        // Reads as many rows as it is asked for: one is due.
        let due = |n: usize| Some(vec![row(1)].into_iter().take(n).collect::<Vec<_>>());
        assert!(!m.turn(t, false, due, never).disconnect, "a row is due");
        assert!(
            !m.turn(t, false, |_| None, never).disconnect,
            "the store cannot say"
        );
        // Refused on this connection: a sync leaves it for the next one.
        publish(&mut m, &[row(1)], 1);
        assert!(
            !m.turn(t, false, nothing_due, never).disconnect,
            "in flight"
        );
        m.on_publish(notice(1, 1), t);
        m.on_puback(1, t);
        let later = t + quiet;
        assert!(m.turn(later, false, due, never).disconnect);
        m.on_publish(text(1), later);
        assert!(
            !m.turn(later + quiet, false, due, never).disconnect,
            "not committed"
        );
        let burst = m.take_burst(t0 + MARK_DELAY).expect("a burst");
        m.committed(burst);
        assert!(m.turn(later + quiet, false, due, never).disconnect);
        m.closing();
        assert!(
            !m.turn(later + quiet, false, due, never).disconnect,
            "asked once"
        );
        assert!(!m.timed_out(deadline - MIN_SLEEP));
        assert!(m.timed_out(deadline));
    }

    #[test]
    fn a_sync_that_is_done_waits_for_nothing_else() {
        let t0 = Instant::now();
        let quiet = Duration::from_secs(2);
        let deadline = t0 + Duration::from_secs(60);
        let mut m = machine(Mode::Sync { quiet, deadline }, 8, t0);
        let soon = || NextDue::In(Duration::from_millis(20));
        let turn = m.turn(t0 + quiet, false, |_| Some(Vec::new()), soon);
        assert_eq!(
            turn,
            Turn {
                disconnect: true,
                wake: TICK
            },
            "a row falling due later is for the next sync"
        );
    }

    #[test]
    fn the_connection_state_starts_again_with_each_attempt() {
        let t0 = Instant::now();
        let soon = Duration::from_millis(100);
        let mut m = Machine::<Pub>::new(inbox(), Mode::Forever, 8, (FIRST, LONGEST), t0);
        assert!(!m.connected());
        assert_eq!(
            m.outbox_query(),
            None,
            "nothing is published before the CONNACK"
        );
        let wait = |m: &mut Machine<Pub>| m.turn(t0, false, |_| None, || NextDue::In(soon)).wake;
        assert_eq!(wait(&mut m), TICK);
        m.on_connack(t0);
        assert!(m.connected() && !m.is_closing());
        assert_eq!(wait(&mut m), soon);
        publish(&mut m, &[row(1)], 1);
        m.on_publish(text(1), t0);
        assert_eq!(wait(&mut m), INFLIGHT_TICK);
        m.closing();
        assert!(m.is_closing());
        assert_eq!(m.outbox_query(), None, "closing: nothing more is published");
        assert_eq!(wait(&mut m), TICK, "closing: no outbox timer");
        m.connecting(t0);
        assert!(!m.connected() && !m.is_closing());
        assert!(
            m.take_burst(t0 + MARK_DELAY).is_none(),
            "the burst died with the connection"
        );
        m.on_connack(t0);
        assert_eq!(
            publish(&mut m, &[row(1)], 1),
            vec![row(1)],
            "nothing is in flight on a new connection"
        );
    }

    /// The mutation `AckBeforeCommit` (RX-4 broken on purpose): envelopes acknowledged early are
    /// committed after their delay, and a sync does not end before.
    #[cfg(feature = "mutations")]
    #[test]
    fn envelopes_acknowledged_early_wait_their_delay() {
        let t0 = Instant::now();
        let quiet = Duration::from_secs(1);
        let deadline = t0 + Duration::from_secs(60);
        let mut m = machine(Mode::Sync { quiet, deadline }, 8, t0);
        m.pending.push_back((t0, text(1)));
        m.pending
            .push_back((t0 + Duration::from_millis(100), text(2)));
        let none = |_: usize| Some(Vec::new());
        let never = || NextDue::Nothing;
        assert_eq!(m.turn(t0, false, none, never).wake, ACK_BEFORE_COMMIT_DELAY);
        assert!(
            !m.turn(t0 + quiet, false, none, never).disconnect,
            "not committed yet"
        );
        let just_before = t0 + ACK_BEFORE_COMMIT_DELAY - Duration::from_millis(1);
        assert!(m.pending_due(just_before).is_empty());
        assert_eq!(m.pending_due(t0 + ACK_BEFORE_COMMIT_DELAY), vec![text(1)]);
        assert_eq!(m.received(), 1);
        assert_eq!(m.pending_due(t0 + quiet), vec![text(2)]);
        assert_eq!(m.received(), 2);
        assert!(m.turn(t0 + 2 * quiet, false, none, never).disconnect);
    }

    #[test]
    fn the_wait_follows_the_outbox() {
        let t0 = Instant::now();
        let mut m = machine(Mode::Forever, 8, t0);
        let soon = Duration::from_millis(1500);
        let none = |_: usize| None;
        assert_eq!(m.turn(t0, false, none, || NextDue::Nothing).wake, TICK);
        assert_eq!(m.turn(t0, false, none, || NextDue::In(soon)).wake, soon);
        assert_eq!(
            m.turn(t0, false, none, || NextDue::In(Duration::ZERO)).wake,
            MIN_SLEEP
        );
        assert_eq!(
            m.turn(t0, false, none, || NextDue::Unknown).wake,
            INFLIGHT_TICK
        );
        publish(&mut m, &[row(1)], 1);
        assert_eq!(
            m.turn(t0, false, none, || NextDue::In(TICK)).wake,
            INFLIGHT_TICK
        );
    }
}
