//! `sotto demo`: the real stack in one process, then what the server saw.
//!
//! ```text
//!  temp dir ── sotto_server::Service (the one builder): Pki, membership (HTTPS, 127.0.0.1:free),
//!           │  directory of public keys (Req1)
//!           └─ message service: mTLS front ─ embedded broker (127.0.0.1:free)
//!                                 └─ wiretap: every MQTT packet the server side handled
//!  alice, bob, carol: sotto_client::Client, each with a SQLCipher store in the temp dir
//! ```
//!
//! The story: three people sign up (no personal data, Req1), exchange cards in person (Req2,
//! Req5), Alice writes to Bob while he is offline (Req4, the broker queues ciphertext), Bob reads
//! later and answers, receipts flow back; a group of three, Carol is removed and the group is
//! rekeyed so she cannot read what follows. At the end every PUBLISH the server handled is listed
//! (topic, size, first bytes) and searched for every text of the story: none may appear (Req8).
//! The stores on disk are searched too (Req7). Any broken expectation is an error (exit 1).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use sotto_client::{Chat, Client, ClientEvent, Config, KdfParams, SyncReport, UserId};
use sotto_server::Service;
use sotto_server::broker::front::{TapDirection, TapRecord};
use sotto_server::membership::DEFAULT_DIFFICULTY;
use sotto_wire::mqtt::{self, Packet};

/// Upper bound of every sync.
const WAIT: Duration = Duration::from_secs(20);
/// How long a sync waits with nothing new.
const QUIET: Duration = Duration::from_millis(500);
/// The demo's store passphrase (the stores are deleted at the end).
const PASSPHRASE: &[u8] = b"demo passphrase, not a secret";

/// Every text of the story: none may reach the server in the clear.
const TEXTS: [&str; 6] = [
    "hi bob, dinner tonight?",
    "8pm?",
    "yes, 8 works",
    "see you both at 8",
    "surprise party for carol!",
    "bring a cake",
];

struct Person {
    name: &'static str,
    client: Client,
}

impl Person {
    fn id(&self) -> UserId {
        self.client.user_id()
    }
}

async fn sync(p: &mut Person) -> anyhow::Result<SyncReport> {
    let report = p
        .client
        .sync(WAIT)
        .await
        .with_context(|| format!("{} could not sync", p.name))?;
    ensure!(
        report.complete,
        "{}'s sync did not finish in {WAIT:?}",
        p.name
    );
    Ok(report)
}

/// Tells the story of one sync.
fn show(
    out: &mut dyn Write,
    who: &Person,
    report: &SyncReport,
    names: &BTreeMap<UserId, &'static str>,
) -> anyhow::Result<()> {
    let name = |u: &UserId| names.get(u).copied().unwrap_or("someone");
    for e in &report.events {
        match e {
            ClientEvent::Message(m) => {
                let trust = crate::format::trust(m.trust).to_lowercase();
                let place = if m.group.is_some() {
                    " in the group"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "  {} reads from {} ({trust}){place}: {:?}",
                    who.name,
                    name(&m.from),
                    m.text
                )?;
            }
            ClientEvent::Delivered { by, .. } => writeln!(
                out,
                "  {} gets a receipt: delivered to {}",
                who.name,
                name(by)
            )?,
            ClientEvent::GroupKey { epoch, .. } => writeln!(
                out,
                "  {} receives the group key for epoch {epoch}",
                who.name
            )?,
            ClientEvent::RemovedFromGroup(_) => {
                writeln!(out, "  {} is told they were removed", who.name)?
            }
            ClientEvent::MemberConfirmed { epoch, index, .. } => writeln!(
                out,
                "  {} learns member #{index} holds epoch {epoch}",
                who.name
            )?,
            ClientEvent::Refused(r) => {
                writeln!(out, "  {} refused an envelope ({})", who.name, r.code())?
            }
            _ => {}
        }
    }
    Ok(())
}

/// One PUBLISH as the server saw it.
struct Seen {
    conn: u64,
    inbound: bool,
    topic: String,
    payload: Vec<u8>,
}

