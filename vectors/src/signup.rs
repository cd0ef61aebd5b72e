//! `signup.json`: the signup request body (SIGNUP-1..SIGNUP-3, Req1): keys and numbers only, signed,
//! with an optional proof of work; and what the membership service must refuse.

use serde::{Deserialize, Serialize};
use sotto_core::crypto::DhSecret;
use sotto_core::kdf;
use sotto_core::keys::OneTimePreKeyPair;
use sotto_core::signup::{SignupRequest, leading_zero_bits, pow_hash};

use super::{Area, Case, Expect, Hex, PartyKeys, bytes, case, check, same, seeded};

/// A one-time prekey with its private key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opk {
    /// Id (not 0).
    pub id: u32,
    /// Private key.
    pub secret: Hex,
}

/// What the service reads from a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The public identity (KEY-2).
    pub identity: Hex,
    /// The TLS public key to certify.
    pub tls_spki: Hex,
    /// One-time prekey ids.
    pub opk_ids: Vec<u32>,
    /// The proof-of-work nonce.
    pub pow_nonce: u64,
}

/// The operations of `signup.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// SIGNUP-1, SIGNUP-3: building a request (the proof of work counts up from nonce 0).
    Build {
        keys: PartyKeys,
        opks: Vec<Opk>,
        tls_spki: Hex,
        challenge: Hex,
        difficulty: u8,
        bytes: Hex,
    },
    /// SIGNUP-2: the service's checks at `difficulty`.
    Parse {
        bytes: Hex,
        difficulty: u8,
        expect: Expect<Accepted>,
    },
}

/// The `signup` area.
pub struct Signup;

/// Finishes a request body (every byte before `pow_nonce`): solves the proof of work from nonce 0
/// and signs, so that a changed field is the only fault of an invalid case (NOT-5).
struct Resigner<'a> {
    id: &'a sotto_core::Identity,
    difficulty: u8,
}

impl Resigner<'_> {
    fn sign(&self, mut body: Vec<u8>) -> Vec<u8> {
        let mut nonce = 0u64;
        while leading_zero_bits(&pow_hash(&body, nonce)) < u32::from(self.difficulty) {
            nonce = nonce.wrapping_add(1);
        }
        body.extend_from_slice(&nonce.to_be_bytes());
        let sig = self.id.signing().sign(kdf::SIG_SIGNUP, &[&body]);
        body.extend_from_slice(&sig);
        body
    }
}

// The generator's keys always decode; a fixed identity keeps `generate` total.
fn unreachable_identity() -> sotto_core::Identity {
    sotto_core::Identity::from_secrets(
        sotto_core::crypto::SignSecret::from_seed([1; 32]),
        DhSecret::from_bytes([2; 32]),
    )
}

fn build(
    keys: &PartyKeys,
    opks: &[Opk],
    spki: &Hex,
    challenge: &Hex,
    difficulty: u8,
) -> Result<Vec<u8>, String> {
    let id = keys.identity()?;
    let spk = keys.spk_pair()?;
    let opks = opks
        .iter()
        .map(|o| {
            let s = DhSecret::from_bytes(o.secret.arr()?);
            OneTimePreKeyPair::from_secret(o.id, s)
                .map(|p| *p.public())
                .map_err(|e| e.code().to_owned())
        })
        .collect::<Result<Vec<_>, String>>()?;
    SignupRequest::build(&id, &spki.0, spk.public(), &opks, &challenge.0, difficulty)
        .map(|r| r.to_bytes())
        .map_err(|e| e.code().to_owned())
}

fn parse(b: &[u8], difficulty: u8) -> Expect<Accepted> {
    Expect::from_result(SignupRequest::from_bytes(b, difficulty), |r| Accepted {
        identity: Hex(r.identity().to_bytes()),
        tls_spki: Hex::of(r.tls_spki()),
        opk_ids: r.one_time_prekeys().iter().map(|o| o.id()).collect(),
        pow_nonce: r.pow_nonce(),
    })
}

