//! Shared set-up: seeded devices, a temporary folder, cheap key derivation, an independent
//! re-implementation of the store key (to open the file with plain rusqlite).

use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sotto_core::{Content, Device, Incoming, Outgoing, UserId};
use sotto_store::{KdfHeader, KdfParams, Store, header_path};
use tempfile::TempDir;

pub const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
pub const PASS: &[u8] = b"correct horse battery staple";

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A device with a random user id and 10 one-time prekeys.
pub fn device(rng: &mut ChaCha20Rng) -> Device {
    let id = UserId::random(rng);
    let mut d = Device::new(rng, id);
    d.generate_one_time_prekeys(rng, 10).unwrap();
    d
}

/// Alice and Bob; Alice has Bob's bundle from the directory.
pub fn pair(rng: &mut ChaCha20Rng) -> (Device, Device) {
    let mut alice = device(rng);
    let bob = device(rng);
    alice
        .add_contact_from_bundle(&bob.bundle(Some(1)).unwrap())
        .unwrap();
    (alice, bob)
}

pub fn text(s: &str) -> Content {
    Content::Text(s.to_owned())
}

pub fn send(a: &mut Device, rng: &mut ChaCha20Rng, now: u64, to: &UserId, s: &str) -> Outgoing {
    a.send(rng, now, to, &text(s)).unwrap()
}

/// `to` receives the pairwise message `out` and answers with a receipt (RX-5).
pub fn receive(
    to: &mut Device,
    rng: &mut ChaCha20Rng,
    now: u64,
    out: &Outgoing,
) -> (Incoming, Outgoing) {
    let inc = to.receive(now, &out.envelope).unwrap();
    let receipt = to
        .send(rng, now, &inc.from, &Content::Receipt(vec![inc.id]))
        .unwrap();
    (inc, receipt)
}

pub fn tmp() -> TempDir {
    tempfile::tempdir().unwrap()
}

/// A store for `device` in `dir`, with test-cheap Argon2 parameters.
pub fn create(dir: &Path, name: &str, device: &Device) -> (Store, PathBuf) {
    let path = dir.join(name);
    let store =
        Store::create_with_params(&path, PASS, device, T0, KdfParams::INSECURE_FOR_TESTS).unwrap();
    (store, path)
}

/// The store key computed here, independently of the crate: Argon2id with the header's
/// parameters, in SQLCipher's raw-key form (STORE-1).
pub fn raw_key(db: &Path, pass: &[u8]) -> String {
    let h = KdfHeader::read(&header_path(db)).unwrap();
    raw_key_for(&h, pass)
}

pub fn raw_key_for(h: &KdfHeader, pass: &[u8]) -> String {
    hex_key(&argon2id(h, pass))
}

pub fn argon2id(h: &KdfHeader, pass: &[u8]) -> [u8; 32] {
    let version = if h.params.version == 0x13 {
        Version::V0x13
    } else {
        Version::V0x10
    };
    let params = Params::new(h.params.m_kib, h.params.t, h.params.p, Some(32)).unwrap();
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, version, params)
        .hash_password_into(pass, &h.salt, &mut key)
        .unwrap();
    key
}

pub fn hex_key(key: &[u8; 32]) -> String {
    format!("x'{}'", hex::encode(key))
}

/// Opens the store file with plain rusqlite and `PRAGMA key`, as any SQLCipher tool would.
pub fn raw_open(db: &Path, pass: &[u8]) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(&format!("PRAGMA key = \"{}\";", raw_key(db, pass)))
        .unwrap();
    conn
}

/// Every file in `dir` with its bytes.
pub fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}
