//! The `state` answer of the reference adapter: what the store and the device hold, in the
//! protocol's terms (user ids as text, ids as hex), for the runner to compare with the model.

use sotto_client::{Chat as StoreChat, Client, Direction, Trust};

use crate::protocol::{Chat, Contact, Group, Pending, Received, Session, State};

/// Reads the observable state of `c`.
pub(super) fn export(c: &mut Client) -> sotto_client::Result<State> {
    let contacts = c
        .contacts()?
        .into_iter()
        .map(|e| Contact {
            user_id: e.user.to_text(),
            verified: e.trust == Trust::Verified,
        })
        .collect();
    let sessions = c
        .device()
        .sessions_overview()
        .into_iter()
        .map(|(peer, s)| Session {
            peer: peer.to_text(),
            initiator: s.initiator,
            epoch: s.latest_epoch,
        })
        .collect();
    let groups = c
        .groups()
        .into_iter()
        .map(|g| Group {
            group_id: hex::encode(g.id.0),
            epoch: g.epoch,
            members: g.members.iter().map(|m| m.to_text()).collect(),
        })
        .collect();
    let received = c
        .received()?
        .into_iter()
        .filter(|m| m.direction == Direction::In)
        .map(|m| Received {
            chat: match m.chat {
                StoreChat::User(u) => Chat::User(u.to_text()),
                StoreChat::Group(g) => Chat::Group(hex::encode(g.0)),
            },
            sender: m.sender.map(|s| s.to_text()).unwrap_or_default(),
            text: m.text,
        })
        .collect();
    let outbox = c
        .store()
        .due_outbox(u64::MAX / 2, 10_000)?
        .into_iter()
        .filter(|r| r.until_receipt)
        .map(|r| Pending {
            message_id: hex::encode(r.message_id.0),
            to: r.recipient.to_text(),
        })
        .collect();
    let kept = c.store().parked()?.len() as u64;
    Ok(State {
        user_id: c.user_id().to_text(),
        contacts,
        sessions,
        groups,
        received,
        outbox,
        kept,
    })
}
