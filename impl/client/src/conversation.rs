//! Conversations: contacts (cards, directory, trust), sending to people and groups, and reading
//! what the store holds. Each state change is committed with what it produced (STORE-3) through
//! `Client::mutate`.

use sotto_core::keys::PreKeyBundle;
use sotto_core::{ContactCard, Content, Device, GroupId, MessageId, Outgoing, Trust, UserId};
use sotto_store::{Chat, ContactEntry, MessageState, Store, StoredMessage, ToSend};
use sotto_wire::notice::RefusalReason;

use crate::account::Client;
use crate::error::{ClientError, Result};
use crate::membership::check_bundle;

/// A group this device is in ([`Client::groups`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group id (ID-4).
    pub id: GroupId,
    /// The epoch this device holds (GRP-6: it turns with every change of members).
    pub epoch: u32,
    /// The admin: the member who created the group and alone changes its members (GRP-1).
    pub admin: UserId,
    /// Every member, the admin first.
    pub members: Vec<UserId>,
}

impl Client {
    // ------------------------------------------------------------------ contacts (CARD, RX-9)

    /// This device's contact card as a `sotto:` URI (CARD-2).
    pub fn card(&self) -> Result<String> {
        Ok(self.device.card()?.to_uri())
    }

    /// Adds a contact from a scanned card: verified (CARD-4). Returns the contact's user id.
    pub fn add_card(&mut self, uri: &str) -> Result<UserId> {
        let card = ContactCard::from_uri(uri.trim())?;
        let user = *card.user_id();
        if user == self.user_id() {
            return Err(ClientError::Invalid("this is the own card"));
        }
        self.mutate(
            |d, _, _| {
                d.add_contact_from_card(&card);
                Ok(())
            },
            |s, d, _, now| Ok(s.commit_device(d, now, &[])?),
        )?;
        Ok(user)
    }

    /// Fetches `user`'s prekey bundle from the directory and checks its signatures (KEY-5); the
    /// result is unverified.
    pub async fn fetch_bundle(&mut self, user: &UserId) -> Result<PreKeyBundle> {
        let membership = self.creds.membership()?;
        let bytes = membership.bundle(user).await;
        self.observe(&membership)?;
        check_bundle(&bytes?, user)
    }

    /// Adds a contact from the directory: unverified (CARD-4). A known contact whose identity
    /// changed is [`ClientError::IdentityChanged`] (RX-9).
    pub async fn add_from_directory(&mut self, user: &UserId) -> Result<()> {
        let bundle = self.fetch_bundle(user).await?;
        self.add_bundle(&bundle)
    }

    /// Adds a contact from a bundle fetched with [`Client::fetch_bundle`].
    pub fn add_bundle(&mut self, bundle: &PreKeyBundle) -> Result<()> {
        let user = *bundle.user_id();
        if user == self.user_id() {
            return Err(ClientError::Invalid("this is the own bundle"));
        }
        self.mutate(
            |d, _, _| {
                d.add_contact_from_bundle(bundle).map_err(|e| {
                    if e == sotto_core::error::SessionError::IdentityChanged.into() {
                        ClientError::IdentityChanged(user)
                    } else {
                        e.into()
                    }
                })
            },
            |s, d, _, now| Ok(s.commit_device(d, now, &[])?),
        )
    }

    /// Marks a contact verified after the people compared safety numbers (SAFE-1).
    pub fn verify(&mut self, user: &UserId) -> Result<()> {
        self.mutate(
            |d, _, _| Ok(d.mark_verified(user)?),
            |s, d, _, now| Ok(s.commit_device(d, now, &[])?),
        )
    }

    /// The safety number with a contact, grouped for reading aloud (SAFE-1).
    pub fn safety_number(&self, user: &UserId) -> Result<String> {
        Ok(self.device.safety_number(user)?.grouped())
    }

    /// A contact's trust, if it is a contact.
    pub fn trust(&self, user: &UserId) -> Option<Trust> {
        self.device.contact(user).map(|(t, _)| t)
    }

