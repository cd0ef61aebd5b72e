//! The commits (STORE-3): each protocol step's changed records (`Device::changes`) saved in one
//! transaction with what it produced: a received message and the receipt it owes (RX-4, RX-5), a sent message and its
//! outbox rows (RX-6), or control messages to resend until their receipt. On `Err` nothing
//! changed, and the shell reloads the device from the last commit (or commits again: the device
//! still reports every change since its last successful commit).

use rusqlite::{Transaction, TransactionBehavior, params};
use sotto_core::limits::MAX_ENVELOPE;
use sotto_core::{Content, Device, Incoming, MessageId, Outgoing, UserId};

use crate::error::{Result, StoreError};
use crate::messages::{Chat, MessageState};
use crate::outbox::ToSend;
use crate::rows::{ms, ms_clamped};
use crate::state::save_changes;
use crate::store::Store;

/// An envelope of a burst that opened, with what it said.
#[derive(Clone, Copy, Debug)]
pub struct Opened<'a> {
    /// The envelope's bytes (their hash answers a resend, RX-6).
    pub envelope: &'a [u8],
    /// What the core opened.
    pub incoming: &'a Incoming,
}

/// A burst of received envelopes to commit in one transaction ([`Store::commit_burst`]).
#[derive(Clone, Debug, Default)]
pub struct Burst<'a> {
    /// The envelopes that opened.
    pub opened: Vec<Opened<'a>>,
    /// Envelopes to park for a retry (RX-8; the oldest beyond LIM-12 are dropped).
    pub park: Vec<&'a [u8]>,
    /// Parked envelopes ([`crate::Parked::id`]) that are done: opened, duplicates or refused.
    pub unpark: Vec<i64>,
    /// What the burst owes (receipts, group acks), one outbox row per recipient.
    pub queue: Vec<ToSend<'a>>,
    /// Outbox rows the broker acknowledged since the last commit (PUBACK), marked in the same
    /// transaction ([`Store::mark_published_many`]).
    pub published: Vec<(MessageId, UserId)>,
    /// Messages sealed in the same step, saved as [`Store::commit_outgoing_many`] saves them.
    pub sent: Vec<(&'a Outgoing, &'a Content)>,
}

/// A message that was waiting for a recipient's receipt and got it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Delivery {
    /// The message.
    pub id: MessageId,
    /// The recipient whose receipt it was.
    pub by: UserId,
    /// No recipient is waited for any more.
    pub complete: bool,
}

/// What [`Store::commit_burst`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BurstCommitted {
    /// For each opened envelope, in order: whether its message was new.
    pub fresh: Vec<bool>,
    /// For each opened envelope, in order: the messages its receipt delivered (empty for
    /// anything but a receipt).
    pub delivered: Vec<Vec<Delivery>>,
}

