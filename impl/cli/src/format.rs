//! How things are shown and named on the command line: times, trust, user ids and group ids (in
//! full or as a unique prefix), and received messages.

use sotto_client::{Client, ClientEvent, GroupId, Trust, UserId};

use crate::errors::hinted;

/// `verified` / `UNVERIFIED`.
pub fn trust(t: Trust) -> &'static str {
    match t {
        Trust::Verified => "verified",
        Trust::Unverified => "UNVERIFIED",
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A user id given on the command line: a full id, or a unique prefix of a contact's id.
pub fn user(client: &Client, text: &str) -> anyhow::Result<UserId> {
    let text = text.trim();
    if let Ok(u) = UserId::parse(text) {
        return Ok(u);
    }
    let contacts = client.contacts().unwrap_or_default();
    // A contact's name, without regard to case.
    let named: Vec<UserId> = contacts
        .iter()
        .filter(|c| {
            c.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(text))
        })
        .map(|c| c.user)
        .collect();
    if let [one] = named.as_slice() {
        return Ok(*one);
    }
    let matches: Vec<UserId> = contacts
        .iter()
        .map(|c| c.user)
        .filter(|u| !text.is_empty() && u.to_text().starts_with(text))
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(hinted(
            format!("{text:?} is not a user id, a contact's name, or the start of a contact's id"),
            "a user id is 16 characters a-z and 2-7; see `sotto contacts`",
        )),
        _ => Err(hinted(
            format!("{text:?} matches several contacts"),
            "give more characters of the user id; see `sotto contacts`",
        )),
    }
}

/// How a person is shown: `name (user id)` for a named contact, the user id otherwise.
pub fn who(client: &Client, user: &UserId) -> String {
    let name = client
        .contacts()
        .ok()
        .and_then(|cs| cs.into_iter().find(|c| c.user == *user))
        .and_then(|c| c.name);
    match name {
        Some(n) => format!("{n} ({user})"),
        None => user.to_string(),
    }
}

/// A group id given on the command line: in full or a unique prefix.
pub fn group(client: &Client, text: &str) -> anyhow::Result<GroupId> {
    let text = text.trim();
    let groups = client.groups();
    let matches: Vec<GroupId> = groups
        .iter()
        .map(|g| g.id)
        .filter(|g| !text.is_empty() && g.to_string().starts_with(text))
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(hinted(
            format!("you are in no group {text:?}"),
            "see your groups and their ids with `sotto group list`",
        )),
        _ => Err(hinted(
            format!("{text:?} matches several groups"),
            "give more characters of the group id; see `sotto group list`",
        )),
    }
}

/// One line for an event worth showing; `None` for the rest.
pub fn event(e: &ClientEvent) -> Option<String> {
    match e {
        ClientEvent::Message(m) => {
            let place = m
                .group
                .map(|g| format!(" in group {}", short_group(&g)))
                .unwrap_or_default();
            Some(format!(
                "[{}] {} ({}){place}: {}",
                time(m.sent_at),
                m.from,
                trust(m.trust),
                m.text
            ))
        }
        ClientEvent::Delivered { id, by, complete } => Some(format!(
            "  delivered to {by}: message {}{}",
            short_hex(&id.to_string()),
            if *complete { " (all recipients)" } else { "" }
        )),
        ClientEvent::NewContact(u) => Some(format!(
            "  new contact {u} (UNVERIFIED: compare safety numbers with `sotto verify {u}`)"
        )),
        ClientEvent::IdentityChanged {
            contact,
            was_verified,
        } => Some(format!(
            "  {contact} writes under a NEW identity{}: the message waits unopened; \
             `sotto identity {contact}` shows both safety numbers, then `sotto accept {contact}` \
             or `sotto reject {contact}`",
            if *was_verified {
                " (the one you had was VERIFIED)"
            } else {
                ""
            }
        )),
        ClientEvent::GroupKey { group, epoch } => Some(format!(
            "  group {}: key for epoch {epoch} received",
            short_group(group)
        )),
        ClientEvent::RemovedFromGroup(g) => {
            Some(format!("  group {}: the admin removed you", short_group(g)))
        }
        ClientEvent::MemberLeft { group, user } => Some(format!(
            "  group {}: {user} left; removed, with a new key for the others",
            short_group(group)
        )),
        ClientEvent::HandoverReceived { group, epoch } => Some(format!(
            "  group {}: the admin handed you the admin role (epoch {epoch})",
            short_group(group)
        )),
        ClientEvent::TookOverGroup { group, epoch } => Some(format!(
            "  group {}: you are its admin now; epoch {epoch}'s key went to every member",
            short_group(group)
        )),
        ClientEvent::Undeliverable {
            id,
            recipient,
            reason,
        } => Some(format!(
            "  UNDELIVERABLE to {recipient}: message {}: {reason}; it is not sent again",
            short_hex(&id.to_string())
        )),
        // The person's own block (RX-11): nothing to tell them.
        ClientEvent::Refused(r) if r.code() == "blocked" => None,
        ClientEvent::Refused(r) => Some(format!("  an envelope was refused ({})", r.code())),
        ClientEvent::ContentRejected(r) => {
            Some(format!("  a message's content was refused ({})", r.code()))
        }
        _ => None,
    }
}

/// The first 12 characters of a group id (enough to name it on the command line).
pub fn short_group(g: &GroupId) -> String {
    g.to_string().chars().take(12).collect()
}

fn short_hex(s: &str) -> String {
    s.chars().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(1_767_225_600_000), "2026-01-01 00:00:00 UTC");
        assert_eq!(time(951_782_400_000 + 3_661_000), "2000-02-29 01:01:01 UTC");
    }
}
