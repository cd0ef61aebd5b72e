//! The online loop: connect, subscribe, receive and commit before acknowledging (RX-4), publish
//! the outbox and record PUBACKs (RX-6), reconnect with backoff. ("Session" is the core's word for
//! a pairwise ratchet; the broker's persistent MQTT session is "the inbox session".)
//!
//! ```text
//!            ┌──────────── reconnect with backoff (0.5 s doubling to 60 s) ───────────────┐
//!            v                                                                            │
//!  Connection::start ── CONNACK ── SUBSCRIBE i/<own id> QoS 1 ── SUBACK ── Connected ──────┤
//!     │  PUBLISH in ──> handle_envelope (commit) ──> ack (RX-4) ──> retry parked (RX-8)   │
//!     │  due_outbox ──> PUBLISH i/<recipient> QoS 1 ── PUBACK ──> mark_published           │
//!     │  commands from the Online handle (send, groups, ...) run between events           │
//!     └── error / close ── rows in flight stay due (3 losses in a row: bump_attempt) ─────┘
//! ```
//!
//! Two ways to run it: [`Client::connect`] spawns it until [`Online::shutdown`], with events on a
//! channel; [`Client::sync`] runs it until the inbox is drained and the outbox flushed
//! (a quiet period with nothing new), then disconnects.

use std::collections::HashMap;
use std::time::Duration;

use rumqttc::{Event, Outgoing, Packet, SubscribeReasonCode};
use sotto_core::{GroupId, MessageId, UserId};
use sotto_store::Chat;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::account::Client;
use crate::error::{Cause, ClientError, NetworkFailure, Result, Service};
use crate::events::ClientEvent;
use crate::membership::{MembershipClient, check_bundle};
use crate::transport::{self, Connection, RowKey};
use sotto_store::Hold;
use sotto_wire::notice::{NOTICE_TOPIC, RefusalNotice};

/// Longest sleep of the loop without an event.
const TICK: Duration = Duration::from_secs(30);
/// How often the loop looks again while publishes are in flight.
const INFLIGHT_TICK: Duration = Duration::from_secs(1);
/// Shortest sleep, so that nothing spins.
const MIN_SLEEP: Duration = Duration::from_millis(10);
/// Connections lost with a row in flight before that row is pushed back by the backoff.
const STRIKES: u32 = 3;
/// Most inbox PUBLISHes opened and committed in one transaction (a burst): what the broker
/// already delivered, up to this many, is committed together and then acknowledged (RX-4).
const MAX_BURST: usize = 512;
/// Mutation `AckBeforeCommit`: how long an acknowledged envelope waits before its commit.
#[cfg(feature = "mutations")]
const ACK_BEFORE_COMMIT_DELAY: Duration = Duration::from_millis(300);

/// What [`Client::sync`] did.
#[derive(Clone, Debug, Default)]
pub struct SyncReport {
    /// Everything that happened, in order (messages, receipts, refusals...).
    pub events: Vec<ClientEvent>,
    /// Envelopes received and acknowledged.
    pub received: usize,
    /// Envelopes published and acknowledged by the broker.
    pub published: usize,
    /// `true` if the inbox went quiet and the outbox was flushed before the timeout.
    pub complete: bool,
}

impl SyncReport {
    /// The texts of the messages received in this sync, in the order they were committed.
    pub fn texts(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Message(m) => Some(m.text.clone()),
                _ => None,
            })
            .collect()
    }
}

/// What the [`Online`] handle asks of the loop.
enum Command {
    /// Runs on the account between two MQTT events.
    Run(Box<dyn FnOnce(&mut Client) + Send>),
    /// A text to send: coalesced with the sends queued right behind it into one commit.
    Send(Chat, String, oneshot::Sender<Result<MessageId>>),
}

enum Mode {
    Sync { quiet: Duration, deadline: Instant },
    Forever,
}

/// How one connection ended.
enum ConnEnd {
    /// A DISCONNECT went out after a shutdown request.
    Shutdown,
    /// Sync mode: quiet and flushed.
    Done,
    /// Sync mode: the deadline passed.
    TimedOut,
    /// The connection failed; `true` if retrying cannot help.
    Lost(ClientError, bool),
}

