//! The membership API's wire types, shared by the service (`sotto-server`) and its client
//! (`sotto-client`): paths, headers, JSON bodies, the error codes ([`ApiCode`]) and the two binary
//! request bodies.
//!
//! JSON bodies are plain serde structs. The two binary bodies the protocol does not define are
//! encoded here, with both directions, so the device and the service cannot drift apart:
//!
//! ```text
//! RenewRequest  = user_id [10] || spki_len u16 || spki [1..=512] || timestamp_ms u64 || sig [64]
//!                 sig = Sig_IKs("sotto/v1/renew" || all bytes before sig)
//! PrekeyUpload  = has_spk u8 (0|1) || [signed prekey (KEY-3) [100]]
//!                 || opk_count u16 (0..=100, LIM-15) || one-time prekeys (KEY-4) [36 x opk_count]
//! ```
//!
//! Integers are big-endian (NOT-1). Decoding is strict: unknown flag values, ids 0 or repeated,
//! counts or lengths out of range and trailing bytes are refused with the core's error codes
//! (`length_out_of_range`, `trailing_bytes`, `truncated`, `bad_signature`).
//!
//! A decoded [`RenewRequest`] is *unverified*: the service checks it with the identity it stored at
//! signup ([`RenewRequest::verify`]). A decoded [`PrekeyUpload`] is verified by construction: its
//! signed prekey is only read against the owner's identity.

use serde::{Deserialize, Serialize};
use sotto_core::codec::{Reader, Writer};
use sotto_core::crypto::SignPublic;
use sotto_core::error::{DecodeError, Result};
use sotto_core::keys::{OneTimePreKey, SignedPreKey};
use sotto_core::limits::{MAX_OPK_UPLOAD, MAX_SPKI};
use sotto_core::{Device, Identity, PublicIdentity, UserId};

/// Paths of the membership API (all under `/v1`).
pub mod paths {
    /// `GET`: the server's clock (TIME-1).
    pub const TIME: &str = "/v1/time";
    /// `GET`: a fresh single-use challenge and the proof-of-work difficulty (SIGNUP-3).
    pub const CHALLENGE: &str = "/v1/challenge";
    /// `POST`: a signup request (SIGNUP-1).
    pub const SIGNUP: &str = "/v1/signup";
    /// `POST`: a new client certificate for a new TLS key, authorized by the identity key.
    pub const RENEW: &str = "/v1/renew";
    /// `POST` (client certificate): new prekeys (KEY-3, KEY-4).
    pub const PREKEYS: &str = "/v1/prekeys";
    /// `GET` (client certificate): how many one-time prekeys the caller has left.
    pub const PREKEY_COUNT: &str = "/v1/prekeys/count";
    /// `GET /v1/bundle/{user_id}` (client certificate): a prekey bundle (KEY-5).
    pub const BUNDLE_PREFIX: &str = "/v1/bundle/";
    /// The bundle route's template, `{user_id}` standing for the 16-character user id (the syntax
    /// of the service's router and of OpenAPI): [`BUNDLE_PREFIX`] followed by the parameter.
    pub const BUNDLE: &str = "/v1/bundle/{user_id}";
    /// `POST` (client certificate, empty body): deletes the caller's account: its directory
    /// entry and prekeys, its certificates (revoked), its inbox; answers 204. Messages sent to
    /// it afterwards are refused (BROKER-5, reason 2).
    pub const ACCOUNT_DELETE: &str = "/v1/account/delete";
}

/// The header carrying the server's time in milliseconds on every response (TIME-1).
pub const TIME_HEADER: &str = "x-sotto-server-time";

/// Largest request body the service reads, in bytes; a larger one is refused with 413.
///
/// The largest valid body is a signup request: 1 + 2 + 512 + 128 + 100 + 2 + 36 x 100 + 1 + 32 + 8 +
/// 64 = 4,450 bytes.
pub const MAX_BODY: usize = 8 * 1024;

/// Largest response body the client reads (certificates and CA in JSON stay far below).
pub const MAX_RESPONSE: usize = 64 * 1024;

