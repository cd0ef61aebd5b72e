//! Receiving one envelope (RX-1..RX-10): open it with the core, commit it with its receipt, and
//! say whether the PUBLISH may be acknowledged.
//!
//! ```text
//!  envelope ──Device::receive(now)──┬─ Ok(incoming) ── receipt (+ group ack) sealed ──
//!                                   │                  commit_incoming(state, message, queue) ── ack
//!                                   ├─ duplicate ───── received_by_envelope ─> receipt again,
//!                                   │                  commit_device ─────────────────────────── ack
//!                                   ├─ retryable ───── park (RX-8) ──────────────────────────── ack
//!                                   └─ refused ─────── log the code, nothing changes ────────── ack
//! ```
//!
//! A store failure is the only outcome that does not acknowledge: the device is reloaded and the
//! broker delivers the envelope again after the reconnection (RX-4).

use sotto_core::error::SessionError;
use sotto_core::{Content, Event, MessageId, Outgoing};
use sotto_store::{ReceivedRef, ToSend};

use crate::account::Client;
use crate::error::Result;
use crate::events::{ClientEvent, ReceivedMessage, Refusal};

/// What became of an envelope. Every outcome but an `Err` lets the shell acknowledge it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Outcome {
    /// Opened and committed; `new_keys` if it may have made parked envelopes openable.
    Committed {
        /// A new session, epoch or group epoch.
        new_keys: bool,
    },
    /// A duplicate; its receipt was queued again if the store remembers it (RX-6).
    Duplicate,
    /// Kept for a retry (RX-8).
    Parked,
    /// Dropped without a state change.
    Refused,
}

/// Envelope types that can create keys for parked envelopes: first message, epoch start (ENV-1).
const TYPE_FIRST: u8 = 0x12;
const TYPE_EPOCH_START: u8 = 0x13;

impl Client {
    /// Opens and commits one envelope. `parked`: it comes from the parking table, so a retryable
    /// failure keeps it there instead of parking it again.
    pub(crate) fn handle_envelope(
        &mut self,
        bytes: &[u8],
        parked: bool,
        events: &mut Vec<ClientEvent>,
    ) -> Result<Outcome> {
        let now = self.now();
        let incoming = match self.device.receive(now, bytes) {
            Ok(incoming) => incoming,
            Err(e) if e == SessionError::Duplicate.into() => {
                // The core changed nothing; the store may know what the envelope was (RX-6).
                self.requeue_receipt(bytes)?;
                return Ok(Outcome::Duplicate);
            }
            Err(e) if e.is_retryable() => {
                if !parked {
                    self.store.park(bytes, now)?;
                    tracing::debug!(code = e.code(), "envelope parked for a retry (RX-8)");
                    events.push(ClientEvent::Parked);
                }
                return Ok(Outcome::Parked);
            }
            Err(e) => {
                tracing::info!(code = e.code(), fault = ?e.fault(), "envelope refused");
                events.push(if e == SessionError::IdentityChanged.into() {
                    ClientEvent::IdentityChangeRefused
                } else {
                    ClientEvent::Refused(Refusal { error: e })
                });
                return Ok(Outcome::Refused);
            }
        };

        // RX-5: a receipt for what wants one; GRP-9: a group ack for a new group epoch.
        let mut queue: Vec<(Outgoing, bool)> = Vec::new();
        if incoming.content.wants_receipt() {
            let r = ReceivedRef {
                id: incoming.id,
                from: incoming.from,
                group: incoming.group,
            };
            match self.seal_receipt(&r, now) {
                Ok(out) => queue.push((out, false)),
                Err(e) => tracing::warn!(error = %e, "no receipt could be sealed"),
            }
        }
        let mut new_keys = matches!(bytes.first(), Some(&TYPE_FIRST | &TYPE_EPOCH_START));
        for ev in &incoming.events {
            if let Event::GroupKey { group, .. } = ev {
                new_keys = true;
                match self.device.group_ack(&mut self.rng, now, group) {
                    Ok(out) => queue.push((out, false)),
                    Err(e) => tracing::debug!(code = e.code(), "no group ack"),
                }
            }
        }
        // Receipts: who was still waiting, to report deliveries precisely.
        let mut receipted: Vec<MessageId> = Vec::new();
        if let Content::Receipt(ids) = &incoming.content {
            for id in ids {
                if self.store.pending_recipients(id)?.contains(&incoming.from) {
                    receipted.push(*id);
                }
            }
        }
        let items: Vec<ToSend<'_>> = queue
            .iter()
            .map(|(o, until)| ToSend {
                outgoing: o,
                until_receipt: *until,
            })
            .collect();
        let committed = self
            .store
            .commit_incoming(&mut self.device, bytes, &incoming, now, &items);
        let fresh = match committed {
            Ok(fresh) => fresh,
            Err(e) => {
                self.reload()?;
                return Err(e.into());
            }
        };

        for id in receipted {
            let complete = self.store.pending_recipients(&id)?.is_empty();
            events.push(ClientEvent::Delivered {
                id,
                by: incoming.from,
                complete,
            });
        }
        for ev in &incoming.events {
            events.push(match ev {
                Event::NewContact(u) => ClientEvent::NewContact(*u),
                Event::GroupKey { group, epoch } => ClientEvent::GroupKey {
                    group: *group,
                    epoch: *epoch,
                },
                Event::RemovedFromGroup(g) => ClientEvent::RemovedFromGroup(*g),
                Event::MemberConfirmed {
                    group,
                    epoch,
                    index,
                } => ClientEvent::MemberConfirmed {
                    group: *group,
                    epoch: *epoch,
                    index: *index,
                },
                Event::Rejected(e) => {
                    tracing::info!(code = e.code(), "message content refused");
                    ClientEvent::ContentRejected(Refusal { error: *e })
                }
                _ => continue,
            });
        }
        if let (true, Content::Text(text)) = (fresh, &incoming.content) {
            events.push(ClientEvent::Message(ReceivedMessage {
                id: incoming.id,
                from: incoming.from,
                trust: incoming.trust,
                group: incoming.group,
                text: text.clone(),
                sent_at: incoming.sent_at,
                received_at: now,
            }));
        }
        Ok(Outcome::Committed { new_keys })
    }