    /// The contacts, as the store lists them.
    pub fn contacts(&self) -> Result<Vec<ContactEntry>> {
        Ok(self.store.contacts()?)
    }

    // ------------------------------------------------------------------ sending (RX-6)

    /// Seals `text` for `to` and commits it with its outbox row; the online loop (or the
    /// next [`Client::sync`]) publishes it and resends it until the receipt arrives.
    pub fn send(&mut self, to: &UserId, text: &str) -> Result<MessageId> {
        let content = Content::Text(text.to_owned());
        let out = self.mutate(
            |d, rng, now| Ok(d.send(rng, now, to, &content)?),
            |s, d, out, now| Ok(s.commit_outgoing(d, out, &content, now)?),
        )?;
        Ok(out.id)
    }

    /// Seals `text` for a contact or a group ([`Client::send`], [`Client::send_group`]).
    pub(crate) fn send_to(&mut self, chat: &Chat, text: &str) -> Result<MessageId> {
        match chat {
            Chat::User(u) => self.send(u, text),
            Chat::Group(g) => self.send_group(g, text),
        }
    }

    /// Seals a burst of texts, each to a contact or a group, and commits them all with their
    /// outbox rows in one transaction. Each text gets its own result (a text to a stranger fails
    /// alone); `Err` if the commit failed, and then none was sent.
    pub fn send_many(&mut self, texts: &[(Chat, String)]) -> Result<Vec<Result<MessageId>>> {
        let now = self.now();
        let (results, sealed) = self.seal_texts(texts, now);
        let items: Vec<(&Outgoing, &Content)> = sealed.iter().map(|(o, c)| (o, c)).collect();
        if let Err(e) = self
            .store
            .commit_outgoing_many(&mut self.device, &items, now)
        {
            self.reload()?;
            return Err(e.into());
        }
        Ok(results)
    }

    /// Seals texts, each to a contact or a group, without committing: each text's result, and
    /// the sealed envelopes with their contents, to commit in one transaction.
    pub(crate) fn seal_texts(
        &mut self,
        texts: &[(Chat, String)],
        now: u64,
    ) -> (Vec<Result<MessageId>>, Vec<(Outgoing, Content)>) {
        let mut sealed: Vec<(Outgoing, Content)> = Vec::with_capacity(texts.len());
        let mut results = Vec::with_capacity(texts.len());
        for (chat, text) in texts {
            let content = Content::Text(text.clone());
            let out = match chat {
                Chat::User(u) => self.device.send(&mut self.rng, now, u, &content),
                Chat::Group(g) => self.device.send_group(now, g, &content),
            };
            match out {
                Ok(out) => {
                    results.push(Ok(out.id));
                    sealed.push((out, content));
                }
                Err(e) => results.push(Err(e.into())),
            }
        }
        (results, sealed)
    }

    /// Sends `to` a key update (EPOCH-2): when the newest epoch is the peer's, it turns the epoch
    /// with a fresh key share, so keys this device held before stop mattering for what follows
    /// (post-compromise security). Resent until its receipt, like a text.
    pub fn key_update(&mut self, to: &UserId) -> Result<MessageId> {
        let content = Content::KeyUpdate;
        let out = self.mutate(
            |d, rng, now| Ok(d.send(rng, now, to, &content)?),
            |s, d, out, now| Ok(s.commit_outgoing(d, out, &content, now)?),
        )?;
        Ok(out.id)
    }

    /// Seals `text` for a group (GRP-7, GRP-8): one envelope, one outbox row per other member.
    pub fn send_group(&mut self, group: &GroupId, text: &str) -> Result<MessageId> {
        let content = Content::Text(text.to_owned());
        let out = self.mutate(
            |d, _, now| Ok(d.send_group(now, group, &content)?),
            |s, d, out, now| Ok(s.commit_outgoing(d, out, &content, now)?),
        )?;
        Ok(out.id)
    }