/// How far a renew request's timestamp may be from the server's clock, in milliseconds (5 minutes).
pub const RENEW_WINDOW_MS: u64 = 5 * 60 * 1000;

/// Signature context of a renew request (the core's).
pub use sotto_core::kdf::SIG_RENEW;

/// `GET /v1/time`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeResponse {
    /// Milliseconds since the Unix epoch on the server's clock.
    pub server_time_ms: u64,
}

/// `GET /v1/challenge`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// 32 random bytes in hex, to put in the signup request's challenge field (SIGNUP-1).
    pub challenge: String,
    /// The proof-of-work difficulty in bits (SIGNUP-3); 0 means none.
    pub difficulty: u8,
}

impl ChallengeResponse {
    /// The challenge bytes.
    pub fn challenge_bytes(&self) -> Option<Vec<u8>> {
        hex::decode(&self.challenge).ok()
    }
}

/// `POST /v1/signup` (SIGNUP-4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignupResponse {
    /// The new user id, 16 characters `[a-z2-7]` (ID-1).
    pub user_id: String,
    /// The client certificate (PEM) for the request's TLS key, CN = user id (TLS-1).
    pub certificate_pem: String,
    /// The CA certificate (PEM) the device pins from now on (TLS-1).
    pub ca_pem: String,
    /// The server's clock (TIME-1).
    pub server_time_ms: u64,
    /// Where the message service listens, `host:port`.
    pub broker: String,
}

/// `POST /v1/renew`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateResponse {
    /// The new client certificate (PEM), CN = user id.
    pub certificate_pem: String,
    /// The CA certificate (PEM).
    pub ca_pem: String,
    /// The server's clock (TIME-1).
    pub server_time_ms: u64,
}

/// `GET /v1/prekeys/count`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrekeyCountResponse {
    /// One-time prekeys the directory still holds for the caller.
    pub one_time_prekeys: u32,
}

/// Every error response: a stable code and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable snake_case code ([`ApiCode::as_str`]: protocol.md section 17, or one of
    /// docs/operations.md).
    pub error: String,
    /// A message for people; never contains key material.
    pub message: String,
}

/// The stable code of an error response, typed: the service sends [`ApiCode::as_str`], a client
/// reads it back with [`ApiCode::parse`], and [`ApiCode::status`] is the HTTP status that goes with
/// it (the table in docs/operations.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiCode {
    /// The core refused the request's bytes, with its own code (protocol.md section 17).
    Core(sotto_core::Error),
    /// `unknown_challenge`: a signup whose challenge was not issued, expired or was used.
    UnknownChallenge,
    /// `unsupported_key`: the TLS key is not a DER SubjectPublicKeyInfo of ECDSA P-256 or Ed25519.
    UnsupportedKey,
    /// `stale_timestamp`: a renew request too far from the server's clock.
    StaleTimestamp,
    /// `body_unreadable`: the request body could not be read.
    BodyUnreadable,
    /// `client_certificate_required`: the endpoint needs a client certificate.
    ClientCertificateRequired,
    /// `unknown_user`: no such user.
    UnknownUser,
    /// `not_found`: no such endpoint.
    NotFound,
    /// `method_not_allowed`: the wrong method for an endpoint.
    MethodNotAllowed,
    /// `stale_signed_prekey`: an upload whose signed prekey id is not above the current one.
    StaleSignedPrekey,
    /// `body_too_large`: a request body above [`MAX_BODY`].
    BodyTooLarge,
    /// `internal`: a fault of the service (details only in its log).
    Internal,
    /// `timeout`: the request took longer than the service allows.
    Timeout,
    /// `key_not_proven`: a signup or renew request whose TLS key the connection did not prove it
    /// holds (no client certificate of that key in the TLS handshake).
    KeyNotProven,
    /// `rate_limited`: beyond one of the service's rate limits (signups per address or in all);
    /// the same request succeeds later (the `retry-after` header says when, in seconds).
    RateLimited,
    /// A code this version does not know (a newer service, or not a Sotto service at all).
    Unrecognized,
}

