//! What the online loops observe during a run: the state every task of the run shares ([`Shared`]:
//! the user ids, the send windows, who is connected, the reconnect count) and the [`Tally`] of
//! events, kept by one reader task per online loop ([`consume`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sotto_client::{ClientEvent, MessageId, ReceivedMessage, UserId};
use tokio::sync::{Semaphore, mpsc};

use super::MAX_LISTED;
use super::plan::{Plan, parse};

/// What the online loops observed, shared by every task of a run.
pub(super) struct Shared {
    pub(super) start: std::time::Instant,
    pub(super) ids: Vec<UserId>,
    /// Per sender: messages it may still put on the way.
    pub(super) windows: Vec<Semaphore>,
    /// Per client: its current online loop reported Connected.
    pub(super) connected: Vec<AtomicBool>,
    tally: Mutex<Tally>,
    pub(super) reconnects: AtomicUsize,
}

/// The counts of what the online loops of a run reported.
#[derive(Default)]
pub(super) struct Tally {
    /// Message events per message (slot).
    seen: Vec<u8>,
    pub(super) distinct: usize,
    pub(super) duplicate_events: usize,
    pub(super) latencies_us: Vec<u64>,
    /// Messages with a complete receipt at their sender.
    pub(super) receipts: HashSet<MessageId>,
    pub(super) first_send: Option<std::time::Instant>,
    pub(super) last_receive: Option<std::time::Instant>,
    pub(super) refused: usize,
    pub(super) lost_connections: usize,
    pub(super) problems: Vec<String>,
}

impl Tally {
    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        }
    }
}

impl Shared {
    /// The start of a run of `plan` between the clients `ids`: every window open, nobody
    /// connected, nothing seen.
    pub(super) fn new(plan: &Plan, ids: Vec<UserId>) -> Shared {
        Shared {
            start: std::time::Instant::now(),
            ids,
            windows: (0..plan.n).map(|_| Semaphore::new(plan.window)).collect(),
            connected: (0..plan.n).map(|_| AtomicBool::new(false)).collect(),
            tally: Mutex::new(Tally {
                seen: vec![0; plan.total()],
                ..Tally::default()
            }),
            reconnects: AtomicUsize::new(0),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        // A panicking task cannot leave a tally half-updated in a way that matters here.
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn index(&self, user: &UserId) -> Option<usize> {
        self.ids.iter().position(|u| u == user)
    }
}

/// Reads the events of one online loop of client `me` until the loop ends.
pub(super) async fn consume(
    me: usize,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    mut events: mpsc::Receiver<ClientEvent>,
) {
    while let Some(event) = events.recv().await {
        match event {
            ClientEvent::Connected { .. } => {
                if let Some(c) = shared.connected.get(me) {
                    c.store(true, Ordering::SeqCst);
                }
            }
            ClientEvent::Disconnected { .. } => shared.lock().lost_connections += 1,
            ClientEvent::Message(msg) => received(me, &msg, &plan, &shared),
            ClientEvent::Delivered {
                id, complete: true, ..
            } => {
                shared.lock().receipts.insert(id);
            }
            ClientEvent::Refused(_) | ClientEvent::ContentRejected(_) => {
                shared.lock().refused += 1;
            }
            _ => {}
        }
    }
}

/// Counts a message client `me` received: the first copy gives a latency and frees a place in
/// its sender's window, another is a duplicate event, a text not meant for `me` a problem.
fn received(me: usize, msg: &ReceivedMessage, plan: &Plan, shared: &Shared) {
    let now = std::time::Instant::now();
    let from = shared.index(&msg.from);
    let mut tally = shared.lock();
    let Some((sender, seq, to, t_us)) = parse(&msg.text) else {
        tally.problem(format!("client {me} received a text not of the soak"));
        return;
    };
    if from != Some(sender)
        || to != me
        || seq >= plan.m
        || sender >= plan.n
        || plan.target(sender, seq) != me
    {
        tally.problem(format!(
            "client {me} received message {seq} of {sender} not meant for it"
        ));
        return;
    }
    let slot = plan.slot(sender, seq);
    let Some(count) = tally.seen.get_mut(slot) else {
        return;
    };
    *count = count.saturating_add(1);
    if *count == 1 {
        tally.distinct += 1;
        let sent = shared.start + Duration::from_micros(t_us);
        let latency = now.saturating_duration_since(sent);
        tally
            .latencies_us
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        tally.last_receive = Some(now);
        drop(tally);
        if let Some(w) = shared.windows.get(sender) {
            w.add_permits(1);
        }
    } else {
        tally.duplicate_events += 1;
    }
}
