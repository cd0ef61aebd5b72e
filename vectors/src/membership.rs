//! `membership.json`: the membership API's bodies besides the signup request (`signup.json`) and
//! the bundle (`bundle.json`, KEY-5), as `sotto_wire::membership_api` encodes and decodes them: the
//! renew request and the prekey upload (binary, with the service's refusals), the JSON bodies of
//! every answer (exact text, fields), and the error codes with their HTTP status
//! (docs/membership-api.openapi.json describes the same bodies on the wire).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sotto_core::codec::Reader;
use sotto_core::crypto::DhSecret;
use sotto_core::keys::{OneTimePreKeyPair, SignedPreKey};
use sotto_core::{PublicIdentity, UserId};
use sotto_wire::membership_api::{
    ApiCode, CertificateResponse, ChallengeResponse, ErrorBody, PrekeyCountResponse, PrekeyUpload,
    RenewRequest, SignupResponse, TimeResponse,
};

use super::signup::Opk;
use super::{Area, Case, Expect, Hex, PartyKeys, bytes, case, check, same, seeded};

/// What the service reads from a renew request it verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewal {
    /// The user whose certificate is renewed (10 bytes).
    pub user: Hex,
    /// The new TLS public key.
    pub tls_spki: Hex,
    /// The request's timestamp.
    pub timestamp_ms: u64,
}

/// What the service reads from a prekey upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// The new signed prekey's id, if the upload has one.
    pub spk_id: Option<u32>,
    /// The one-time prekey ids, in order.
    pub opk_ids: Vec<u32>,
}

/// The JSON bodies of the API's answers (`sotto_wire::membership_api`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// `GET /v1/time`: `TimeResponse`.
    Time,
    /// `GET /v1/challenge`: `ChallengeResponse`.
    Challenge,
    /// `POST /v1/signup`: `SignupResponse`.
    Signup,
    /// `POST /v1/renew`: `CertificateResponse`.
    Certificate,
    /// `GET /v1/prekeys/count`: `PrekeyCountResponse`.
    PrekeyCount,
}

/// The operations of `membership.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A renew request signed with `keys`' identity for `keys.user`.
    Renew {
        keys: PartyKeys,
        tls_spki: Hex,
        timestamp_ms: u64,
        bytes: Hex,
    },
    /// The service's reading of a renew request against the owner's stored public identity.
    ParseRenew {
        bytes: Hex,
        identity: Hex,
        expect: Expect<Renewal>,
    },
    /// A prekey upload: `keys`' signed prekey if `with_spk`, and `opks`.
    PrekeyUpload {
        keys: PartyKeys,
        with_spk: bool,
        opks: Vec<Opk>,
        bytes: Hex,
    },
    /// The service's reading of a prekey upload against the owner's stored public identity.
    ParsePrekeyUpload {
        bytes: Hex,
        identity: Hex,
        expect: Expect<Upload>,
    },
    /// A JSON answer: `fields` encode to exactly `text`, and `text` decodes to `fields`.
    Json {
        body: Body,
        fields: Value,
        text: String,
    },
    /// A JSON text a client must refuse as the answer `body` (a field missing, of the wrong type
    /// or out of its range), with `accepted: false`; or accept (an unknown field is ignored).
    DecodeJson {
        body: Body,
        text: String,
        accepted: bool,
    },
    /// An error answer: `code` goes with HTTP `status`, and its body with `message` is exactly
    /// `text`.
    ErrorBody {
        code: String,
        status: u16,
        message: String,
        text: String,
    },
}

/// The `membership` area.
pub struct Membership;

fn public_identity(b: &Hex) -> Result<PublicIdentity, String> {
    let mut r = Reader::new(&b.0);
    let id = PublicIdentity::decode(&mut r).map_err(|e| format!("identity: {}", e.code()))?;
    r.finish()
        .map_err(|e| format!("identity: {}", sotto_core::Error::from(e).code()))?;
    Ok(id)
}

fn renew(keys: &PartyKeys, spki: &Hex, ts: u64) -> Result<Vec<u8>, String> {
    RenewRequest::sign(&keys.identity()?, keys.user_id()?, &spki.0, ts)
        .map(|r| r.to_bytes())
        .map_err(|e| e.code().to_owned())
}

