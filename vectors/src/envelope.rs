//! `envelope.json`: the envelope codec (ENV-1..ENV-7) with every type, the decode errors, and sealing
//! and opening a data message with a given message key (Req8).

use serde::{Deserialize, Serialize};
use sotto_core::crypto::{self, DhPublic, Secret};
use sotto_core::envelope::{self, Envelope, Header};

use super::{Area, Case, Expect, Hex, bytes, case, check, same, seeded};

/// A header, field by field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HeaderJson {
    /// ENV-2.
    Data { tag: Hex, n: u32 },
    /// ENV-3.
    First {
        ek: Hex,
        spk_id: u32,
        opk_id: u32,
        identity_box: Hex,
        keyshare_box: Hex,
        n: u32,
    },
    /// ENV-4.
    EpochStart {
        prev_tag: Hex,
        e: Hex,
        confirm: Hex,
        keyshare_box: Hex,
        pn: u32,
        n: u32,
    },
    /// ENV-5.
    Group { tag: Hex, index: u8, n: u32 },
}

impl HeaderJson {
    fn of(h: &Header) -> Self {
        match h {
            Header::Data { tag, n } => HeaderJson::Data {
                tag: Hex::of(tag),
                n: *n,
            },
            Header::First {
                ek,
                spk_id,
                opk_id,
                identity_box,
                keyshare_box,
                n,
            } => HeaderJson::First {
                ek: Hex::of(ek.0),
                spk_id: *spk_id,
                opk_id: *opk_id,
                identity_box: Hex::of(&identity_box[..]),
                keyshare_box: Hex::of(&keyshare_box[..]),
                n: *n,
            },
            Header::EpochStart {
                prev_tag,
                e,
                confirm,
                keyshare_box,
                pn,
                n,
            } => HeaderJson::EpochStart {
                prev_tag: Hex::of(prev_tag),
                e: Hex::of(e.0),
                confirm: Hex::of(confirm),
                keyshare_box: Hex::of(&keyshare_box[..]),
                pn: *pn,
                n: *n,
            },
            Header::Group { tag, index, n } => HeaderJson::Group {
                tag: Hex::of(tag),
                index: *index,
                n: *n,
            },
        }
    }

    fn header(&self) -> Result<Header, String> {
        Ok(match self {
            HeaderJson::Data { tag, n } => Header::Data {
                tag: tag.arr()?,
                n: *n,
            },
            HeaderJson::First {
                ek,
                spk_id,
                opk_id,
                identity_box,
                keyshare_box,
                n,
            } => Header::First {
                ek: DhPublic(ek.arr()?),
                spk_id: *spk_id,
                opk_id: *opk_id,
                identity_box: Box::new(identity_box.arr()?),
                keyshare_box: Box::new(keyshare_box.arr()?),
                n: *n,
            },
            HeaderJson::EpochStart {
                prev_tag,
                e,
                confirm,
                keyshare_box,
                pn,
                n,
            } => Header::EpochStart {
                prev_tag: prev_tag.arr()?,
                e: DhPublic(e.arr()?),
                confirm: confirm.arr()?,
                keyshare_box: Box::new(keyshare_box.arr()?),
                pn: *pn,
                n: *n,
            },
            HeaderJson::Group { tag, index, n } => Header::Group {
                tag: tag.arr()?,
                index: *index,
                n: *n,
            },
        })
    }
}

/// A decoded envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decoded {
    /// The header.
    pub header: HeaderJson,
    /// The sealed payload.
    pub sealed: Hex,
}

/// An opened payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plain {
    /// The inner plaintext bytes (see inner.json).
    pub inner: Hex,
}

/// The operations of `envelope.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// ENV-1..ENV-5: header fields and sealed bytes to envelope bytes.
    Encode {
        header: HeaderJson,
        sealed: Hex,
        bytes: Hex,
    },
    /// ENV-6, ENV-7: decoding, or the error.
    Decode { bytes: Hex, expect: Expect<Decoded> },
    /// ENV-2: sealing an inner plaintext with `K_n` and `nonce_n`, the header as associated data.
    SealData {
        key: Hex,
        nonce: Hex,
        tag: Hex,
        n: u32,
        inner: Hex,
        envelope: Hex,
    },
    /// ENV-6: opening, or the error.
    OpenData {
        key: Hex,
        nonce: Hex,
        envelope: Hex,
        expect: Expect<Plain>,
    },
}