enum Sink {
    Collect(Vec<ClientEvent>),
    Channel(mpsc::Sender<ClientEvent>),
}

struct Engine<'a> {
    client: &'a mut Client,
    sink: Sink,
    commands: Option<mpsc::Receiver<Command>>,
    strikes: HashMap<RowKey, u32>,
    received: usize,
    published: usize,
    shutting_down: bool,
    /// PUBLISHes received and not yet acknowledged, in order (`true`: on the own inbox, to
    /// commit): committed together once no further event is ready (or [`MAX_BURST`] are
    /// waiting), then acknowledged in the order they came (MQTT 3.1.1, 4.6).
    burst: Vec<(rumqttc::Publish, bool)>,
    /// Outbox rows the broker acknowledged (PUBACK) and not yet marked: marked together in one
    /// transaction with the burst (RX-6). Lost marks only mean a resend, which RX-6 absorbs.
    published_burst: Vec<RowKey>,
    /// Store work (commits with `synchronous=FULL` wait for the disk) runs through
    /// `block_in_place`, so that the other tasks of this worker thread move to another one
    /// meanwhile. Only for the task [`Client::connect`] spawns on a multi-thread runtime; a sync
    /// runs in its caller's context, which may not allow it (a current-thread runtime, a
    /// `LocalSet`), and commits there in place.
    off_worker: bool,
    /// Mutation `AckBeforeCommit`: envelopes acknowledged but not yet committed, with their
    /// arrival time. Lost if the process stops before they are committed (the RX-4 bug).
    #[cfg(feature = "mutations")]
    pending: std::collections::VecDeque<(Instant, Vec<u8>)>,
}

impl Client {
    /// Connects, drains the inbox until nothing new arrives for [`Config::sync_quiet`], flushes
    /// the outbox, and disconnects; gives up after `timeout` (then `complete` is false). For
    /// `sotto inbox` and `sotto send` in scripts.
    ///
    /// [`Config::sync_quiet`]: crate::Config::sync_quiet
    pub async fn sync(&mut self, timeout: Duration) -> Result<SyncReport> {
        self.sync_with(timeout, self.config.sync_quiet).await
    }

    /// [`Client::sync`] with a quiet period for this call only (`sotto inbox --quiet`).
    pub async fn sync_with(&mut self, timeout: Duration, quiet: Duration) -> Result<SyncReport> {
        let deadline = Instant::now() + timeout;
        let mut engine = Engine::new(self, Sink::Collect(Vec::new()), None);
        let (complete, error) = match engine.run(Mode::Sync { quiet, deadline }).await {
            Ok(complete) => (complete, None),
            Err(e) => (false, Some(e)),
        };
        let (received, published) = (engine.received, engine.published);
        let events = match engine.sink {
            Sink::Collect(v) => v,
            Sink::Channel(_) => Vec::new(),
        };
        if let Some(e) = error {
            if received == 0 && published == 0 {
                return Err(e);
            }
            tracing::warn!(error = %e, "sync ended early");
        }
        Ok(SyncReport {
            events,
            received,
            published,
            complete,
        })
    }

    /// Runs the online loop on a task until [`Online::shutdown`]: the account moves into the
    /// task and comes back from `shutdown`. Events arrive on the returned channel (at most
    /// [`Config::event_capacity`](crate::Config::event_capacity) waiting).
    pub fn connect(self) -> (Online, mpsc::Receiver<ClientEvent>) {
        let membership = self.creds.membership().ok();
        let (cmd_tx, cmd_rx) = mpsc::channel::<Command>(64);
        let (ev_tx, ev_rx) = mpsc::channel(self.config.event_capacity);
        let task = tokio::spawn(async move {
            let mut client = self;
            {
                let mut engine = Engine::new(&mut client, Sink::Channel(ev_tx), Some(cmd_rx));
                // A task spawned on a multi-thread runtime runs on one of its workers.
                engine.off_worker = tokio::runtime::Handle::current().runtime_flavor()
                    == tokio::runtime::RuntimeFlavor::MultiThread;
                if let Err(e) = engine.run(Mode::Forever).await {
                    tracing::error!(error = %e, "online loop stopped");
                }
            }
            client
        });
        (
            Online {
                commands: cmd_tx,
                task,
                membership,
            },
            ev_rx,
        )
    }
}

