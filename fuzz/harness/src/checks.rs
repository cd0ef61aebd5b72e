//! The bodies of the decoder fuzz targets: decode one input, and on success check that re-encoding
//! gives back the input (canonical encodings) and that decoding that again gives the same value.
//!
//! Shared three ways: the fuzz targets call these functions, `make-seeds` checks every seed it
//! writes with them, and `tests/corpus.rs` replays the committed corpus through them on stable
//! Rust.
//!
//! Each function returns whether the input was accepted (decoded, or opened). It never panics on any
//! input unless an invariant is broken, which is what the targets look for.

use std::sync::OnceLock;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sotto_core::crypto::Secret;
use sotto_core::envelope::{self, Envelope};
use sotto_core::group::membership::Membership;
use sotto_core::inner::Inner;
use sotto_core::keys::PreKeyBundle;
use sotto_core::keyshare::KeyShare;
use sotto_core::limits::MAX_ENVELOPE;
use sotto_core::signup::SignupRequest;
use sotto_core::{ContactCard, Device, UserId};

/// Seed of the fixed responder of the `first_message` target.
pub const RESPONDER_SEED: u64 = 0x5077_0f12_0000_0001;
/// The responder's user id.
pub const RESPONDER_USER: UserId = UserId([0x52; 10]);
/// One-time prekeys the responder holds (ids 1..=4).
pub const RESPONDER_OPKS: usize = 4;
/// The time every fixed-device check runs at (2026-01-01T00:00:00Z, ms).
pub const NOW: u64 = 1_767_225_600_000;
/// The fixed key-share key of the `first_message` target's `KeyShare::open` check.
pub const KEYSHARE_KEY: [u8; 32] = [0x4b; 32];

/// The fixed responder: built once from [`RESPONDER_SEED`] with [`RESPONDER_OPKS`] one-time prekeys.
/// `make-seeds` builds first messages to it from the same function.
pub fn responder() -> &'static Device {
    static RESPONDER: OnceLock<Device> = OnceLock::new();
    RESPONDER.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(RESPONDER_SEED);
        let mut device = Device::new(&mut rng, RESPONDER_USER);
        device
            .generate_one_time_prekeys(&mut rng, RESPONDER_OPKS)
            .expect("4 one-time prekeys are within LIM-15");
        device
    })
}

/// `envelope`: ENV-1..ENV-6. A decoded envelope re-assembles to exactly the input.
pub fn envelope(data: &[u8]) -> bool {
    let Ok(env) = Envelope::decode(data) else {
        return false;
    };
    let header = env.header().encode();
    assert_eq!(header, env.header_bytes(), "header bytes are not canonical");
    let again = envelope::assemble(&header, env.sealed());
    assert_eq!(again.as_deref(), Ok(data), "envelope does not re-assemble");
    let back = Envelope::decode(data).map(|e| e.header().clone());
    assert_eq!(
        back.as_ref(),
        Ok(env.header()),
        "decoding is not deterministic"
    );
    true
}

/// `inner`: IN-1..IN-4. `decode(encode(x, 0)) == x`; an unpadded input is re-encoded byte for byte, a
/// padded one too when padded to its own length.
pub fn inner(data: &[u8]) -> bool {
    let Ok(x) = Inner::decode(data) else {
        return false;
    };
    let bytes = match x.encode(0) {
        Ok(b) => b,
        Err(e) => panic!("a decoded inner plaintext does not re-encode: {e:?}"),
    };
    assert_eq!(
        Inner::decode(&bytes).as_ref(),
        Ok(&x),
        "decode(encode(x)) != x"
    );
    let padded = data.first().is_some_and(|h| h & 0x10 != 0);
    if !padded {
        assert_eq!(
            &bytes[..],
            data,
            "unpadded inner plaintext is not canonical"
        );
    } else if data.len() <= MAX_ENVELOPE {
        // The padding of a valid input is at least the 2 length bytes, so padding to the input's
        // length reproduces it (IN-4).
        let again = x.encode(data.len()).map(|b| b.to_vec());
        assert_eq!(
            again.as_deref(),
            Ok(data),
            "padded inner plaintext is not canonical"
        );
    }
    true
}

