//! The in-memory demo: three devices and a relay that stores ciphertext per inbox until it is
//! acknowledged (Req6), so everything the "server" ever held can be shown at the end (Req8).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::Write;

use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};
use sotto_core::{Content, Device, Error, Incoming, Outgoing, UserId};

/// A demo failure: a protocol error, an I/O error, or a broken expectation.
#[derive(Debug)]
pub enum DemoError {
    /// The core refused something it should have accepted.
    Protocol(&'static str, Error),
    /// Writing the output failed.
    Io(std::io::Error),
    /// Something did not happen as the demo expects.
    Unexpected(String),
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemoError::Protocol(what, e) => write!(f, "{what}: {e} ({})", e.code()),
            DemoError::Io(e) => write!(f, "output: {e}"),
            DemoError::Unexpected(s) => f.write_str(s),
        }
    }
}

impl From<std::io::Error> for DemoError {
    fn from(e: std::io::Error) -> Self {
        DemoError::Io(e)
    }
}

/// The relay: one queue per inbox topic, and a log of every frame it ever held.
#[derive(Default)]
struct Relay {
    inboxes: BTreeMap<UserId, VecDeque<Vec<u8>>>,
    seen: Vec<(String, Vec<u8>)>,
}

impl Relay {
    fn publish(&mut self, o: &Outgoing) {
        for to in &o.to {
            self.seen.push((to.inbox_topic(), o.envelope.clone()));
            self.inboxes
                .entry(*to)
                .or_default()
                .push_back(o.envelope.clone());
        }
    }

    fn held(&self) -> usize {
        self.inboxes.values().map(VecDeque::len).sum()
    }
}

struct Person {
    name: &'static str,
    device: Device,
}

/// Delivers everything queued for `p`, retrying what arrives before its epoch (RX-8); each message
/// leaves the relay once the device accepted it (the commit-then-ack of RX-4).
fn read_inbox(relay: &mut Relay, p: &mut Person, now: u64) -> Result<Vec<Incoming>, DemoError> {
    let mut got = Vec::new();
    let mut parked = Vec::new();
    let queue = relay.inboxes.entry(*p.device.user_id()).or_default();
    while let Some(env) = queue.pop_front() {
        match p.device.receive(now, &env) {
            Ok(i) => got.push(i),
            Err(e) if e.is_retryable() => parked.push(env),
            Err(e) => return Err(DemoError::Protocol("receive", e)),
        }
    }
    // Retry parked envelopes until nothing more opens.
    let mut progress = true;
    while progress && !parked.is_empty() {
        progress = false;
        let mut still = Vec::new();
        for env in parked {
            match p.device.receive(now, &env) {
                Ok(i) => {
                    got.push(i);
                    progress = true;
                }
                Err(e) if e.is_retryable() => still.push(env),
                Err(e) => return Err(DemoError::Protocol("receive", e)),
            }
        }
        parked = still;
    }
    relay
        .inboxes
        .entry(*p.device.user_id())
        .or_default()
        .extend(parked);
    Ok(got)
}

fn show(
    out: &mut dyn Write,
    who: &Person,
    got: &[Incoming],
    names: &BTreeMap<UserId, &str>,
) -> Result<(), DemoError> {
    for i in got {
        let from = names.get(&i.from).copied().unwrap_or("someone");
        let trust = match i.trust {
            sotto_core::Trust::Verified => "verified",
            sotto_core::Trust::Unverified => "unverified",
        };
        match &i.content {
            Content::Text(t) => {
                let place = if i.group.is_some() {
                    " in the group"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "  {} reads from {from} ({trust}){place}: {t:?}",
                    who.name
                )?;
            }
            Content::GroupKey(_) => {
                writeln!(out, "  {} receives the group key from {from}", who.name)?
            }
            Content::GroupRemoved(_) => {
                writeln!(out, "  {} is told by {from} they were removed", who.name)?
            }
            Content::Receipt(ids) => writeln!(
                out,
                "  {} gets a receipt from {from} for {} message(s)",
                who.name,
                ids.len()
            )?,
            other => writeln!(out, "  {} gets {other:?} from {from}", who.name)?,
        }
    }
    Ok(())
}