impl ApiCode {
    /// The service's own codes, in the order of the table in docs/operations.md.
    pub const SERVICE: [ApiCode; 14] = [
        ApiCode::UnknownChallenge,
        ApiCode::UnsupportedKey,
        ApiCode::KeyNotProven,
        ApiCode::StaleTimestamp,
        ApiCode::BodyUnreadable,
        ApiCode::ClientCertificateRequired,
        ApiCode::UnknownUser,
        ApiCode::NotFound,
        ApiCode::MethodNotAllowed,
        ApiCode::StaleSignedPrekey,
        ApiCode::BodyTooLarge,
        ApiCode::RateLimited,
        ApiCode::Internal,
        ApiCode::Timeout,
    ];

    /// The code as it travels in [`ErrorBody::error`]; `unrecognized` for [`ApiCode::Unrecognized`].
    pub fn as_str(&self) -> &'static str {
        match self {
            ApiCode::Core(e) => e.code(),
            ApiCode::UnknownChallenge => "unknown_challenge",
            ApiCode::UnsupportedKey => "unsupported_key",
            ApiCode::KeyNotProven => "key_not_proven",
            ApiCode::StaleTimestamp => "stale_timestamp",
            ApiCode::BodyUnreadable => "body_unreadable",
            ApiCode::ClientCertificateRequired => "client_certificate_required",
            ApiCode::UnknownUser => "unknown_user",
            ApiCode::NotFound => "not_found",
            ApiCode::MethodNotAllowed => "method_not_allowed",
            ApiCode::StaleSignedPrekey => "stale_signed_prekey",
            ApiCode::BodyTooLarge => "body_too_large",
            ApiCode::Internal => "internal",
            ApiCode::Timeout => "timeout",
            ApiCode::RateLimited => "rate_limited",
            ApiCode::Unrecognized => "unrecognized",
        }
    }

    /// The typed code of an [`ErrorBody::error`]; [`ApiCode::Unrecognized`] if neither the service
    /// nor the core has it.
    pub fn parse(code: &str) -> ApiCode {
        if let Some(c) = ApiCode::SERVICE.into_iter().find(|c| c.as_str() == code) {
            return c;
        }
        sotto_core::Error::from_code(code).map_or(ApiCode::Unrecognized, ApiCode::Core)
    }

    /// The HTTP status that goes with the code: 400 for the core's codes but `limit_reached`
    /// (409: too many one-time prekeys kept), the table of docs/operations.md for the service's.
    pub fn status(&self) -> u16 {
        match self {
            ApiCode::Core(sotto_core::Error::Misuse(
                sotto_core::error::MisuseError::LimitReached,
            )) => 409,
            ApiCode::Core(_)
            | ApiCode::UnknownChallenge
            | ApiCode::UnsupportedKey
            | ApiCode::KeyNotProven
            | ApiCode::StaleTimestamp
            | ApiCode::BodyUnreadable => 400,
            ApiCode::ClientCertificateRequired => 401,
            ApiCode::UnknownUser | ApiCode::NotFound => 404,
            ApiCode::MethodNotAllowed => 405,
            ApiCode::StaleSignedPrekey => 409,
            ApiCode::BodyTooLarge => 413,
            ApiCode::RateLimited => 429,
            ApiCode::Internal | ApiCode::Unrecognized => 500,
            ApiCode::Timeout => 503,
        }
    }
}

impl core::fmt::Display for ApiCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

// ------------------------------------------------------------------------------------ renew

/// A request for a new client certificate for a new TLS key, signed with the identity key `IKs`.
///
/// Decoded requests are unverified until [`RenewRequest::verify`] checks them against the identity
/// the service stored at signup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewRequest {
    user_id: UserId,
    tls_spki: Vec<u8>,
    timestamp_ms: u64,
    sig: [u8; 64],
}

