//! The wiretap run (Req8: the server can never read a chat).
//!
//! The real stack runs in-process in a temporary directory, and everything the server side
//! handles is recorded in plaintext, after TLS:
//!
//! ```text
//!  A, B, C: sotto_client::Client (SQLCipher stores, fast test KDF)
//!     |  HTTPS                          |  MQTT over mutual TLS
//!     v                                 v
//!  membership --http_wiretap()           front --mqtt_wiretap(): TapRecord (both directions)
//!     |  <tmp>/server (membership.db, CA)   |  plain MQTT, loopback
//!     v                                     v
//!  files searched                        embedded | Mosquitto (<tmp>/server/mosquitto)
//!  (the service is `sotto_server::Service`, started by its builder)
//! ```
//!
//! Both taps are attached before any client exists. Three people sign up; A and B scan each
//! other's cards (verified), A adds C from the directory (unverified); messages go both ways
//! pairwise, one to a connected recipient and others to offline ones (with Mosquitto, the broker
//! is restarted while one is queued, so its persistence file holds it), then a group of three
//! with a message from each member. Every text carries a fresh random canary.
//!
//! Then every needle ([`Needle`], `needles.rs`: each canary, each whole text, each client's identity private
//! keys, TLS private key (PEM and DER) and store passphrase, each message id; binary ones also in
//! hex) is searched for at every byte offset of every recorded MQTT packet, every HTTP request
//! (target and body) and response body, and every file the server side wrote (the membership data
//! directory; with Mosquitto its directory, persistence file included). Each hit is a finding
//! (`"<kind> <which> in <where> at offset N"`; the secret itself is never printed). So that the
//! search cannot pass vacuously, every canary must be found by the same search in its recipients'
//! decrypted messages, or the run fails.
//!
//! Req6 at the broker (`retention.rs`): before the stop, every envelope the broker delivered and
//! its recipient acknowledged is looked for in the broker's own state (the embedded broker's
//! inboxes, or Mosquitto's persistence file rewritten after the last PUBACK); each one still
//! there is a finding. Its control: while B is offline, the same reading finds B's queued envelope.

mod links;
mod needles;
mod retention;
mod scenario;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sotto_server::broker::front::TapRecord;
use sotto_server::membership::HttpTapRecord;
use sotto_server::{Broker, ServiceError};

use crate::evidence::WiretapEvidence;
use crate::target::Target;
pub use needles::{Needle, search, search_frames, search_http};
use scenario::{Played, drain, person};

/// Upper bound of every sync and wait of the run.
pub const WAIT: Duration = Duration::from_secs(20);
/// Quiet period of the syncs.
const QUIET: Duration = Duration::from_millis(500);
/// Proof-of-work difficulty of the run's membership service (small, but the work path runs).
const DIFFICULTY: u8 = 4;