    /// Creates a group with this device as admin; the group key goes to every member over the
    /// pairwise sessions (GRP-1, GRP-3). Every member must be a contact.
    pub fn create_group(&mut self, members: &[UserId]) -> Result<GroupId> {
        let (gid, _) = self.mutate(
            |d, rng, now| Ok(d.create_group(rng, now, members)?),
            |s, d, (_, outs), now| commit_all(s, d, outs, now),
        )?;
        Ok(gid)
    }

    /// Adds a member to a group this device administers: a new epoch for everyone (GRP-6).
    pub fn add_to_group(&mut self, group: &GroupId, user: &UserId) -> Result<()> {
        self.mutate(
            |d, rng, now| Ok(d.add_to_group(rng, now, group, user)?),
            |s, d, outs, now| commit_all(s, d, outs, now),
        )?;
        Ok(())
    }

    /// Removes a member: a new epoch without them and a removal notice to them (GRP-6).
    pub fn remove_from_group(&mut self, group: &GroupId, user: &UserId) -> Result<()> {
        self.mutate(
            |d, rng, now| Ok(d.remove_from_group(rng, now, group, user)?),
            |s, d, outs, now| commit_all(s, d, outs, now),
        )?;
        Ok(())
    }

    /// Leaves a group (GRP-11): the leave goes to the admin (who removes this device with a new
    /// epoch), and the group's keys are deleted at once. The admin cannot leave while others are
    /// in the group ([`ClientError::Protocol`] `admin_must_hand_over`): it hands the group over
    /// first ([`Client::hand_over_group`]) and may leave once the new admin's key arrived.
    pub fn leave_group(&mut self, group: &GroupId) -> Result<()> {
        self.mutate(
            |d, rng, now| Ok(d.leave_group(rng, now, group)?),
            |s, d, out, now| commit_all(s, d, out.as_slice(), now),
        )?;
        Ok(())
    }

    /// Hands the admin role of a group this device administers to the member `to` (GRP-12).
    /// From then on this device makes no membership change; `to` issues the next epoch as the
    /// admin when the handover reaches it ([`crate::ClientEvent::TookOverGroup`] there).
    pub fn hand_over_group(&mut self, group: &GroupId, to: &UserId) -> Result<()> {
        self.mutate(
            |d, rng, now| Ok(d.hand_over_group(rng, now, group, to)?),
            |s, d, out, now| commit_all(s, d, std::slice::from_ref(out), now),
        )?;
        Ok(())
    }

    /// The groups this device is in.
    pub fn groups(&self) -> Vec<GroupInfo> {
        self.device
            .groups()
            .filter_map(|g| {
                let (epoch, members) = self.device.group_members(g)?;
                Some(GroupInfo {
                    id: *g,
                    epoch,
                    admin: *members.first()?,
                    members,
                })
            })
            .collect()
    }

    // ------------------------------------------------------------------ reading

    /// The messages of a conversation, in commit order.
    pub fn messages(&self, chat: &Chat) -> Result<Vec<StoredMessage>> {
        Ok(self.store.messages_with(chat)?)
    }

    /// Names a contact (`None` removes the name): 1 to 64 characters, no control character,
    /// not a user id. [`ClientError::Invalid`] otherwise; `Misuse(UnknownPeer)` for someone who
    /// is not a contact.
    pub fn set_contact_name(&mut self, user: &UserId, name: Option<&str>) -> Result<()> {
        if let Some(name) = name {
            let n = name.chars().count();
            if n == 0 || n > 64 || name.chars().any(char::is_control) || name != name.trim() {
                return Err(ClientError::Invalid(
                    "a contact name is 1 to 64 characters, without control characters or \
                     surrounding spaces",
                ));
            }
            if UserId::parse(name).is_ok() {
                return Err(ClientError::Invalid("a contact name cannot be a user id"));
            }
        }
        if self.store.set_contact_name(user, name)? {
            Ok(())
        } else {
            Err(sotto_core::Error::from(sotto_core::error::MisuseError::UnknownPeer).into())
        }
    }

    /// Every received message, in any conversation (also groups this device has left), in the
    /// order they were committed.
    pub fn received(&self) -> Result<Vec<StoredMessage>> {
        Ok(self.store.received()?)
    }

