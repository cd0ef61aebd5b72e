//! Accounts that are gone: deleted by their owner (`POST /v1/account/delete`) or expired
//! ([`crate::membership::directory::ACCOUNT_GRACE_DAYS`] after a certificate not renewed). The MQTT
//! front refuses a PUBLISH to such an inbox with a refusal notice of reason 2 (BROKER-5,
//! `RefusalReason::NoSuchRecipient`), closes the departed user's live connections, and gives no
//! session back to it after a broker restart.
//!
//! ```text
//!  delete ── Store::delete_account: rows gone, serial into `revoked`, id into `departed`
//!        │                                                    (one transaction)
//!        ├─ Revocations::revoke(serial)           the front refuses its certificate
//!        └─ Departures::depart(user id)
//!              ├─ the set           front: PUBLISH to i/<id> -> notice reason 2 + PUBACK
//!              ├─ broadcast         front: that user's relayed connections close
//!              └─ the broker's purge (set by the message service): the embedded engine forgets
//!                 the session and queue; Mosquitto's is discarded by a clean-session CONNECT
//! ```
//!
//! The set lives in memory, shared by the front and the membership service of one
//! [`crate::Service`], like [`crate::revocation::Revocations`]; the membership service loads it
//! from its database (`departed`) at start. It holds user ids only (random, ID-1), never a
//! certificate, key, address or time.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::broadcast;

/// How long [`Departures::depart`] waits for the broker to drop the inbox.
pub const PURGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Departure events buffered per listener (a listener that lags re-reads the set).
const EVENTS: usize = 64;

/// What drops a departed user's session and queue from the broker (set by the message service
/// for its current broker, again after each restart).
pub type Purge = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

struct Inner {
    ids: RwLock<HashSet<String>>,
    events: broadcast::Sender<String>,
    purge: RwLock<Option<Purge>>,
}

/// The departed user ids, as text (cheap to clone: one shared set).
#[derive(Clone)]
pub struct Departures(Arc<Inner>);

impl std::fmt::Debug for Departures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Departures")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for Departures {
    fn default() -> Self {
        let (events, _) = broadcast::channel(EVENTS);
        Departures(Arc::new(Inner {
            ids: RwLock::new(HashSet::new()),
            events,
            purge: RwLock::new(None),
        }))
    }
}

impl Departures {
    /// An empty set.
    pub fn new() -> Departures {
        Departures::default()
    }

    /// Whether `user` (a user id as text) departed. A poisoned lock counts as not departed: the
    /// front then relays as it did before the account was deleted (the certificate revocation
    /// still refuses the departed device itself).
    pub fn is_departed(&self, user: &str) -> bool {
        self.0.ids.read().is_ok_and(|set| set.contains(user))
    }

    /// Adds `users` (what the database holds at start, or the accounts an expiry sweep deleted).
    pub fn extend(&self, users: impl IntoIterator<Item = String>) {
        if let Ok(mut set) = self.0.ids.write() {
            set.extend(users);
        }
    }

    /// `user` departed just now: from here the front refuses PUBLISHes to it, its relayed
    /// connections close, and the broker drops its session and queue (waited for, at most
    /// [`PURGE_TIMEOUT`]).
    pub async fn depart(&self, user: &str) {
        self.extend([user.to_owned()]);
        // No listener (no front running) is fine.
        let _ = self.0.events.send(user.to_owned());
        let purge = self.0.purge.read().ok().and_then(|p| p.clone());
        if let Some(purge) = purge {
            if tokio::time::timeout(PURGE_TIMEOUT, purge(user.to_owned()))
                .await
                .is_err()
            {
                tracing::warn!("the broker did not drop a departed inbox in time");
            }
        }
    }

    /// Departure events from now on (the user id of each).
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.0.events.subscribe()
    }

    /// Sets (or clears) what drops a departed inbox from the broker.
    pub fn set_purge(&self, purge: Option<Purge>) {
        if let Ok(mut slot) = self.0.purge.write() {
            *slot = purge;
        }
    }

    /// Departed ids held.
    pub fn len(&self) -> usize {
        self.0.ids.read().map_or(0, |set| set.len())
    }

    /// Whether none departed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Resolves once `user` departs: a departure event names it, or the receiver lagged (or the
/// sender went) and the set holds it. Pending forever otherwise.
pub async fn departed(rx: &mut broadcast::Receiver<String>, departures: &Departures, user: &str) {
    loop {
        match rx.recv().await {
            Ok(id) if id == user => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                if departures.is_departed(user) {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => {
                if departures.is_departed(user) {
                    return;
                }
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_departure_is_shared_announced_and_purged() {
        let d = Departures::new();
        let view = d.clone();
        let purged = Arc::new(AtomicUsize::new(0));
        let count = purged.clone();
        d.set_purge(Some(Arc::new(move |_user| {
            let count = count.clone();
            Box::pin(async move {
                count.fetch_add(1, Ordering::SeqCst);
            })
        })));
        let mut rx = view.subscribe();
        assert!(!view.is_departed("aaaa"));
        d.depart("aaaa").await;
        assert!(view.is_departed("aaaa") && !view.is_departed("bbbb"));
        assert_eq!(purged.load(Ordering::SeqCst), 1);
        tokio::time::timeout(Duration::from_secs(5), departed(&mut rx, &view, "aaaa"))
            .await
            .expect("the event names the departed user");
        d.extend(["cccc".to_owned()]);
        assert_eq!(view.len(), 2);
    }
}
