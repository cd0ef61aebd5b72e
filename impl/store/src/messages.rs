//! Messages as the person sees them: one row per text sent or received, by conversation.
//!
//! Only text is a message here; control contents (receipts, key updates, group keys, acks) change
//! the device state and the outbox but are not shown.

use rusqlite::{OptionalExtension, Row, params};
use sotto_core::{GroupId, MessageId, UserId};

use crate::error::{Result, StoreError};
use crate::rows::{from_ms, message_id_from, user_from};
use crate::store::Store;

/// A conversation: with one contact, or in a group.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Chat {
    /// Pairwise, with this user.
    User(UserId),
    /// In this group.
    Group(GroupId),
}

impl Chat {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Chat::User(u) => &u.0,
            Chat::Group(g) => &g.0,
        }
    }

    pub(crate) fn is_group(&self) -> bool {
        matches!(self, Chat::Group(_))
    }

    fn from_row(bytes: &[u8], is_group: bool) -> Result<Chat> {
        if is_group {
            Ok(Chat::Group(GroupId(
                bytes
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("group id length"))?,
            )))
        } else {
            Ok(Chat::User(user_from(bytes)?))
        }
    }
}

/// Which way a message went.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Direction {
    /// Received.
    In,
    /// Sent by this device.
    Out,
}

/// Where a message is in its life.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum MessageState {
    /// Out: committed and waiting in the outbox for its first publish.
    Queued,
    /// Out: published at least once to every pending recipient's inbox; no receipt from all yet.
    Sent,
    /// Out: a receipt arrived from every recipient (RX-5; every member for a group, GRP-10).
    Delivered,
    /// In: the person has seen it.
    Read,
    /// In: committed, not yet seen.
    Received,
}

impl MessageState {
    pub(crate) fn code(self) -> i64 {
        match self {
            MessageState::Queued => 0,
            MessageState::Sent => 1,
            MessageState::Delivered => 2,
            MessageState::Read => 3,
            MessageState::Received => 4,
        }
    }

    pub(crate) fn from_code(c: i64) -> Result<Self> {
        Ok(match c {
            0 => MessageState::Queued,
            1 => MessageState::Sent,
            2 => MessageState::Delivered,
            3 => MessageState::Read,
            4 => MessageState::Received,
            _ => return Err(StoreError::Corrupt("message state")),
        })
    }
}

/// A message row. `Debug` shows the text's length, not the text.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Local row id: the order of commits.
    pub row_id: i64,
    /// The message id (ID-3).
    pub id: MessageId,
    /// The conversation.
    pub chat: Chat,
    /// The author of a received message; `None` for one sent by this device.
    pub sender: Option<UserId>,
    /// In or out.
    pub direction: Direction,
    /// The content kind (IN-3): 1, text.
    pub kind: u8,
    /// The text.
    pub text: String,
    /// Send time (the sender's server-corrected clock), ms.
    pub sent_at: u64,
    /// When this device committed it, ms; `None` for sent messages.
    pub received_at: Option<u64>,
    /// Its state.
    pub state: MessageState,
}

impl core::fmt::Debug for StoredMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StoredMessage")
            .field("row_id", &self.row_id)
            .field("id", &self.id)
            .field("chat", &self.chat)
            .field("sender", &self.sender)
            .field("direction", &self.direction)
            .field("kind", &self.kind)
            .field("text_len", &self.text.len())
            .field("sent_at", &self.sent_at)
            .field("received_at", &self.received_at)
            .field("state", &self.state)
            .finish()
    }
}

const COLUMNS: &str = "id, message_id, chat, is_group, sender, outgoing, kind, body, sent_at, \
                       received_at, state";

/// A row as SQLite returns it, checked afterwards (row closures can only fail with SQLite errors).
struct RawMessage {
    row_id: i64,
    id: Vec<u8>,
    chat: Vec<u8>,
    is_group: bool,
    sender: Option<Vec<u8>>,
    outgoing: bool,
    kind: i64,
    text: String,
    sent_at: i64,
    received_at: Option<i64>,
    state: i64,
}

