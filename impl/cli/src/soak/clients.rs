//! The clients of a run before any load: signed up at the server a few at a time (throwaway
//! SQLCipher stores, cheap Argon2 parameters) and introduced to each other by exchanging cards
//! along the plan's graph.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use sotto_client::{Client, Config, KdfParams};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::plan::Plan;
use super::server::Server;
use super::{PASSPHRASE, SIGNUP_CONCURRENCY};

/// The options of every client: cheap key derivation, no inbox set up at signup, and one-time
/// prekeys per signup at the low-water mark, so the signup uploads no more.
fn options() -> Config {
    let defaults = Config::default();
    Config {
        kdf: KdfParams::INSECURE_FOR_TESTS,
        signup_one_time_prekeys: usize::try_from(defaults.prekey_low_water).unwrap_or(20),
        establish_inbox: None,
        ..defaults
    }
}

/// Signs up `plan.n` clients at `server`, a few at a time, their stores in `stores`.
pub(super) async fn sign_up(
    plan: &Plan,
    server: &Server,
    stores: &Path,
    deadline: Instant,
) -> anyhow::Result<Vec<Client>> {
    let options = options();
    let gate = Arc::new(Semaphore::new(SIGNUP_CONCURRENCY));
    let mut signups = Vec::with_capacity(plan.n);
    for i in 0..plan.n {
        let (url, ca, path, options, gate) = (
            server.url.clone(),
            server.ca_pem.clone(),
            stores.join(format!("client-{i}.db")),
            options.clone(),
            gate.clone(),
        );
        signups.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok();
            Client::signup_with(&url, &ca, path, PASSPHRASE, options).await
        }));
    }
    let mut clients = Vec::with_capacity(plan.n);
    for (i, s) in signups.into_iter().enumerate() {
        let client = tokio::time::timeout_at(deadline, s)
            .await
            .map_err(|_| anyhow!("client {i} had not signed up at the timeout"))?
            .map_err(|_| anyhow!("the signup task of client {i} failed"))?
            .with_context(|| format!("client {i} could not sign up"))?;
        clients.push(client);
    }
    Ok(clients)
}

/// Gives every client the cards of its contacts in the plan (verified contacts).
pub(super) fn exchange_cards(plan: &Plan, clients: &mut [Client]) -> anyhow::Result<()> {
    let mut cards = Vec::with_capacity(plan.n);
    for (i, c) in clients.iter().enumerate() {
        cards.push(
            c.card()
                .with_context(|| format!("the card of client {i}"))?,
        );
    }
    for (i, c) in clients.iter_mut().enumerate() {
        for j in plan.contacts(i) {
            let card = cards.get(j).ok_or_else(|| anyhow!("no card {j}"))?;
            c.add_card(card)
                .with_context(|| format!("client {i} could not add the card of client {j}"))?;
        }
    }
    Ok(())
}