fn parse_renew(b: &[u8], owner: &PublicIdentity) -> Expect<Renewal> {
    let r = RenewRequest::from_bytes(b).and_then(|r| r.verify(owner).map(|()| r));
    Expect::from_result(r, |r| Renewal {
        user: Hex::of(r.user_id().0),
        tls_spki: Hex::of(r.tls_spki()),
        timestamp_ms: r.timestamp_ms(),
    })
}

fn upload(keys: &PartyKeys, with_spk: bool, opks: &[Opk]) -> Result<Vec<u8>, String> {
    let spk: Option<SignedPreKey> = if with_spk {
        Some(*keys.spk_pair()?.public())
    } else {
        None
    };
    let opks = opks
        .iter()
        .map(|o| {
            OneTimePreKeyPair::from_secret(o.id, DhSecret::from_bytes(o.secret.arr()?))
                .map(|p| *p.public())
                .map_err(|e| e.code().to_owned())
        })
        .collect::<Result<Vec<_>, String>>()?;
    PrekeyUpload::new(spk, opks)
        .map(|u| u.to_bytes())
        .map_err(|e| e.code().to_owned())
}

fn parse_upload(b: &[u8], owner: &PublicIdentity) -> Expect<Upload> {
    Expect::from_result(PrekeyUpload::from_bytes(b, owner), |u| Upload {
        spk_id: u.signed_prekey().map(SignedPreKey::id),
        opk_ids: u.one_time_prekeys().iter().map(|o| o.id()).collect(),
    })
}

/// Decodes `text` as the answer `body` and encodes it again: the fields and the text.
fn round_trip(body: Body, text: &str) -> Result<(Value, String), String> {
    fn via<T: Serialize + serde::de::DeserializeOwned>(
        text: &str,
    ) -> Result<(Value, String), String> {
        let v: T = serde_json::from_str(text).map_err(|e| format!("decode: {e}"))?;
        let fields = serde_json::to_value(&v).map_err(|e| format!("encode: {e}"))?;
        let text = serde_json::to_string(&v).map_err(|e| format!("encode: {e}"))?;
        Ok((fields, text))
    }
    match body {
        Body::Time => via::<TimeResponse>(text),
        Body::Challenge => via::<ChallengeResponse>(text),
        Body::Signup => via::<SignupResponse>(text),
        Body::Certificate => via::<CertificateResponse>(text),
        Body::PrekeyCount => via::<PrekeyCountResponse>(text),
    }
}

/// A `Json` case from the typed value.
fn json_case<T: Serialize>(name: &str, rules: &[&str], body: Body, v: &T) -> Case<Op> {
    let text = serde_json::to_string(v).unwrap_or_default();
    let fields = serde_json::to_value(v).unwrap_or_default();
    case(name, rules, Op::Json { body, fields, text })
}

/// An invented certificate in PEM (the JSON bodies do not look inside).
fn pem(r: &mut rand_chacha::ChaCha20Rng) -> String {
    let body = hex::encode(bytes::<24>(r));
    format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
}

/// A DER SubjectPublicKeyInfo of an Ed25519 key (RFC 8410): 12-byte prefix and the key.
fn ed25519_spki(key: [u8; 32]) -> Hex {
    let mut spki = hex::decode("302a300506032b6570032100").unwrap_or_default();
    spki.extend_from_slice(&key);
    Hex(spki)
}

impl Area for Membership {
    const NAME: &'static str = "membership";
    const DESCRIPTION: &'static str = "The membership API's bodies besides the signup request and the bundle: the renew request and the prekey upload (binary) with the service's refusals, the JSON answers, and the error codes with their HTTP status (docs/operations.md, Membership API; docs/membership-api.openapi.json).";
    type Op = Op;

