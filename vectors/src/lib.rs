//! # sotto-vectors
//!
//! Known-answer test vectors (schema in `vectors/README.md`): the JSON files of this directory,
//! the code that generates them from `sotto-core` and the runner that checks them against it. It
//! depends on nothing but the core and `sotto-wire` (the membership API's bodies, `membership`;
//! no I/O either), so the core's own tests run every vector (`impl/core/tests/core/vectors.rs`, a
//! dev-dependency cycle) and `sotto-conformance` re-exports it as `sotto_conformance::vectors`.
//!
//! One JSON file per area, openmls-style: each area module has a `generate` that derives every case
//! from fixed seeds through `sotto-core`, and a `run` that checks one case against the core. The
//! committed files in `vectors/` are the reference; [`generate_dir`] writes `<area>-new.json` next to
//! them so that any drift is a plain `diff`.
//!
//! ```text
//!   {"area": "...", "description": "...", "rules": [...],
//!    "cases": [{"name": "...", "rules": ["X3DH-2"], "op": "...", <inputs...>, "expect": {"ok": {...}}},
//!              {"name": "...", "rules": [...], "op": "...", <inputs...>, "expect": {"error": "decrypt_failed"}}]}
//! ```

// Vector operations are parsed once per case; their size does not matter.
#![allow(clippy::large_enum_variant)]

mod bundle;
mod card;
mod chain;
mod envelope;
mod epoch;
mod first;
mod group;
mod inner;
mod kdf;
mod keyshare;
mod membership;
pub mod rules;
mod setup;
mod signup;

use std::fmt;
use std::path::Path;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes written as a lowercase hex string.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Hex(pub Vec<u8>);

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s).map(Hex).map_err(serde::de::Error::custom)
    }
}

impl Hex {
    /// Wraps bytes.
    pub fn of(b: impl AsRef<[u8]>) -> Self {
        Hex(b.as_ref().to_vec())
    }

    /// The bytes as a fixed-size array, or a readable error.
    pub fn arr<const N: usize>(&self) -> Result<[u8; N], String> {
        self.0
            .as_slice()
            .try_into()
            .map_err(|_| format!("expected {N} bytes, found {}", self.0.len()))
    }
}

/// What a case expects: outputs, or the stable code of an error (protocol.md section 17).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect<T> {
    /// The operation succeeds with these outputs.
    Ok(T),
    /// The operation fails with this error code, final for this input.
    Error(String),
    /// The operation fails with this retryable error code (RX-8, class `retry` in protocol.md
    /// section 17): the receiver keeps the input and tries it again later.
    Retry(String),
}

impl<T> Expect<T> {
    /// The expectation matching a core result, with `f` mapping the success value.
    pub fn from_result<U>(r: sotto_core::Result<U>, f: impl FnOnce(U) -> T) -> Self {
        match r {
            Ok(v) => Expect::Ok(f(v)),
            Err(e) => Expect::refused(&e),
        }
    }

    /// The expectation of a core error: [`Expect::Retry`] when it is retryable, else
    /// [`Expect::Error`].
    pub fn refused(e: &sotto_core::Error) -> Self {
        if e.is_retryable() {
            Expect::Retry(e.code().to_owned())
        } else {
            Expect::Error(e.code().to_owned())
        }
    }
}

/// Compares a core result with an expectation.
pub fn check<T: PartialEq + fmt::Debug>(got: Expect<T>, want: &Expect<T>) -> Result<(), String> {
    if got == *want {
        Ok(())
    } else {
        Err(format!("expected {want:?}, got {got:?}"))
    }
}

/// One case: a name, the rules it pins, and the area-specific operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Case<C> {
    /// Human-readable name, starting with the main rule id.
    pub name: String,
    /// Rule ids of docs/protocol.md (and Req ids) the case pins.
    pub rules: Vec<String>,
    /// The operation, inputs and expected outputs.
    #[serde(flatten)]
    pub body: C,
}

