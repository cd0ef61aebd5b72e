//! Bookkeeping for exactly-once delivery beyond the core's own state:
//!
//! - RX-6: for each committed, receipted message, the hash of its envelope and its id (the newest
//!   LIM-7 of them at least, LIM-7 + [`TRIM_BATCH`] at most: the oldest go in batches, so that a
//!   commit rewrites the index pages they were on once per batch, not once per message). When the
//!   sender resends an envelope whose receipt was lost, the core answers `duplicate`; the shell
//!   finds the id here and sends the receipt again. The row also makes a message new exactly once
//!   (the same sender and id).
//! - RX-8: envelopes parked because they were retryable (`unknown_routing_tag`, `unknown_group`),
//!   at most LIM-12, kept durably so that the PUBLISH can be acknowledged. Retrying one that has
//!   since been committed is harmless: the core reports it as a `duplicate`.

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use sotto_core::limits::{MAX_DELIVERED_IDS, MAX_ENVELOPE, MAX_PENDING};
use sotto_core::{GroupId, MessageId, UserId};

use crate::error::{Result, StoreError};
use crate::rows::{from_ms, message_id_from, ms, user_from};
use crate::store::Store;

/// What a committed envelope was (RX-6).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReceivedRef {
    /// Its message id, for the receipt.
    pub id: MessageId,
    /// Its sender, to whom the receipt goes.
    pub from: UserId,
    /// Its group, for a group message (the receipt goes to the group, GRP-10).
    pub group: Option<GroupId>,
}

/// A parked envelope (RX-8).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Parked {
    /// Its handle for [`Store::unpark`].
    pub id: i64,
    /// The envelope as received.
    pub envelope: Vec<u8>,
    /// When it was parked, ms.
    pub parked_at: u64,
}

impl Store {
    /// The committed message an envelope carried, if its hash is still remembered (RX-6).
    pub fn received_by_envelope(&self, envelope: &[u8]) -> Result<Option<ReceivedRef>> {
        let hash = sotto_core::crypto::sha256(&[envelope]);
        let row = self
            .conn
            .query_row(
                "SELECT message_id, sender, group_id FROM received WHERE envelope_hash = ?1",
                [&hash[..]],
                |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, Option<Vec<u8>>>(2)?,
                    ))
                },
            )
            .optional()?;
        let Some((id, from, group)) = row else {
            return Ok(None);
        };
        Ok(Some(ReceivedRef {
            id: message_id_from(&id)?,
            from: user_from(&from)?,
            group: group
                .map(|g| {
                    g.as_slice()
                        .try_into()
                        .map(GroupId)
                        .map_err(|_| StoreError::Corrupt("group id length"))
                })
                .transpose()?,
        }))
    }

    /// Parks a retryable envelope (RX-8), once however often it is parked; the oldest beyond
    /// LIM-12 are dropped. Returns its handle.
    pub fn park(&mut self, envelope: &[u8], now: u64) -> Result<i64> {
        let now = ms(now)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        park_in(&tx, &[envelope], now)?;
        let id = tx.query_row(
            "SELECT id FROM parked WHERE envelope = ?1",
            [envelope],
            |row| row.get(0),
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// The parked envelopes, oldest first.
    pub fn parked(&self) -> Result<Vec<Parked>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, envelope, parked_at FROM parked ORDER BY id")?;
        let raws = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter()
            .map(|(id, envelope, at)| {
                Ok(Parked {
                    id,
                    envelope,
                    parked_at: from_ms(at)?,
                })
            })
            .collect()
    }

    /// Drops a parked envelope (it opened, or failed for good). Returns whether it was there.
    pub fn unpark(&mut self, id: i64) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM parked WHERE id = ?1", [id])?
            == 1)
    }
}

/// Rows of `received` beyond LIM-7 that wait before they are dropped together.
pub(crate) const TRIM_BATCH: usize = 256;

/// Keeps the newest LIM-7 rows of `received` once more than LIM-7 + [`TRIM_BATCH`] are there
/// (rows are only added with increasing rowids and dropped oldest first, so the rowids are
/// contiguous from the oldest to the newest).
pub(crate) fn trim_in(tx: &Transaction<'_>) -> Result<()> {
    // Two subqueries: each is one step down the rowid tree (max(x) - min(x) in one would scan).
    let span: Option<i64> = tx
        .prepare_cached(
            "SELECT (SELECT max(rowid) FROM received) - (SELECT min(rowid) FROM received) + 1",
        )?
        .query_row([], |r| r.get(0))?;
    if span.unwrap_or(0) > (MAX_DELIVERED_IDS + TRIM_BATCH) as i64 {
        tx.prepare_cached(
            "DELETE FROM received WHERE rowid <= (SELECT max(rowid) FROM received) - ?1",
        )?
        .execute([MAX_DELIVERED_IDS as i64])?;
    }
    Ok(())
}

/// Parks `envelopes` in the transaction `tx` (an envelope parked already is not parked twice),
/// then drops the oldest beyond LIM-12. An envelope of a size LIM-1 rules out is `Invalid`,
/// before anything is written.
pub(crate) fn park_in(tx: &Transaction<'_>, envelopes: &[&[u8]], now: i64) -> Result<()> {
    if envelopes.is_empty() {
        return Ok(());
    }
    if envelopes
        .iter()
        .any(|e| e.is_empty() || e.len() > MAX_ENVELOPE)
    {
        return Err(StoreError::Invalid("envelope size out of range (LIM-1)"));
    }
    // The same bytes are kept once (a broker may deliver an envelope twice before it opens).
    let mut insert = tx.prepare_cached(
        "INSERT INTO parked (envelope, parked_at) SELECT ?1, ?2
         WHERE NOT EXISTS (SELECT 1 FROM parked WHERE envelope = ?1)",
    )?;
    for e in envelopes {
        insert.execute(params![e, now])?;
    }
    tx.execute(
        "DELETE FROM parked WHERE id NOT IN (SELECT id FROM parked ORDER BY id DESC LIMIT ?1)",
        [MAX_PENDING as i64],
    )?;
    Ok(())
}

/// Removes the parked envelopes `ids` in the transaction `tx`.
pub(crate) fn unpark_in(tx: &Transaction<'_>, ids: &[i64]) -> Result<()> {
    let mut delete = tx.prepare_cached("DELETE FROM parked WHERE id = ?1")?;
    for id in ids {
        delete.execute([id])?;
    }
    Ok(())
}