    fn generate() -> Vec<Case<Op>> {
        let mut r = seeded(Self::NAME);
        let keys = PartyKeys::random(&mut r, 0x42, false);
        let other = PartyKeys::random(&mut r, 0x42, false);
        let identity = keys
            .identity()
            .map(|i| Hex(i.public().to_bytes()))
            .unwrap_or_default();
        let owner = public_identity(&identity);
        let spki = ed25519_spki(bytes::<32>(&mut r));
        let ts = 1_767_225_600_000;
        let mut cases = Vec::new();

        // ---- renew request
        let good = renew(&keys, &spki, ts).unwrap_or_default();
        let parsed = |b: &[u8]| match &owner {
            Ok(o) => parse_renew(b, o),
            Err(e) => Expect::Error(e.clone()),
        };
        cases.push(case(
            "KEY-6 a renew request for a new TLS key, signed with IKs",
            &["KEY-6", "TLS-1", "NOT-1"],
            Op::Renew {
                keys: keys.clone(),
                tls_spki: spki.clone(),
                timestamp_ms: ts,
                bytes: Hex(good.clone()),
            },
        ));
        let forged = renew(&other, &spki, ts).unwrap_or_default();
        let mut late = good.clone();
        let ts_at = 10 + 2 + spki.0.len();
        late[ts_at + 7] ^= 0x01;
        let with_spki_len = |len: u16| {
            let mut b = good[..10].to_vec();
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(&good[12..]);
            b
        };
        let mut trailing = good.clone();
        trailing.push(0);
        let mut spki512 = good[..10].to_vec();
        spki512.extend_from_slice(&512u16.to_be_bytes());
        let mut long = spki.0.clone();
        long.resize(512, 0xa5);
        spki512.extend_from_slice(&long);
        let long_ok = renew(&keys, &Hex(long), ts).unwrap_or_default();
        for (name, rules, b) in [
            (
                "KEY-6 the service reads a renew request",
                &["KEY-6"][..],
                good.clone(),
            ),
            (
                "LIM-16 a renew request for a 512-byte TLS key is accepted",
                &["LIM-16", "KEY-6"][..],
                long_ok,
            ),
            (
                "PRIM-2 a renew request signed by another identity",
                &["PRIM-2", "KEY-6"][..],
                forged,
            ),
            (
                "PRIM-2 a renew request whose timestamp changed after signing",
                &["PRIM-2", "KEY-6"][..],
                late,
            ),
            (
                "LIM-16 a renew request with a TLS key of 0 bytes",
                &["LIM-16", "KEY-6"][..],
                with_spki_len(0),
            ),
            (
                "LIM-16 a renew request with a TLS key of 513 bytes",
                &["LIM-16", "KEY-6"][..],
                with_spki_len(513),
            ),
            (
                "KEY-6 a renew request with a trailing byte",
                &["KEY-6"][..],
                trailing,
            ),
            (
                "KEY-6 a renew request one byte short",
                &["KEY-6"][..],
                good[..good.len() - 1].to_vec(),
            ),
        ] {
            cases.push(case(
                name,
                rules,
                Op::ParseRenew {
                    expect: parsed(&b),
                    bytes: Hex(b),
                    identity: identity.clone(),
                },
            ));
        }

        // ---- prekey upload
        let opks: Vec<Opk> = (1..=3)
            .map(|id| Opk {
                id,
                secret: Hex::of(bytes::<32>(&mut r)),
            })
            .collect();
        let full = upload(&keys, true, &opks).unwrap_or_default();
        let empty = upload(&keys, false, &[]).unwrap_or_default();
        cases.push(case(
            "KEY-3 a prekey upload: a signed prekey and three one-time prekeys",
            &["KEY-3", "KEY-4", "NOT-1"],
            Op::PrekeyUpload {
                keys: keys.clone(),
                with_spk: true,
                opks: opks.clone(),
                bytes: Hex(full.clone()),
            },
        ));
        cases.push(case(
            "KEY-4 an empty prekey upload",
            &["KEY-4"],
            Op::PrekeyUpload {
                keys: keys.clone(),
                with_spk: false,
                opks: Vec::new(),
                bytes: Hex(empty.clone()),
            },
        ));
        let parsed = |b: &[u8]| match &owner {
            Ok(o) => parse_upload(b, o),
            Err(e) => Expect::Error(e.clone()),
        };
        let opks_at = 1 + 100 + 2;
        let with_opks = |entries: &[(u32, [u8; 32])]| {
            let mut b = full[..opks_at - 2].to_vec();
            b.extend_from_slice(&crate::encode_opks(entries));
            b
        };
        let many: Vec<(u32, [u8; 32])> = (1..=101).map(|i| (i, bytes::<32>(&mut r))).collect();
        let forged = upload(&other, true, &[]).unwrap_or_default();
        let mut flag = empty.clone();
        flag[0] = 2;
        let mut dup = full.clone();
        dup[opks_at + 36..opks_at + 40].copy_from_slice(&1u32.to_be_bytes());
        let mut zero = full.clone();
        zero[opks_at..opks_at + 4].copy_from_slice(&0u32.to_be_bytes());
        let mut trailing = full.clone();
        trailing.push(0);
        for (name, rules, b) in [
            (
                "KEY-3 the service reads a prekey upload",
                &["KEY-3", "KEY-4"][..],
                full.clone(),
            ),
            (
                "KEY-4 the service reads an empty prekey upload",
                &["KEY-4"][..],
                empty,
            ),
            (
                "LIM-15 100 one-time prekeys in an upload are accepted",
                &["LIM-15", "KEY-4"][..],
                with_opks(&many[..100]),
            ),
            (
                "KEY-3 a signed prekey signed by another identity",
                &["KEY-3", "PRIM-2"][..],
                forged,
            ),
            (
                "LIM-15 101 one-time prekeys in an upload",
                &["LIM-15", "KEY-4"][..],
                with_opks(&many),
            ),
            (
                "ID-4 a one-time prekey id 0 in an upload",
                &["ID-4", "KEY-4"][..],
                zero,
            ),
            (
                "KEY-4 a prekey upload with a duplicate one-time prekey id",
                &["KEY-4"][..],
                dup,
            ),
            (
                "KEY-3 a prekey upload whose has_spk is 2",
                &["KEY-3"][..],
                flag,
            ),
            (
                "KEY-4 a prekey upload with a trailing byte",
                &["KEY-4"][..],
                trailing,
            ),
            (
                "KEY-4 a prekey upload one byte short",
                &["KEY-4"][..],
                full[..full.len() - 1].to_vec(),
            ),
        ] {
            cases.push(case(
                name,
                rules,
                Op::ParsePrekeyUpload {
                    expect: parsed(&b),
                    bytes: Hex(b),
                    identity: identity.clone(),
                },
            ));
        }

        // ---- JSON answers
        let user = UserId(bytes::<10>(&mut r)).to_text();
        cases.push(json_case(
            "TIME-1 the server's clock",
            &["TIME-1"],
            Body::Time,
            &TimeResponse { server_time_ms: ts },
        ));
        cases.push(json_case(
            "SIGNUP-3 a challenge and the difficulty",
            &["SIGNUP-3"],
            Body::Challenge,
            &ChallengeResponse {
                challenge: hex::encode(bytes::<32>(&mut r)),
                difficulty: 8,
            },
        ));
        cases.push(json_case(
            "SIGNUP-4 the signup answer",
            &["SIGNUP-4", "ID-1", "TLS-1", "TIME-1"],
            Body::Signup,
            &SignupResponse {
                user_id: user,
                certificate_pem: pem(&mut r),
                ca_pem: pem(&mut r),
                server_time_ms: ts,
                broker: "localhost:8883".to_owned(),
            },
        ));
        cases.push(json_case(
            "TLS-1 the renewal answer",
            &["TLS-1", "KEY-6", "TIME-1"],
            Body::Certificate,
            &CertificateResponse {
                certificate_pem: pem(&mut r),
                ca_pem: pem(&mut r),
                server_time_ms: ts,
            },
        ));
        cases.push(json_case(
            "KEY-4 the one-time prekeys left",
            &["KEY-4"],
            Body::PrekeyCount,
            &PrekeyCountResponse {
                one_time_prekeys: 37,
            },
        ));
        for (name, rules, body, text, accepted) in [
            (
                "TIME-1 an unknown field is ignored",
                &["TIME-1"][..],
                Body::Time,
                r#"{"server_time_ms":1767225600000,"zone":"UTC"}"#,
                true,
            ),
            (
                "TIME-1 a negative time is refused",
                &["TIME-1"][..],
                Body::Time,
                r#"{"server_time_ms":-1}"#,
                false,
            ),
            (
                "TIME-1 a time as a string is refused",
                &["TIME-1"][..],
                Body::Time,
                r#"{"server_time_ms":"1767225600000"}"#,
                false,
            ),
            (
                "SIGNUP-3 a difficulty above 255 is refused",
                &["SIGNUP-3"][..],
                Body::Challenge,
                r#"{"challenge":"00","difficulty":256}"#,
                false,
            ),
            (
                "SIGNUP-4 a signup answer without its broker is refused",
                &["SIGNUP-4"][..],
                Body::Signup,
                r#"{"user_id":"aaaaaaaaaaaaaaaa","certificate_pem":"","ca_pem":"","server_time_ms":0}"#,
                false,
            ),
            (
                "KEY-4 a count above u32 is refused",
                &["KEY-4"][..],
                Body::PrekeyCount,
                r#"{"one_time_prekeys":4294967296}"#,
                false,
            ),
        ] {
            cases.push(case(
                name,
                rules,
                Op::DecodeJson {
                    body,
                    text: text.to_owned(),
                    accepted,
                },
            ));
        }

        // ---- error answers: every service code, then the core's (status 400, limit_reached 409)
        let core = sotto_core::Error::ALL.into_iter().map(ApiCode::Core);
        for code in ApiCode::SERVICE.into_iter().chain(core) {
            let message = format!("a message for people ({code})");
            let text = serde_json::to_string(&ErrorBody {
                error: code.as_str().to_owned(),
                message: message.clone(),
            })
            .unwrap_or_default();
            cases.push(case(
                &format!("SIGNUP-4 the error answer {code}"),
                &["SIGNUP-4"],
                Op::ErrorBody {
                    code: code.as_str().to_owned(),
                    status: code.status(),
                    message,
                    text,
                },
            ));
        }
        cases
    }