impl RenewRequest {
    /// Builds and signs a request for `tls_spki` (DER SubjectPublicKeyInfo, 1..=512 bytes, LIM-16)
    /// at server-corrected time `timestamp_ms` (TIME-2).
    pub fn sign(
        identity: &Identity,
        user_id: UserId,
        tls_spki: &[u8],
        timestamp_ms: u64,
    ) -> Result<Self> {
        let mut req = RenewRequest::unsigned(user_id, tls_spki, timestamp_ms)?;
        req.sig = identity.signing().sign(SIG_RENEW, &[&req.signed_part()]);
        Ok(req)
    }

    /// The request without its signature yet, its key length checked (LIM-16).
    fn unsigned(user_id: UserId, tls_spki: &[u8], timestamp_ms: u64) -> Result<Self> {
        if tls_spki.is_empty() || tls_spki.len() > MAX_SPKI {
            return Err(DecodeError::LengthOutOfRange.into());
        }
        Ok(RenewRequest {
            user_id,
            tls_spki: tls_spki.to_vec(),
            timestamp_ms,
            sig: [0; 64],
        })
    }

    /// Builds a request for `tls_spki` signed by `device`'s identity key, for its own user id,
    /// at server-corrected time `timestamp_ms` (the key stays in the core:
    /// [`sotto_core::Device::sign_renewal`]).
    pub fn by_device(device: &Device, tls_spki: &[u8], timestamp_ms: u64) -> Result<Self> {
        let mut req = RenewRequest::unsigned(*device.user_id(), tls_spki, timestamp_ms)?;
        req.sig = device.sign_renewal(&req.signed_part());
        Ok(req)
    }

    /// The request body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = self.signed_part();
        v.extend_from_slice(&self.sig);
        v
    }

    /// Decodes the layout (no signature check yet).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let user_id = UserId(r.array()?);
        let spki_len = usize::from(r.u16()?);
        if spki_len == 0 || spki_len > MAX_SPKI {
            return Err(DecodeError::LengthOutOfRange.into());
        }
        let tls_spki = r.bytes(spki_len)?.to_vec();
        let timestamp_ms = r.u64()?;
        let sig: [u8; 64] = r.array()?;
        r.finish()?;
        Ok(RenewRequest {
            user_id,
            tls_spki,
            timestamp_ms,
            sig,
        })
    }

    /// Checks the signature with the owner's identity signing key (`bad_signature`).
    pub fn verify(&self, owner: &PublicIdentity) -> Result<()> {
        verify_with(owner.iks(), &self.signed_part(), &self.sig)
    }

    /// The user whose certificate is renewed.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// The new TLS public key (DER SubjectPublicKeyInfo).
    pub fn tls_spki(&self) -> &[u8] {
        &self.tls_spki
    }

    /// When the device signed the request (server-corrected milliseconds).
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    fn signed_part(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(10 + 2 + self.tls_spki.len() + 8);
        // The length is bounded by MAX_SPKI on every path that builds a request.
        w.bytes(&self.user_id.0)
            .u16(u16::try_from(self.tls_spki.len()).unwrap_or(u16::MAX))
            .bytes(&self.tls_spki)
            .u64(self.timestamp_ms);
        w.into_vec()
    }
}

fn verify_with(key: &SignPublic, signed: &[u8], sig: &[u8; 64]) -> Result<()> {
    key.verify(SIG_RENEW, &[signed], sig)?;
    Ok(())
}

// ------------------------------------------------------------------------------------ prekeys

/// New prekeys for the directory: optionally a rotated signed prekey (KEY-3) and up to LIM-15
/// one-time prekeys (KEY-4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrekeyUpload {
    signed_prekey: Option<SignedPreKey>,
    one_time_prekeys: Vec<OneTimePreKey>,
}

impl PrekeyUpload {
    /// An upload; at most LIM-15 one-time prekeys with distinct ids (else `length_out_of_range`).
    pub fn new(
        signed_prekey: Option<SignedPreKey>,
        one_time_prekeys: Vec<OneTimePreKey>,
    ) -> Result<Self> {
        check_opks(&one_time_prekeys)?;
        Ok(PrekeyUpload {
            signed_prekey,
            one_time_prekeys,
        })
    }