fn send(
    relay: &mut Relay,
    rng: &mut ChaCha20Rng,
    now: u64,
    from: &mut Person,
    to: &Person,
    text: &str,
    out: &mut dyn Write,
) -> Result<(), DemoError> {
    let o = from
        .device
        .send(rng, now, to.device.user_id(), &Content::Text(text.into()))
        .map_err(|e| DemoError::Protocol("send", e))?;
    writeln!(
        out,
        "  {} -> {}: {text:?} ({} bytes on the wire)",
        from.name,
        to.name,
        o.envelope.len()
    )?;
    relay.publish(&o);
    Ok(())
}

/// Runs the demo, writing the story to `out`.
pub fn run(seed: Option<u64>, out: &mut dyn Write) -> Result<(), DemoError> {
    let seed = seed.unwrap_or_else(|| OsRng.next_u64());
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut now: u64 = 1_767_225_600_000;
    let mut relay = Relay::default();
    let mut people: Vec<Person> = ["alice", "bob", "carol"]
        .into_iter()
        .map(|name| {
            let user = UserId::random(&mut rng);
            Person {
                name,
                device: Device::new(&mut rng, user),
            }
        })
        .collect();
    let names: BTreeMap<UserId, &str> = people
        .iter()
        .map(|p| (*p.device.user_id(), p.name))
        .collect();
    writeln!(
        out,
        "sotto demo (seed {seed}): three devices, an in-memory relay, no network\n"
    )?;

    writeln!(
        out,
        "1. Cards exchanged in person (Req2, Req5): no server involved"
    )?;
    let cards: Vec<_> = people
        .iter()
        .map(|p| p.device.card())
        .collect::<Result<_, _>>()
        .map_err(|e| DemoError::Protocol("card", e))?;
    for (i, p) in people.iter_mut().enumerate() {
        for (j, c) in cards.iter().enumerate() {
            if i != j {
                p.device.add_contact_from_card(c);
            }
        }
    }
    let uri = cards.first().map(|c| c.to_uri()).unwrap_or_default();
    writeln!(
        out,
        "  alice's card: {}...{} ({} characters)",
        &uri[..24.min(uri.len())],
        &uri[uri.len().saturating_sub(8)..],
        uri.len()
    )?;
    let (alice, rest) = people.split_at_mut(1);
    let (bob, carol) = rest.split_at_mut(1);
    let (alice, bob, carol) = (&mut alice[0], &mut bob[0], &mut carol[0]);
    let sn = alice
        .device
        .safety_number(bob.device.user_id())
        .map_err(|e| DemoError::Protocol("safety number", e))?;
    writeln!(out, "  safety number alice/bob: {sn}")?;

    writeln!(
        out,
        "\n2. Bob is offline; Alice writes anyway (Req4: the first message carries the key share)"
    )?;
    send(
        &mut relay,
        &mut rng,
        now,
        alice,
        bob,
        "hi bob, dinner tonight?",
        out,
    )?;
    now += 5_000;
    send(&mut relay, &mut rng, now, alice, bob, "8pm?", out)?;
    writeln!(
        out,
        "  the relay holds {} ciphertext(s) for bob",
        relay.held()
    )?;

    now += 3_600_000;
    writeln!(out, "\n3. An hour later Bob comes online and reads")?;
    let got = read_inbox(&mut relay, bob, now)?;
    show(out, bob, &got, &names)?;
    let ids = got.iter().map(|i| i.id).collect();
    let receipt = bob
        .device
        .send(
            &mut rng,
            now,
            alice.device.user_id(),
            &Content::Receipt(ids),
        )
        .map_err(|e| DemoError::Protocol("receipt", e))?;
    relay.publish(&receipt);
    send(&mut relay, &mut rng, now, bob, alice, "yes, 8 works", out)?;
    writeln!(
        out,
        "  the relay now holds {} ciphertext(s) (Bob's copies are gone once delivered, Req6)",
        relay.held()
    )?;
    let got = read_inbox(&mut relay, alice, now)?;
    show(out, alice, &got, &names)?;

    writeln!(
        out,
        "\n4. Alice makes a group with Bob and Carol (the admin's group master key)"
    )?;
    let (gid, outs) = alice
        .device
        .create_group(
            &mut rng,
            now,
            &[*bob.device.user_id(), *carol.device.user_id()],
        )
        .map_err(|e| DemoError::Protocol("create group", e))?;
    outs.iter().for_each(|o| relay.publish(o));
    for p in [&mut *bob, &mut *carol] {
        let got = read_inbox(&mut relay, p, now)?;
        show(out, p, &got, &names)?;
    }
    now += 60_000;
    let m = bob
        .device
        .send_group(now, &gid, &Content::Text("see you both at 8".into()))
        .map_err(|e| DemoError::Protocol("group send", e))?;
    writeln!(
        out,
        "  bob -> group: one {}-byte envelope, published to {} inboxes",
        m.envelope.len(),
        m.to.len()
    )?;
    relay.publish(&m);
    for p in [&mut *alice, &mut *carol] {
        let got = read_inbox(&mut relay, p, now)?;
        show(out, p, &got, &names)?;
    }

    writeln!(
        out,
        "\n5. Alice removes Carol: a new epoch with a fresh group key, which Carol never gets"
    )?;
    let outs = alice
        .device
        .remove_from_group(&mut rng, now, &gid, &carol.device.user_id().clone())
        .map_err(|e| DemoError::Protocol("remove", e))?;
    outs.iter().for_each(|o| relay.publish(o));
    for p in [&mut *bob, &mut *carol] {
        let got = read_inbox(&mut relay, p, now)?;
        show(out, p, &got, &names)?;
    }
    let secret = alice
        .device
        .send_group(
            now,
            &gid,
            &Content::Text("surprise party for carol!".into()),
        )
        .map_err(|e| DemoError::Protocol("group send", e))?;
    relay.publish(&secret);
    let got = read_inbox(&mut relay, bob, now)?;
    show(out, bob, &got, &names)?;
    match carol.device.receive(now, &secret.envelope) {
        Err(e) => writeln!(
            out,
            "  carol, given the same envelope anyway: refused ({})",
            e.code()
        )?,
        Ok(_) => {
            return Err(DemoError::Unexpected(
                "a removed member opened a later group message".into(),
            ));
        }
    }

    writeln!(
        out,
        "\n6. What the server saw (Req8): {} frames, ciphertext only",
        relay.seen.len()
    )?;
    let plaintexts = ["dinner", "8pm", "8 works", "see you", "surprise"];
    for (topic, env) in &relay.seen {
        let hex: String = env.iter().take(24).map(|b| format!("{b:02x}")).collect();
        writeln!(out, "  {topic}  {:>4} B  {hex}...", env.len())?;
        if plaintexts
            .iter()
            .any(|p| env.windows(p.len()).any(|w| w == p.as_bytes()))
        {
            return Err(DemoError::Unexpected(format!(
                "plaintext visible in a frame to {topic}"
            )));
        }
    }
    if relay.held() != 0 {
        return Err(DemoError::Unexpected(format!(
            "{} frames still held after everyone read",
            relay.held()
        )));
    }
    writeln!(
        out,
        "  none of the texts appears in any frame; the relay holds nothing now (Req6)"
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_runs_to_the_end() {
        let mut out = Vec::new();
        super::run(Some(7), &mut out).expect("demo succeeds");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains("bob reads from alice (verified): \"hi bob, dinner tonight?\""),
            "{text}"
        );
        assert!(
            text.contains("carol, given the same envelope anyway: refused (unknown_group)"),
            "{text}"
        );
        assert!(text.contains("the relay holds nothing now"), "{text}");
    }
}