fn publishes(tap: &[TapRecord]) -> Vec<Seen> {
    tap.iter()
        .filter_map(|r| {
            let inbound = match r.direction {
                TapDirection::ClientToBroker { .. } => true,
                TapDirection::BrokerToClient | TapDirection::FrontToClient => false,
            };
            match mqtt::parse(&r.packet) {
                Ok(Packet::Publish(p)) => {
                    let start = r.packet.len().checked_sub(p.payload_len)?;
                    Some(Seen {
                        conn: r.conn,
                        inbound,
                        topic: p.topic.to_owned(),
                        payload: r.packet.get(start..)?.to_vec(),
                    })
                }
                _ => None,
            }
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Runs the demo, telling the story on `out`.
pub async fn run(out: &mut dyn Write) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    writeln!(
        out,
        "sotto demo: a real server in this process (membership over HTTPS, MQTT over mutual TLS),\n\
         three people with encrypted stores in {}\n",
        dir.path().display()
    )?;

    let service = Service::builder(dir.path().join("server"))
        .start()
        .await
        .context("starting the service")?;
    let mut tap = service.mqtt_wiretap();
    writeln!(
        out,
        "server: membership {}, broker {}, CA SHA-256 {}...",
        service.membership_url(),
        service.broker_addr(),
        &service.pki().ca_fingerprint()[..16]
    )?;

    writeln!(
        out,
        "\n1. Signup (Req1): keys only, no name, number or e-mail; {DEFAULT_DIFFICULTY}-bit proof of work"
    )?;
    let config = Config {
        kdf: KdfParams::default(),
        signup_one_time_prekeys: 10,
        establish_inbox: Some(WAIT),
        sync_quiet: QUIET,
        ..Config::default()
    };
    let mut people = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let client = Client::signup_with(
            &service.membership_url(),
            service.pki().ca_pem(),
            dir.path().join(format!("{name}.db")),
            PASSPHRASE,
            config.clone(),
        )
        .await
        .with_context(|| format!("{name} could not sign up"))?;
        writeln!(out, "  {name} is {}", client.user_id())?;
        people.push(Person { name, client });
    }
    let names: BTreeMap<UserId, &'static str> = people.iter().map(|p| (p.id(), p.name)).collect();
    let [mut alice, mut bob, mut carol]: [Person; 3] = people
        .try_into()
        .map_err(|_| anyhow::anyhow!("three people"))?;

    writeln!(
        out,
        "\n2. Cards exchanged in person (Req2, Req5): verified contacts, no server involved"
    )?;
    let cards = [
        alice.client.card()?,
        bob.client.card()?,
        carol.client.card()?,
    ];
    for (i, p) in [&mut alice, &mut bob, &mut carol].into_iter().enumerate() {
        for (j, card) in cards.iter().enumerate() {
            if i != j {
                p.client.add_card(card)?;
            }
        }
    }
    writeln!(
        out,
        "  alice's card: {}...{} ({} characters)",
        &cards[0][..24.min(cards[0].len())],
        &cards[0][cards[0].len().saturating_sub(8)..],
        cards[0].len()
    )?;
    writeln!(
        out,
        "  safety number alice/bob: {}",
        alice.client.safety_number(&bob.id())?
    )?;

    writeln!(
        out,
        "\n3. Bob is offline; Alice writes anyway (Req4: the first message carries the key share)"
    )?;
    alice.client.send(&bob.id(), TEXTS[0])?;
    alice.client.send(&bob.id(), TEXTS[1])?;
    let sent = sync(&mut alice).await?;
    writeln!(
        out,
        "  alice published {} envelope(s); the broker queues them in bob's inbox",
        sent.published
    )?;

    writeln!(out, "\n4. Bob comes online and reads; receipts go back")?;
    let got = sync(&mut bob).await?;
    show(out, &bob, &got, &names)?;
    ensure!(
        got.texts() == [TEXTS[0], TEXTS[1]],
        "bob should read alice's two messages, got {:?}",
        got.texts()
    );
    bob.client.send(&alice.id(), TEXTS[2])?;
    sync(&mut bob).await?;
    let got = sync(&mut alice).await?;
    show(out, &alice, &got, &names)?;
    ensure!(got.texts() == [TEXTS[2]], "alice should read bob's answer");

    writeln!(
        out,
        "\n5. Alice makes a group with Bob and Carol (she is the admin)"
    )?;
    let group = alice.client.create_group(&[bob.id(), carol.id()])?;
    sync(&mut alice).await?;
    for p in [&mut bob, &mut carol] {
        let got = sync(p).await?;
        show(out, p, &got, &names)?;
    }
    bob.client.send_group(&group, TEXTS[3])?;
    sync(&mut bob).await?;
    for p in [&mut alice, &mut carol] {
        let got = sync(p).await?;
        show(out, p, &got, &names)?;
        ensure!(
            got.texts() == [TEXTS[3]],
            "{} should read bob's group message",
            p.name
        );
    }

    writeln!(
        out,
        "\n6. Alice removes Carol: a new epoch with a fresh key, which Carol never gets"
    )?;
    alice.client.remove_from_group(&group, &carol.id())?;
    alice.client.send_group(&group, TEXTS[4])?;
    sync(&mut alice).await?;
    let got = sync(&mut bob).await?;
    show(out, &bob, &got, &names)?;
    ensure!(
        got.texts() == [TEXTS[4]],
        "bob should read the message after the rekey"
    );
    let got = sync(&mut carol).await?;
    show(out, &carol, &got, &names)?;
    ensure!(
        got.texts().is_empty(),
        "carol read a message sent after her removal"
    );
    ensure!(
        carol.client.groups().is_empty(),
        "carol should no longer be in the group"
    );
    bob.client.send_group(&group, TEXTS[5])?;
    sync(&mut bob).await?;
    let got = sync(&mut alice).await?;
    show(out, &alice, &got, &names)?;
    let in_group = alice.client.messages(&Chat::Group(group))?.len();
    writeln!(
        out,
        "  alice's store holds {in_group} message(s) of the group; carol saw only the first"
    )?;
    let _ = sync(&mut alice).await?;

    // Everything the server handled.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut records = Vec::new();
    while let Ok(r) = tap.try_recv() {
        records.push(r);
    }
    let seen = publishes(&records);
    let inbound: Vec<&Seen> = seen.iter().filter(|s| s.inbound).collect();
    writeln!(
        out,
        "\n7. What the server saw (Req8): {} MQTT packets, {} PUBLISH in, {} delivered out",
        records.len(),
        inbound.len(),
        seen.len() - inbound.len()
    )?;
    writeln!(out, "  conn  topic                  size  first bytes")?;
    for s in &inbound {
        let to = s
            .topic
            .strip_prefix("i/")
            .and_then(|u| UserId::parse(u).ok())
            .and_then(|u| names.get(&u).copied())
            .unwrap_or("?");
        let head: String = s
            .payload
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        writeln!(
            out,
            "  {:>4}  {:<20}  {:>4} B  {head}...   (to {to})",
            s.conn,
            s.topic,
            s.payload.len()
        )?;
    }
    ensure!(
        inbound.len() >= TEXTS.len(),
        "the wiretap saw fewer PUBLISH packets than messages sent"
    );
    for r in &records {
        for t in TEXTS {
            if contains(&r.packet, t.as_bytes()) {
                bail!(
                    "plaintext {t:?} visible to the server on connection {}",
                    r.conn
                );
            }
        }
    }
    writeln!(
        out,
        "  none of the {} texts appears in any of the {} packets: ciphertext only",
        TEXTS.len(),
        records.len()
    )?;

    for p in [alice, bob, carol] {
        p.client.close()?;
    }
    let mut checked = 0;
    for name in ["alice", "bob", "carol"] {
        let bytes = std::fs::read(dir.path().join(format!("{name}.db")))?;
        for t in TEXTS {
            ensure!(
                !contains(&bytes, t.as_bytes()),
                "plaintext {t:?} in {name}'s store file"
            );
        }
        checked += bytes.len();
    }
    writeln!(
        out,
        "  and none in the three store files on disk ({checked} bytes, SQLCipher, Req7)"
    )?;

    service.shutdown().await;
    writeln!(out, "\ndemo finished: everything as expected")?;
    Ok(())
}