    /// The request body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(
            1 + SignedPreKey::LEN + 2 + OneTimePreKey::LEN * self.one_time_prekeys.len(),
        );
        match &self.signed_prekey {
            Some(spk) => {
                w.u8(1);
                spk.encode(&mut w);
            }
            None => {
                w.u8(0);
            }
        }
        // Bounded by MAX_OPK_UPLOAD in `new` and `from_bytes`.
        w.u16(u16::try_from(self.one_time_prekeys.len()).unwrap_or(u16::MAX));
        for opk in &self.one_time_prekeys {
            opk.encode(&mut w);
        }
        w.into_vec()
    }

    /// Decodes an upload; the signed prekey must be signed by `owner` (`bad_signature`).
    pub fn from_bytes(bytes: &[u8], owner: &PublicIdentity) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let signed_prekey = match r.u8()? {
            0 => None,
            1 => Some(SignedPreKey::decode(&mut r, owner)?),
            _ => return Err(DecodeError::LengthOutOfRange.into()),
        };
        let count = usize::from(r.u16()?);
        if count > MAX_OPK_UPLOAD {
            return Err(DecodeError::LengthOutOfRange.into());
        }
        let mut one_time_prekeys = Vec::with_capacity(count);
        for _ in 0..count {
            one_time_prekeys.push(OneTimePreKey::decode(&mut r)?);
        }
        r.finish()?;
        PrekeyUpload::new(signed_prekey, one_time_prekeys)
    }

    /// The new signed prekey, if the device rotated it.
    pub fn signed_prekey(&self) -> Option<&SignedPreKey> {
        self.signed_prekey.as_ref()
    }

    /// The new one-time prekeys.
    pub fn one_time_prekeys(&self) -> &[OneTimePreKey] {
        &self.one_time_prekeys
    }
}