    /// The receipt for a committed message: to the group for a group message (GRP-10), else to
    /// the sender (RX-5). The device state changes (a chain step); the caller commits it.
    fn seal_receipt(&mut self, r: &ReceivedRef, now: u64) -> Result<Outgoing> {
        let content = Content::Receipt(vec![r.id]);
        if let Some(g) = r.group {
            match self.device.send_group(now, &g, &content) {
                Ok(out) if !out.to.is_empty() => return Ok(out),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(code = e.code(), "group receipt failed, sending pairwise")
                }
            }
        }
        Ok(self.device.send(&mut self.rng, now, &r.from, &content)?)
    }

    /// RX-6: a resent envelope the store remembers is answered with its receipt again.
    fn requeue_receipt(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(r) = self.store.received_by_envelope(bytes)? else {
            tracing::debug!("duplicate without a remembered receipt, dropped");
            return Ok(());
        };
        let now = self.now();
        let out = match self.seal_receipt(&r, now) {
            Ok(out) => out,
            Err(e) => {
                self.reload()?;
                tracing::debug!(error = %e, "no receipt for a duplicate");
                return Ok(());
            }
        };
        if let Err(e) = self
            .store
            .commit_device(&mut self.device, now, &[ToSend::once(&out)])
        {
            self.reload()?;
            return Err(e.into());
        }
        tracing::debug!("duplicate answered with its receipt again (RX-6)");
        Ok(())
    }

    /// Retries every parked envelope until no more open (RX-8). Those that open, are duplicates
    /// or are refused for good leave the table.
    pub(crate) fn retry_parked(&mut self, events: &mut Vec<ClientEvent>) -> Result<()> {
        loop {
            let mut progress = false;
            for p in self.store.parked()? {
                match self.handle_envelope(&p.envelope, true, events)? {
                    Outcome::Parked => {}
                    Outcome::Committed { .. } => {
                        self.store.unpark(p.id)?;
                        progress = true;
                    }
                    Outcome::Duplicate | Outcome::Refused => {
                        self.store.unpark(p.id)?;
                    }
                }
            }
            if !progress {
                return Ok(());
            }
        }
    }
}