/// A vector file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VectorFile<C> {
    /// The area (file name without `.json`).
    pub area: String,
    /// What the file pins.
    pub description: String,
    /// Every rule id covered.
    pub rules: Vec<String>,
    /// The cases.
    pub cases: Vec<Case<C>>,
}

/// An area of vectors.
pub trait Area {
    /// File name without `.json`.
    const NAME: &'static str;
    /// One sentence on what the file pins.
    const DESCRIPTION: &'static str;
    /// The operation type of a case.
    type Op: Serialize + DeserializeOwned;
    /// Derives every case from fixed seeds.
    fn generate() -> Vec<Case<Self::Op>>;
    /// Checks one case against the core.
    fn run(op: &Self::Op) -> Result<(), String>;
}

/// The result of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseReport {
    /// The area.
    pub area: String,
    /// The case name.
    pub name: String,
    /// `Ok` or why it failed.
    pub result: Result<(), String>,
    /// Whether the case expects an error (an invalid case).
    pub invalid: bool,
}

/// A list of one-time prekeys as the signup and prekey upload bodies encode it (SIGNUP-1,
/// KEY-4): count u16, then id u32 and key, big-endian; the tampered bodies of both areas are
/// built from it.
pub(crate) fn encode_opks(entries: &[(u32, [u8; 32])]) -> Vec<u8> {
    let mut b = u16::try_from(entries.len())
        .unwrap_or(u16::MAX)
        .to_be_bytes()
        .to_vec();
    for (id, key) in entries {
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(key);
    }
    b
}

fn generate_file<A: Area>() -> String {
    let cases = A::generate();
    let mut rules: Vec<String> = cases.iter().flat_map(|c| c.rules.clone()).collect();
    rules.sort_by_key(|r| rule_key(r));
    rules.dedup();
    let file = VectorFile {
        area: A::NAME.to_owned(),
        description: A::DESCRIPTION.to_owned(),
        rules,
        cases,
    };
    let mut s = serde_json::to_string_pretty(&file).expect("vector files always serialize");
    s.push('\n');
    s
}

// Sorts "X3DH-10" after "X3DH-9".
fn rule_key(r: &str) -> (String, u32) {
    match r.rsplit_once('-') {
        Some((a, n)) => (a.to_owned(), n.parse().unwrap_or(0)),
        None => (r.to_owned(), 0),
    }
}

fn run_file<A: Area>(json: &str) -> Vec<CaseReport> {
    let file: VectorFile<serde_json::Value> = match serde_json::from_str(json) {
        Ok(f) => f,
        Err(e) => return vec![schema_error(A::NAME, &e.to_string())],
    };
    if file.area != A::NAME {
        return vec![schema_error(
            A::NAME,
            &format!("file says area {:?}", file.area),
        )];
    }
    file.cases
        .into_iter()
        .map(|c| {
            let invalid = c
                .body
                .get("expect")
                .is_some_and(|e| e.get("error").is_some() || e.get("retry").is_some());
            let result = serde_json::from_value::<A::Op>(c.body)
                .map_err(|e| format!("schema: {e}"))
                .and_then(|op| A::run(&op));
            CaseReport {
                area: A::NAME.to_owned(),
                name: c.name,
                result,
                invalid,
            }
        })
        .collect()
}

fn schema_error(area: &str, msg: &str) -> CaseReport {
    CaseReport {
        area: area.to_owned(),
        name: "(file)".to_owned(),
        result: Err(format!("schema: {msg}")),
        invalid: false,
    }
}

/// An area as the registry sees it.
pub struct AreaEntry {
    /// File name without `.json`.
    pub name: &'static str,
    /// Generates the file's JSON.
    pub generate: fn() -> String,
    /// Runs a file's JSON.
    pub run: fn(&str) -> Vec<CaseReport>,
}

macro_rules! entry {
    ($t:ty) => {
        AreaEntry {
            name: <$t as Area>::NAME,
            generate: generate_file::<$t>,
            run: run_file::<$t>,
        }
    };
}