impl Store {
    /// Commits a received message with the device state that opened it (RX-4), and queues
    /// `queue` (typically the receipt, RX-5) in the same transaction: a burst of one
    /// ([`Store::commit_burst`]). Returns whether the message was new (`false`: a message
    /// already committed, same sender and id; the state and `queue` are still saved).
    pub fn commit_incoming(
        &mut self,
        device: &mut Device,
        envelope: &[u8],
        incoming: &Incoming,
        received_at: u64,
        queue: &[ToSend<'_>],
    ) -> Result<bool> {
        let burst = Burst {
            opened: vec![Opened { envelope, incoming }],
            queue: queue.to_vec(),
            ..Burst::default()
        };
        let done = self.commit_burst(device, &burst, received_at)?;
        Ok(done.fresh.first().copied().unwrap_or(false))
    }

    /// Commits a burst of received envelopes in one transaction (RX-4): the device's changes,
    /// the PUBACKed outbox rows (RX-6), every opened message, the envelopes to park and unpark
    /// (RX-8), `queue` (the receipts and group acks the burst owes, RX-5, GRP-9), and the
    /// messages sealed in the same step with their outbox rows (`sent`, RX-6). The shell
    /// acknowledges the burst's PUBLISHes only after this returns `Ok`; on `Err` nothing was
    /// written.
    ///
    /// - Text is saved as a message; every receipted content also records the envelope's hash and
    ///   id, so that a resend of the same envelope is answered with the receipt again (RX-6, see
    ///   [`Store::received_by_envelope`]).
    /// - A receipt (kind 2) marks the messages it names delivered to the sender; each message that
    ///   was waiting for that sender's receipt is a [`Delivery`] in the result.
    /// - A message already committed (the same envelope, or an id the core reports as repeated,
    ///   [`Incoming::repeats_a_delivered_id`], RX-7) inserts nothing and is not `fresh`. The
    ///   device state and `queue` are still saved: the core consumed the message's keys (RX-3),
    ///   and a duplicate deserves its receipt again (RX-6).
    pub fn commit_burst(
        &mut self,
        device: &mut Device,
        burst: &Burst<'_>,
        received_at: u64,
    ) -> Result<BurstCommitted> {
        self.check_device(device)?;
        check_queue(&burst.queue)?;
        let now = ms(received_at)?;
        let backoff = self.backoff;
        #[cfg(test)]
        let fail_at = self.fail_at;
        self.commit_step(device, now, |tx| {
            #[cfg(test)]
            fault(fail_at, "incoming:after-device")?;
            let mut done = BurstCommitted::default();
            for o in &burst.opened {
                let mut delivered = Vec::new();
                done.fresh.push(save_incoming(tx, o, now, &mut delivered)?);
                done.delivered.push(delivered);
            }
            // After the receipts: a row a receipt of this burst deleted needs no mark (the same
            // end state as marking it first, without writing the row and its message twice).
            crate::outbox::mark_published_in(tx, &burst.published, received_at, backoff)?;
            if !burst.opened.is_empty() {
                crate::received::trim_in(tx)?;
            }
            crate::received::park_in(tx, &burst.park, now)?;
            crate::received::unpark_in(tx, &burst.unpark)?;
            #[cfg(test)]
            fault(fail_at, "incoming:before-queue")?;
            enqueue(tx, &burst.queue, now)?;
            save_outgoing(tx, &burst.sent, now)?;
            Ok(done)
        })
    }

    /// Commits a message being sent: the device state after `Device::send` (or `send_group`), the
    /// message (for text), and one outbox row per recipient (GRP-8), all in one transaction
    /// (STORE-3). The rows wait for a receipt if the content wants one (RX-5, RX-6).
    pub fn commit_outgoing(
        &mut self,
        device: &mut Device,
        out: &Outgoing,
        content: &Content,
        now: u64,
    ) -> Result<()> {
        self.commit_outgoing_many(device, &[(out, content)], now)
    }

    /// Commits a burst of messages being sent in one transaction: the device state after sealing
    /// all of them, each message (for text) and its outbox rows, as [`Store::commit_outgoing`]
    /// does for one. Every item is checked before anything is written.
    pub fn commit_outgoing_many(
        &mut self,
        device: &mut Device,
        items: &[(&Outgoing, &Content)],
        now: u64,
    ) -> Result<()> {
        self.check_device(device)?;
        let now = ms(now)?;
        self.commit_step(device, now, |tx| save_outgoing(tx, items, now))
    }

    /// Commits a state-only change (a contact added or verified, a group created or changed, a
    /// prekey rotated) with the envelopes it produced (group keys, removal notices, receipts).
    pub fn commit_device(
        &mut self,
        device: &mut Device,
        now: u64,
        queue: &[ToSend<'_>],
    ) -> Result<()> {
        self.check_device(device)?;
        check_queue(queue)?;
        let now = ms(now)?;
        self.commit_step(device, now, |tx| enqueue(tx, queue, now))
    }

    /// Commits `device` after [`Device::remove_contact`] of `user`, and forgets everything this
    /// store kept of that contact, in the same transaction: its row in `contacts` (its name), the
    /// conversation, and the outbox rows of that conversation's messages (they stop going out;
    /// group messages to them, if they share a group, still go).
    pub fn commit_contact_removal(
        &mut self,
        device: &mut Device,
        user: &UserId,
        now: u64,
    ) -> Result<()> {
        self.check_device(device)?;
        let now = ms(now)?;
        self.commit_step(device, now, |tx| {
            tx.execute("DELETE FROM contacts WHERE user_id = ?1", [&user.0[..]])?;
            tx.execute(
                "DELETE FROM outbox WHERE recipient = ?1 AND message_id IN
                     (SELECT message_id FROM messages
                      WHERE chat = ?1 AND is_group = 0 AND outgoing = 1)",
                [&user.0[..]],
            )?;
            tx.execute(
                "DELETE FROM messages WHERE chat = ?1 AND is_group = 0",
                [&user.0[..]],
            )?;
            Ok(())
        })
    }

    /// One transaction of a step (STORE-3): the records the device changed
    /// ([`Device::changes`]), then what `write` adds; the device's change marks are cleared only
    /// once the transaction committed ([`Device::mark_committed`]), so after an `Err` the next
    /// commit still carries every change.
    fn commit_step<T>(
        &mut self,
        device: &mut Device,
        now: i64,
        write: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        save_changes(&tx, device, &device.changes(), now)?;
        let done = write(&tx)?;
        tx.commit()?;
        device.mark_committed();
        Ok(done)
    }

    fn check_device(&self, device: &Device) -> Result<()> {
        if device.user_id() != self.user_id() {
            return Err(StoreError::WrongDevice);
        }
        Ok(())
    }
}

/// Saves one opened message of a burst (see [`Store::commit_burst`]); `true` if it was new.
fn save_incoming(
    tx: &Transaction<'_>,
    o: &Opened<'_>,
    now: i64,
    delivered: &mut Vec<Delivery>,
) -> Result<bool> {
    let incoming = o.incoming;
    let content = &incoming.content;
    if let Content::Receipt(ids) = content {
        for id in ids {
            if let Some(complete) = crate::outbox::apply_receipt(tx, id, &incoming.from)? {
                delivered.push(Delivery {
                    id: *id,
                    by: incoming.from,
                    complete,
                });
            }
        }
        return Ok(true);
    }
    // A repeated id (RX-7) is not saved again; an envelope is new once (its hash, RX-6).
    let mut fresh = !incoming.repeats_a_delivered_id();
    if fresh && content.wants_receipt() {
        let hash = sotto_core::crypto::sha256(&[o.envelope]);
        fresh =
            tx.prepare_cached(
                "INSERT OR IGNORE INTO received
                     (envelope_hash, message_id, sender, group_id, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                &hash[..],
                &incoming.id.0[..],
                &incoming.from.0[..],
                incoming.group.as_ref().map(|g| &g.0[..]),
                now
            ])? == 1;
    }
    if let (true, Content::Text(text)) = (fresh, content) {
        let chat = match incoming.group {
            Some(g) => Chat::Group(g),
            None => Chat::User(incoming.from),
        };
        tx.prepare_cached(
            "INSERT INTO messages (message_id, chat, is_group, sender,
                     outgoing, kind, body, sent_at, received_at, state)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            &incoming.id.0[..],
            chat.as_bytes(),
            chat.is_group(),
            &incoming.from.0[..],
            content.kind(),
            text,
            ms_clamped(incoming.sent_at),
            now,
            MessageState::Received.code()
        ])?;
    }
    Ok(fresh)
}