/// The handle of a client online ([`Client::connect`]): its loop runs on a task, keeps a
/// connection to the broker up and commits everything it receives; calls reach the account
/// between two MQTT events.
#[derive(Debug)]
pub struct Online {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<Client>,
    membership: Option<MembershipClient>,
}

impl Online {
    /// Runs `f` on the account inside the online loop, between two MQTT events; what it commits to
    /// the outbox is published at once.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Run(Box::new(move |c: &mut Client| {
            let _ = tx.send(f(c));
        }));
        self.commands
            .send(cmd)
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)
    }

    /// Sends a text to a contact ([`Client::send`]). Sends queued together (several calls in
    /// flight at once) are sealed and committed in one transaction ([`Client::send_many`]).
    pub async fn send(&self, to: UserId, text: String) -> Result<MessageId> {
        self.send_to(Chat::User(to), text).await
    }

    /// Sends a text to a group ([`Client::send_group`]), coalesced like [`Online::send`].
    pub async fn send_group(&self, group: GroupId, text: String) -> Result<MessageId> {
        self.send_to(Chat::Group(group), text).await
    }

    async fn send_to(&self, chat: Chat, text: String) -> Result<MessageId> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Send(chat, text, tx))
            .await
            .map_err(|_| ClientError::Stopped)?;
        rx.await.map_err(|_| ClientError::Stopped)?
    }

    /// Adds a contact from the directory ([`Client::add_from_directory`]): the bundle is fetched
    /// outside the loop, then added inside it.
    pub async fn add_from_directory(&self, user: UserId) -> Result<()> {
        let membership = self
            .membership
            .as_ref()
            .ok_or(ClientError::NoAccount("membership credentials"))?;
        let bundle = check_bundle(&membership.bundle(&user).await?, &user)?;
        self.call(move |c| c.add_bundle(&bundle)).await?
    }

    /// Stops the loop (a graceful DISCONNECT if connected) and returns the account.
    pub async fn shutdown(self) -> Result<Client> {
        let Online { commands, task, .. } = self;
        drop(commands);
        task.await.map_err(|_| ClientError::Task)
    }
}

