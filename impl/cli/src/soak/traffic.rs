//! The traffic of a run: a client going online and offline, the task that sends one
//! client's messages and drops its connection at random ([`drive`]), and the phases of the run
//! that use them: every client online, the load, the wait until everything is received, every
//! client offline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore as _;
use sotto_client::Client;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::POLL;
use super::plan::{Plan, chance, text};
use super::tally::{Shared, consume};

/// A client's online loop and the task reading its events.
pub(super) struct Online {
    handle: sotto_client::Online,
    reader: JoinHandle<()>,
}

fn go_online(me: usize, client: Client, plan: &Arc<Plan>, shared: &Arc<Shared>) -> Online {
    let (handle, events) = client.connect();
    let reader = tokio::spawn(consume(me, plan.clone(), shared.clone(), events));
    Online { handle, reader }
}

async fn go_offline(me: usize, online: Online) -> anyhow::Result<Client> {
    let client = online
        .handle
        .shutdown()
        .await
        .with_context(|| format!("client {me}: the online loop did not stop cleanly"))?;
    // The reader ends with the online loop's event channel, after the last event.
    let _ = online.reader.await;
    Ok(client)
}

/// Where a client is.
enum State {
    Online(Online),
    Offline { client: Box<Client>, until: Instant },
}

/// Client `me` sends its messages, disconnecting at random; returns it online.
async fn drive(
    me: usize,
    online: Online,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    deadline: Instant,
) -> anyhow::Result<Online> {
    let mut rng = plan.rng(me);
    let mut state = State::Online(online);
    let window = shared
        .windows
        .get(me)
        .ok_or_else(|| anyhow!("no window for client {me}"))?;
    for seq in 0..plan.m {
        state = take_place(me, seq, state, window, &plan, &shared, deadline).await?;
        send(me, seq, &mut state, &plan, &shared).await?;
        state = maybe_drop(me, state, &mut rng, &plan, &shared).await?;
    }
    if let State::Offline { until, .. } = &state {
        tokio::time::sleep_until((*until).min(deadline)).await;
    }
    match reconnect(me, state, &plan, &shared) {
        State::Online(o) => Ok(o),
        State::Offline { .. } => bail!("client {me} could not come back online"),
    }
}

/// A place in `me`'s window for message `seq`; an offline client comes back when its time is up.
async fn take_place(
    me: usize,
    seq: usize,
    mut state: State,
    window: &Semaphore,
    plan: &Arc<Plan>,
    shared: &Arc<Shared>,
    deadline: Instant,
) -> anyhow::Result<State> {
    loop {
        if let State::Offline { until, .. } = &state {
            if Instant::now() >= *until {
                state = reconnect(me, state, plan, shared);
            }
        }
        let wait = match &state {
            State::Offline { until, .. } => (*until).min(deadline),
            State::Online(_) => deadline,
        };
        match tokio::time::timeout_at(wait, window.acquire()).await {
            Ok(Ok(permit)) => {
                permit.forget();
                return Ok(state);
            }
            Ok(Err(_)) => bail!("client {me}: the window closed"),
            Err(_) if Instant::now() >= deadline => bail!(
                "the timeout passed while client {me} waited to send message {seq} of {} \
                 (at most {} on the way)",
                plan.m,
                plan.window
            ),
            Err(_) => {}
        }
    }
}

/// Client `me` sends message `seq`: through its online loop, or into its outbox while offline.
async fn send(
    me: usize,
    seq: usize,
    state: &mut State,
    plan: &Plan,
    shared: &Shared,
) -> anyhow::Result<()> {
    let to = plan.target(me, seq);
    let to_id = *shared
        .ids
        .get(to)
        .ok_or_else(|| anyhow!("no client {to}"))?;
    let sent_at = std::time::Instant::now();
    {
        let mut tally = shared.lock();
        tally.first_send.get_or_insert(sent_at);
    }
    let t_us = u64::try_from(sent_at.duration_since(shared.start).as_micros()).unwrap_or(0);
    let body = text(me, seq, to, t_us);
    match state {
        State::Online(o) => {
            o.handle
                .send(to_id, body)
                .await
                .with_context(|| format!("client {me} could not send message {seq}"))?;
        }
        State::Offline { client, .. } => {
            client.send(&to_id, &body).with_context(|| {
                format!("client {me} could not queue message {seq} while offline")
            })?;
        }
    }
    Ok(())
}