fn check_queue(queue: &[ToSend<'_>]) -> Result<()> {
    for item in queue {
        let n = item.outgoing.envelope.len();
        if n == 0 || n > MAX_ENVELOPE {
            return Err(StoreError::Invalid("envelope size out of range (LIM-1)"));
        }
    }
    Ok(())
}

/// Saves sealed messages in the transaction `tx`: each text as a message, and each envelope's
/// outbox rows, waiting for a receipt if the content wants one (RX-5, RX-6). Every item is
/// checked before anything is written.
fn save_outgoing(tx: &Transaction<'_>, items: &[(&Outgoing, &Content)], now: i64) -> Result<()> {
    let mut queue = Vec::with_capacity(items.len());
    let mut chats = Vec::with_capacity(items.len());
    for (out, content) in items {
        queue.push(ToSend {
            outgoing: out,
            until_receipt: content.wants_receipt(),
        });
        chats.push(match (out.group, out.to.first()) {
            (Some(g), _) => Chat::Group(g),
            (None, Some(u)) if out.to.len() == 1 => Chat::User(*u),
            (None, _) => {
                return Err(StoreError::Invalid(
                    "a pairwise message has exactly one recipient",
                ));
            }
        });
    }
    check_queue(&queue)?;
    for (((out, content), chat), item) in items.iter().zip(&chats).zip(&queue) {
        let mut message_row = None;
        if let Content::Text(text) = content {
            let state = if out.to.is_empty() {
                MessageState::Delivered
            } else {
                MessageState::Queued
            };
            tx.prepare_cached(
                "INSERT INTO messages (message_id, chat, is_group, sender, outgoing, kind,
                     body, sent_at, received_at, state)
                 VALUES (?1, ?2, ?3, NULL, 1, ?4, ?5, ?6, NULL, ?7)",
            )?
            .execute(params![
                &out.id.0[..],
                chat.as_bytes(),
                chat.is_group(),
                content.kind(),
                text,
                now,
                state.code()
            ])?;
            message_row = Some(tx.last_insert_rowid());
        }
        enqueue_one(tx, item, message_row, now)?;
    }
    Ok(())
}

/// Adds one outbox row per recipient of each item, due at once.
fn enqueue(tx: &Transaction<'_>, queue: &[ToSend<'_>], now: i64) -> Result<()> {
    for item in queue {
        enqueue_one(tx, item, None, now)?;
    }
    Ok(())
}

/// Queues one envelope, one outbox row per recipient; `message_row`: the row of the text it
/// carries in `messages`, which its PUBACK and receipt update.
fn enqueue_one(
    tx: &Transaction<'_>,
    item: &ToSend<'_>,
    message_row: Option<i64>,
    now: i64,
) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO outbox (message_id, recipient, envelope, until_receipt, attempts,
             next_attempt_at, created_at, message_row)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5, ?6)",
    )?;
    let out = item.outgoing;
    for to in &out.to {
        stmt.execute(params![
            &out.id.0[..],
            &to.0[..],
            &out.envelope[..],
            item.until_receipt,
            now,
            message_row
        ])?;
    }
    Ok(())
}

/// Test hook: fails at `here` when the test asked for it (`Store::fail_at`).
#[cfg(test)]
fn fault(fail_at: Option<&'static str>, here: &'static str) -> Result<()> {
    if fail_at == Some(here) {
        return Err(StoreError::Invalid("injected fault"));
    }
    Ok(())
}
