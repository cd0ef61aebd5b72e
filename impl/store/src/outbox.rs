//! The outbox (RX-6): every sealed envelope waits here, one row per recipient (GRP-8), until a
//! receipt names its id; the shell publishes the rows that are due and resends the identical bytes
//! with backoff. Receipts and acks (not receipted, RX-5) leave after their first publish.
//!
//! ```text
//!   commit_* ──> row (attempts 0, due now) ──due_outbox(now)──> shell publishes
//!                   │  mark_published: attempts+1, due now+backoff     │ broker unreachable:
//!                   │                  (a receipt-less row is deleted) │ bump_attempt
//!                   │                                                  │ refused (BROKER-5):
//!                   │                                                  │ hold (reason kept)
//!                   │                                                  │ refused for good:
//!                   │                                                  │ give_up (never due)
//!                   └── mark_delivered (receipt from that recipient): row deleted
//! ```

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use sotto_core::{MessageId, Outgoing, UserId};

pub use crate::backoff::Backoff;
use crate::error::{Result, StoreError};
use crate::messages::MessageState;
use crate::rows::{from_ms, message_id_from, ms, ms_clamped, user_from};
use crate::store::Store;

/// An envelope to queue with a commit: one outbox row per recipient.
#[derive(Clone, Copy, Debug)]
pub struct ToSend<'a> {
    /// What the core produced.
    pub outgoing: &'a Outgoing,
    /// Resend until a receipt names its id (RX-6); `false` for receipts and group acks, which are
    /// published once (RX-5).
    pub until_receipt: bool,
}

impl<'a> ToSend<'a> {
    /// A message that is resent until its receipt arrives.
    pub fn until_receipt(outgoing: &'a Outgoing) -> Self {
        ToSend {
            outgoing,
            until_receipt: true,
        }
    }

    /// A receipt or ack: published once, never resent (RX-5).
    pub fn once(outgoing: &'a Outgoing) -> Self {
        ToSend {
            outgoing,
            until_receipt: false,
        }
    }

    /// Chosen by the content that was sealed (`Content::wants_receipt`).
    pub fn for_content(outgoing: &'a Outgoing, content: &sotto_core::Content) -> Self {
        ToSend {
            outgoing,
            until_receipt: content.wants_receipt(),
        }
    }
}

/// One outbox row: an envelope for one recipient.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OutboxEntry {
    /// The message id a receipt will name.
    pub message_id: MessageId,
    /// The recipient (publish to its inbox, ID-5).
    pub recipient: UserId,
    /// The envelope, identical at every attempt (RX-6).
    pub envelope: Vec<u8>,
    /// Whether the row stays until a receipt.
    pub until_receipt: bool,
    /// Publish attempts so far.
    pub attempts: u32,
    /// When it is due, ms.
    pub next_attempt_at: u64,
    /// When it was queued, ms.
    pub created_at: u64,
    /// Why it waits: 0 = nothing known, else the reason code of the service's last refusal of it
    /// (`sotto_wire::notice::RefusalReason`; 1 = the recipient's inbox is full).
    pub held: u8,
}

/// The due time of a row the service refused for good ([`Store::give_up`]): it is never due
/// again (the largest time SQLite's integers hold).
pub const NEVER_DUE: u64 = i64::MAX as u64;

/// What [`Store::hold`] did with a refused row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// The envelope never reached the broker: the row waits and says why until a publish is
    /// accepted. Due again at `due` (ms).
    Held {
        /// When the row is due again, ms.
        due: u64,
    },
    /// A resend of an envelope the broker already holds was refused: nothing is lost, the row
    /// waits for its receipt as before. Due again at `due` (ms).
    Resend {
        /// When the row is due again, ms.
        due: u64,
    },
}

/// A receipt from `from` names `id`: its row leaves the outbox; when no recipient is left waiting,
/// the message is delivered. Returns `None` if no row matched (a repeated or unexpected receipt
/// does nothing), else whether the message is now delivered to everyone.
pub(crate) fn apply_receipt(
    conn: &Connection,
    id: &MessageId,
    from: &UserId,
) -> Result<Option<bool>> {
    let deleted: Option<Option<i64>> = conn
        .prepare_cached(
            "DELETE FROM outbox WHERE message_id = ?1 AND recipient = ?2 AND until_receipt = 1
             RETURNING message_row",
        )?
        .query_row(params![&id.0[..], &from.0[..]], |r| r.get(0))
        .optional()?;
    let Some(message_row) = deleted else {
        return Ok(None);
    };
    let waiting: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE message_id = ?1 AND until_receipt = 1)",
        )?
        .query_row([&id.0[..]], |r| r.get(0))?;
    if let (false, Some(row)) = (waiting, message_row) {
        conn.prepare_cached("UPDATE messages SET state = ?2 WHERE id = ?1 AND state < ?2")?
            .execute(params![row, MessageState::Delivered.code()])?;
    }
    Ok(Some(!waiting))
}