/// Why the run could not produce evidence (findings are evidence, not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WiretapError {
    /// File or socket I/O.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The service (PKI, membership or message service) failed.
    #[error("service: {0}")]
    Service(#[from] ServiceError),
    /// A client failed.
    #[error("client: {0}")]
    Client(#[from] sotto_client::ClientError),
    /// A client's store failed.
    #[error("store: {0}")]
    Store(#[from] sotto_store::StoreError),
    /// Mosquitto was asked for but no `mosquitto` binary is installed.
    #[error("`mosquitto` is not installed")]
    MosquittoMissing,
    /// The OS random source failed.
    #[error("random source failed")]
    Random,
    /// A step of the scenario did not happen as expected (no secret in the text).
    #[error("scenario: {0}")]
    Scenario(String),
}

/// Runs the scenario on the real stack with `target`'s broker behind the front and searches
/// everything the server side saw and wrote (a NATS cluster's files are the engine's, not the
/// service's: its state is read through its API, `retention.rs`). `findings` is empty when Req8 holds.
pub async fn run(target: impl Into<Target>) -> Result<WiretapEvidence, WiretapError> {
    let target = target.into();
    let broker = target.broker;
    if broker == Broker::Mosquitto && !broker.is_available() {
        return Err(WiretapError::MosquittoMissing);
    }
    let dir = tempfile::tempdir()?;
    let mut service = target
        .builder(dir.path().join("server"))
        .difficulty(DIFFICULTY)
        .start()
        .await?;
    let server_dir = service.data_dir().to_owned();
    let no_tap = || WiretapError::Scenario("the service has no tap".to_owned());
    let mut mqtt_tap = service.mqtt_wiretap();
    let mut http_tap = service.http_wiretap().ok_or_else(no_tap)?;

    let mut played = scenario::play(&mut service, &mut mqtt_tap, dir.path()).await?;
    let needles = needles_of(&mut played)?;
    let users: Vec<(String, sotto_core::UserId)> = played
        .people
        .iter()
        .map(|p| (p.name.to_owned(), p.id()))
        .collect();
    let public_keys: Vec<(String, [u8; 32], String)> = played
        .people
        .iter()
        .map(|p| {
            (
                p.name.to_owned(),
                p.client.device().public_identity().iks().0,
                p.id().inbox_topic(),
            )
        })
        .collect();

    // Req6 at the broker: every acknowledged envelope is gone from the broker's own state.
    let mut frames = std::mem::take(&mut played.frames);
    frames.extend(drain(&mut mqtt_tap));
    let retention = retention::check(&service, &frames, std::time::SystemTime::now()).await?;

    // Stop everything so that every file is written, then collect.
    for p in played.people {
        p.client.close()?;
    }
    service.shutdown().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    frames.extend(drain(&mut mqtt_tap));
    let http = drain(&mut http_tap);
    let recorded = Recorded {
        frames,
        http,
        files: read_files(&server_dir)?,
        snapshots: played.snapshots,
    };
    recorded.controls(&public_keys)?;
    let mut evidence = recorded.evidence(broker, &needles);
    evidence.acknowledged_envelopes = retention.acknowledged;
    evidence.retention_source = retention.source;
    evidence.findings.extend(retention.findings);

    // BROKER-6: no stored envelope record names its sender, no log names anyone.
    let payloads = links::published(&recorded.frames);
    let broker_files: Vec<(String, Vec<u8>)> = recorded
        .files
        .iter()
        .chain(&recorded.snapshots)
        .filter(|(place, _)| place.contains("mosquitto"))
        .cloned()
        .collect();
    let found = links::search(&broker_files, &users, &payloads);
    if broker == Broker::Mosquitto && (found.records == 0 || found.logs == 0) {
        // Control: the copy of the persistence file read while a message was queued holds that
        // message's record, and Mosquitto writes its log file, so the link search had a record
        // and a log to look at.
        return Err(WiretapError::Scenario(format!(
            "the link search found {} stored envelope records and {} log files in Mosquitto's files",
            found.records, found.logs
        )));
    }
    evidence.stored_records = found.records;
    evidence.logs = found.logs;
    evidence.findings.extend(found.findings);
    Ok(evidence)
}

/// The needles: every canary (checked to be in its recipients' decrypted messages, so the
/// needles are real), every text, every secret of every person, every message id in their
/// stores.
fn needles_of(played: &mut Played) -> Result<Vec<Needle>, WiretapError> {
    let Played {
        people,
        sent,
        group,
        ..
    } = played;
    let mut needles = Vec::new();
    for (n, s) in sent.iter().enumerate() {
        let canary = Needle::text(
            "canary",
            &format!("of message {n} ({})", s.label),
            s.canary.clone(),
        );
        for (i, chat) in &s.recipients {
            let p = person(people, *i)?;
            let decrypted: Vec<u8> = p
                .client
                .messages(chat)?
                .into_iter()
                .flat_map(|m| m.text.into_bytes())
                .collect();
            if search(std::slice::from_ref(&canary), "decrypted", &decrypted).is_empty() {
                return Err(WiretapError::Scenario(format!(
                    "the canary of message {n} ({}) is not in {}'s decrypted messages",
                    s.label, p.name
                )));
            }
        }
        needles.push(canary);
        needles.push(Needle::text(
            "text",
            &format!("of message {n} ({})", s.label),
            s.text.clone(),
        ));
    }

    // Every secret of every person, and every message id in their stores.
    let mut ids = BTreeSet::new();
    for p in people.iter() {
        needles.extend(needles::key_needles(p)?);
        for chat in scenario::chats(p, *group)? {
            for m in p.client.messages(&chat)? {
                ids.insert(m.id.0);
            }
        }
    }
    if ids.len() < sent.len() {
        return Err(WiretapError::Scenario(format!(
            "{} message ids in the stores for {} messages",
            ids.len(),
            sent.len()
        )));
    }
    for (n, id) in ids.iter().enumerate() {
        needles.push(Needle::binary("message-id", &format!("#{n}"), id));
    }

    Ok(needles)
}

/// Everything the server side saw and wrote: the MQTT packets, the HTTP exchanges, the files of
/// its data directory (Mosquitto's included) and the files read while a message was queued.
struct Recorded {
    frames: Vec<TapRecord>,
    http: Vec<HttpTapRecord>,
    files: Vec<(String, Vec<u8>)>,
    snapshots: Vec<(String, Vec<u8>)>,
}

/// Every regular file under `dir`, recursively, sorted, with its bytes.
fn read_files(dir: &std::path::Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out.into_iter()
        .map(|path| Ok((format!("file {}", path.display()), std::fs::read(&path)?)))
        .collect()
}

impl Recorded {
    /// Controls: what the server must see is found by the same search, so the haystacks are
    /// real: each inbox topic in the MQTT packets, each public identity key (sent at signup) in
    /// the HTTP records and in the server's files.
    fn controls(&self, public_keys: &[(String, [u8; 32], String)]) -> Result<(), WiretapError> {
        let server_files: Vec<u8> = self.files.iter().flat_map(|(_, b)| b.clone()).collect();
        for (name, key, topic) in public_keys {
            let inbox = [Needle::text("inbox topic", name, topic.as_bytes())];
            if search_frames(&inbox, &self.frames).is_empty() {
                return Err(WiretapError::Scenario(format!(
                    "{name}'s inbox topic is in no recorded MQTT packet"
                )));
            }
            let needle = [Needle::binary("public-key", name, key)];
            if search_http(&needle, &self.http).is_empty() {
                return Err(WiretapError::Scenario(format!(
                    "{name}'s public identity key is in no recorded HTTP body"
                )));
            }
            if search(&needle, "server files", &server_files).is_empty() {
                return Err(WiretapError::Scenario(format!(
                    "{name}'s public identity key is in no server file"
                )));
            }
        }
        Ok(())
    }

    /// Searches every haystack for every needle.
    fn evidence(&self, broker: Broker, needles: &[Needle]) -> WiretapEvidence {
        let mut findings = search_frames(needles, &self.frames);
        findings.extend(search_http(needles, &self.http));
        for (place, bytes) in self.files.iter().chain(&self.snapshots) {
            findings.extend(search(needles, place, bytes));
        }
        let exchanges: BTreeSet<u64> = self
            .http
            .iter()
            .filter_map(|r| match r {
                HttpTapRecord::Request { exchange, .. } => Some(*exchange),
                _ => None,
            })
            .collect();
        let evidence = WiretapEvidence {
            broker: broker.name().to_owned(),
            frames: self.frames.len(),
            bytes: self.frames.iter().map(|r| r.packet.len()).sum(),
            http_exchanges: exchanges.len(),
            files: self.files.len() + self.snapshots.len(),
            needles: needles.len(),
            findings,
            acknowledged_envelopes: 0,
            retention_source: String::new(),
            stored_records: 0,
            logs: 0,
            classes: needles.iter().fold(BTreeMap::new(), |mut m, n| {
                *m.entry(n.kind().to_owned()).or_insert(0) += 1;
                m
            }),
        };
        tracing::info!(
            broker = evidence.broker,
            frames = evidence.frames,
            http = evidence.http_exchanges,
            files = evidence.files,
            needles = evidence.needles,
            findings = evidence.findings.len(),
            "wiretap run finished"
        );
        evidence
    }
}
