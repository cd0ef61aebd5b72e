//! The store key (STORE-1): `Argon2id(passphrase, salt)`, 32 bytes, given to SQLCipher as a raw key.
//!
//! The salt (16 random bytes) and the Argon2 parameters live beside the database in a small
//! plaintext header file, `<db>.salt`, so `open` derives the key with exactly what `create` (or the
//! last `change_passphrase`) recorded:
//!
//! ```text
//! sotto-store 1
//! kdf argon2id
//! version 19
//! m 19456
//! t 2
//! p 1
//! salt 00112233445566778899aabbccddeeff
//! ```
//!
//! The header holds nothing secret: anyone with the database file can already test passphrase
//! guesses against its authenticated first page, at the cost Argon2id sets.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};

/// Salt length (STORE-1).
pub const SALT_LEN: usize = 16;
/// Derived key length: SQLCipher's 256-bit raw key.
pub const KEY_LEN: usize = 32;

/// Largest memory cost `open` accepts from a header, KiB (1 GiB): a damaged or hostile header must
/// not make the program allocate without bound.
pub const MAX_M_KIB: u32 = 1 << 20;
/// Largest time cost `open` accepts from a header.
pub const MAX_T: u32 = 64;
/// Largest parallelism `open` accepts from a header.
pub const MAX_P: u32 = 16;

const MAGIC: &str = "sotto-store 1";
const MAX_HEADER_LEN: u64 = 512;

/// Argon2id cost parameters, recorded with the salt (STORE-1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub m_kib: u32,
    /// Time cost (passes).
    pub t: u32,
    /// Parallelism (lanes).
    pub p: u32,
    /// Argon2 version: 0x13 (19, current) or 0x10 (16).
    pub version: u32,
}

impl KdfParams {
    /// The OWASP recommendation for Argon2id: 19 MiB, 2 passes, 1 lane, version 0x13.
    pub const OWASP: KdfParams = KdfParams {
        m_kib: 19_456,
        t: 2,
        p: 1,
        version: 0x13,
    };

    /// The cheapest parameters Argon2 allows (8 KiB, 1 pass). **For tests only**: a store made
    /// with them falls to a passphrase guesser quickly.
    pub const INSECURE_FOR_TESTS: KdfParams = KdfParams {
        m_kib: 8,
        t: 1,
        p: 1,
        version: 0x13,
    };

    fn check(&self) -> Result<(Version, Params)> {
        let version = match self.version {
            0x13 => Version::V0x13,
            0x10 => Version::V0x10,
            _ => return Err(StoreError::BadHeader("unknown Argon2 version")),
        };
        if self.m_kib > MAX_M_KIB || self.t > MAX_T || self.p > MAX_P {
            return Err(StoreError::BadHeader(
                "Argon2 parameters above the accepted maximum",
            ));
        }
        let params = Params::new(self.m_kib, self.t, self.p, Some(KEY_LEN))
            .map_err(|_| StoreError::BadHeader("Argon2 parameters out of range"))?;
        Ok((version, params))
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams::OWASP
    }
}

/// What the header file records: the parameters and the salt.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KdfHeader {
    /// Argon2id parameters.
    pub params: KdfParams,
    /// The random salt.
    pub salt: [u8; SALT_LEN],
}

/// SQLCipher's raw-key form `x'<64 hex digits>'`, zeroized on drop.
pub(crate) struct RawKey(Zeroizing<String>);

impl RawKey {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl KdfHeader {
    /// A header with a fresh salt from the OS random source.
    pub fn generate(params: KdfParams) -> Result<Self> {
        params.check()?;
        let mut salt = [0u8; SALT_LEN];
        getrandom_salt(&mut salt)?;
        Ok(KdfHeader { params, salt })
    }

    /// Derives the store key from a passphrase (STORE-1).
    pub(crate) fn derive(&self, passphrase: &[u8]) -> Result<RawKey> {
        let (version, params) = self.params.check()?;
        let argon = Argon2::new(Algorithm::Argon2id, version, params);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        argon.hash_password_into(passphrase, &self.salt, key.as_mut_slice())?;
        // Written into a buffer of the final size so that no unzeroized copy is left behind.
        let mut text = Zeroizing::new(String::with_capacity(2 * KEY_LEN + 3));
        text.push_str("x'");
        for b in key.iter() {
            text.push(hex_digit(b >> 4));
            text.push(hex_digit(b & 0x0f));
        }
        text.push('\'');
        Ok(RawKey(text))
    }

    /// The header file's text.
    pub fn encode(&self) -> String {
        format!(
            "{MAGIC}\nkdf argon2id\nversion {}\nm {}\nt {}\np {}\nsalt {}\n",
            self.params.version,
            self.params.m_kib,
            self.params.t,
            self.params.p,
            hex::encode(self.salt)
        )
    }