impl Area for Signup {
    const NAME: &'static str = "signup";
    const DESCRIPTION: &'static str = "The signup request body: TLS public key, identity, prekeys, challenge, proof of work and signature, and the membership service's refusals (section 4).";
    type Op = Op;

    fn generate() -> Vec<Case<Op>> {
        let mut r = seeded(Self::NAME);
        let keys = PartyKeys::random(&mut r, 0, false);
        let opks: Vec<Opk> = (1..=3)
            .map(|id| Opk {
                id,
                secret: Hex::of(bytes::<32>(&mut r)),
            })
            .collect();
        // A DER SubjectPublicKeyInfo of an Ed25519 key (RFC 8410): 12-byte prefix and the key.
        let mut spki = hex::decode("302a300506032b6570032100").unwrap_or_default();
        spki.extend_from_slice(&bytes::<32>(&mut r));
        let spki = Hex(spki);
        let challenge = Hex::of(bytes::<16>(&mut r));
        let difficulty = 10;
        let good = build(&keys, &opks, &spki, &challenge, difficulty).unwrap_or_default();
        let mut cases = vec![
            case(
                "SIGNUP-1 a request with three one-time prekeys and 10 bits of work",
                &["SIGNUP-1", "SIGNUP-3", "Req1"],
                Op::Build {
                    keys: keys.clone(),
                    opks: opks.clone(),
                    tls_spki: spki.clone(),
                    challenge: challenge.clone(),
                    difficulty,
                    bytes: Hex(good.clone()),
                },
            ),
            case(
                "SIGNUP-2 the service accepts it",
                &["SIGNUP-2", "Req1"],
                Op::Parse {
                    expect: parse(&good, difficulty),
                    bytes: Hex(good.clone()),
                    difficulty,
                },
            ),
            case(
                "SIGNUP-3 a stricter service refuses the work",
                &["SIGNUP-3"],
                Op::Parse {
                    expect: parse(&good, 24),
                    bytes: Hex(good.clone()),
                    difficulty: 24,
                },
            ),
        ];
        // Each invalid request below is well formed but for the one named fault, and (unless the
        // fault is in the signature or after it) carries a valid proof of work and a valid request
        // signature over its changed bytes (NOT-5): only the named check fails.
        let id = keys.identity().unwrap_or_else(|_| unreachable_identity());
        let signer = Resigner {
            id: &id,
            difficulty,
        };
        let identity_at = 3 + spki.0.len();
        let opk_count_at = identity_at + 128 + 100;
        let opks_at = opk_count_at + 2;
        let opks_end = opks_at + 36 * opks.len();
        let body = &good[..good.len() - 72];
        let mut bad: Vec<(&str, &str, Vec<u8>)> = Vec::new();
        let mut sig = good.clone();
        let last = sig.len() - 1;
        sig[last] ^= 0x01;
        bad.push((
            "SIGNUP-2 request signature does not verify",
            "SIGNUP-2",
            sig,
        ));
        let mut ikd = body.to_vec();
        ikd[identity_at + 40] ^= 0x01;
        bad.push(("KEY-2 sig_ikd does not verify", "KEY-2", signer.sign(ikd)));
        let mut spk = body.to_vec();
        spk[identity_at + 128 + 10] ^= 0x01;
        bad.push(("KEY-3 sig_spk does not verify", "KEY-3", signer.sign(spk)));
        let with_spki = |spki: &[u8]| {
            let mut b = vec![0x01];
            b.extend_from_slice(&u16::try_from(spki.len()).unwrap_or(u16::MAX).to_be_bytes());
            b.extend_from_slice(spki);
            b.extend_from_slice(&body[identity_at..]);
            b
        };
        let with_opks = |entries: &[(u32, [u8; 32])]| {
            let mut b = body[..opk_count_at].to_vec();
            b.extend_from_slice(&crate::encode_opks(entries));
            b.extend_from_slice(&body[opks_end..]);
            b
        };
        let mut spki513 = spki.0.clone();
        spki513.resize(513, 0xa5);
        let mut spki512 = spki.0.clone();
        spki512.resize(512, 0xa5);
        bad.push((
            "LIM-16 TLS key of 513 bytes",
            "LIM-16",
            signer.sign(with_spki(&spki513)),
        ));
        bad.push((
            "SIGNUP-1 TLS key of 0 bytes",
            "SIGNUP-1",
            signer.sign(with_spki(&[])),
        ));
        let many: Vec<(u32, [u8; 32])> = (1..=101).map(|i| (i, bytes::<32>(&mut r))).collect();
        bad.push((
            "LIM-15 101 one-time prekeys",
            "LIM-15",
            signer.sign(with_opks(&many)),
        ));
        let mut dup = body.to_vec();
        let second_id = opks_at + 36;
        dup[second_id..second_id + 4].copy_from_slice(&1u32.to_be_bytes());
        bad.push((
            "SIGNUP-2 duplicate one-time prekey ids",
            "SIGNUP-2",
            signer.sign(dup),
        ));
        let mut zero = body.to_vec();
        zero[opks_at..opks_at + 4].copy_from_slice(&0u32.to_be_bytes());
        bad.push(("ID-4 one-time prekey id 0", "ID-4", signer.sign(zero)));
        let mut challenge33 = body[..opks_end].to_vec();
        challenge33.push(33);
        challenge33.extend_from_slice(&[0x5a; 33]);
        bad.push((
            "SIGNUP-1 challenge of 33 bytes",
            "SIGNUP-1",
            signer.sign(challenge33),
        ));
        let mut v2 = body.to_vec();
        v2[0] = 2;
        bad.push(("SIGNUP-1 version 2", "SIGNUP-1", signer.sign(v2)));
        let mut trailing = good.clone();
        trailing.push(0);
        bad.push(("SIGNUP-1 trailing byte", "SIGNUP-1", trailing));
        bad.push((
            "SIGNUP-1 truncated",
            "SIGNUP-1",
            good[..good.len() - 1].to_vec(),
        ));
        // NOT-5: two faults, a duplicate id (layout) and a bad request signature: the layout wins.
        let mut both = signer.sign(body.to_vec());
        both[second_id..second_id + 4].copy_from_slice(&1u32.to_be_bytes());
        bad.push((
            "NOT-5 layout before signatures: duplicate id and a bad signature",
            "NOT-5",
            both,
        ));
        // Accepted at the bounds (LIM-15, LIM-16, the challenge's 32 bytes).
        let hundred: Vec<(u32, [u8; 32])> = many[..100].to_vec();
        let mut challenge32 = body[..opks_end].to_vec();
        challenge32.push(32);
        challenge32.extend_from_slice(&[0x5a; 32]);
        for (name, rule, b) in [
            (
                "SIGNUP-1 challenge of 32 bytes is accepted",
                "SIGNUP-1",
                signer.sign(challenge32),
            ),
            (
                "LIM-15 100 one-time prekeys are accepted",
                "LIM-15",
                signer.sign(with_opks(&hundred)),
            ),
            (
                "LIM-16 TLS key of 512 bytes is accepted",
                "LIM-16",
                signer.sign(with_spki(&spki512)),
            ),
        ]
        .into_iter()
        .chain(bad)
        {
            cases.push(case(
                name,
                &[rule, "SIGNUP-2"],
                Op::Parse {
                    expect: parse(&b, difficulty),
                    bytes: Hex(b),
                    difficulty,
                },
            ));
        }
        cases
    }

    fn run(op: &Op) -> Result<(), String> {
        match op {
            Op::Build {
                keys,
                opks,
                tls_spki,
                challenge,
                difficulty,
                bytes,
            } => same(
                "bytes",
                &build(keys, opks, tls_spki, challenge, *difficulty)?,
                bytes,
            ),
            Op::Parse {
                bytes,
                difficulty,
                expect,
            } => check(parse(&bytes.0, *difficulty), expect),
        }
    }
}
