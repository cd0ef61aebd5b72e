//! Property tests for every authenticated codec: `decode(encode(x)) == x`, and any single flipped byte
//! is a typed error (card, bundle, signup body, membership, key-share block, sealed envelopes).

use proptest::prelude::*;
use sotto_core::crypto::Secret;
use sotto_core::group::membership::{Member, Membership};
use sotto_core::keyshare::KeyShare;
use sotto_core::signup::SignupRequest;
use sotto_core::{ContactCard, GroupId, PreKeyBundle};

use crate::common::*;

fn flip(bytes: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let i = at % b.len();
    b[i] ^= mask;
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn card_round_trips_and_flips_fail_card_1(seed in any::<u64>(), at in any::<usize>(), mask in 1u8..) {
        let mut r = rng(seed);
        let d = device(&mut r, 3);
        let card = d.card().unwrap();
        prop_assert_eq!(ContactCard::from_bytes(&card.to_bytes()).unwrap(), card);
        prop_assert_eq!(ContactCard::from_uri(&card.to_uri()).unwrap(), card);
        prop_assert!(ContactCard::from_bytes(&flip(&card.to_bytes(), at, mask)).is_err());
    }

    #[test]
    fn bundle_round_trips_and_signed_flips_fail_key_5(seed in any::<u64>(), at in 11usize..240, mask in 1u8..) {
        let mut r = rng(seed);
        let d = device(&mut r, 4);
        let b = d.bundle(Some(1)).unwrap();
        let bytes = b.to_bytes();
        prop_assert_eq!(PreKeyBundle::from_bytes(&bytes).unwrap(), b);
        // Bytes 11..240 are the signed identity and prekey (KEY-2, KEY-3).
        prop_assert!(PreKeyBundle::from_bytes(&flip(&bytes, at, mask)).is_err());
    }

    #[test]
    fn signup_round_trips_and_flips_fail_signup_2(seed in any::<u64>(), at in any::<usize>(), mask in 1u8.., n in 0usize..5) {
        let mut r = rng(seed);
        let mut d = device(&mut r, 5);
        let req = d.signup_request(&mut r, &[0x30; 44], n, b"x", 0).unwrap();
        let bytes = req.to_bytes();
        prop_assert_eq!(SignupRequest::from_bytes(&bytes, 0).unwrap(), req);
        prop_assert!(SignupRequest::from_bytes(&flip(&bytes, at, mask), 0).is_err());
    }

    #[test]
    fn membership_round_trips_and_flips_fail_grp_2(seed in any::<u64>(), at in any::<usize>(), mask in 1u8.., n in 1usize..6) {
        let mut r = rng(seed);
        let admin = device(&mut r, 0);
        let members: Vec<Member> = (0..n)
            .map(|i| {
                let d = if i == 0 { admin.clone() } else { device(&mut r, i as u8) };
                Member { user: *d.user_id(), iks: *d.identity().public().iks() }
            })
            .collect();
        let m = Membership::sign(admin.identity(), GroupId([7; 16]), 2, members).unwrap();
        let bytes = m.to_bytes();
        prop_assert_eq!(Membership::from_bytes(&bytes).unwrap(), m);
        prop_assert!(Membership::from_bytes(&flip(&bytes, at, mask)).is_err());
    }

    #[test]
    fn keyshare_round_trips_and_flips_fail_ks_4(seed in any::<u64>(), at in any::<usize>(), mask in 1u8..) {
        let mut r = rng(seed);
        let share = KeyShare::random(&mut r, seed);
        let ks = Secret::random(&mut r);
        let sealed = share.seal(&ks, b"header");
        let back = KeyShare::open(&ks, b"header", &sealed).unwrap();
        prop_assert_eq!(&back.to_plaintext()[..], &share.to_plaintext()[..]);
        prop_assert!(KeyShare::open(&ks, b"header", &flip(&sealed, at, mask)).is_err());
    }

    /// Every envelope type: a flipped byte anywhere is refused with a typed error and changes nothing.
    #[test]
    fn sealed_envelopes_refuse_any_flip_env_6(seed in any::<u64>(), at in any::<usize>(), mask in 1u8..) {
        let mut r = rng(seed);
        let mut alice = device(&mut r, 1);
        let mut bob = device(&mut r, 2);
        scan(&mut alice, &bob);
        let first = send(&mut alice, &mut r, T0, &bob, "first");
        let data = send(&mut alice, &mut r, T0, &bob, "data");
        for env in [&first.envelope, &data.envelope] {
            prop_assert!(bob.receive(T0, &flip(env, at, mask)).is_err());
        }
        let got = bob.receive(T0, &first.envelope).unwrap();
        prop_assert_eq!(text_of(&got), "first");
        let got = bob.receive(T0, &data.envelope).unwrap();
        prop_assert_eq!(text_of(&got), "data");
        let reply = send(&mut bob, &mut r, T0, &alice, "epoch");
        prop_assert!(alice.receive(T0, &flip(&reply.envelope, at, mask)).is_err());
        let got = alice.receive(T0, &reply.envelope).unwrap();
        prop_assert_eq!(text_of(&got), "epoch");
    }
}
