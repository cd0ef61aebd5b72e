//! The online loop's shell: connect, subscribe, commit what the broker delivers before
//! acknowledging it (RX-4), publish the outbox and record PUBACKs (RX-6), reconnect with backoff.
//! Every decision of the loop is [`machine::Machine`]'s, without I/O; this shell moves MQTT
//! packets (rumqttc), runs the store and the account, keeps the clock and the app's commands.
//! ("Session" is the core's word for a pairwise ratchet; the broker's persistent MQTT session is
//! "the inbox session".)
//!
//! ```text
//!            ┌──────────── reconnect with backoff (0.5 s doubling to 60 s) ───────────────┐
//!            v                                                                            │
//!  Connection::start ── CONNACK ── SUBSCRIBE i/<own id> QoS 1 ── SUBACK ── Connected ──────┤
//!     │  PUBLISHes in ──> burst ──> handle_burst (one commit) ──> acks (RX-4) ──> RX-8    │
//!     │  due_outbox ──> PUBLISH i/<recipient> QoS 1 ── PUBACK ──> marked with the burst   │
//!     │  commands from the Online handle (send, groups, ...) run between events           │
//!     └── error / close ── rows in flight stay due (3 losses in a row: bump_attempt) ─────┘
//! ```
//!
//! Two ways to run it: [`Client::connect`] spawns it until [`Online::shutdown`], with events on a
//! channel; [`Client::sync`] runs it until the inbox is drained and the outbox flushed
//! (a quiet period with nothing new), then disconnects.

mod machine;

use std::time::{Duration, Instant};

use rumqttc::{Event, Outgoing, Packet, SubscribeReasonCode};
use sotto_core::{GroupId, MessageId, UserId};
use sotto_store::{Chat, Hold};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::account::Client;
use crate::error::{Cause, ClientError, NetworkFailure, Result, Service};
use crate::events::ClientEvent;
use crate::membership::{MembershipClient, check_bundle};
use crate::transport::{self, Connection};
pub(crate) use machine::RowKey;
use machine::{MAX_BURST, Machine, Mode, NextDue, PubAck};

/// How long a group takeover that waits for a member's bundle waits before the next try (GRP-12).
const TAKEOVER_RETRY: Duration = Duration::from_secs(30);