    /// Parses the header file's text; anything but the exact layout is `BadHeader`.
    pub fn decode(text: &str) -> Result<Self> {
        let mut lines = text.lines();
        let mut next = |name: &str| -> Result<String> {
            let line = lines.next().ok_or(StoreError::BadHeader("truncated"))?;
            let (k, v) = line
                .split_once(' ')
                .ok_or(StoreError::BadHeader("malformed line"))?;
            if k != name {
                return Err(StoreError::BadHeader("unexpected field"));
            }
            Ok(v.to_owned())
        };
        if next("sotto-store")? != "1" {
            return Err(StoreError::BadHeader("unknown header version"));
        }
        if next("kdf")? != "argon2id" {
            return Err(StoreError::BadHeader("unknown key-derivation function"));
        }
        let num = |v: String| -> Result<u32> {
            if v.is_empty() || v.len() > 10 || !v.bytes().all(|c| c.is_ascii_digit()) {
                return Err(StoreError::BadHeader("malformed number"));
            }
            v.parse()
                .map_err(|_| StoreError::BadHeader("malformed number"))
        };
        let version = num(next("version")?)?;
        let m_kib = num(next("m")?)?;
        let t = num(next("t")?)?;
        let p = num(next("p")?)?;
        let salt_hex = next("salt")?;
        let mut salt = [0u8; SALT_LEN];
        hex::decode_to_slice(&salt_hex, &mut salt)
            .map_err(|_| StoreError::BadHeader("malformed salt"))?;
        if lines.next().is_some() {
            return Err(StoreError::BadHeader("trailing data"));
        }
        let params = KdfParams {
            m_kib,
            t,
            p,
            version,
        };
        params.check()?;
        Ok(KdfHeader { params, salt })
    }

    /// Reads the header file; a missing file is `MissingHeader`.
    pub fn read(path: &Path) -> Result<Self> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(StoreError::MissingHeader),
            Err(e) => return Err(e.into()),
        };
        let mut text = String::new();
        file.take(MAX_HEADER_LEN + 1)
            .read_to_string(&mut text)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidData => StoreError::BadHeader("not UTF-8"),
                _ => StoreError::Io(e),
            })?;
        if text.len() as u64 > MAX_HEADER_LEN {
            return Err(StoreError::BadHeader("too long"));
        }
        KdfHeader::decode(&text)
    }

    /// Writes the header file atomically: a temporary file, `fsync`, rename, `fsync` of the folder.
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = with_suffix(path, ".tmp");
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(self.encode().as_bytes())?;
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        sync_parent(path)
    }
}

/// `path` with `suffix` appended to its file name (`a/b.db` + `.salt` = `a/b.db.salt`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Makes a rename or a removal in `path`'s folder durable.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Opening a directory to fsync it works on Unix; elsewhere the rename is as durable as the OS
    // makes it.
    if let Ok(dir) = File::open(parent) {
        if cfg!(unix) {
            dir.sync_all()?;
        }
    }
    Ok(())
}

fn hex_digit(n: u8) -> char {
    // Always `Some`: the digit is below 16.
    char::from_digit(u32::from(n & 0x0f), 16).unwrap_or('0')
}

fn getrandom_salt(salt: &mut [u8]) -> Result<()> {
    use rand_core::RngCore;
    rand_core::OsRng
        .try_fill_bytes(salt)
        .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_store_1() {
        let h = KdfHeader {
            params: KdfParams::OWASP,
            salt: *b"0123456789abcdef",
        };
        let text = h.encode();
        assert_eq!(
            text,
            "sotto-store 1\nkdf argon2id\nversion 19\nm 19456\nt 2\np 1\n\
             salt 30313233343536373839616263646566\n"
        );
        assert_eq!(KdfHeader::decode(&text).unwrap(), h);
    }

    #[test]
    fn malformed_headers_are_typed_errors() {
        let good = KdfHeader {
            params: KdfParams::INSECURE_FOR_TESTS,
            salt: [7; 16],
        }
        .encode();
        let cases = [
            String::new(),
            good.replace("argon2id", "scrypt"),
            good.replace("version 19", "version 20"),
            good.replace("m 8", "m 99999999999"),
            good.replace("m 8", "m 2097152"),
            good.replace("t 1", "t 0"),
            good.replace("t 1", "t +1"),
            good.replace("p 1", "p 17"),
            good.replace("salt 07", "salt 7"),
            good.replace("sotto-store 1", "sotto-store 2"),
            format!("{good}extra 1\n"),
            good[..good.len() - 10].to_owned(),
        ];
        for bad in cases {
            assert!(
                matches!(KdfHeader::decode(&bad), Err(StoreError::BadHeader(_))),
                "{bad:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn header_decode_never_panics(text in "\\PC{0,300}") {
            let _ = KdfHeader::decode(&text);
        }

        #[test]
        fn header_decode_of_encode_is_identity_store_1(
            m_kib in 8u32..=MAX_M_KIB,
            t in 1u32..=MAX_T,
            p in 1u32..=MAX_P,
            v10 in proptest::bool::ANY,
            salt in proptest::array::uniform16(proptest::num::u8::ANY),
        ) {
            let params = KdfParams { m_kib: m_kib.max(8 * p), t, p, version: if v10 { 0x10 } else { 0x13 } };
            let h = KdfHeader { params, salt };
            proptest::prop_assert_eq!(KdfHeader::decode(&h.encode()).unwrap(), h);
        }
    }

    #[test]
    fn derive_is_argon2id_raw_key() {
        let h = KdfHeader {
            params: KdfParams::INSECURE_FOR_TESTS,
            salt: [1; 16],
        };
        let k = h.derive(b"pass").unwrap();
        let mut expect = [0u8; 32];
        Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, Some(32)).unwrap(),
        )
        .hash_password_into(b"pass", &[1; 16], &mut expect)
        .unwrap();
        assert_eq!(
            k.as_bytes(),
            format!("x'{}'", hex::encode(expect)).as_bytes()
        );
        assert_ne!(h.derive(b"pass2").unwrap().as_bytes(), k.as_bytes());
    }
}