    fn run(op: &Op) -> Result<(), String> {
        match op {
            Op::Renew {
                keys,
                tls_spki,
                timestamp_ms,
                bytes,
            } => same("bytes", &renew(keys, tls_spki, *timestamp_ms)?, bytes),
            Op::ParseRenew {
                bytes,
                identity,
                expect,
            } => check(parse_renew(&bytes.0, &public_identity(identity)?), expect),
            Op::PrekeyUpload {
                keys,
                with_spk,
                opks,
                bytes,
            } => same("bytes", &upload(keys, *with_spk, opks)?, bytes),
            Op::ParsePrekeyUpload {
                bytes,
                identity,
                expect,
            } => check(parse_upload(&bytes.0, &public_identity(identity)?), expect),
            Op::Json { body, fields, text } => {
                let (got_fields, got_text) = round_trip(*body, text)?;
                if got_fields != *fields {
                    return Err(format!("fields: expected {fields}, got {got_fields}"));
                }
                // Encoding the fields gives the text byte for byte.
                let (_, encoded) = round_trip(*body, &fields.to_string())?;
                if encoded != *text || got_text != *text {
                    return Err(format!("text: expected {text}, got {encoded}"));
                }
                Ok(())
            }
            Op::DecodeJson {
                body,
                text,
                accepted,
            } => match (round_trip(*body, text), accepted) {
                (Ok(_), true) | (Err(_), false) => Ok(()),
                (Ok(_), false) => Err(format!("{text} was accepted")),
                (Err(e), true) => Err(format!("{text} was refused: {e}")),
            },
            Op::ErrorBody {
                code,
                status,
                message,
                text,
            } => {
                let typed = ApiCode::parse(code);
                if typed == ApiCode::Unrecognized || typed.as_str() != code {
                    return Err(format!("{code} is no code of the API"));
                }
                if typed.status() != *status {
                    return Err(format!(
                        "{code}: status {status} expected, {} got",
                        typed.status()
                    ));
                }
                let want = ErrorBody {
                    error: code.clone(),
                    message: message.clone(),
                };
                let encoded = serde_json::to_string(&want).map_err(|e| e.to_string())?;
                let decoded: ErrorBody = serde_json::from_str(text).map_err(|e| e.to_string())?;
                if encoded != *text || decoded != want {
                    return Err(format!("text: expected {text}, got {encoded}"));
                }
                Ok(())
            }
        }
    }
}
