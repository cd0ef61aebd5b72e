//! The judgement after a run: every client's store is read (the chat with each contact), each
//! stored message is checked against the plan and counted, and the counts and the online
//! loops' tally become the list of problems. The stores are the judges: what an online loop reported is
//! only a figure.

use anyhow::{Context as _, anyhow};
use sotto_client::{Chat, Client, Direction, MessageState, StoredMessage, UserId};

use super::MAX_LISTED;
use super::plan::{Plan, parse};
use super::tally::Tally;

/// What the stores hold after a run, and what is wrong.
pub(super) struct Audit {
    /// Per message (slot): the copies in its recipient's store.
    counts: Vec<u32>,
    /// Sent messages in the senders' stores.
    sent: usize,
    /// Sent messages not Delivered at their sender.
    pub(super) undelivered: usize,
    /// What is wrong, in the order found.
    pub(super) problems: Vec<String>,
}

/// Reads the store of every client (`ids` their user ids) after a run of `plan`; `problems`
/// are those found before, listed first.
pub(super) fn read_stores(
    plan: &Plan,
    clients: &[Client],
    ids: &[UserId],
    problems: Vec<String>,
) -> anyhow::Result<Audit> {
    let mut audit = Audit {
        counts: vec![0u32; plan.total()],
        sent: 0,
        undelivered: 0,
        problems,
    };
    for (i, client) in clients.iter().enumerate() {
        for j in plan.contacts(i) {
            let peer = ids.get(j).ok_or_else(|| anyhow!("no client {j}"))?;
            let messages = client
                .messages(&Chat::User(*peer))
                .with_context(|| format!("reading the store of client {i}"))?;
            for msg in messages {
                audit.check(plan, i, j, peer, &msg);
            }
        }
    }
    Ok(audit)
}

impl Audit {
    /// Checks and counts `msg`, held by client `i` in its chat with client `j` (user `peer`).
    fn check(&mut self, plan: &Plan, i: usize, j: usize, peer: &UserId, msg: &StoredMessage) {
        let Some((from, seq, to, _)) = parse(&msg.text) else {
            self.problems
                .push(format!("client {i} holds a text not of the soak"));
            return;
        };
        match msg.direction {
            Direction::In => {
                if from != j
                    || to != i
                    || seq >= plan.m
                    || plan.target(from, seq) != i
                    || msg.sender != Some(*peer)
                {
                    self.problems.push(format!(
                        "client {i} holds message {seq} of {from} not meant for it"
                    ));
                    return;
                }
                if let Some(c) = self.counts.get_mut(plan.slot(from, seq)) {
                    *c += 1;
                }
            }
            Direction::Out => {
                if from != i || to != j {
                    self.problems
                        .push(format!("client {i} holds a foreign sent message"));
                    return;
                }
                self.sent += 1;
                if msg.state != MessageState::Delivered {
                    self.undelivered += 1;
                }
            }
        }
    }

    /// Messages in no recipient's store.
    pub(super) fn missing(&self) -> usize {
        self.counts.iter().filter(|&&c| c == 0).count()
    }

    /// Messages stored more than once by their recipient.
    pub(super) fn duplicates(&self) -> usize {
        self.counts.iter().filter(|&&c| c > 1).count()
    }

    /// Sent messages Delivered at their sender.
    pub(super) fn receipts(&self) -> usize {
        self.sent.saturating_sub(self.undelivered)
    }

    /// Adds the problems the counts show, then those of the online loops' `tally`.
    pub(super) fn judge(&mut self, plan: &Plan, tally: &Tally) {
        let total = plan.total();
        let (missing, duplicates) = (self.missing(), self.duplicates());
        if missing > 0 {
            let names: Vec<String> = self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c == 0)
                .take(MAX_LISTED)
                .map(|(k, _)| format!("{}#{}", k / plan.m, k % plan.m))
                .collect();
            self.problems.push(format!(
                "{missing} messages missing from their recipients' stores (sender#seq: {}{})",
                names.join(", "),
                if missing > MAX_LISTED { ", ..." } else { "" }
            ));
        }
        if duplicates > 0 {
            self.problems.push(format!(
                "{duplicates} messages stored more than once by their recipient"
            ));
        }
        if self.sent != total {
            self.problems.push(format!(
                "the senders' stores hold {} sent messages, not {total}",
                self.sent
            ));
        }
        if self.undelivered > 0 {
            self.problems.push(format!(
                "{} sent messages without their receipt (not Delivered at the sender)",
                self.undelivered
            ));
        }
        if tally.duplicate_events > 0 {
            self.problems.push(format!(
                "{} messages reported twice by an online loop",
                tally.duplicate_events
            ));
        }
        if tally.refused > 0 {
            self.problems
                .push(format!("{} envelopes refused", tally.refused));
        }
        self.problems.extend(tally.problems.iter().cloned());
    }
}