async fn next_command(commands: &mut Option<mpsc::Receiver<Command>>) -> Option<Command> {
    match commands {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl<'a> Engine<'a> {
    fn new(client: &'a mut Client, sink: Sink, commands: Option<mpsc::Receiver<Command>>) -> Self {
        Engine {
            client,
            sink,
            commands,
            strikes: HashMap::new(),
            received: 0,
            published: 0,
            shutting_down: false,
            burst: Vec::new(),
            published_burst: Vec::new(),
            off_worker: false,
            #[cfg(feature = "mutations")]
            pending: std::collections::VecDeque::new(),
        }
    }

    /// Runs store work `f` on this engine; see `off_worker`.
    fn on_disk<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        if self.off_worker {
            tokio::task::block_in_place(|| f(self))
        } else {
            f(self)
        }
    }

    fn emit(&mut self, event: ClientEvent) {
        match &mut self.sink {
            Sink::Collect(v) => v.push(event),
            Sink::Channel(tx) => match tx.try_send(event) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!("event channel full, event dropped (the store has it)");
                }
            },
        }
    }

    fn emit_all(&mut self, events: Vec<ClientEvent>) {
        for e in events {
            self.emit(e);
        }
    }

    /// Connects and reconnects until the mode says stop. `Ok(true)`: sync completed.
    async fn run(&mut self, mode: Mode) -> Result<bool> {
        let (first, longest) = (
            self.client.config.reconnect_first,
            self.client.config.reconnect_max,
        );
        let mut delay = first;
        loop {
            if let Mode::Sync { deadline, .. } = mode {
                if Instant::now() >= deadline {
                    return Err(ClientError::Timeout);
                }
            }
            let opts = transport::options(
                self.client.device.user_id(),
                &self.client.creds,
                &self.client.config,
            )?;
            let mut conn = Connection::start(opts);
            let end = self.run_connection(&mut conn, &mode).await;
            // What this connection did not commit is delivered again on the next (RX-4); its
            // packet ids mean nothing there. Unmarked PUBACKs only cost a resend (RX-6).
            self.burst.clear();
            self.published_burst.clear();
            let was_subscribed = conn.subscribed;
            self.lost_inflight(&conn);
            drop(conn);
            match end {
                ConnEnd::Shutdown => return Ok(false),
                ConnEnd::Done => return Ok(true),
                ConnEnd::TimedOut => return Ok(false),
                ConnEnd::Lost(e, fatal) => {
                    tracing::info!(error = %e, "connection lost");
                    self.emit(ClientEvent::Disconnected {
                        fault: e.fault(),
                        retryable: e.is_retryable(),
                        reason: e.to_string(),
                    });
                    if fatal && matches!(mode, Mode::Sync { .. }) {
                        return Err(e);
                    }
                    if was_subscribed {
                        delay = first;
                    }
                    if !self.pause(delay, &mode).await {
                        return Ok(false);
                    }
                    delay = (delay * 2).min(longest);
                }
            }
        }
    }

    /// Waits `delay` before reconnecting, running commands meanwhile (they only touch the
    /// store). `false` if a shutdown was asked for.
    async fn pause(&mut self, delay: Duration, mode: &Mode) -> bool {
        let until = match mode {
            Mode::Sync { deadline, .. } => (Instant::now() + delay).min(*deadline),
            Mode::Forever => Instant::now() + delay,
        };
        loop {
            tokio::select! {
                cmd = next_command(&mut self.commands) => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => return false,
                },
                _ = tokio::time::sleep_until(until) => return true,
            }
        }
    }

    /// Rows in flight when a connection ended stay due; after [`STRIKES`] losses in a row a row
    /// waits its backoff (a poison envelope must not keep killing connections).
    fn lost_inflight(&mut self, conn: &Connection) {
        let now = self.client.now();
        for key in &conn.inflight {
            let n = self.strikes.entry(*key).or_insert(0);
            *n += 1;
            if *n >= STRIKES {
                self.strikes.remove(key);
                if let Err(e) = self.client.store.bump_attempt(&key.0, &key.1, now) {
                    tracing::warn!(error = %e, "could not record a failed publish");
                }
            }
        }
    }

    async fn run_connection(&mut self, conn: &mut Connection, mode: &Mode) -> ConnEnd {
        let mut last_activity = Instant::now();
        loop {
            #[cfg(feature = "mutations")]
            self.commit_pending();
            conn.flush_acks();
            if conn.connected && !conn.closing {
                let retry_held = !matches!(mode, Mode::Sync { .. });
                if let Err(e) = self.drain_outbox(conn, retry_held) {
                    return ConnEnd::Lost(e, false);
                }
            }
            let mut wake = TICK;
            if let Mode::Sync { quiet, deadline } = mode {
                let now = Instant::now();
                if now >= *deadline {
                    conn.disconnect();
                    return ConnEnd::TimedOut;
                }
                wake = wake.min(*deadline - now);
                if conn.subscribed && !conn.closing {
                    let idle = now.saturating_duration_since(last_activity);
                    if idle >= *quiet && self.flushed(conn) {
                        conn.disconnect();
                    } else {
                        wake = wake.min(quiet.saturating_sub(idle));
                    }
                }
            }
            if conn.connected && !conn.closing {
                wake = wake.min(self.outbox_wake(conn));
            }
            #[cfg(feature = "mutations")]
            if let Some((at, _)) = self.pending.front() {
                let due = *at + ACK_BEFORE_COMMIT_DELAY;
                wake = wake.min(due.saturating_duration_since(Instant::now()));
            }
            let wake = wake.max(MIN_SLEEP);
            tokio::select! {
                ev = conn.events.recv() => {
                    let mut end = self.on_polled(ev, conn, mode, &mut last_activity);
                    // Everything else already delivered joins the burst (group commit).
                    while end.is_none() && self.burst.len() < MAX_BURST {
                        match conn.events.try_recv() {
                            Ok(ev) => end = self.on_polled(Some(ev), conn, mode, &mut last_activity),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = self.commit_burst(conn) {
                        tracing::warn!(error = %e, "a burst could not be committed; not acknowledged");
                        return end.unwrap_or(ConnEnd::Lost(e, false));
                    }
                    if let Some(end) = end {
                        return end;
                    }
                }
                cmd = next_command(&mut self.commands), if !self.shutting_down => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => {
                        self.shutting_down = true;
                        if conn.connected {
                            conn.disconnect();
                        } else {
                            return ConnEnd::Shutdown;
                        }
                    }
                },
                _ = tokio::time::sleep(wake) => {}
            }
        }
    }

    /// Runs a command; a send takes the sends queued right behind it along into one commit.
    fn on_command(&mut self, first: Command) {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Run(f) => self.on_disk(|e| f(e.client)),
                Command::Send(chat, text, reply) => {
                    let mut texts = vec![(chat, text)];
                    let mut replies = vec![reply];
                    while texts.len() < MAX_BURST {
                        match self.commands.as_mut().map(|rx| rx.try_recv()) {
                            Some(Ok(Command::Send(chat, text, reply))) => {
                                texts.push((chat, text));
                                replies.push(reply);
                            }
                            Some(Ok(other)) => {
                                next = Some(other);
                                break;
                            }
                            _ => break,
                        }
                    }
                    self.send_burst(texts, replies);
                }
            }
        }
    }

    /// Seals and commits a burst of sends in one transaction; if that commit fails, each is sent
    /// alone, so each caller learns its own outcome.
    fn send_burst(
        &mut self,
        texts: Vec<(Chat, String)>,
        replies: Vec<oneshot::Sender<Result<MessageId>>>,
    ) {
        match self.on_disk(|e| e.client.send_many(&texts)) {
            Ok(results) => {
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a burst of sends could not be committed; one by one");
                for (reply, (chat, text)) in replies.into_iter().zip(texts) {
                    let r = self.on_disk(|e| match chat {
                        Chat::User(u) => e.client.send(&u, &text),
                        Chat::Group(g) => e.client.send_group(&g, &text),
                    });
                    let _ = reply.send(r);
                }
            }
        }
    }

    /// Handles one event of the MQTT event loop; `Some` if it ends the connection.
    fn on_polled(
        &mut self,
        ev: Option<std::result::Result<Event, rumqttc::ConnectionError>>,
        conn: &mut Connection,
        mode: &Mode,
        last_activity: &mut Instant,
    ) -> Option<ConnEnd> {
        match ev {
            None => {
                let cause = Cause::text("the MQTT event loop ended");
                let lost = ClientError::network(Service::Broker, NetworkFailure::Closed, cause);
                Some(ConnEnd::Lost(lost, false))
            }
            Some(Ok(Event::Outgoing(Outgoing::Disconnect))) => Some(match mode {
                Mode::Sync { .. } => ConnEnd::Done,
                Mode::Forever => ConnEnd::Shutdown,
            }),
            Some(Ok(ev)) => match self.on_event(ev, conn, last_activity) {
                Ok(()) => None,
                Err(e) => {
                    // A request refused because the event loop already stopped: its own error
                    // says why.
                    if matches!(e, ClientError::Network { .. }) {
                        if let Some((why, fatal)) = conn.stop_reason() {
                            return Some(ConnEnd::Lost(why, fatal));
                        }
                    }
                    Some(ConnEnd::Lost(e, false))
                }
            },
            Some(Err(e)) => {
                let (err, fatal) = transport::classify(e);
                Some(ConnEnd::Lost(err, fatal))
            }
        }
    }

    /// Commits the burst of inbox PUBLISHes with the outbox rows PUBACKed meanwhile, in one
    /// transaction (RX-6), then acknowledges the PUBLISHes (RX-4). A store failure propagates:
    /// nothing is acknowledged, the broker delivers them again.
    fn commit_burst(&mut self, conn: &mut Connection) -> Result<()> {
        let rows = std::mem::take(&mut self.published_burst);
        let burst = std::mem::take(&mut self.burst);
        let payloads: Vec<&[u8]> = burst
            .iter()
            .filter(|(_, inbox)| *inbox)
            .map(|(p, _)| &p.payload[..])
            .collect();
        if !payloads.is_empty() {
            self.on_disk(|e| e.commit_payloads(&payloads, rows))?;
        } else if !rows.is_empty() {
            self.on_disk(|e| {
                let now = e.client.now();
                e.client.store.mark_published_many(&rows, now)
            })?;
        }
        if burst.is_empty() {
            return Ok(());
        }
        conn.acks.extend(burst.into_iter().map(|(p, _)| p));
        conn.flush_acks();
        Ok(())
    }

    /// Nothing left to do on this connection: no acks pending, nothing in flight, nothing due.
    /// Nothing left to do: every acknowledgement sent, nothing in flight, and no row due except
    /// those the service refused on this connection (they wait for the next sync).
    fn flushed(&self, conn: &Connection) -> bool {
        #[cfg(feature = "mutations")]
        if !self.pending.is_empty() {
            return false;
        }
        self.burst.is_empty()
            && self.published_burst.is_empty()
            && conn.acks.is_empty()
            && conn.inflight.is_empty()
            && self
                .client
                .store
                .due_outbox(self.client.now(), conn.held.len() + 1)
                .map(|due| {
                    due.iter()
                        .all(|row| conn.held.contains(&(row.message_id, row.recipient)))
                })
                .unwrap_or(false)
    }

    /// How long until an outbox row falls due.
    fn outbox_wake(&self, conn: &Connection) -> Duration {
        if !conn.inflight.is_empty() {
            return INFLIGHT_TICK;
        }
        match self.client.store.next_attempt_at() {
            Ok(Some(due)) => Duration::from_millis(due.saturating_sub(self.client.now())),
            Ok(None) => TICK,
            Err(_) => INFLIGHT_TICK,
        }
    }

    /// Publishes the rows that are due and not in flight (RX-6); rows refused on this connection
    /// only if `retry_held`.
    fn drain_outbox(&mut self, conn: &mut Connection, retry_held: bool) -> Result<()> {
        let max_inflight = self.client.config.max_inflight;
        let room = max_inflight.saturating_sub(conn.inflight.len());
        if room == 0 {
            return Ok(());
        }
        let now = self.client.now();
        let skipped = if retry_held { 0 } else { conn.held.len() };
        let due = self
            .client
            .store
            .due_outbox(now, conn.inflight.len() + skipped + room)?;
        for row in due {
            let key = (row.message_id, row.recipient);
            if conn.inflight.contains(&key) || (!retry_held && conn.held.contains(&key)) {
                continue;
            }
            if conn.inflight.len() >= max_inflight || !conn.publish(key, row.envelope) {
                break;
            }
            tracing::trace!(attempt = row.attempts + 1, "publishing an outbox row");
        }
        Ok(())
    }

    fn on_event(
        &mut self,
        ev: Event,
        conn: &mut Connection,
        last_activity: &mut Instant,
    ) -> Result<()> {
        match ev {
            Event::Incoming(Packet::ConnAck(ack)) => {
                conn.connected = true;
                conn.session_present = ack.session_present;
                *last_activity = Instant::now();
                // rumqttc does not resubscribe by itself: every CONNACK subscribes again.
                let inbox = self.client.device.user_id().inbox_topic();
                conn.client
                    .try_subscribe(inbox, rumqttc::QoS::AtLeastOnce)
                    .map_err(|e| {
                        ClientError::network(Service::Broker, NetworkFailure::Closed, Cause::new(e))
                    })?;
            }
            Event::Incoming(Packet::SubAck(ack)) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    return Err(ClientError::SubscriptionRefused);
                }
                conn.subscribed = true;
                *last_activity = Instant::now();
                tracing::debug!(session_present = conn.session_present, "inbox subscribed");
                self.emit(ClientEvent::Connected {
                    session_present: conn.session_present,
                });
            }
            Event::Incoming(Packet::Publish(p)) if p.topic == NOTICE_TOPIC => {
                // BROKER-5: the PUBACK of this packet id that follows is a refusal.
                match RefusalNotice::from_bytes(&p.payload) {
                    Ok(n) => {
                        conn.refused.insert(n.pkid, n.reason);
                    }
                    Err(e) => tracing::warn!(error = %e, "malformed refusal notice ignored"),
                }
            }
            Event::Incoming(Packet::Publish(p)) => {
                *last_activity = Instant::now();
                if p.topic == self.client.device.user_id().inbox_topic() {
                    // Mutation `AckBeforeCommit`: ack now, commit on a later loop iteration.
                    #[cfg(feature = "mutations")]
                    if sotto_core::mutation::active(sotto_core::mutation::Mutation::AckBeforeCommit)
                    {
                        self.pending.push_back((Instant::now(), p.payload.to_vec()));
                        conn.acks.push_back(p);
                        conn.flush_acks();
                        return Ok(());
                    }
                    // Committed with the rest of its burst, then acknowledged (RX-4).
                    self.burst.push((p, true));
                } else {
                    tracing::warn!("PUBLISH on a foreign topic ignored");
                    self.burst.push((p, false));
                }
            }
            // rumqttc reports each QoS 1 publish with its packet id in request order (a publish
            // that collided on its id is reported when it finally goes out, after the PUBACK that
            // freed the id), so the oldest unassigned row is the one this id belongs to.
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                if let Some(key) = conn.unassigned.pop_front() {
                    conn.by_pkid.insert(pkid, key);
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                *last_activity = Instant::now();
                let refused = conn.refused.remove(&ack.pkid);
                if let (Some(key), Some(reason)) = (conn.by_pkid.get(&ack.pkid), refused) {
                    // Not queued (BROKER-5): the row stays and waits its backoff.
                    let key = *key;
                    conn.by_pkid.remove(&ack.pkid);
                    conn.inflight.remove(&key);
                    conn.held.insert(key);
                    let hold = self.on_disk(|e| {
                        let now = e.client.now();
                        e.client.store.hold(&key.0, &key.1, reason.code(), now)
                    })?;
                    // A refused resend of an envelope the broker already holds waits for its
                    // receipt as before: nothing to tell.
                    if let Some(Hold::Held { .. }) = hold {
                        tracing::debug!(%reason, "the service refused an envelope; it stays in the outbox");
                        self.emit(ClientEvent::Held {
                            id: key.0,
                            recipient: key.1,
                            reason,
                        });
                    }
                } else if let Some(key) = conn.by_pkid.remove(&ack.pkid) {
                    conn.inflight.remove(&key);
                    conn.held.remove(&key);
                    self.strikes.remove(&key);
                    self.published += 1;
                    self.published_burst.push(key);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Opens and commits envelopes of the inbox in one transaction with the PUBACK marks
    /// `published`, then retries the parked ones if they brought new keys (RX-8). Only after this
    /// may the PUBLISHes be acknowledged (RX-4).
    fn commit_payloads(&mut self, payloads: &[&[u8]], published: Vec<RowKey>) -> Result<()> {
        let mut events = Vec::new();
        let outcome = self.client.handle_burst(payloads, published, &mut events);
        self.emit_all(events);
        let outcome = outcome?;
        self.received += payloads.len();
        if outcome.new_keys {
            let mut events = Vec::new();
            let retried = self.client.retry_parked(&mut events);
            self.emit_all(events);
            if let Err(e) = retried {
                tracing::warn!(error = %e, "retrying parked envelopes failed");
            }
        }
        Ok(())
    }

    /// Mutation `AckBeforeCommit`: commits the acknowledged envelopes that arrived at least
    /// [`ACK_BEFORE_COMMIT_DELAY`] ago. A failed commit loses the envelope: the broker no longer
    /// has it.
    #[cfg(feature = "mutations")]
    fn commit_pending(&mut self) {
        let now = Instant::now();
        while let Some((at, _)) = self.pending.front() {
            if now.saturating_duration_since(*at) < ACK_BEFORE_COMMIT_DELAY {
                break;
            }
            let Some((_, payload)) = self.pending.pop_front() else {
                break;
            };
            if let Err(e) = self.commit_payloads(&[&payload], Vec::new()) {
                tracing::warn!(error = %e, "an acknowledged envelope could not be committed");
            }
        }
    }
}