    /// Received messages not yet marked read, in the order they were committed.
    pub fn unread(&self) -> Result<Vec<StoredMessage>> {
        Ok(self.store.unread()?)
    }

    /// Marks every received message of `chat` read; returns how many were unread.
    pub fn mark_read(&mut self, chat: &Chat) -> Result<usize> {
        Ok(self.store.mark_read(chat)?)
    }

    /// Deletes one stored message (by [`StoredMessage::row_id`]) from this device's store, its
    /// text overwritten in the file; returns whether it was there. Nothing is sent: the other
    /// side keeps its copy.
    pub fn delete_message(&mut self, row_id: i64) -> Result<bool> {
        Ok(self.store.delete_message(row_id)?)
    }

    /// Deletes a contact from this device: its keys and sessions (the core forgets them), its
    /// name, the conversation and that conversation's messages still in the outbox, in one
    /// commit. Nothing is
    /// sent. `Misuse(UnknownPeer)` for someone who is not a contact.
    pub fn delete_contact(&mut self, user: &UserId) -> Result<()> {
        let user = *user;
        self.mutate(
            |d, _, _| Ok(d.remove_contact(&user)?),
            |s, d, _, now| Ok(s.commit_contact_removal(d, &user, now)?),
        )
    }

    /// Deletes every stored message of a conversation from this device's store; returns how
    /// many. The contact or group stays.
    pub fn delete_conversation(&mut self, chat: &Chat) -> Result<usize> {
        Ok(self.store.delete_conversation(chat)?)
    }

    /// Changes the store's passphrase (STORE-1: a new salt and key, the whole file re-encrypted)
    /// with the key derivation parameters of [`Config::kdf`](crate::Config::kdf).
    pub fn change_passphrase(&mut self, new_passphrase: &[u8]) -> Result<()> {
        let params = self.config.kdf;
        Ok(self.store.change_passphrase(new_passphrase, params)?)
    }

    /// The state of a message this device sent.
    pub fn outgoing_state(&self, id: &MessageId) -> Result<Option<MessageState>> {
        Ok(self.store.outgoing_state(id)?)
    }

    /// Publishes the envelope of `id` for `to` again at the next chance, without waiting for its
    /// backoff (RX-6: the identical bytes). `false` if no such row waits for a receipt.
    pub fn resend_now(&mut self, id: &MessageId, to: &UserId) -> Result<bool> {
        let now = self.now();
        Ok(self.store.make_due(id, to, now)?)
    }

    /// Rows waiting in the outbox (RX-6).
    pub fn outbox_len(&self) -> Result<usize> {
        Ok(self.store.outbox_len()?)
    }

    /// Outbox rows the service refused at their last publish (BROKER-5), oldest first: what
    /// waits, for whom, and why.
    pub fn held_outbox(&self) -> Result<Vec<HeldEnvelope>> {
        Ok(self
            .store
            .held_outbox()?
            .into_iter()
            .map(|e| HeldEnvelope {
                id: e.message_id,
                recipient: e.recipient,
                reason: RefusalReason::from_code(e.held),
                attempts: e.attempts,
                next_attempt_at: e.next_attempt_at,
            })
            .collect())
    }
}

/// An outbox row the service refused (see [`Client::held_outbox`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldEnvelope {
    /// The message.
    pub id: MessageId,
    /// The recipient.
    pub recipient: UserId,
    /// Why the service refused it last.
    pub reason: RefusalReason,
    /// Publish attempts so far.
    pub attempts: u32,
    /// When it is tried again (server-corrected ms).
    pub next_attempt_at: u64,
}

/// Commits a state change with envelopes that are resent until their receipt (group keys and
/// removal notices want receipts, RX-5).
pub(crate) fn commit_all(
    store: &mut Store,
    device: &mut Device,
    outs: &[Outgoing],
    now: u64,
) -> Result<()> {
    let queue: Vec<ToSend<'_>> = outs.iter().map(ToSend::until_receipt).collect();
    Ok(store.commit_device(device, now, &queue)?)
}
