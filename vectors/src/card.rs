//! `card.json`: contact cards as bytes and `sotto:` URIs (CARD-1..CARD-3) and safety numbers (SAFE-1).

use serde::{Deserialize, Serialize};
use sotto_core::crypto::SignPublic;
use sotto_core::limits::MAX_CARD_URI;
use sotto_core::{ContactCard, SafetyNumber, UserId};

use super::{Area, Case, Expect, Hex, PartyKeys, case, check, same, seeded};

/// What a parsed card holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parsed {
    /// User id.
    pub user: Hex,
    /// Public identity (KEY-2).
    pub identity: Hex,
    /// Signed prekey id.
    pub spk_id: u32,
    /// Signed prekey.
    pub spk: Hex,
}

/// The operations of `card.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// CARD-1, CARD-2: a party's card bytes and URI.
    Card {
        keys: PartyKeys,
        bytes: Hex,
        uri: String,
    },
    /// CARD-3: parsing a URI, or the error.
    ParseUri { uri: String, expect: Expect<Parsed> },
    /// ID-1: a user id's text form, as a person types it, parsed to its 10 bytes, or the error.
    UserId { text: String, expect: Expect<Hex> },
    /// SAFE-1: the safety number of two parties (either order gives the same).
    SafetyNumber {
        user_a: Hex,
        iks_a: Hex,
        user_b: Hex,
        iks_b: Hex,
        digits: String,
    },
}

/// The `card` area.
pub struct Card;

fn card_of(k: &PartyKeys) -> Result<ContactCard, String> {
    Ok(ContactCard::new(
        k.user_id()?,
        *k.identity()?.public(),
        *k.spk_pair()?.public(),
    ))
}

fn parse(uri: &str) -> Expect<Parsed> {
    Expect::from_result(ContactCard::from_uri(uri), |c| {
        let b = c.bundle();
        Parsed {
            user: Hex::of(c.user_id().0),
            identity: Hex(c.identity().to_bytes()),
            spk_id: b.signed_prekey().id(),
            spk: Hex::of(b.signed_prekey().key().0),
        }
    })
}

fn user_id(text: &str) -> Expect<Hex> {
    Expect::from_result(UserId::parse(text).map_err(Into::into), |u| Hex::of(u.0))
}

fn safety(ua: &Hex, ia: &Hex, ub: &Hex, ib: &Hex) -> Result<SafetyNumber, String> {
    Ok(SafetyNumber::compute(
        (&UserId(ua.arr()?), &SignPublic(ia.arr()?)),
        (&UserId(ub.arr()?), &SignPublic(ib.arr()?)),
    ))
}

/// The card bytes with their checksum recomputed (CARD-1), so that only another fault remains.
fn with_check(mut card: Vec<u8>) -> Vec<u8> {
    let body = card.len().saturating_sub(4);
    let check = sotto_core::crypto::sha256(&[b"sotto/v1/card", &card[..body]]);
    card[body..].copy_from_slice(&check[..4]);
    card
}

fn uri_of(bytes: &[u8]) -> String {
    format!("sotto:{}", sotto_core::base32::encode(bytes))
}

impl Area for Card {
    const NAME: &'static str = "card";
    const DESCRIPTION: &'static str = "Contact cards as bytes and sotto: URIs, their parse errors, and safety numbers (section 5).";
    type Op = Op;