impl machine::Packet for rumqttc::Publish {
    fn topic(&self) -> &str {
        &self.topic
    }
    fn payload(&self) -> &[u8] {
        &self.payload
    }
}

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
    /// The loop's decisions.
    machine: Machine<rumqttc::Publish>,
    /// Texts the app sent during this loop turn, sealed and committed at its end, in the
    /// transaction of the burst if there is one.
    sends: Vec<(Chat, String)>,
    /// Where each of `sends` reports its result.
    replies: Vec<oneshot::Sender<Result<MessageId>>>,
    shutting_down: bool,
    /// Store work (commits with `synchronous=FULL` wait for the disk) runs through
    /// `block_in_place`, so that the other tasks of this worker thread move to another one
    /// meanwhile. Only for the task [`Client::connect`] spawns on a multi-thread runtime; a sync
    /// runs in its caller's context, which may not allow it (a current-thread runtime, a
    /// `LocalSet`), and commits there in place.
    off_worker: bool,
    /// When the loop looks at what maintenance is due next ([`crate::maintenance`]): before
    /// every connection, and every `check_every` while connected (online only).
    next_maintenance: Instant,
    /// When the loop may next try to complete a group's admin role that waits for a member's
    /// bundle ([`Client::complete_takeovers`], GRP-12).
    next_takeover: Instant,
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
        let mode = Mode::Sync { quiet, deadline };
        let mut engine = Engine::new(self, Sink::Collect(Vec::new()), None, mode);
        let (complete, error) = match engine.run().await {
            Ok(complete) => (complete, None),
            Err(e) => (false, Some(e)),
        };
        let (received, published) = (engine.machine.received(), engine.machine.published());
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
                let mut engine = Engine::new(
                    &mut client,
                    Sink::Channel(ev_tx),
                    Some(cmd_rx),
                    Mode::Forever,
                );
                // A task spawned on a multi-thread runtime runs on one of its workers.
                engine.off_worker = tokio::runtime::Handle::current().runtime_flavor()
                    == tokio::runtime::RuntimeFlavor::MultiThread;
                if let Err(e) = engine.run().await {
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
    fn new(
        client: &'a mut Client,
        sink: Sink,
        commands: Option<mpsc::Receiver<Command>>,
        mode: Mode,
    ) -> Self {
        let config = &client.config;
        let machine = Machine::new(
            client.device.user_id().inbox_topic(),
            mode,
            config.max_inflight,
            (config.reconnect_first, config.reconnect_max),
            Instant::now(),
        );
        Engine {
            client,
            sink,
            commands,
            machine,
            sends: Vec::new(),
            replies: Vec::new(),
            shutting_down: false,
            off_worker: false,
            next_maintenance: Instant::now(),
            next_takeover: Instant::now(),
        }
    }

    /// Runs the maintenance due now ([`Client::maintain`]) and reports each step.
    async fn maintain(&mut self) {
        let check_every = self
            .client
            .config
            .maintenance
            .map_or(Duration::from_secs(3600), |p| p.check_every);
        self.next_maintenance = Instant::now() + check_every;
        for done in self.client.maintain().await {
            self.emit(ClientEvent::Maintained(done));
        }
        self.complete_takeovers().await;
    }

    /// Completes a group's admin role that waits for a member's bundle (GRP-12), at most every
    /// [`TAKEOVER_RETRY`]: the directory may be down, or answer with another identity.
    async fn complete_takeovers(&mut self) {
        if !self.client.has_pending_takeovers() || Instant::now() < self.next_takeover {
            return;
        }
        self.next_takeover = Instant::now() + TAKEOVER_RETRY;
        match self.client.complete_takeovers().await {
            Ok(events) => self.emit_all(events),
            Err(e) => tracing::warn!(error = %e, "a group takeover waits (GRP-12)"),
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
    async fn run(&mut self) -> Result<bool> {
        let mode = self.machine.mode();
        loop {
            if self.machine.timed_out(Instant::now()) {
                return Err(ClientError::Timeout);
            }
            // Before each connection: a renewed certificate is used for it.
            self.maintain().await;
            let opts = transport::options(
                self.client.device.user_id(),
                &self.client.creds,
                &self.client.config,
            )?;
            self.machine.connecting(Instant::now());
            let mut conn = Connection::start(opts);
            let end = self.run_connection(&mut conn).await;
            drop(conn);
            let ended = self.machine.connection_ended(Instant::now());
            self.strike_out(&ended.strike_out);
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
                    if !self.pause(ended.delay).await {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Waits `delay` before reconnecting, running commands meanwhile (they only touch the
    /// store). `false` if a shutdown was asked for.
    async fn pause(&mut self, delay: Duration) -> bool {
        let until = match self.machine.mode() {
            Mode::Sync { deadline, .. } => (Instant::now() + delay).min(deadline),
            Mode::Forever => Instant::now() + delay,
        };
        loop {
            let left = until.saturating_duration_since(Instant::now());
            tokio::select! {
                cmd = next_command(&mut self.commands) => match cmd {
                    Some(cmd) => {
                        self.on_command(cmd);
                        self.take_ready_commands();
                        self.flush_sends();
                    }
                    None => return false,
                },
                _ = tokio::time::sleep(left) => return true,
            }
        }
    }

    /// Pushes back by their backoff the rows the machine struck out.
    fn strike_out(&mut self, rows: &[RowKey]) {
        let now = self.client.now();
        for key in rows {
            if let Err(e) = self.client.store.bump_attempt(&key.0, &key.1, now) {
                tracing::warn!(error = %e, "could not record a failed publish");
            }
        }
    }

    /// Asks the connection for a graceful DISCONNECT (again, if its request channel was full).
    fn disconnect(&mut self, conn: &mut Connection) {
        if !self.machine.is_closing() && conn.disconnect() {
            self.machine.closing();
        }
    }

    async fn run_connection(&mut self, conn: &mut Connection) -> ConnEnd {
        loop {
            self.complete_takeovers().await;
            #[cfg(feature = "mutations")]
            self.commit_pending();
            conn.flush_acks();
            if self.shutting_down {
                self.disconnect(conn);
            }
            if let Err(e) = self.drain_outbox(conn) {
                return ConnEnd::Lost(e, false);
            }
            let now = Instant::now();
            if self.machine.timed_out(now) {
                self.disconnect(conn);
                return ConnEnd::TimedOut;
            }
            let client = &*self.client;
            let turn = self.machine.turn(
                now,
                !conn.acks.is_empty(),
                |n| client.store.due_outbox_keys(client.now(), n).ok(),
                || match client.store.next_attempt_at() {
                    Ok(Some(due)) => {
                        NextDue::In(Duration::from_millis(due.saturating_sub(client.now())))
                    }
                    Ok(None) => NextDue::Nothing,
                    Err(_) => NextDue::Unknown,
                },
            );
            if turn.disconnect {
                self.disconnect(conn);
            }
            let mut end = None;
            tokio::select! {
                ev = conn.events.recv() => end = self.on_polled(ev, conn),
                cmd = next_command(&mut self.commands), if !self.shutting_down => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => {
                        self.shutting_down = true;
                        if !self.machine.connected() {
                            self.flush_sends();
                            return ConnEnd::Shutdown;
                        }
                        self.disconnect(conn);
                    }
                },
                _ = tokio::time::sleep(turn.wake) => {}
                _ = tokio::time::sleep_until(self.next_maintenance.into()),
                    if matches!(self.machine.mode(), Mode::Forever) && !self.shutting_down =>
                {
                    self.maintain().await;
                }
            }
            // Everything else already delivered joins the burst (group commit), and the sends
            // already queued join its transaction.
            while end.is_none() && !self.machine.burst_full() {
                match conn.events.try_recv() {
                    Ok(ev) => end = self.on_polled(Some(ev), conn),
                    Err(_) => break,
                }
            }
            self.take_ready_commands();
            if let Err(e) = self.commit_turn(conn) {
                tracing::warn!(error = %e, "a burst could not be committed; not acknowledged");
                return end.unwrap_or(ConnEnd::Lost(e, false));
            }
            if let Some(end) = end {
                return end;
            }
        }
    }

    /// Runs a command. A send waits for the end of the loop turn, to be sealed and committed
    /// with the others of the turn; anything else runs now, after the sends before it.
    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Run(f) => {
                self.flush_sends();
                self.on_disk(|e| f(e.client));
            }
            Command::Send(chat, text, reply) => {
                if self.sends.len() >= MAX_BURST {
                    self.flush_sends();
                }
                self.sends.push((chat, text));
                self.replies.push(reply);
            }
        }
    }

    /// Runs the commands already waiting (until a turn's worth of sends is queued).
    fn take_ready_commands(&mut self) {
        while !self.shutting_down && self.sends.len() < MAX_BURST {
            match self.commands.as_mut().map(|rx| rx.try_recv()) {
                Some(Ok(cmd)) => self.on_command(cmd),
                _ => break,
            }
        }
    }

    /// Seals and commits the sends queued in this turn in one transaction.
    fn flush_sends(&mut self) {
        if self.sends.is_empty() {
            return;
        }
        let texts = std::mem::take(&mut self.sends);
        let replies = std::mem::take(&mut self.replies);
        self.send_burst(texts, replies);
    }

    /// Seals and commits a burst of sends in one transaction; if that commit fails, each is sent
    /// alone, so each caller learns its own outcome.
    fn send_burst(
        &mut self,
        texts: Vec<(Chat, String)>,
        replies: Vec<oneshot::Sender<Result<MessageId>>>,
    ) {
        match self.on_disk(|e| e.client.send_many(&texts)) {
            Ok(results) => reply_all(replies, results),
            Err(e) => {
                tracing::warn!(error = %e, "a burst of sends could not be committed; one by one");
                for (reply, (chat, text)) in replies.into_iter().zip(texts) {
                    let r = self.on_disk(|e| e.client.send_to(&chat, &text));
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
    ) -> Option<ConnEnd> {
        match ev {
            None => {
                let cause = Cause::text("the MQTT event loop ended");
                let lost = ClientError::network(Service::Broker, NetworkFailure::Closed, cause);
                Some(ConnEnd::Lost(lost, false))
            }
            Some(Ok(Event::Outgoing(Outgoing::Disconnect))) => Some(match self.machine.mode() {
                Mode::Sync { .. } => ConnEnd::Done,
                Mode::Forever => ConnEnd::Shutdown,
            }),
            Some(Ok(ev)) => match self.on_event(ev, conn) {
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

    /// Ends a loop turn: commits the burst the machine hands out (the inbox PUBLISHes, the
    /// outbox rows PUBACKed meanwhile, RX-6) and the sends of the turn in one transaction, then
    /// acknowledges the PUBLISHes (RX-4). A store failure propagates: nothing is acknowledged,
    /// the broker delivers them again; the sends are then committed on their own.
    fn commit_turn(&mut self, conn: &mut Connection) -> Result<()> {
        let Some(mut burst) = self.machine.take_burst(Instant::now()) else {
            self.flush_sends();
            return Ok(());
        };
        let published = std::mem::take(&mut burst.published);
        let envelopes = burst.envelopes();
        if envelopes.is_empty() && self.sends.is_empty() {
            self.on_disk(|e| {
                let now = e.client.now();
                e.client.store.mark_published_many(&published, now)
            })?;
        } else {
            let texts = std::mem::take(&mut self.sends);
            let replies = std::mem::take(&mut self.replies);
            match self.on_disk(|e| e.commit_envelopes(&envelopes, published, &texts)) {
                Ok(results) => reply_all(replies, results),
                Err(e) => {
                    self.send_burst(texts, replies);
                    return Err(e);
                }
            }
        }
        conn.acks.extend(self.machine.committed(burst));
        conn.flush_acks();
        Ok(())
    }

    /// Publishes the due rows the machine chooses (RX-6). Only the keys of the due rows are
    /// read on each turn (most are in flight already); the envelopes only of those chosen.
    fn drain_outbox(&mut self, conn: &mut Connection) -> Result<()> {
        let Some(limit) = self.machine.outbox_query() else {
            return Ok(());
        };
        let store = &self.client.store;
        let due = store.due_outbox_keys(self.client.now(), limit)?;
        let chosen = self.machine.choose(due, |k| *k);
        let rows = chosen
            .iter()
            .map(|(id, to)| store.outbox_entry(id, to))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for (i, row) in rows.into_iter().enumerate() {
            // A row gone meanwhile (nothing else writes the store during a turn) or refused by
            // the connection's request channel: it and the rest stay due.
            let sent = row.is_some_and(|row| {
                tracing::trace!(attempt = row.attempts + 1, "publishing an outbox row");
                conn.publish(&row.recipient, row.envelope)
            });
            if !sent {
                for key in chosen.iter().skip(i).rev() {
                    self.machine.not_published(*key);
                }
                break;
            }
        }
        Ok(())
    }

    fn on_event(&mut self, ev: Event, conn: &mut Connection) -> Result<()> {
        let now = Instant::now();
        match ev {
            Event::Incoming(Packet::ConnAck(ack)) => {
                conn.session_present = ack.session_present;
                // rumqttc does not resubscribe by itself: every CONNACK subscribes again.
                let inbox = self.machine.on_connack(now).to_owned();
                conn.client
                    .try_subscribe(inbox, rumqttc::QoS::AtLeastOnce)
                    .map_err(|e| {
                        ClientError::network(Service::Broker, NetworkFailure::Closed, Cause::new(e))
                    })?;
            }
            Event::Incoming(Packet::SubAck(ack)) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure));
                if !self.machine.on_suback(refused, now) {
                    return Err(ClientError::SubscriptionRefused);
                }
                tracing::debug!(session_present = conn.session_present, "inbox subscribed");
                self.emit(ClientEvent::Connected {
                    session_present: conn.session_present,
                });
            }
            Event::Incoming(Packet::Publish(p)) => {
                // Mutation `AckBeforeCommit` only: acknowledged now, committed later.
                if let Some(p) = self.machine.on_publish(p, now) {
                    conn.acks.push_back(p);
                    conn.flush_acks();
                }
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => self.machine.on_publish_sent(pkid),
            Event::Incoming(Packet::PubAck(ack)) => {
                if let PubAck::Refused(key, reason) = self.machine.on_puback(ack.pkid, now) {
                    if reason.is_permanent() {
                        // Not queued and never will be (the recipient deleted their account):
                        // the row is given up, never due again.
                        self.on_disk(|e| e.client.store.give_up(&key.0, &key.1, reason.code()))?;
                        tracing::debug!(%reason, "the service refused an envelope for good");
                        self.emit(ClientEvent::Undeliverable {
                            id: key.0,
                            recipient: key.1,
                            reason,
                        });
                        return Ok(());
                    }
                    // Not queued (BROKER-5): the row stays and waits its backoff.
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
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Opens and commits envelopes of the inbox in one transaction with the PUBACK marks
    /// `published` and the sends `texts` (their results, in order), then retries the parked
    /// envelopes if these brought new keys (RX-8). Only after this may the PUBLISHes be
    /// acknowledged (RX-4).
    fn commit_envelopes(
        &mut self,
        envelopes: &[&[u8]],
        published: Vec<RowKey>,
        texts: &[(Chat, String)],
    ) -> Result<Vec<Result<MessageId>>> {
        let mut events = Vec::new();
        let outcome = self
            .client
            .handle_burst(envelopes, published, texts, &mut events);
        self.emit_all(events);
        let (outcome, sent) = outcome?;
        if outcome.new_keys {
            let mut events = Vec::new();
            let retried = self.client.retry_parked(&mut events);
            self.emit_all(events);
            if let Err(e) = retried {
                tracing::warn!(error = %e, "retrying parked envelopes failed");
            }
        }
        Ok(sent)
    }

    /// Mutation `AckBeforeCommit`: commits the acknowledged envelopes whose delay passed. A
    /// failed commit loses the envelope: the broker no longer has it.
    #[cfg(feature = "mutations")]
    fn commit_pending(&mut self) {
        for p in self.machine.pending_due(Instant::now()) {
            if let Err(e) = self.commit_envelopes(&[&p.payload], Vec::new(), &[]) {
                tracing::warn!(error = %e, "an acknowledged envelope could not be committed");
            }
        }
    }
}

/// Tells each caller of a send its result.
fn reply_all(replies: Vec<oneshot::Sender<Result<MessageId>>>, results: Vec<Result<MessageId>>) {
    for (reply, r) in replies.into_iter().zip(results) {
        let _ = reply.send(r);
    }
}