/// The `envelope` area.
pub struct EnvelopeArea;

fn decode(b: &[u8]) -> Expect<Decoded> {
    Expect::from_result(Envelope::decode(b), |e| Decoded {
        header: HeaderJson::of(e.header()),
        sealed: Hex::of(e.sealed()),
    })
}

fn open(key: &Hex, nonce: &Hex, env: &[u8]) -> Result<Expect<Plain>, String> {
    let (key, nonce) = (Secret::new(key.arr()?), nonce.arr()?);
    Ok(Expect::from_result(
        Envelope::decode(env)
            .and_then(|e| crypto::open(&key, &nonce, e.header_bytes(), e.sealed())),
        |p| Plain { inner: Hex(p) },
    ))
}

fn seal(key: &Hex, nonce: &Hex, tag: &Hex, n: u32, inner: &Hex) -> Result<Vec<u8>, String> {
    let header = Header::Data { tag: tag.arr()?, n }.encode();
    let sealed = crypto::seal(&Secret::new(key.arr()?), &nonce.arr()?, &header, &inner.0);
    envelope::assemble(&header, &sealed).map_err(|e| e.code().to_owned())
}

impl Area for EnvelopeArea {
    const NAME: &'static str = "envelope";
    const DESCRIPTION: &'static str = "The envelope codec of every type, its decode errors, and a data message sealed and opened with a given message key (section 11).";
    type Op = Op;