/// [`Store::mark_published_many`] in the transaction `tx` (also part of a burst's commit,
/// [`crate::Burst::published`]). Returns how many rows matched.
pub(crate) fn mark_published_in(
    tx: &Transaction<'_>,
    rows: &[(MessageId, UserId)],
    now: u64,
    backoff: Backoff,
) -> Result<usize> {
    ms(now)?;
    let mut matched = 0;
    for (id, to) in rows {
        let row: Option<(bool, i64, Option<i64>)> = tx
            .prepare_cached(
                "SELECT until_receipt, attempts, message_row FROM outbox
                 WHERE message_id = ?1 AND recipient = ?2",
            )?
            .query_row(params![&id.0[..], &to.0[..]], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((until_receipt, attempts, message_row)) = row else {
            continue;
        };
        matched += 1;
        if until_receipt {
            let attempts = next_attempts(attempts)?;
            tx.prepare_cached(
                "UPDATE outbox SET attempts = ?3, next_attempt_at = ?4, held = 0, published = 1
                 WHERE message_id = ?1 AND recipient = ?2",
            )?
            .execute(params![
                &id.0[..],
                &to.0[..],
                attempts,
                ms_clamped(now.saturating_add(backoff.delay(attempts)))
            ])?;
            if let Some(message_row) = message_row {
                tx.prepare_cached(
                    "UPDATE messages SET state = ?2
                     WHERE id = ?4 AND state = ?3
                       AND NOT EXISTS (SELECT 1 FROM outbox WHERE message_id = ?1 AND attempts = 0)",
                )?
                .execute(params![
                    &id.0[..],
                    MessageState::Sent.code(),
                    MessageState::Queued.code(),
                    message_row
                ])?;
            }
        } else {
            tx.prepare_cached("DELETE FROM outbox WHERE message_id = ?1 AND recipient = ?2")?
                .execute(params![&id.0[..], &to.0[..]])?;
        }
    }
    Ok(matched)
}

/// The rows due at `?1` (ms): the longest-waiting first, then in queue order (the caller takes
/// as many as it needs).
// No `LIMIT ?`: SQLite prepares a statement again whenever the value bound to a LIMIT changes
// (its ORDER BY ... LIMIT plan depends on it), so the caller's limit is applied while reading
// the rows in index order instead.
const DUE: &str = "FROM outbox WHERE next_attempt_at <= ?1 ORDER BY next_attempt_at, id";

type RawEntry = (Vec<u8>, Vec<u8>, Vec<u8>, bool, i64, i64, i64, i64);

/// The columns of [`RawEntry`], in order.
const ENTRY_COLUMNS: &str =
    "message_id, recipient, envelope, until_receipt, attempts, next_attempt_at, created_at, held";

fn raw_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawEntry> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn check_entry(raw: RawEntry) -> Result<OutboxEntry> {
    let (id, to, envelope, until_receipt, attempts, next, created, held) = raw;
    Ok(OutboxEntry {
        message_id: message_id_from(&id)?,
        recipient: user_from(&to)?,
        envelope,
        until_receipt,
        attempts: u32::try_from(attempts).map_err(|_| StoreError::Corrupt("attempts"))?,
        next_attempt_at: from_ms(next)?,
        created_at: from_ms(created)?,
        held: u8::try_from(held).map_err(|_| StoreError::Corrupt("held reason"))?,
    })
}

impl Store {
    /// Rows due at `now` (at most `limit`), the longest-waiting first, then in queue order.
    pub fn due_outbox(&self, now: u64, limit: usize) -> Result<Vec<OutboxEntry>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {ENTRY_COLUMNS} {DUE}"))?;
        let raws = stmt
            .query_map([ms_clamped(now)], raw_entry)?
            .take(limit)
            .collect::<rusqlite::Result<Vec<RawEntry>>>()?;
        raws.into_iter().map(check_entry).collect()
    }

    /// The keys (message id, recipient) of the rows [`Store::due_outbox`] would return, without
    /// their envelopes: what a shell with publishes in flight reads on each turn, to fetch only
    /// the rows it publishes ([`Store::outbox_entry`]).
    pub fn due_outbox_keys(&self, now: u64, limit: usize) -> Result<Vec<(MessageId, UserId)>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT message_id, recipient {DUE}"))?;
        let raws = stmt
            .query_map([ms_clamped(now)], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?
            .take(limit)
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter()
            .map(|(id, to)| Ok((message_id_from(&id)?, user_from(&to)?)))
            .collect()
    }

    /// The outbox row of `id` for `to`, if it is there.
    pub fn outbox_entry(&self, id: &MessageId, to: &UserId) -> Result<Option<OutboxEntry>> {
        let raw = self
            .conn
            .prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM outbox WHERE message_id = ?1 AND recipient = ?2"
            ))?
            .query_row(params![&id.0[..], &to.0[..]], raw_entry)
            .optional()?;
        raw.map(check_entry).transpose()
    }

    /// Rows the service refused at their last publish (BROKER-5), oldest first: what waits, and
    /// why ([`OutboxEntry::held`]).
    pub fn held_outbox(&self) -> Result<Vec<OutboxEntry>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} FROM outbox WHERE held != 0 ORDER BY id"
        ))?;
        let raws = stmt
            .query_map([], raw_entry)?
            .collect::<rusqlite::Result<Vec<RawEntry>>>()?;
        raws.into_iter().map(check_entry).collect()
    }

    /// When the next row falls due (for the shell's timer); `None` if the outbox is empty (or
    /// holds only rows given up, [`Store::give_up`]).
    pub fn next_attempt_at(&self) -> Result<Option<u64>> {
        let next: Option<i64> = self.conn.query_row(
            "SELECT min(next_attempt_at) FROM outbox WHERE next_attempt_at < ?1",
            [ms_clamped(NEVER_DUE)],
            |r| r.get(0),
        )?;
        next.map(from_ms).transpose()
    }

    /// Rows in the outbox.
    pub fn outbox_len(&self) -> Result<usize> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?;
        usize::try_from(n).map_err(|_| StoreError::Corrupt("row count"))
    }

    /// The broker accepted the envelope for `to` (PUBACK). A receipt or ack leaves the outbox; a
    /// message waits `backoff.delay(attempts)` for its receipt before it is due again, and is
    /// `Sent` once no recipient still waits for a first publish. Returns whether a row matched (a
    /// receipt may have been faster).
    pub fn mark_published(&mut self, id: &MessageId, to: &UserId, now: u64) -> Result<bool> {
        Ok(self.mark_published_many(&[(*id, *to)], now)? == 1)
    }

    /// [`Store::mark_published`] for a burst of PUBACKs, in one transaction. Returns how many
    /// rows matched.
    pub fn mark_published_many(&mut self, rows: &[(MessageId, UserId)], now: u64) -> Result<usize> {
        let backoff = self.backoff;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let matched = mark_published_in(&tx, rows, now, backoff)?;
        tx.commit()?;
        Ok(matched)
    }

    /// A publish failed (no connection, no PUBACK): counts the attempt and makes the row due again
    /// after the backoff. Returns the new due time, or `None` if no row matched.
    pub fn bump_attempt(&mut self, id: &MessageId, to: &UserId, now: u64) -> Result<Option<u64>> {
        Ok(self.push_back(id, to, now, None)?.map(|(due, _)| due))
    }

    /// The service refused the publish with reason code `reason` (BROKER-5, a refusal notice;
    /// not 0): the row stays, counts the attempt and is due again after the backoff. If the
    /// broker never accepted this envelope, the row keeps the reason until a publish is accepted
    /// ([`Hold::Held`]); a refused resend of an envelope already at the broker only waits on
    /// ([`Hold::Resend`]). `None` if no row matched.
    pub fn hold(
        &mut self,
        id: &MessageId,
        to: &UserId,
        reason: u8,
        now: u64,
    ) -> Result<Option<Hold>> {
        Ok(self
            .push_back(id, to, now, Some(reason))?
            .map(|(due, published)| {
                if published {
                    Hold::Resend { due }
                } else {
                    Hold::Held { due }
                }
            }))
    }

    /// Counts an attempt and makes the row due after the backoff; records `held` as the reason
    /// unless the broker already accepted the envelope. Returns the due time and whether it had
    /// been accepted, or `None` if no row matched.
    fn push_back(
        &mut self,
        id: &MessageId,
        to: &UserId,
        now: u64,
        held: Option<u8>,
    ) -> Result<Option<(u64, bool)>> {
        ms(now)?;
        let backoff = self.backoff;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row: Option<(i64, bool)> = tx
            .query_row(
                "SELECT attempts, published FROM outbox WHERE message_id = ?1 AND recipient = ?2",
                params![&id.0[..], &to.0[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((attempts, published)) = row else {
            return Ok(None);
        };
        let held = held.filter(|_| !published);
        let attempts = next_attempts(attempts)?;
        let due = ms_clamped(now.saturating_add(backoff.delay(attempts)));
        tx.execute(
            "UPDATE outbox SET attempts = ?3, next_attempt_at = ?4, held = coalesce(?5, held)
             WHERE message_id = ?1 AND recipient = ?2",
            params![&id.0[..], &to.0[..], attempts, due, held],
        )?;
        tx.commit()?;
        Ok(Some((from_ms(due)?, published)))
    }

    /// The service refused the publish with a permanent reason `reason` (BROKER-5; e.g. 2, the
    /// recipient deleted their account): trying again cannot help. A receipt or ack leaves the
    /// outbox; a message's row stays, keeps the reason and is never due again ([`NEVER_DUE`]),
    /// so that [`Store::held_outbox`] shows it as undeliverable until the user deletes it.
    /// Returns whether a row matched.
    pub fn give_up(&mut self, id: &MessageId, to: &UserId, reason: u8) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let until_receipt: Option<bool> = tx
            .query_row(
                "SELECT until_receipt FROM outbox WHERE message_id = ?1 AND recipient = ?2",
                params![&id.0[..], &to.0[..]],
                |r| r.get(0),
            )
            .optional()?;
        match until_receipt {
            None => return Ok(false),
            Some(false) => {
                tx.execute(
                    "DELETE FROM outbox WHERE message_id = ?1 AND recipient = ?2",
                    params![&id.0[..], &to.0[..]],
                )?;
            }
            Some(true) => {
                tx.execute(
                    "UPDATE outbox SET held = ?3, next_attempt_at = ?4
                     WHERE message_id = ?1 AND recipient = ?2",
                    params![&id.0[..], &to.0[..], reason, ms_clamped(NEVER_DUE)],
                )?;
            }
        }
        tx.commit()?;
        Ok(true)
    }

    /// Makes the row of `id` for `to` due at `now` (a resend the user or a test asks for, without
    /// waiting for the backoff). Returns whether a row matched.
    pub fn make_due(&mut self, id: &MessageId, to: &UserId, now: u64) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE outbox SET next_attempt_at = ?3 WHERE message_id = ?1 AND recipient = ?2",
            params![&id.0[..], &to.0[..], ms(now)?],
        )?;
        Ok(n > 0)
    }

    /// A receipt from `from` names `id` (RX-5, RX-6): the row for `from` leaves the outbox and the
    /// message is `Delivered` once every recipient's receipt is in. Returns whether a row matched.
    /// [`Store::commit_incoming`] does this by itself for a received receipt.
    pub fn mark_delivered(&mut self, id: &MessageId, from: &UserId) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let hit = apply_receipt(&tx, id, from)?.is_some();
        tx.commit()?;
        Ok(hit)
    }

    /// The recipients of a message whose receipt has not arrived (GRP-10: who does not have it yet).
    pub fn pending_recipients(&self, id: &MessageId) -> Result<Vec<UserId>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT recipient FROM outbox WHERE message_id = ?1 AND until_receipt = 1 ORDER BY id",
        )?;
        let raws = stmt
            .query_map([&id.0[..]], |r| r.get::<_, Vec<u8>>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.iter().map(|b| user_from(b)).collect()
    }
}

fn next_attempts(attempts: i64) -> Result<u32> {
    u32::try_from(attempts)
        .map(|a| a.saturating_add(1))
        .map_err(|_| StoreError::Corrupt("attempts"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_rx_6() {
        let b = Backoff {
            first_ms: 1_000,
            max_ms: 10_000,
        };
        let delays: Vec<u64> = (0..7).map(|n| b.delay(n)).collect();
        assert_eq!(delays, [0, 1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(b.delay(u32::MAX), 10_000);
        let huge = Backoff {
            first_ms: u64::MAX / 2,
            max_ms: u64::MAX,
        };
        assert_eq!(huge.delay(5), u64::MAX);
    }
}