fn check_opks(opks: &[OneTimePreKey]) -> Result<()> {
    if opks.len() > MAX_OPK_UPLOAD {
        return Err(DecodeError::LengthOutOfRange.into());
    }
    let mut ids: Vec<u32> = opks.iter().map(OneTimePreKey::id).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    if ids.len() != before || ids.first() == Some(&0) {
        return Err(DecodeError::LengthOutOfRange.into());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn api_codes_round_trip_and_are_documented() {
        let operations = include_str!("../../../docs/operations.md");
        for code in ApiCode::SERVICE {
            assert_eq!(ApiCode::parse(code.as_str()), code);
            assert!(
                operations.contains(&format!("| {} | `{}` |", code.status(), code.as_str())),
                "docs/operations.md lacks the row of {code}"
            );
        }
        for e in sotto_core::Error::ALL {
            assert_eq!(ApiCode::parse(e.code()), ApiCode::Core(e));
        }
        assert_eq!(ApiCode::parse("no_such_code"), ApiCode::Unrecognized);
    }

    #[test]
    fn the_bundle_template_is_its_prefix_and_a_parameter() {
        assert_eq!(
            paths::BUNDLE.strip_prefix(paths::BUNDLE_PREFIX),
            Some("{user_id}")
        );
    }
    use proptest::collection::vec;
    use proptest::prelude::*;
    use sotto_core::Error;
    use sotto_core::error::CryptoError;
    use sotto_core::keys::OneTimePreKeyPair;

    fn rng() -> impl sotto_core::crypto::CryptoRng {
        use rand_core::SeedableRng;
        rand_chacha::ChaCha20Rng::seed_from_u64(11)
    }

    #[test]
    fn renew_round_trips_and_verifies() {
        let mut rng = rng();
        let id = Identity::generate(&mut rng);
        let user = UserId([7; 10]);
        let req = RenewRequest::sign(&id, user, &[0x30; 91], 1_700_000_000_000).unwrap();
        let bytes = req.to_bytes();
        assert_eq!(bytes.len(), 10 + 2 + 91 + 8 + 64);
        let back = RenewRequest::from_bytes(&bytes).unwrap();
        assert_eq!(back, req);
        back.verify(id.public()).unwrap();
        let other = Identity::generate(&mut rng);
        assert_eq!(
            back.verify(other.public()),
            Err(CryptoError::BadSignature.into())
        );
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let ok = RenewRequest::from_bytes(&b).and_then(|r| r.verify(id.public()));
            assert!(ok.is_err(), "byte {i}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            RenewRequest::from_bytes(&long),
            Err(DecodeError::TrailingBytes.into())
        );
        assert_eq!(
            RenewRequest::from_bytes(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Truncated.into())
        );
        assert!(RenewRequest::sign(&id, user, &[], 0).is_err());
        assert!(RenewRequest::sign(&id, user, &[0; 513], 0).is_err());
    }

    #[test]
    fn prekey_upload_round_trips_lim_15() {
        let mut rng = rng();
        let id = Identity::generate(&mut rng);
        let spk = *id.new_signed_prekey(&mut rng, 2).public();
        let opks: Vec<_> = (1..=100)
            .map(|i| *OneTimePreKeyPair::generate(&mut rng, i).unwrap().public())
            .collect();
        let up = PrekeyUpload::new(Some(spk), opks.clone()).unwrap();
        let bytes = up.to_bytes();
        assert_eq!(bytes.len(), 1 + 100 + 2 + 36 * 100);
        assert_eq!(PrekeyUpload::from_bytes(&bytes, id.public()).unwrap(), up);

        let other = Identity::generate(&mut rng);
        assert_eq!(
            PrekeyUpload::from_bytes(&bytes, other.public()),
            Err(Error::from(CryptoError::BadSignature))
        );
        let mut more = opks.clone();
        more.push(*OneTimePreKeyPair::generate(&mut rng, 101).unwrap().public());
        assert!(PrekeyUpload::new(None, more).is_err());
        assert!(PrekeyUpload::new(None, vec![opks[0], opks[0]]).is_err());

        let none = PrekeyUpload::new(None, vec![]).unwrap();
        assert_eq!(none.to_bytes(), vec![0, 0, 0]);
        assert_eq!(
            PrekeyUpload::from_bytes(&[2, 0, 0], id.public()),
            Err(DecodeError::LengthOutOfRange.into())
        );
        assert_eq!(
            PrekeyUpload::from_bytes(&[0, 0, 0, 9], id.public()),
            Err(DecodeError::TrailingBytes.into())
        );
        assert_eq!(
            PrekeyUpload::from_bytes(&[0, 0, 101], id.public()),
            Err(DecodeError::LengthOutOfRange.into())
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn renew_decoding_never_panics(bytes in vec(any::<u8>(), 0..700)) {
            let id = Identity::generate(&mut rng());
            if let Ok(req) = RenewRequest::from_bytes(&bytes) {
                // Whatever decodes re-encodes to the same bytes, and random bytes never verify.
                prop_assert_eq!(req.to_bytes(), bytes);
                prop_assert!(req.verify(id.public()).is_err());
            }
        }

        #[test]
        fn prekey_upload_decoding_never_panics(bytes in vec(any::<u8>(), 0..400)) {
            let id = Identity::generate(&mut rng());
            if let Ok(up) = PrekeyUpload::from_bytes(&bytes, id.public()) {
                prop_assert_eq!(up.to_bytes(), bytes);
            }
        }

        #[test]
        fn renew_round_trips(
            spki in vec(any::<u8>(), 1..=512),
            ts in any::<u64>(),
            user in any::<[u8; 10]>(),
        ) {
            let id = Identity::generate(&mut rng());
            let req = RenewRequest::sign(&id, UserId(user), &spki, ts).unwrap();
            let back = RenewRequest::from_bytes(&req.to_bytes()).unwrap();
            prop_assert!(back.verify(id.public()).is_ok());
            prop_assert_eq!(back, req);
        }
    }
}
