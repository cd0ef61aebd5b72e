//! The stack and its people: the service of one broker, concurrent signups, the pairs with their
//! cards exchanged, the credentials and MQTT options of a raw connection ([`Creds`]), and the
//! warm-up that brings two device copies to ordinary data envelopes.

use std::time::Duration;

use rand_core::OsRng;
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use sotto_client::{Client, Config, UserId};
use sotto_core::envelope::TYPE_DATA;
use sotto_core::{Content, Device};
use sotto_server::Broker;
use sotto_store::Setting;
use sotto_testkit::nats::TestNats;
use sotto_testkit::{TestStack, exchange_cards};

use crate::R;
use crate::clock::now_ms;

/// Bound of every setup step (signup, connect, subscribe).
pub const SETUP_WAIT: Duration = Duration::from_secs(30);

/// The benchmark's clients: cheap Argon2, ten one-time prekeys, the inbox session established.
fn config() -> Config {
    Config {
        establish_inbox: Some(SETUP_WAIT),
        ..sotto_testkit::test_config()
    }
}

/// The service of one broker, behind the front: the embedded broker, Mosquitto, or a throwaway
/// 3-node NATS cluster (`sotto_testkit::nats`, returned so that it lives as long as the run).
pub async fn start_stack(broker: Broker) -> R<(TestStack, Option<TestNats>)> {
    if broker != Broker::Nats {
        return Ok((TestStack::start(broker).await, None));
    }
    let nats = TestNats::start()
        .await
        .ok_or("nats-server is not installed (apt-get install nats-server)")?;
    let cluster = nats.cluster();
    Ok((
        TestStack::build(broker, |b| b.nats(cluster)).await,
        Some(nats),
    ))
}

/// Signs up `n` users concurrently.
///
/// Not `TestStack::signup_with`: that one borrows the stack (no concurrent tasks) and panics,
/// while a failed signup here fails only this broker's run (reported, the other broker still
/// runs).
async fn signup(stack: &TestStack, n: usize) -> R<Vec<Client>> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let url = stack.url();
        let ca = stack.ca_pem().to_owned();
        let path = stack.store_path(&format!("user{i}"));
        tasks.push(tokio::spawn(async move {
            Client::signup_with(&url, &ca, path, b"benchmark passphrase", config()).await
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await??);
    }
    Ok(clients)
}

/// A sender -> receiver pair: accounts for the full `Client` phase, credentials for the raw
/// phases (which warm up copies of the devices).
pub struct Pair {
    /// The sender.
    pub a: Client,
    /// The receiver.
    pub b: Client,
    /// The sender's raw connection.
    pub ca: Creds,
    /// The receiver's raw connection.
    pub cb: Creds,
}

/// Signs up `2 * pairs + 4` users and exchanges cards within each pair: `pairs` pairs for
/// phases 1 to 3, the (sender, recipient) pair of the raw drain (phase 4), and the pair of the
/// drains through the full client (phases 5 and 6), whose inbox nothing else has used.
pub async fn accounts(stack: &TestStack, pairs: usize) -> R<Accounts> {
    let mut accounts = signup(stack, 2 * pairs + 7).await?;
    let mut next = || accounts.pop().ok_or("signup");
    let mut drain_pair = (next()?, next()?);
    exchange_cards(&mut drain_pair.0, &mut drain_pair.1);
    let mut client_drain_pair = (next()?, next()?);
    exchange_cards(&mut client_drain_pair.0, &mut client_drain_pair.1);
    let mut commit = CommitAccounts {
        sender: next()?,
        empty: next()?,
        full: next()?,
    };
    exchange_cards(&mut commit.sender, &mut commit.empty);
    exchange_cards(&mut commit.sender, &mut commit.full);
    let mut out = Vec::new();
    while let (Ok(mut b), Ok(mut a)) = (next(), next()) {
        exchange_cards(&mut a, &mut b);
        let (ca, cb) = (Creds::of(&a)?, Creds::of(&b)?);
        out.push(Pair { a, b, ca, cb });
    }
    Ok(Accounts {
        pairs: out,
        drain_pair,
        client_drain_pair,
        commit,
    })
}

/// The accounts of every phase, each used by one phase only.
pub struct Accounts {
    /// The pairs of the throughput phases.
    pub pairs: Vec<Pair>,
    /// The raw drain's sender and recipient.
    pub drain_pair: (Client, Client),
    /// The full-client drain's sender and recipient.
    pub client_drain_pair: (Client, Client),
    /// The commit cost's accounts.
    pub commit: CommitAccounts,
}

/// The commit cost's accounts: one sender, two recipients that differ only in their replay
/// cache (empty, full) and drain the same number of texts in turn.
pub struct CommitAccounts {
    /// Writes to both recipients.
    pub sender: Client,
    /// Its replay cache stays empty.
    pub empty: Client,
    /// Its replay cache is filled (LIM-8) before the first drain.
    pub full: Client,
}

/// What a raw connection needs: the user id and TLS credentials from the account's store.
#[derive(Clone)]
pub struct Creds {
    /// The account (client id, inbox).
    pub id: UserId,
    host: String,
    port: u16,
    tls: TlsConfiguration,
}

impl Creds {
    /// The credentials of `client`'s account, read from its store.
    pub fn of(client: &Client) -> R<Creds> {
        let store = client.store();
        let get = |s: Setting| -> R<String> {
            Ok(store.setting_text(s)?.ok_or("setting missing")?.to_string())
        };
        let tls = sotto_client::tls::client_config(
            &get(Setting::CaPem)?,
            Some((&get(Setting::CertificatePem)?, &get(Setting::TlsKeyPem)?)),
        )?;
        let (host, port) = client
            .broker_address()
            .rsplit_once(':')
            .ok_or("broker address")?;
        Ok(Creds {
            id: client.user_id(),
            host: host.to_owned(),
            port: port.parse()?,
            tls: TlsConfiguration::Rustls(tls),
        })
    }

    /// The client's MQTT settings (mutual TLS, client id = user id, persistent session, manual
    /// acks), with rumqttc's in-flight window at the client's window of publishes
    /// (`Config::max_inflight`; the client itself gives rumqttc four times that, so that its acks
    /// never wait behind publishes).
    pub fn options(&self) -> MqttOptions {
        let c = Config::default();
        let mut o = MqttOptions::new(self.id.to_text(), self.host.clone(), self.port);
        o.set_transport(Transport::tls_with_config(self.tls.clone()));
        o.set_clean_session(false);
        o.set_manual_acks(true);
        o.set_keep_alive(c.keep_alive);
        o.set_max_packet_size(c.max_packet, c.max_packet);
        o.set_inflight(c.max_inflight as u16);
        o
    }
}

/// Messages and their receipts until the sender's epoch is acknowledged and its envelopes are
/// ordinary data envelopes (EPOCH-3), as in a running conversation.
pub fn warm_up(a: &mut Device, b: &mut Device) -> R<()> {
    for _ in 0..4 {
        let now = now_ms();
        let out = a.send(&mut OsRng, now, b.user_id(), &Content::Text("hello".into()))?;
        b.receive(now, &out.envelope)?;
        if out.envelope.first() == Some(&TYPE_DATA) {
            return Ok(());
        }
        let receipt = b.send(
            &mut OsRng,
            now,
            a.user_id(),
            &Content::Receipt(vec![out.id]),
        )?;
        a.receive(now, &receipt.envelope)?;
    }
    Ok(())
}