/// An online client `me` disconnects with the plan's probability, for a random time up to the
/// plan's offline time.
async fn maybe_drop(
    me: usize,
    state: State,
    rng: &mut ChaCha8Rng,
    plan: &Plan,
    shared: &Shared,
) -> anyhow::Result<State> {
    let online = match state {
        State::Online(o) => o,
        offline => return Ok(offline),
    };
    if !chance(rng, plan.disconnect) {
        return Ok(State::Online(online));
    }
    let offline_ms = u64::try_from(plan.offline.as_millis()).unwrap_or(0);
    let pause = Duration::from_millis(rng.next_u64() % (offline_ms + 1));
    let client = go_offline(me, online).await?;
    shared.reconnects.fetch_add(1, Ordering::Relaxed);
    Ok(State::Offline {
        client: Box::new(client),
        until: Instant::now() + pause,
    })
}

fn reconnect(me: usize, state: State, plan: &Arc<Plan>, shared: &Arc<Shared>) -> State {
    match state {
        State::Offline { client, .. } => {
            if let Some(c) = shared.connected.get(me) {
                c.store(false, Ordering::SeqCst);
            }
            State::Online(go_online(me, *client, plan, shared))
        }
        online => online,
    }
}

/// Every client online, once each online loop has reported Connected (the broker keeps a
/// persistent session per inbox from now on).
pub(super) async fn all_online(
    clients: Vec<Client>,
    plan: &Arc<Plan>,
    shared: &Arc<Shared>,
    deadline: Instant,
) -> anyhow::Result<Vec<Online>> {
    let online: Vec<Online> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| go_online(i, c, plan, shared))
        .collect();
    loop {
        let up = shared
            .connected
            .iter()
            .filter(|c| c.load(Ordering::SeqCst))
            .count();
        if up == plan.n {
            return Ok(online);
        }
        if Instant::now() >= deadline {
            bail!(
                "only {up} of {} clients had connected at the timeout",
                plan.n
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The load: every client sends all its messages ([`drive`]); returns the clients, online.
pub(super) async fn load(
    online: Vec<Online>,
    plan: &Arc<Plan>,
    shared: &Arc<Shared>,
    deadline: Instant,
) -> anyhow::Result<Vec<Online>> {
    let drivers: Vec<_> = online
        .into_iter()
        .enumerate()
        .map(|(i, online)| tokio::spawn(drive(i, online, plan.clone(), shared.clone(), deadline)))
        .collect();
    let mut back_online = Vec::with_capacity(plan.n);
    let mut first_error = None;
    for (i, d) in drivers.into_iter().enumerate() {
        match d.await {
            Ok(Ok(client)) => back_online.push(client),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(anyhow!("the task of client {i} failed"));
            }
        }
    }
    if let Some(e) = first_error {
        let tally = shared.lock();
        return Err(e.context(format!(
            "{} of {} messages received, {} receipts",
            tally.distinct,
            plan.total(),
            tally.receipts.len()
        )));
    }
    Ok(back_online)
}

/// Waits until everything is received and every receipt is back, or the timeout; at the
/// timeout, says what was still missing (the stores are checked all the same).
pub(super) async fn settle(plan: &Plan, shared: &Shared, deadline: Instant) -> Option<String> {
    let total = plan.total();
    loop {
        let (distinct, receipts) = {
            let t = shared.lock();
            (t.distinct, t.receipts.len())
        };
        if distinct >= total && receipts >= total {
            return None;
        }
        if Instant::now() >= deadline {
            let why = format!(
                "the timeout passed with {distinct} of {total} messages received and {receipts} \
                 receipts"
            );
            eprintln!("soak: {why}; checking the stores");
            return Some(why);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Every client offline, each within 30 s (or the run's deadline, if later); the clients back.
pub(super) async fn all_offline(
    online: Vec<Online>,
    deadline: Instant,
) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(online.len());
    for (i, one) in online.into_iter().enumerate() {
        let until = (Instant::now() + Duration::from_secs(30)).max(deadline);
        let client = tokio::time::timeout_at(until, go_offline(i, one))
            .await
            .map_err(|_| anyhow!("the online loop of client {i} did not stop"))??;
        clients.push(client);
    }
    Ok(clients)
}
