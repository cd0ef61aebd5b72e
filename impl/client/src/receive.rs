//! Receiving a burst of envelopes (RX-1..RX-10): the core says what becomes of each one and what
//! the burst owes ([`sotto_core::Inbound`]); this shell looks up what the store remembers of
//! duplicates, commits the whole burst in one transaction, and reports.
//!
//! ```text
//!  envelopes ──Device::receive_into──┬─ Opened ──── message ─────────┐
//!                                    ├─ Duplicate ─ store remembers? ─> receipt again (RX-6)
//!                                    ├─ Park ────── parked (RX-8) ────┤
//!                                    ├─ Hold ────── parked until the person decides (RX-9)
//!                                    └─ Refused ─── logged ───────────┤
//!  Inbound::finish: receipts coalesced per sender/group, group acks ─┴─ commit_burst ── ack all
//! ```
//!
//! A store failure is the only outcome that does not acknowledge: the device is reloaded and the
//! broker delivers the envelopes again after the reconnection (RX-4).

use sotto_core::error::SessionError;
use sotto_core::{Event, Inbound, Incoming, MessageId, Verdict};
use sotto_store::{Burst, Chat, Delivery, Opened, ToSend};

use crate::account::Client;
use crate::error::Result;
use crate::events::{ClientEvent, ReceivedMessage, Refusal};
use crate::online::RowKey;

/// What became of a burst. Every outcome but an `Err` lets the shell acknowledge all of it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct BurstOutcome {
    /// Envelopes that opened and were committed.
    pub(crate) opened: usize,
    /// Whether one of them brought keys that may open parked envelopes (RX-8).
    pub(crate) new_keys: bool,
}

impl Client {
    /// Opens and commits a burst of envelopes from the inbox in one transaction, with the outbox
    /// rows the broker acknowledged meanwhile (`published`, RX-6) and the texts the app sent
    /// meanwhile (`texts`, sealed first, as [`Client::send_many`] does; each gets its result).
    pub(crate) fn handle_burst(
        &mut self,
        envelopes: &[&[u8]],
        published: Vec<RowKey>,
        texts: &[(Chat, String)],
        events: &mut Vec<ClientEvent>,
    ) -> Result<(BurstOutcome, Vec<Result<MessageId>>)> {
        let items: Vec<(&[u8], Option<i64>)> = envelopes.iter().map(|e| (*e, None)).collect();
        self.open_burst(&items, published, texts, events)
    }

