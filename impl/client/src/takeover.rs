//! Completing a group's admin role this device received (GRP-12): the new admin needs a pairwise
//! session with every member to send them the next epoch's key. For a member it has none with, it
//! fetches the bundle from the directory and uses it only if its `IKs` is the one the membership
//! (signed by the old admin) lists; then the core issues the epoch ([`Device::take_over_group`]).
//!
//! The core decides; this shell only fetches, commits and reports. A directory that is down, or
//! that answers with another identity, leaves the takeover pending: it is tried again later.
//!
//! [`Device::take_over_group`]: sotto_core::Device::take_over_group

use sotto_core::GroupId;

use crate::account::Client;
use crate::conversation::commit_all;
use crate::error::{ClientError, Result};
use crate::events::ClientEvent;

impl Client {
    /// Whether a group's admin role waits for a member's bundle ([`Client::complete_takeovers`]).
    pub fn has_pending_takeovers(&self) -> bool {
        !self.device.pending_takeovers().is_empty()
    }

    /// Completes every pending takeover: fetches the bundles of members without a session
    /// (checked against the membership's `IKs`), then issues the new epoch and queues its key for
    /// every member. Returns the events ([`ClientEvent::TookOverGroup`]); the first error stops it
    /// (what is done stays done, the rest is tried again next time).
    pub async fn complete_takeovers(&mut self) -> Result<Vec<ClientEvent>> {
        let mut events = Vec::new();
        for (group, missing) in self.device.pending_takeovers() {
            for member in missing {
                let bundle = self.fetch_bundle(&member.user).await?;
                if *bundle.identity().iks() != member.iks {
                    // The directory's identity is not the one the group's admin signed.
                    return Err(ClientError::IdentityChanged(member.user));
                }
                self.add_bundle(&bundle)?;
            }
            if let Some(epoch) = self.take_over(&group)? {
                events.push(ClientEvent::TookOverGroup { group, epoch });
            }
        }
        Ok(events)
    }

    // Issues the epoch of a received handover; `None` if there was nothing to do.
    fn take_over(&mut self, group: &GroupId) -> Result<Option<u32>> {
        let outs = self.mutate(
            |d, rng, now| Ok(d.take_over_group(rng, now, group)?),
            |s, d, outs, now| commit_all(s, d, outs, now),
        )?;
        if outs.is_empty() {
            return Ok(None);
        }
        tracing::info!("took over a group as its admin (GRP-12)");
        Ok(self.device.group_members(group).map(|(epoch, _)| epoch))
    }
}
