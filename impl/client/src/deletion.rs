//! Deleting the own account, and what a contact's deletion means for this device.
//!
//! ```text
//!  Client::delete_account ── POST /v1/account/delete (client certificate) ──> 204
//!        │   the service forgets the keys and certificate, drops the inbox; messages
//!        │   to this user id are refused from then on (BROKER-5, reason 2)
//!        └── Store::destroy: the encrypted store, its header and side files deleted
//!
//!  a contact deleted theirs: a PUBLISH to them gets a refusal notice, reason 2
//!        └── the outbox row is given up (never retried), ClientEvent::Undeliverable,
//!            HeldEnvelope::is_undeliverable
//! ```

use crate::account::Client;
use crate::conversation::HeldEnvelope;
use crate::error::{ClientError, Result};

impl Client {
    /// Deletes this account: the membership service forgets its keys and certificate and drops
    /// its inbox (messages to it are refused from then on), then the encrypted store and its
    /// files are deleted from this device, so nothing of the account is left.
    ///
    /// The service is asked first. If that fails (`Network`, `Refused`, ...: see
    /// [`ClientError::fault`] and [`ClientError::is_retryable`]) nothing changed here: the store
    /// is closed intact and [`Client::open`] gives the account back to try again. If deleting
    /// the files fails after the service said yes, the error is `Store` (a local fault: the
    /// account is gone at the service; delete the files by hand, [`sotto_store::destroy_files`]).
    pub async fn delete_account(self) -> Result<()> {
        let answer = match self.creds.membership() {
            Ok(membership) => membership.delete_account().await,
            Err(e) => Err(e),
        };
        if let Err(e) = answer {
            // Nothing changed: keep the store as it is.
            self.close()?;
            return Err(e);
        }
        let store = self.store;
        tokio::task::spawn_blocking(move || store.destroy())
            .await
            .map_err(|_| ClientError::Task)??;
        Ok(())
    }
}

impl HeldEnvelope {
    /// Whether the service refused it for good ([`crate::RefusalReason::is_permanent`]: the
    /// recipient deleted their account): it is never tried again.
    pub fn is_undeliverable(&self) -> bool {
        self.reason.is_permanent()
    }
}