    fn generate() -> Vec<Case<Op>> {
        let mut r = seeded(Self::NAME);
        let sealed = Hex::of(bytes::<21>(&mut r));
        let headers = vec![
            (
                "ENV-2 data message",
                "ENV-2",
                HeaderJson::Data {
                    tag: Hex::of(bytes::<8>(&mut r)),
                    n: 300,
                },
            ),
            (
                "ENV-3 first message",
                "ENV-3",
                HeaderJson::First {
                    ek: Hex::of(bytes::<32>(&mut r)),
                    spk_id: 1,
                    opk_id: 7,
                    identity_box: Hex(r_vec(&mut r, 186)),
                    keyshare_box: Hex(r_vec(&mut r, 120)),
                    n: 0,
                },
            ),
            (
                "ENV-4 epoch start",
                "ENV-4",
                HeaderJson::EpochStart {
                    prev_tag: Hex::of(bytes::<8>(&mut r)),
                    e: Hex::of(bytes::<32>(&mut r)),
                    confirm: Hex::of(bytes::<16>(&mut r)),
                    keyshare_box: Hex(r_vec(&mut r, 120)),
                    pn: 3,
                    n: 0,
                },
            ),
            (
                "ENV-5 group message",
                "ENV-5",
                HeaderJson::Group {
                    tag: Hex::of(bytes::<8>(&mut r)),
                    index: 3,
                    n: 2,
                },
            ),
        ];
        let mut cases = Vec::new();
        let mut data_bytes = Vec::new();
        for (name, rule, h) in headers {
            let bytes = h.header().map(|h| h.encode()).unwrap_or_default();
            let mut all = bytes.clone();
            all.extend_from_slice(&sealed.0);
            if data_bytes.is_empty() {
                data_bytes = all.clone();
            }
            cases.push(case(
                name,
                &[rule, "ENV-1"],
                Op::Encode {
                    header: h,
                    sealed: sealed.clone(),
                    bytes: Hex(all.clone()),
                },
            ));
            cases.push(case(
                &format!("{name} decodes"),
                &[rule, "ENV-7"],
                Op::Decode {
                    bytes: Hex(all.clone()),
                    expect: decode(&all),
                },
            ));
        }
        let mut bad: Vec<(&str, Vec<u8>)> = Vec::new();
        bad.push(("ENV-6 empty", Vec::new()));
        bad.push((
            "ENV-6 sealed part shorter than a tag",
            data_bytes[..data_bytes.len() - 6].to_vec(),
        ));
        bad.push(("ENV-6 header cut inside the tag", data_bytes[..5].to_vec()));
        let mut v2 = data_bytes.clone();
        v2[0] = 0x21;
        bad.push(("ENV-1 version 2", v2));
        let mut t = data_bytes.clone();
        t[0] = 0x15;
        bad.push(("ENV-1 unknown type 5", t));
        let mut nc = vec![0x11];
        nc.extend_from_slice(&[0u8; 8]);
        nc.extend_from_slice(&[0x80, 0x00]);
        nc.extend_from_slice(&[0u8; 16]);
        bad.push(("NOT-2 non-canonical counter", nc));
        let mut big = data_bytes.clone();
        big.resize(8193, 0);
        bad.push(("LIM-1 envelope of 8193 bytes", big));
        // Accepted at the bound: 8,192 bytes decode (the sealed part is not opened here).
        let mut at_bound = data_bytes.clone();
        at_bound.resize(8192, 0);
        bad.push(("LIM-1 envelope of 8192 bytes decodes", at_bound));
        // NOT-2: a counter of 6 bytes (the fifth has its high bit set) and one above u32::MAX.
        let mut six = vec![0x11];
        six.extend_from_slice(&[0u8; 8]);
        six.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
        six.extend_from_slice(&[0u8; 16]);
        bad.push(("NOT-2 counter of 6 bytes", six));
        let mut over = vec![0x11];
        over.extend_from_slice(&[0u8; 8]);
        over.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x1f]);
        over.extend_from_slice(&[0u8; 16]);
        bad.push(("NOT-2 counter above u32::MAX", over));
        // ENV-6: a whole header and no sealed part at all.
        let mut bare = vec![0x11];
        bare.extend_from_slice(&[0u8; 8]);
        bare.push(0x05);
        bad.push(("ENV-6 header without a sealed part", bare));
        for (name, b) in bad {
            let rule = name.split(' ').next().unwrap_or("ENV-6");
            cases.push(case(
                name,
                &[rule, "ENV-6"],
                Op::Decode {
                    expect: decode(&b),
                    bytes: Hex(b),
                },
            ));
        }
        let (key, nonce, tag) = (
            Hex::of(bytes::<32>(&mut r)),
            Hex::of(bytes::<12>(&mut r)),
            Hex::of(bytes::<8>(&mut r)),
        );
        let inner = Hex::of(b"\x01\x05hello");
        let env = seal(&key, &nonce, &tag, 5, &inner).unwrap_or_default();
        cases.push(case(
            "ENV-2 seal a 5-character text: 33 bytes",
            &["ENV-2", "ENV-6", "Req8"],
            Op::SealData {
                key: key.clone(),
                nonce: nonce.clone(),
                tag,
                n: 5,
                inner,
                envelope: Hex(env.clone()),
            },
        ));
        let mut open_case = |name: &str, key: Hex, nonce: Hex, env: Vec<u8>| {
            let expect = open(&key, &nonce, &env).unwrap_or(Expect::Error("schema".into()));
            cases.push(case(
                name,
                &["ENV-6", "PRIM-5"],
                Op::OpenData {
                    key,
                    nonce,
                    envelope: Hex(env),
                    expect,
                },
            ));
        };
        open_case(
            "ENV-6 open the data message",
            key.clone(),
            nonce.clone(),
            env.clone(),
        );
        let mut tt = env.clone();
        let last = tt.len() - 1;
        tt[last] ^= 0x01;
        open_case("ENV-6 tampered tag", key.clone(), nonce.clone(), tt);
        let mut th = env.clone();
        th[3] ^= 0x01;
        open_case(
            "ENV-6 tampered header (routing tag)",
            key.clone(),
            nonce.clone(),
            th,
        );
        open_case("ENV-6 wrong key", Hex::of(bytes::<32>(&mut r)), nonce, env);
        cases
    }

    fn run(op: &Op) -> Result<(), String> {
        match op {
            Op::Encode {
                header,
                sealed,
                bytes,
            } => {
                let mut all = header.header()?.encode();
                all.extend_from_slice(&sealed.0);
                same("bytes", &all, bytes)
            }
            Op::Decode { bytes, expect } => check(decode(&bytes.0), expect),
            Op::SealData {
                key,
                nonce,
                tag,
                n,
                inner,
                envelope,
            } => same("envelope", &seal(key, nonce, tag, *n, inner)?, envelope),
            Op::OpenData {
                key,
                nonce,
                envelope,
                expect,
            } => check(open(key, nonce, &envelope.0)?, expect),
        }
    }
}

fn r_vec(r: &mut rand_chacha::ChaCha20Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand_core::RngCore::fill_bytes(r, &mut v);
    v
}
