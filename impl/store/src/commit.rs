//! The commits (STORE-3): each protocol step's changed records (`Device::changes`) saved in one
//! transaction with what it produced: a received message and the receipt it owes (RX-4, RX-5), a sent message and its
//! outbox rows (RX-6), or control messages to resend until their receipt. On `Err` nothing
//! changed, and the shell reloads the device from the last commit (or commits again: the device
//! still reports every change since its last successful commit).

use rusqlite::{Transaction, TransactionBehavior, params};
use sotto_core::limits::{MAX_DELIVERED_IDS, MAX_ENVELOPE};
use sotto_core::{Content, Device, Incoming, Outgoing};

use crate::error::{Result, StoreError};
use crate::messages::{Chat, MessageState};
use crate::outbox::ToSend;
use crate::rows::{ms, ms_clamped};
use crate::state::save_changes;
use crate::store::Store;

impl Store {
    /// Commits a received message with the device state that opened it (RX-4), and queues
    /// `queue` (typically the receipt, RX-5) in the same transaction. The shell acknowledges the
    /// PUBLISH only after this returns `Ok`.
    ///
    /// - Text is saved as a message; every receipted content also records the envelope's hash and
    ///   id, so that a resend of the same envelope is answered with the receipt again (RX-6, see
    ///   [`Store::received_by_envelope`]).
    /// - A receipt (kind 2) marks the messages it names delivered to the sender
    ///   ([`Store::mark_delivered`]).
    /// - A message already committed (same sender and id) inserts nothing and returns `Ok(false)`.
    ///   The device state and `queue` are still saved: the core consumed the message's keys
    ///   (RX-3), and a duplicate deserves its receipt again (RX-6).
    pub fn commit_incoming(
        &mut self,
        device: &mut Device,
        envelope: &[u8],
        incoming: &Incoming,
        received_at: u64,
        queue: &[ToSend<'_>],
    ) -> Result<bool> {
        self.check_device(device)?;
        check_queue(queue)?;
        let now = ms(received_at)?;
        let hash = sotto_core::crypto::sha256(&[envelope]);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changes = device.changes();
        save_changes(&tx, device, &changes, now)?;
        #[cfg(test)]
        fault(self.fail_at, "incoming:after-device")?;
        let fresh = match &incoming.content {
            Content::Receipt(ids) => {
                for id in ids {
                    crate::outbox::apply_receipt(&tx, id, &incoming.from)?;
                }
                true
            }
            content => {
                let mut fresh = true;
                if content.wants_receipt() {
                    fresh = tx.execute(
                        "INSERT OR IGNORE INTO received
                             (envelope_hash, message_id, sender, group_id, received_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            &hash[..],
                            &incoming.id.0[..],
                            &incoming.from.0[..],
                            incoming.group.as_ref().map(|g| &g.0[..]),
                            now
                        ],
                    )? == 1;
                    tx.execute(
                        "DELETE FROM received WHERE rowid <= (SELECT max(rowid) FROM received) - ?1",
                        [MAX_DELIVERED_IDS as i64],
                    )?;
                }
                if let (true, Content::Text(text)) = (fresh, content) {
                    let chat = match incoming.group {
                        Some(g) => Chat::Group(g),
                        None => Chat::User(incoming.from),
                    };
                    fresh = tx.execute(
                        "INSERT OR IGNORE INTO messages (message_id, chat, is_group, sender,
                             outgoing, kind, body, sent_at, received_at, state)
                         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8, ?9)",
                        params![
                            &incoming.id.0[..],
                            chat.as_bytes(),
                            chat.is_group(),
                            &incoming.from.0[..],
                            content.kind(),
                            text,
                            ms_clamped(incoming.sent_at),
                            now,
                            MessageState::Received.code()
                        ],
                    )? == 1;
                }
                fresh
            }
        };
        #[cfg(test)]
        fault(self.fail_at, "incoming:before-queue")?;
        enqueue(&tx, queue, now)?;
        tx.commit()?;
        device.mark_committed();
        Ok(fresh)
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
        self.check_device(device)?;
        let item = ToSend {
            outgoing: out,
            until_receipt: content.wants_receipt(),
        };
        check_queue(&[item])?;
        let chat = match (out.group, out.to.first()) {
            (Some(g), _) => Chat::Group(g),
            (None, Some(u)) if out.to.len() == 1 => Chat::User(*u),
            (None, _) => {
                return Err(StoreError::Invalid(
                    "a pairwise message has exactly one recipient",
                ));
            }
        };
        let now = ms(now)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changes = device.changes();
        save_changes(&tx, device, &changes, now)?;
        if let Content::Text(text) = content {
            let state = if out.to.is_empty() {
                MessageState::Delivered
            } else {
                MessageState::Queued
            };
            tx.execute(
                "INSERT INTO messages (message_id, chat, is_group, sender, outgoing, kind, body,
                     sent_at, received_at, state)
                 VALUES (?1, ?2, ?3, NULL, 1, ?4, ?5, ?6, NULL, ?7)",
                params![
                    &out.id.0[..],
                    chat.as_bytes(),
                    chat.is_group(),
                    content.kind(),
                    text,
                    now,
                    state.code()
                ],
            )?;
        }
        enqueue(&tx, &[item], now)?;
        tx.commit()?;
        device.mark_committed();
        Ok(())
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
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changes = device.changes();
        save_changes(&tx, device, &changes, now)?;
        enqueue(&tx, queue, now)?;
        tx.commit()?;
        device.mark_committed();
        Ok(())
    }

    fn check_device(&self, device: &Device) -> Result<()> {
        if device.user_id() != self.user_id() {
            return Err(StoreError::WrongDevice);
        }
        Ok(())
    }
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

/// Adds one outbox row per recipient of each item, due at once.
fn enqueue(tx: &Transaction<'_>, queue: &[ToSend<'_>], now: i64) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO outbox (message_id, recipient, envelope, until_receipt, attempts,
             next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
    )?;
    for item in queue {
        let out = item.outgoing;
        for to in &out.to {
            stmt.execute(params![
                &out.id.0[..],
                &to.0[..],
                &out.envelope[..],
                item.until_receipt,
                now
            ])?;
        }
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