impl RawMessage {
    fn read(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawMessage {
            row_id: r.get(0)?,
            id: r.get(1)?,
            chat: r.get(2)?,
            is_group: r.get(3)?,
            sender: r.get(4)?,
            outgoing: r.get(5)?,
            kind: r.get(6)?,
            text: r.get(7)?,
            sent_at: r.get(8)?,
            received_at: r.get(9)?,
            state: r.get(10)?,
        })
    }

    fn check(self) -> Result<StoredMessage> {
        Ok(StoredMessage {
            row_id: self.row_id,
            id: message_id_from(&self.id)?,
            chat: Chat::from_row(&self.chat, self.is_group)?,
            sender: self.sender.as_deref().map(user_from).transpose()?,
            direction: if self.outgoing {
                Direction::Out
            } else {
                Direction::In
            },
            kind: u8::try_from(self.kind).map_err(|_| StoreError::Corrupt("message kind"))?,
            text: self.text,
            sent_at: from_ms(self.sent_at)?,
            received_at: self.received_at.map(from_ms).transpose()?,
            state: MessageState::from_code(self.state)?,
        })
    }
}

impl Store {
    fn query_messages(
        &self,
        sql_tail: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<StoredMessage>> {
        let sql = format!("SELECT {COLUMNS} FROM messages {sql_tail}");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let raws = stmt
            .query_map(params, RawMessage::read)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(RawMessage::check).collect()
    }

    /// The messages of a conversation, oldest first (by send time, then commit order).
    pub fn messages_with(&self, chat: &Chat) -> Result<Vec<StoredMessage>> {
        self.query_messages(
            "WHERE chat = ?1 AND is_group = ?2 ORDER BY sent_at, id",
            params![chat.as_bytes(), chat.is_group()],
        )
    }

    /// Every received message, in any conversation, in commit order.
    pub fn received(&self) -> Result<Vec<StoredMessage>> {
        self.query_messages("WHERE outgoing = 0 ORDER BY id", [])
    }

    /// Received messages not yet marked read, in commit order.
    pub fn unread(&self) -> Result<Vec<StoredMessage>> {
        self.query_messages(
            "WHERE outgoing = 0 AND state = ?1 ORDER BY id",
            [MessageState::Received.code()],
        )
    }

    /// Marks every received message of a conversation read; returns how many changed.
    pub fn mark_read(&mut self, chat: &Chat) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE messages SET state = ?1
             WHERE chat = ?2 AND is_group = ?3 AND outgoing = 0 AND state = ?4",
            params![
                MessageState::Read.code(),
                chat.as_bytes(),
                chat.is_group(),
                MessageState::Received.code()
            ],
        )?)
    }

    /// Deletes one message (by its local row id, [`StoredMessage::row_id`]); returns whether it
    /// was there. `secure_delete` overwrites its text in the file. A sent message still in the
    /// outbox goes out all the same; only this copy is gone.
    pub fn delete_message(&mut self, row_id: i64) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM messages WHERE id = ?1", [row_id])?
            == 1)
    }

    /// Deletes every message of a conversation; returns how many.
    pub fn delete_conversation(&mut self, chat: &Chat) -> Result<usize> {
        Ok(self.conn.execute(
            "DELETE FROM messages WHERE chat = ?1 AND is_group = ?2",
            params![chat.as_bytes(), chat.is_group()],
        )?)
    }

    /// The state of a message this device sent, if it is stored. A message still in the outbox
    /// is found through its outbox row; one no longer there by a search from the newest message
    /// back (sent ids are not indexed: each would take a page at a random place, schema V6), so
    /// the older the message, the longer the search.
    pub fn outgoing_state(&self, id: &MessageId) -> Result<Option<MessageState>> {
        let code: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT m.state FROM outbox o JOIN messages m ON m.id = o.message_row
                 WHERE o.message_id = ?1 LIMIT 1",
            )?
            .query_row([&id.0[..]], |r| r.get(0))
            .optional()?;
        let code = match code {
            Some(code) => Some(code),
            None => self
                .conn
                .prepare_cached(
                    "SELECT state FROM messages WHERE message_id = ?1 AND outgoing = 1
                     ORDER BY id DESC LIMIT 1",
                )?
                .query_row([&id.0[..]], |r| r.get(0))
                .optional()?,
        };
        code.map(MessageState::from_code).transpose()
    }
}