/// Every area, in file-name order.
pub fn areas() -> Vec<AreaEntry> {
    vec![
        entry!(bundle::Bundle),
        entry!(card::Card),
        entry!(chain::ChainArea),
        entry!(envelope::EnvelopeArea),
        entry!(epoch::Epoch),
        entry!(first::First),
        entry!(group::GroupArea),
        entry!(inner::InnerArea),
        entry!(kdf::Kdf),
        entry!(keyshare::KeyShareArea),
        entry!(membership::Membership),
        entry!(setup::Setup),
        entry!(signup::Signup),
    ]
}

/// What the vector files of `dir` expect, for the report's coverage. Files that cannot be read or
/// parsed add nothing ([`check_dir`] reports them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Every error code an invalid case expects ([`rules::refusal_codes`]).
    pub codes: std::collections::BTreeSet<String>,
    /// The rules the files pin: named by an invalid case or by the note of a refused delivery
    /// ([`rules::pinned_by`]).
    pub rules: std::collections::BTreeSet<String>,
}

/// Reads the vector files of `dir` once and collects what they expect.
pub fn expected(dir: &Path) -> Expected {
    let mut out = Expected::default();
    for a in areas() {
        let Some(file) = std::fs::read_to_string(dir.join(format!("{}.json", a.name)))
            .ok()
            .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok())
        else {
            continue;
        };
        rules::refusal_codes(&file, &mut out.codes);
        rules::pinned_by(&file, &mut out.rules);
    }
    out
}

/// Runs every case of every area file in `dir`. A missing file is one failing case.
pub fn check_dir(dir: &Path) -> Vec<CaseReport> {
    let mut out = Vec::new();
    for a in areas() {
        let path = dir.join(format!("{}.json", a.name));
        match std::fs::read_to_string(&path) {
            Ok(json) => out.extend((a.run)(&json)),
            Err(e) => out.push(CaseReport {
                area: a.name.to_owned(),
                name: "(file)".to_owned(),
                result: Err(format!("cannot read {}: {e}", path.display())),
                invalid: false,
            }),
        }
    }
    out
}

/// Writes `<area>-new.json` for every area into `dir`; returns the paths written.
pub fn generate_dir(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for a in areas() {
        let path = dir.join(format!("{}-new.json", a.name));
        std::fs::write(&path, (a.generate)())?;
        written.push(path);
    }
    Ok(written)
}

/// A per-case table, then a summary line.
pub fn render(reports: &[CaseReport]) -> String {
    let mut s = String::new();
    let width = reports
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .min(72);
    s.push_str(&format!(
        "{:<12} {:<width$} {:<7} result\n",
        "area", "case", "kind"
    ));
    for r in reports {
        let kind = if r.invalid { "invalid" } else { "valid" };
        let res = match &r.result {
            Ok(()) => "PASS".to_owned(),
            Err(e) => format!("FAIL: {e}"),
        };
        s.push_str(&format!(
            "{:<12} {:<width$} {:<7} {res}\n",
            r.area, r.name, kind
        ));
    }
    let failed = reports.iter().filter(|r| r.result.is_err()).count();
    s.push_str(&format!(
        "{} cases in {} files: {} passed, {} failed\n",
        reports.len(),
        {
            let mut a: Vec<&str> = reports.iter().map(|r| r.area.as_str()).collect();
            a.dedup();
            a.len()
        },
        reports.len().saturating_sub(failed),
        failed
    ));
    s
}

// ------------------------------------------------------------------------------ helpers for areas

/// A deterministic generator for an area's inputs.
pub(crate) fn seeded(area: &str) -> ChaCha20Rng {
    let h = sotto_core::crypto::sha256(&[b"sotto/v1/vectors/", area.as_bytes()]);
    ChaCha20Rng::from_seed(h)
}

/// `N` random bytes.
pub(crate) fn bytes<const N: usize>(rng: &mut ChaCha20Rng) -> [u8; N] {
    let mut b = [0u8; N];
    rng.fill_bytes(&mut b);
    b
}

