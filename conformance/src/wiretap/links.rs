//! BROKER-6 at rest: nothing the server side keeps links a sender to a recipient.
//!
//! ```text
//!  every envelope published (tap: client -> broker PUBLISH payloads)
//!  every broker file (persistence, logs; also the copies read while a message was queued)
//!     payload found at offset o  =>  the record's metadata sits right before it:
//!        [o - METADATA_WINDOW, o)  must name no user other than the recipient (whose inbox topic
//!                                  must be there: the control that the window covers the record)
//!  every log file of the server    must name no user (id as text or raw) and no loopback address
//! ```
//!
//! A queued-message record of a broker that files messages under their publisher (Mosquitto's
//! `source_id` and `source_username`, written just before the topic and the payload) puts the
//! sender's client id in that window; with BROKER-6 the publisher is the front's random `p-...`
//! connection.

use sotto_core::UserId;
use sotto_server::broker::front::{TapDirection, TapRecord};
use sotto_wire::mqtt;

use super::needles::offsets;

/// How far before a payload a queued-message record keeps its metadata. Mosquitto 2.0's
/// `msg_store` chunk: source id, source username, topic, then the payload; the window covers
/// two 16-character user ids and an inbox topic (50 bytes) with room, and ends well inside the
/// chunk's fixed header when the source is a `p-<24 hex>` id.
pub(super) const METADATA_WINDOW: usize = 96;

/// What the search looked at and what it found.
#[derive(Debug, Default)]
pub(super) struct Links {
    /// Stored envelope records examined (payload found in a broker file).
    pub(super) records: usize,
    /// Log files searched.
    pub(super) logs: usize,
    /// One line per link or identifier found.
    pub(super) findings: Vec<String>,
}

/// The payloads clients published, forwarded to the broker, at least `min_len` long.
pub(super) fn published(frames: &[TapRecord]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = frames
        .iter()
        .filter(|r| r.direction == (TapDirection::ClientToBroker { forwarded: true }))
        .filter_map(|r| mqtt::publish_payload(&r.packet).ok().map(<[u8]>::to_vec))
        .filter(|p| p.len() >= 32)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The forms a user id takes in a file: its text (client ids, usernames, topics) and its bytes.
fn forms(id: &UserId) -> [Vec<u8>; 2] {
    [id.to_text().into_bytes(), id.0.to_vec()]
}

fn names(haystack: &[u8], id: &UserId) -> bool {
    forms(id).iter().any(|f| !offsets(haystack, f).is_empty())
}

/// Searches the broker's files: every stored envelope record for a second user beside its
/// recipient, every log file (`*.log`) for any user or address.
pub(super) fn search(
    files: &[(String, Vec<u8>)],
    users: &[(String, UserId)],
    payloads: &[Vec<u8>],
) -> Links {
    let mut links = Links::default();
    for (place, bytes) in files {
        for payload in payloads {
            for at in offsets(bytes, payload) {
                let window = &bytes[at.saturating_sub(METADATA_WINDOW)..at];
                let named: Vec<&(String, UserId)> =
                    users.iter().filter(|(_, id)| names(window, id)).collect();
                let recipient = named
                    .iter()
                    .find(|(_, id)| !offsets(window, id.inbox_topic().as_bytes()).is_empty());
                let Some((recipient, rid)) = recipient else {
                    // Not a queued-message record with its topic (a copy elsewhere): nothing to
                    // link it to here.
                    continue;
                };
                links.records += 1;
                for (name, _) in named.iter().filter(|(_, id)| id != rid) {
                    links.findings.push(format!(
                        "{place}: the envelope to {recipient} at offset {at} is stored beside \
                         {name}'s user id (a sender -> recipient link, BROKER-6)"
                    ));
                }
            }
        }
        if place.ends_with(".log") {
            links.logs += 1;
            for (name, id) in users {
                if names(bytes, id) {
                    links
                        .findings
                        .push(format!("{place}: the log names {name}'s user id"));
                }
            }
            for address in ["127.0.0.1", "::1"] {
                if !offsets(bytes, address.as_bytes()).is_empty() {
                    links
                        .findings
                        .push(format!("{place}: the log records an address ({address})"));
                }
            }
        }
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(b: u8) -> UserId {
        UserId([b; 10])
    }

    /// A record laid out as Mosquitto writes one: source id, username, topic, payload.
    fn record(source: &str, to: &UserId, payload: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; 40];
        r.extend_from_slice(source.as_bytes());
        r.extend_from_slice(source.as_bytes());
        r.extend_from_slice(to.inbox_topic().as_bytes());
        r.extend_from_slice(payload);
        r
    }

    #[test]
    fn a_record_filed_under_its_sender_is_a_link_and_one_under_a_random_id_is_not() {
        let (a, b) = (user(1), user(2));
        let users = vec![("A".to_owned(), a), ("B".to_owned(), b)];
        let payload = vec![7u8; 64];
        let linked = record(&a.to_text(), &b, &payload);
        let found = search(
            &[("db".to_owned(), linked)],
            &users,
            std::slice::from_ref(&payload),
        );
        assert_eq!((found.records, found.findings.len()), (1, 1), "{found:?}");
        let clean = record("p-0123456789abcdef01234567", &b, &payload);
        let found = search(&[("db".to_owned(), clean)], &users, &[payload]);
        assert_eq!((found.records, found.findings.len()), (1, 0), "{found:?}");
    }

    #[test]
    fn logs_name_no_one() {
        let a = user(1);
        let users = vec![("A".to_owned(), a)];
        let log = format!(
            "New client connected from 127.0.0.1:5000 as {}",
            a.to_text()
        );
        let found = search(&[("x.log".to_owned(), log.into_bytes())], &users, &[]);
        assert_eq!((found.logs, found.findings.len()), (1, 2), "{found:?}");
        let found = search(&[("x.log".to_owned(), b"Warning: x".to_vec())], &users, &[]);
        assert!(found.findings.is_empty());
    }
}