    fn generate() -> Vec<Case<Op>> {
        let mut r = seeded(Self::NAME);
        let alice = PartyKeys::random(&mut r, 1, false);
        let bob = PartyKeys::random(&mut r, 2, false);
        let Ok(card) = card_of(&alice) else {
            return Vec::new();
        };
        let bytes = card.to_bytes();
        let uri = card.to_uri();
        let mut cases = vec![
            case(
                "CARD-2 a card and its URI",
                &["CARD-1", "CARD-2", "Req2"],
                Op::Card {
                    keys: alice.clone(),
                    bytes: Hex(bytes.clone()),
                    uri: uri.clone(),
                },
            ),
            case(
                "CARD-3 parse a URI",
                &["CARD-3"],
                Op::ParseUri {
                    expect: parse(&uri),
                    uri: uri.clone(),
                },
            ),
            case(
                "CARD-2 upper-case URI (QR alphanumeric mode)",
                &["CARD-2"],
                Op::ParseUri {
                    expect: parse(&uri.to_uppercase()),
                    uri: uri.to_uppercase(),
                },
            ),
        ];
        let mut bad: Vec<(&str, &str, String)> = vec![
            (
                "CARD-3 wrong scheme",
                "CARD-3",
                uri.replacen("sotto:", "sotta:", 1),
            ),
            (
                "CARD-3 not base32",
                "NOT-3",
                uri.replacen("sotto:", "sotto:1", 1),
            ),
            (
                "CARD-3 truncated",
                "CARD-3",
                uri[..uri.len() - 8].to_owned(),
            ),
            (
                "LIM-17 URI over 512 characters",
                "LIM-17",
                format!("{uri}{}", "a".repeat(200)),
            ),
        ];
        let mut flipped = bytes.clone();
        flipped[20] ^= 0x01;
        bad.push(("CARD-1 checksum does not match", "CARD-1", uri_of(&flipped)));
        // A forged prekey signature with a recomputed checksum: only the signature check catches it.
        let mut forged = bytes.clone();
        forged[1 + 10 + 128 + 4 + 32 + 5] ^= 0x01;
        let body = forged.len() - 4;
        let check = sotto_core::crypto::sha256(&[b"sotto/v1/card", &forged[..body]]);
        forged[body..].copy_from_slice(&check[..4]);
        bad.push((
            "KEY-3 forged prekey signature, valid checksum",
            "KEY-3",
            uri_of(&forged),
        ));
        let mut v2 = bytes.clone();
        v2[0] = 2;
        bad.push(("CARD-3 card version 2", "CARD-3", uri_of(&with_check(v2))));
        // A forged sig_ikd with a recomputed checksum.
        let mut ikd = bytes.clone();
        ikd[1 + 10 + 32 + 7] ^= 0x01;
        bad.push((
            "KEY-2 forged sig_ikd, valid checksum",
            "KEY-2",
            uri_of(&with_check(ikd)),
        ));
        let mut long = bytes.clone();
        long.push(0);
        bad.push(("CARD-3 one byte too many", "CARD-3", uri_of(&long)));
        // NOT-3: the 389 base32 characters of a card carry one bit past the last byte; set it.
        const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut trailing_bit = uri.clone().into_bytes();
        if let Some(last) = trailing_bit.last_mut() {
            let v = ALPHABET.iter().position(|c| c == last).unwrap_or(0);
            *last = ALPHABET[v ^ 1];
        }
        bad.push((
            "NOT-3 non-zero trailing bit",
            "NOT-3",
            String::from_utf8(trailing_bit).unwrap_or_default(),
        ));
        // NOT-3: 385 characters (1 modulo 8) leave 5 bits, a partial character.
        bad.push((
            "NOT-3 base32 of 385 characters (1 modulo 8)",
            "NOT-3",
            uri[..uri.len() - 4].to_owned(),
        ));
        // NOT-5: a bad checksum and a forged signature: the checksum (layout) wins.
        let mut both = bytes.clone();
        both[1 + 10 + 32 + 7] ^= 0x01;
        bad.push(("NOT-5 checksum before signatures", "NOT-5", uri_of(&both)));
        // LIM-17 at the bound: 512 characters pass the length check (the base32 of 506
        // characters, 2 modulo 8, decodes to 316 bytes: `trailing_bytes`, CARD-3).
        let mut at_bound = uri.clone();
        while at_bound.len() < MAX_CARD_URI {
            at_bound.push('a');
        }
        bad.push((
            "LIM-17 URI of exactly 512 characters passes the bound",
            "LIM-17",
            at_bound,
        ));
        for (name, rule, u) in bad {
            let rules: &[&str] = if rule == "CARD-3" {
                &["CARD-3"]
            } else {
                &[rule, "CARD-3"]
            };
            cases.push(case(
                name,
                rules,
                Op::ParseUri {
                    expect: parse(&u),
                    uri: u,
                },
            ));
        }
        let (ia, ib) = (
            alice
                .identity()
                .map(|i| Hex::of(i.public().iks().0))
                .unwrap_or_default(),
            bob.identity()
                .map(|i| Hex::of(i.public().iks().0))
                .unwrap_or_default(),
        );
        let digits = safety(&alice.user, &ia, &bob.user, &ib)
            .map(|s| s.digits().to_owned())
            .unwrap_or_default();
        cases.push(case(
            "SAFE-1 safety number of two parties",
            &["SAFE-1", "Req5"],
            Op::SafetyNumber {
                user_a: alice.user.clone(),
                iks_a: ia,
                user_b: bob.user.clone(),
                iks_b: ib,
                digits,
            },
        ));
        let text = alice.user_id().map(|u| u.to_text()).unwrap_or_default();
        let mut ids = vec![("ID-1 a user id's text form", text.clone())];
        for (name, t) in [
            ("ID-1 upper case", text.to_uppercase()),
            ("ID-1 15 characters", text[..15].to_owned()),
            ("ID-1 17 characters", format!("{text}a")),
            (
                "ID-1 a character outside [a-z2-7]",
                format!("{}1", &text[..15]),
            ),
            ("ID-1 base32 padding", format!("{}=", &text[..15])),
            (
                "ID-1 a non-ASCII character",
                format!("{}\u{e9}", &text[..14]),
            ),
        ] {
            ids.push((name, t));
        }
        for (name, t) in ids {
            cases.push(case(
                name,
                &["ID-1"],
                Op::UserId {
                    expect: user_id(&t),
                    text: t,
                },
            ));
        }
        cases
    }

    fn run(op: &Op) -> Result<(), String> {
        match op {
            Op::Card { keys, bytes, uri } => {
                let c = card_of(keys)?;
                same("bytes", &c.to_bytes(), bytes)?;
                if c.to_uri() != *uri {
                    return Err(format!("uri: expected {uri}, got {}", c.to_uri()));
                }
                Ok(())
            }
            Op::ParseUri { uri, expect } => check(parse(uri), expect),
            Op::UserId { text, expect } => check(user_id(text), expect),
            Op::SafetyNumber {
                user_a,
                iks_a,
                user_b,
                iks_b,
                digits,
            } => {
                let ab = safety(user_a, iks_a, user_b, iks_b)?;
                let ba = safety(user_b, iks_b, user_a, iks_a)?;
                if ab.digits() != digits || ba.digits() != digits {
                    return Err(format!(
                        "expected {digits}, got {} / {}",
                        ab.digits(),
                        ba.digits()
                    ));
                }
                Ok(())
            }
        }
    }
}