    /// Opens `items` (envelope, parked id if it comes from the parking table) and commits them
    /// with the PUBACK marks `published` and the texts `texts`, sealed before the envelopes open.
    fn open_burst(
        &mut self,
        items: &[(&[u8], Option<i64>)],
        published: Vec<RowKey>,
        texts: &[(Chat, String)],
        events: &mut Vec<ClientEvent>,
    ) -> Result<(BurstOutcome, Vec<Result<MessageId>>)> {
        let now = self.now();
        let (sent, sealed) = self.seal_texts(texts, now);
        let mut burst = Inbound::new(now);
        let verdicts: Vec<Verdict> = items
            .iter()
            .map(|(bytes, _)| self.device.receive_into(&mut burst, bytes))
            .collect();
        // RX-6: a resent envelope the store remembers is answered with its receipt again.
        for ((bytes, _), v) in items.iter().zip(&verdicts) {
            if let Verdict::Duplicate = v {
                match self.store.received_by_envelope(bytes) {
                    Ok(Some(r)) => burst.receipt_again(r.id, r.from, r.group),
                    Ok(None) => tracing::debug!("duplicate without a remembered receipt, dropped"),
                    Err(e) => {
                        self.reload()?;
                        return Err(e.into());
                    }
                }
            }
        }
        let new_keys = burst.new_keys();
        let now = burst.now();
        let reply = burst.finish(&mut self.device, &mut self.rng);
        for e in &reply.failed {
            tracing::warn!(
                code = e.code(),
                "a receipt or group ack could not be sealed"
            );
        }

        let mut commit = Burst {
            queue: reply
                .owed
                .iter()
                .map(ToSend::once)
                .chain(reply.group_changes.iter().map(ToSend::until_receipt))
                .collect(),
            published,
            sent: sealed.iter().map(|(o, c)| (o, c)).collect(),
            ..Burst::default()
        };
        for ((bytes, parked), v) in items.iter().zip(&verdicts) {
            match (v, parked) {
                (Verdict::Opened(incoming), _) => commit.opened.push(Opened {
                    envelope: bytes,
                    incoming,
                }),
                // Parked (or held for the person, RX-9) already: it stays where it is.
                (Verdict::Park(_) | Verdict::Hold(_), Some(_)) => {}
                (Verdict::Park(_) | Verdict::Hold(_), None) => commit.park.push(bytes),
                (Verdict::Duplicate | Verdict::Refused(_), _) => {}
            }
            // A parked envelope that opened, was a duplicate or was refused for good is done.
            if let (false, Some(id)) = (matches!(v, Verdict::Park(_) | Verdict::Hold(_)), parked) {
                commit.unpark.push(*id);
            }
        }
        let opened = commit.opened.len();
        let done = match self.store.commit_burst(&mut self.device, &commit, now) {
            Ok(done) => done,
            Err(e) => {
                self.reload()?;
                return Err(e.into());
            }
        };

        let mut fresh = done.fresh.iter();
        let mut delivered = done.delivered.iter();
        for ((_, parked), v) in items.iter().zip(&verdicts) {
            match v {
                Verdict::Opened(incoming) => {
                    let is_new = fresh.next().copied().unwrap_or(false);
                    let by_this = delivered.next().map(Vec::as_slice).unwrap_or(&[]);
                    report_opened(incoming, is_new, by_this, now, events);
                }
                Verdict::Park(e) => {
                    if parked.is_none() {
                        tracing::debug!(code = e.code(), "envelope parked for a retry (RX-8)");
                        events.push(ClientEvent::Parked);
                    }
                }
                Verdict::Refused(e) => {
                    tracing::info!(code = e.code(), fault = ?e.fault(), "envelope refused");
                    if *e == SessionError::ReplayCacheFull.into() {
                        // X3DH-8: a device that sees this rotates its signed prekey.
                        self.replay_cache_full = true;
                    }
                    events.push(ClientEvent::Refused(Refusal { error: *e }));
                }
                Verdict::Hold(claim) => {
                    if parked.is_none() {
                        tracing::info!("a first message claims another identity: held (RX-9)");
                        events.push(ClientEvent::IdentityChanged {
                            contact: claim.user,
                            was_verified: claim.known_trust == sotto_core::Trust::Verified,
                        });
                    }
                }
                Verdict::Duplicate => {}
            }
        }
        for (group, epoch) in &reply.took_over {
            tracing::info!("took over a group as its admin (GRP-12)");
            events.push(ClientEvent::TookOverGroup {
                group: *group,
                epoch: *epoch,
            });
        }
        Ok((BurstOutcome { opened, new_keys }, sent))
    }

    /// Retries every parked envelope until no more open (RX-8). Those that open, are duplicates
    /// or are refused for good leave the table.
    pub(crate) fn retry_parked(&mut self, events: &mut Vec<ClientEvent>) -> Result<()> {
        loop {
            let parked = self.store.parked()?;
            if parked.is_empty() {
                return Ok(());
            }
            let items: Vec<(&[u8], Option<i64>)> = parked
                .iter()
                .map(|p| (&p.envelope[..], Some(p.id)))
                .collect();
            if self.open_burst(&items, Vec::new(), &[], events)?.0.opened == 0 {
                return Ok(());
            }
        }
    }
}

/// The events of one committed message: deliveries its receipt completed, what the core noticed,
/// and the message itself if it was new.
fn report_opened(
    incoming: &Incoming,
    fresh: bool,
    delivered: &[Delivery],
    now: u64,
    events: &mut Vec<ClientEvent>,
) {
    for d in delivered {
        events.push(ClientEvent::Delivered {
            id: d.id,
            by: d.by,
            complete: d.complete,
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
            Event::MemberLeft { group, user } => ClientEvent::MemberLeft {
                group: *group,
                user: *user,
            },
            Event::HandoverReceived { group, epoch } => ClientEvent::HandoverReceived {
                group: *group,
                epoch: *epoch,
            },
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
    if let (true, sotto_core::Content::Text(text)) = (fresh, &incoming.content) {
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
}