/// `first_message` (body, run on the fixed responder): a receive never panics, an accepted envelope
/// does not open a second time, and `KeyShare` parsing round-trips.
pub fn first_message(data: &[u8]) -> bool {
    let mut device = responder().clone();
    let accepted = match device.receive(NOW, data) {
        Ok(incoming) => {
            // RX-2, X3DH-8: the same bytes again are refused (a resend is a duplicate).
            let again = device.receive(NOW, data);
            assert!(
                again.is_err(),
                "an envelope opened twice: {:?} then {:?}",
                incoming.id,
                again.map(|i| i.id)
            );
            true
        }
        Err(_) => false,
    };
    keyshare(data);
    accepted
}

// KS-1, KS-2: `KeyShare::open` under a fixed key (first byte: length of the associated data) and
// `KeyShare::from_plaintext` over the whole input. Sealing is deterministic (zero nonce, KS-2), so an
// opened block seals back to the same bytes.
fn keyshare(data: &[u8]) {
    let rest = data.get(1..).unwrap_or_default();
    let ad_len = data.first().map_or(0, |b| usize::from(*b)).min(rest.len());
    let (ad, sealed) = rest.split_at(ad_len);
    let key = Secret::new(KEYSHARE_KEY);
    if let Ok(share) = KeyShare::open(&key, ad, sealed) {
        assert_eq!(share.seal(&key, ad), sealed, "key share does not re-seal");
    }
    if let Ok(share) = KeyShare::from_plaintext(data) {
        assert_eq!(
            &share.to_plaintext()[..],
            data,
            "key share does not round-trip"
        );
    }
}

/// `card`: CARD-1..CARD-3. A URI (if the input is UTF-8) and card bytes; an accepted card prints back
/// to the same URI up to case, and to the same bytes.
pub fn card(data: &[u8]) -> bool {
    let mut accepted = false;
    let from_uri = core::str::from_utf8(data)
        .ok()
        .and_then(|text| Some((text, ContactCard::from_uri(text).ok()?)));
    if let Some((text, card)) = from_uri {
        let uri = card.to_uri();
        assert!(
            uri.eq_ignore_ascii_case(text),
            "card URI does not round-trip"
        );
        assert_eq!(ContactCard::from_uri(&uri), Ok(card));
        accepted = true;
    }
    if let Ok(card) = ContactCard::from_bytes(data) {
        assert_eq!(card.to_bytes(), data, "card bytes do not round-trip");
        assert_eq!(ContactCard::from_uri(&card.to_uri()), Ok(card));
        accepted = true;
    }
    accepted
}

/// `signup`: SIGNUP-1, SIGNUP-2 (difficulty 0). An accepted request re-encodes to the input.
pub fn signup(data: &[u8]) -> bool {
    let Ok(request) = SignupRequest::from_bytes(data, 0) else {
        return false;
    };
    let bytes = request.to_bytes();
    assert_eq!(bytes, data, "signup request does not round-trip");
    assert_eq!(SignupRequest::from_bytes(&bytes, 0), Ok(request));
    true
}

/// `bundle`: KEY-5 and GRP-2. The input as a prekey bundle and as a membership; whatever decodes
/// re-encodes to the input.
pub fn bundle(data: &[u8]) -> bool {
    let mut accepted = false;
    if let Ok(bundle) = PreKeyBundle::from_bytes(data) {
        assert_eq!(bundle.to_bytes(), data, "bundle does not round-trip");
        assert_eq!(PreKeyBundle::from_bytes(&bundle.to_bytes()), Ok(bundle));
        accepted = true;
    }
    if let Ok(membership) = Membership::from_bytes(data) {
        assert_eq!(
            membership.to_bytes(),
            data,
            "membership does not round-trip"
        );
        assert_eq!(
            Membership::from_bytes(&membership.to_bytes()),
            Ok(membership)
        );
        accepted = true;
    }
    accepted
}