/// Builds a case.
pub(crate) fn case<C>(name: &str, rules: &[&str], body: C) -> Case<C> {
    Case {
        name: name.to_owned(),
        rules: rules.iter().map(|r| (*r).to_owned()).collect(),
        body,
    }
}

/// Compares bytes with an expected hex value.
pub(crate) fn same(what: &str, got: &[u8], want: &Hex) -> Result<(), String> {
    if got == want.0.as_slice() {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected {}, got {}",
            hex::encode(&want.0),
            hex::encode(got)
        ))
    }
}

/// A readable error for a core failure where success was expected.
pub(crate) fn core_err(what: &str, e: sotto_core::Error) -> String {
    format!("{what}: unexpected error {}", e.code())
}

/// The secret keys of one party, as vectors list them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyKeys {
    /// User id (10 bytes).
    pub user: Hex,
    /// Ed25519 seed of `IKs`.
    pub iks_seed: Hex,
    /// X25519 private key `IKd`.
    pub ikd: Hex,
    /// Signed prekey id.
    pub spk_id: u32,
    /// Signed prekey private key.
    pub spk: Hex,
    /// One-time prekey id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opk_id: Option<u32>,
    /// One-time prekey private key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opk: Option<Hex>,
}

impl PartyKeys {
    /// Random keys from a seeded generator.
    pub(crate) fn random(r: &mut ChaCha20Rng, user: u8, opk: bool) -> Self {
        PartyKeys {
            user: Hex::of([user; 10]),
            iks_seed: Hex::of(bytes::<32>(r)),
            ikd: Hex::of(bytes::<32>(r)),
            spk_id: 1,
            spk: Hex::of(bytes::<32>(r)),
            opk_id: opk.then_some(7),
            opk: opk.then(|| Hex::of(bytes::<32>(r))),
        }
    }

    /// The user id.
    pub fn user_id(&self) -> Result<sotto_core::UserId, String> {
        Ok(sotto_core::UserId(self.user.arr()?))
    }

    /// The identity key pair.
    pub fn identity(&self) -> Result<sotto_core::Identity, String> {
        Ok(sotto_core::Identity::from_secrets(
            sotto_core::crypto::SignSecret::from_seed(self.iks_seed.arr()?),
            sotto_core::crypto::DhSecret::from_bytes(self.ikd.arr()?),
        ))
    }

    /// The signed prekey pair.
    pub fn spk_pair(&self) -> Result<sotto_core::keys::SignedPreKeyPair, String> {
        Ok(self.identity()?.signed_prekey_from(
            self.spk_id,
            sotto_core::crypto::DhSecret::from_bytes(self.spk.arr()?),
        ))
    }

    /// The one-time prekey pair, if any.
    pub fn opk_pair(&self) -> Result<Option<sotto_core::keys::OneTimePreKeyPair>, String> {
        match (&self.opk_id, &self.opk) {
            (Some(id), Some(k)) => sotto_core::keys::OneTimePreKeyPair::from_secret(
                *id,
                sotto_core::crypto::DhSecret::from_bytes(k.arr()?),
            )
            .map(Some)
            .map_err(|e| core_err("opk", e)),
            _ => Ok(None),
        }
    }

    /// The bundle the directory would serve (with the one-time prekey if any).
    pub fn bundle(&self) -> Result<sotto_core::PreKeyBundle, String> {
        Ok(sotto_core::PreKeyBundle::new(
            self.user_id()?,
            *self.identity()?.public(),
            *self.spk_pair()?.public(),
            self.opk_pair()?.map(|o| *o.public()),
        ))
    }

    /// A device holding these keys.
    pub fn device(&self) -> Result<sotto_core::Device, String> {
        let mut d =
            sotto_core::Device::from_keys(self.user_id()?, self.identity()?, self.spk_pair()?);
        if let Some(o) = self.opk_pair()? {
            d.insert_one_time_prekey(o);
        }
        Ok(d)
    }
}
