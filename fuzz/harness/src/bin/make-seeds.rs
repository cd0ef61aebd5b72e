//! `make-seeds`: writes the seed corpora of the fuzz targets to `fuzz/corpus/<target>/seed-N`.
//!
//! Everything comes from seeded `ChaCha20Rng`s, so a run writes the same bytes every time. Every seed
//! is checked with the harness it feeds (the decoder seeds must be accepted, the scenario seeds must
//! run clean), and the corpus stays small: at most 20 files per target, each under 4 KiB.
//!
//! Usage (stable): `cargo run -p sotto-fuzz-harness --bin make-seeds -- [corpus dir]`.

use std::fs;
use std::path::{Path, PathBuf};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sotto_core::crypto::Secret;
use sotto_core::group::handover::{Handover, Leave};
use sotto_core::group::membership::{Member, Membership};
use sotto_core::inner::{GroupAck, GroupKey, Inner};
use sotto_core::keys::Identity;
use sotto_core::keyshare::KeyShare;
use sotto_core::{Content, Device, GroupId, MessageId, UserId};

// The harness: the same checks, responder and action encodings as the targets.
use sotto_fuzz_harness as harness;
use sotto_fuzz_harness::checks::{self, KEYSHARE_KEY, NOW};
use sotto_fuzz_harness::group::GroupAction as G;
use sotto_fuzz_harness::server_checks::{self, FILTER_USER, owner};
use sotto_fuzz_harness::two_party::Action as A;
use sotto_fuzz_harness::{ToArbitraryBytes, encode_actions, parse_actions};
use sotto_wire::membership_api::{PrekeyUpload, RenewRequest};
use sotto_wire::mqtt::{encode_connect, encode_subscribe};

const MAX_FILES: usize = 20;
const MAX_SIZE: usize = 4096;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn text(s: &str) -> Content {
    Content::Text(s.to_owned())
}

/// A device with user id `[n; 10]` and 4 one-time prekeys.
fn device(rng: &mut ChaCha20Rng, n: u8) -> Device {
    let mut d = Device::new(rng, UserId([n; 10]));
    d.generate_one_time_prekeys(rng, 4).expect("prekeys");
    d
}

fn scan(a: &mut Device, b: &Device) {
    a.add_contact_from_card(&b.card().expect("card"));
}

fn send(a: &mut Device, rng: &mut ChaCha20Rng, now: u64, to: &Device, c: &Content) -> Vec<u8> {
    a.send(rng, now, to.user_id(), c).expect("send").envelope
}

/// Replaces the `seed-*` files of `dir` with `seeds`, after checking their number and size.
fn write(root: &Path, target: &str, seeds: &[Vec<u8>]) {
    assert!(
        !seeds.is_empty() && seeds.len() <= MAX_FILES,
        "{target}: {} seeds",
        seeds.len()
    );
    let dir = root.join(target);
    fs::create_dir_all(&dir).expect("create corpus dir");
    for entry in fs::read_dir(&dir).expect("read corpus dir") {
        let path = entry.expect("dir entry").path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("seed-"))
        {
            fs::remove_file(&path).expect("remove old seed");
        }
    }
    for (i, seed) in seeds.iter().enumerate() {
        assert!(
            seed.len() < MAX_SIZE,
            "{target}/seed-{i}: {} bytes",
            seed.len()
        );
        fs::write(dir.join(format!("seed-{i}")), seed).expect("write seed");
    }
    println!("{target}: {} seeds", seeds.len());
}

/// Real envelopes of every type (ENV-2..ENV-5), plain and padded.
fn envelopes() -> Vec<Vec<u8>> {
    let mut r = rng(1);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    let mut carol = device(&mut r, 3);
    for (x, y) in [(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)] {
        let card = [&alice, &bob, &carol][y].card().expect("card");
        [&mut alice, &mut bob, &mut carol][x].add_contact_from_card(&card);
    }
    let mut out = Vec::new();
    let first = send(&mut alice, &mut r, NOW, &bob, &text("hello"));
    let data = send(&mut alice, &mut r, NOW + 1000, &bob, &text("second"));
    bob.receive(NOW + 2000, &first).expect("first opens");
    bob.receive(NOW + 2000, &data).expect("data opens");
    let epoch = send(&mut bob, &mut r, NOW + 3000, &alice, &text("reply"));
    alice
        .receive(NOW + 4000, &epoch)
        .expect("epoch start opens");
    bob.set_padding(64);
    let padded = send(&mut bob, &mut r, NOW + 5000, &alice, &Content::KeyUpdate);
    out.extend([first, data, epoch, padded]);
    // A first message with a one-time prekey (X3DH-1 with DH4).
    let bundle = carol.bundle(Some(2)).expect("bundle");
    alice
        .add_contact_from_bundle(&bundle)
        .expect("same identity");
    let opk_first = send(&mut alice, &mut r, NOW, &carol, &text("opk"));
    carol
        .receive(NOW, &opk_first)
        .expect("first message with a one-time prekey opens");
    out.push(opk_first);
    // A group message (ENV-5).
    let (gid, keys) = alice
        .create_group(&mut r, NOW, &[*bob.user_id(), *carol.user_id()])
        .expect("group");
    for k in keys {
        let to = if k.to == [*bob.user_id()] {
            &mut bob
        } else {
            &mut carol
        };
        to.receive(NOW, &k.envelope).expect("group key opens");
    }
    out.push(
        alice
            .send_group(NOW + 6000, &gid, &text("to the group"))
            .expect("group send")
            .envelope,
    );
    out.push(
        bob.send_group(NOW + 7000, &gid, &text(""))
            .expect("group send")
            .envelope,
    );
    for e in &out {
        assert!(checks::envelope(e), "envelope seed rejected");
    }
    out
}

fn membership(seed: u64, count: u8, epoch: u32) -> (Membership, Identity) {
    let mut r = rng(seed);
    let admin = Identity::generate(&mut r);
    let mut members = vec![Member {
        user: UserId([0xa0; 10]),
        iks: *admin.public().iks(),
    }];
    for i in 1..count {
        let id = Identity::generate(&mut r);
        members.push(Member {
            user: UserId([0xa0 + i; 10]),
            iks: *id.public().iks(),
        });
    }
    let m = Membership::sign(&admin, GroupId([0x6d; 16]), epoch, members).expect("membership");
    (m, admin)
}

/// Every kind of inner plaintext (IN-3), plain and padded (IN-4).
fn inners() -> Vec<Vec<u8>> {
    let mut r = rng(2);
    let (m, admin) = membership(3, 3, 1);
    // GRP-12: the admin of `m` hands the group over to the first member of another membership,
    // whose group key (kind 9) carries the handover.
    let (m2, _) = membership(10, 3, 2);
    let heir = m2.members()[0];
    let handover = Handover::sign(&admin, GroupId([0x6d; 16]), 2, &heir);
    let leave = Leave {
        group: GroupId([0x6d; 16]),
        epoch: 1,
    };
    let ids = vec![MessageId([0x11; 16]), MessageId([0x22; 16])];
    let cases: Vec<(Content, u32, usize)> = vec![
        (text("hello"), 12, 0),
        (text(""), 0, 0),
        (text("grüße, 你好 🙂"), 300, 0),
        (text("padded to 32"), 1, 32),
        (Content::Receipt(ids.clone()), 5, 0),
        (Content::Receipt(ids), 5, 64),
        (Content::KeyUpdate, 0, 0),
        (Content::KeyUpdate, 70_000, 16),
        (
            Content::GroupKey(Box::new(GroupKey {
                membership: m.clone(),
                keys: KeyShare::random(&mut r, NOW),
                handover: None,
            })),
            0,
            0,
        ),
        (Content::GroupRemoved(Box::new(m)), 2, 0),
        (
            Content::GroupAck(GroupAck {
                group: GroupId([0x6d; 16]),
                epoch: 1,
                index: 2,
                confirm: [0x5a; 16],
            }),
            0,
            0,
        ),
        (Content::GroupLeave(leave), 3, 0),
        (Content::GroupLeave(leave), 3, 48),
        (Content::GroupHandover(handover), 4, 0),
        (
            Content::GroupKey(Box::new(GroupKey {
                membership: m2,
                keys: KeyShare::random(&mut r, NOW),
                handover: Some(handover),
            })),
            5,
            0,
        ),
    ];
    let out: Vec<Vec<u8>> = cases
        .into_iter()
        .map(|(content, delta, bucket)| {
            Inner { delta, content }
                .encode(bucket)
                .expect("encode")
                .to_vec()
        })
        .collect();
    for i in &out {
        assert!(checks::inner(i), "inner seed rejected");
    }
    out
}

/// First messages to the fixed responder (with and without a one-time prekey), a later message it
/// cannot route, and key-share blocks for the `KeyShare` checks.
fn first_messages() -> Vec<Vec<u8>> {
    let responder = checks::responder();
    let mut out = Vec::new();
    let mut accepted = Vec::new();
    for (seed, opk, content, bucket) in [
        (10, None, text("hi"), 0),
        (11, Some(1), text("with a one-time prekey"), 0),
        (12, Some(4), Content::KeyUpdate, 32),
        (13, Some(2), Content::Receipt(vec![MessageId([7; 16])]), 0),
    ] {
        let mut r = rng(seed);
        let mut a = device(&mut r, 0x40 + u8::try_from(seed).expect("small"));
        a.set_padding(bucket);
        match opk {
            None => scan(&mut a, responder),
            Some(id) => a
                .add_contact_from_bundle(&responder.bundle(Some(id)).expect("bundle"))
                .expect("new contact"),
        }
        let first = send(&mut a, &mut r, NOW - 5000, responder, &content);
        accepted.push(first.clone());
        out.push(first);
        if seed == 10 {
            // The second message of that session: a data message the fresh responder cannot route.
            out.push(send(&mut a, &mut r, NOW - 4000, responder, &text("again")));
        }
    }
    for f in &accepted {
        assert!(checks::first_message(f), "first message seed rejected");
    }
    // KS-1 plaintext, and a block sealed under the fixed key: [ad length] ad sealed.
    let share = KeyShare::from_parts([1; 32], [2; 16], [3; 16], [4; 16], [5; 16], NOW);
    out.push(share.to_plaintext().to_vec());
    let ad = b"\x12header";
    let mut sealed = vec![u8::try_from(ad.len()).expect("short")];
    sealed.extend_from_slice(ad);
    sealed.extend(share.seal(&Secret::new(KEYSHARE_KEY), ad));
    out.push(sealed);
    out
}

fn cards() -> Vec<Vec<u8>> {
    let mut r = rng(4);
    let d = device(&mut r, 9);
    let card = d.card().expect("card");
    let uri = card.to_uri();
    let out = vec![
        uri.clone().into_bytes(),
        uri.to_uppercase().into_bytes(),
        card.to_bytes(),
    ];
    for c in &out {
        assert!(checks::card(c), "card seed rejected");
    }
    out
}

fn signups() -> Vec<Vec<u8>> {
    let mut r = rng(5);
    let spki = [0x30u8; 44];
    let mut out = Vec::new();
    for (opks, challenge, difficulty) in [
        (0, &b""[..], 0),
        (3, &b"challenge"[..], 0),
        (1, &[0xcc; 32][..], 8),
    ] {
        let mut d = device(&mut r, 0x50);
        let req = d
            .signup_request(&mut r, &spki, opks, challenge, difficulty)
            .expect("signup");
        out.push(req.to_bytes());
    }
    for s in &out {
        assert!(checks::signup(s), "signup seed rejected");
    }
    out
}

/// A PUBLISH of `payload` to `topic` at `qos` (a packet id 7 for QoS > 0), flags as given.
fn publish(topic: &str, qos: u8, retain: bool, payload: &[u8]) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&7u16.to_be_bytes());
    }
    body.extend_from_slice(payload);
    let mut out = vec![0x30 | (qos << 1) | u8::from(retain)];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&body);
    out
}

/// `filter` seeds: the user-id byte, then a client's packet stream.
fn filters() -> Vec<Vec<u8>> {
    let inbox = format!("i/{FILTER_USER}");
    let peer = "i/qrstuvwxyz234567";
    let connect = encode_connect(FILTER_USER, 60, false, "", b"");
    let stream = |choice: u8, packets: &[&[u8]]| {
        let mut out = vec![choice];
        for p in packets {
            out.extend_from_slice(p);
        }
        out
    };
    let puback = [0x40, 0x02, 0x00, 0x07];
    let pingreq = [0xc0, 0x00];
    let disconnect = [0xe0, 0x00];
    let unsubscribe = {
        let mut u = vec![
            0xa2,
            (4 + inbox.len()) as u8,
            0x00,
            0x09,
            0x00,
            inbox.len() as u8,
        ];
        u.extend_from_slice(inbox.as_bytes());
        u
    };
    // A CONNECT with a will (flags: clean session + will, QoS 0), no username or password.
    let will_connect = {
        let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x06, 0x00, 0x3c];
        for field in [FILTER_USER.as_bytes(), b"i/qrstuvwxyz234567", b"bye"] {
            body.extend_from_slice(&(field.len() as u16).to_be_bytes());
            body.extend_from_slice(field);
        }
        [&[0x10, body.len() as u8][..], &body].concat()
    };
    let own_sub = encode_subscribe(1, &inbox);
    let foreign_sub = encode_subscribe(2, peer);
    let wildcard_sub = encode_subscribe(3, "#");
    let small = publish(peer, 1, false, b"envelope bytes");
    let qos0 = publish(peer, 0, false, &[0xab; 300]);
    let out = vec![
        // A whole honest session: connect, subscribe, publish, ack, ping, unsubscribe, disconnect.
        stream(
            0,
            &[
                &connect,
                &own_sub,
                &small,
                &qos0,
                &puback,
                &pingreq,
                &unsubscribe,
                &disconnect,
            ],
        ),
        // Refused: a foreign and a wildcard subscription, answered with SUBACK failures.
        stream(0, &[&connect, &foreign_sub, &wildcard_sub, &own_sub]),
        // Disconnected: a packet before CONNECT, a foreign client id, a second CONNECT.
        stream(0, &[&own_sub, &connect]),
        stream(
            0,
            &[&encode_connect("qrstuvwxyz234567", 60, false, "", b"")],
        ),
        stream(0, &[&connect, &connect]),
        // Refused CONNECTs: a will, keep-alive 0, a certificate without a user id.
        stream(0, &[&will_connect]),
        stream(0, &[&encode_connect(FILTER_USER, 0, false, "", b"")]),
        stream(
            1,
            &[&encode_connect(
                server_checks::FILTER_BAD_USER,
                60,
                false,
                "",
                b"",
            )],
        ),
        // Refused PUBLISHes: retained, QoS 2, to a non-inbox topic (one above LIM-1 would exceed
        // the seeds' 4 KiB; the fuzzer grows payloads itself).
        stream(0, &[&connect, &publish(peer, 1, true, b"x")]),
        stream(0, &[&connect, &publish(peer, 2, false, b"x")]),
        stream(0, &[&connect, &publish("$SYS/broker", 0, false, b"x")]),
    ];
    for (i, s) in out.iter().enumerate() {
        let passed = server_checks::filter(s);
        // The streams that start with a valid CONNECT pass it; the others pass nothing.
        assert_eq!(passed, ![2, 3, 5, 6, 7].contains(&i), "filter seed {i}");
    }
    out
}

/// `membership` seeds: renew requests (even first byte) and prekey uploads (odd) of the owner.
fn memberships() -> Vec<Vec<u8>> {
    let mut r = rng(9);
    let id = owner();
    let user = UserId([0x4d; 10]);
    let spki = [0x30u8; 44];
    let mut out = Vec::new();
    for (spki, ts) in [
        (&spki[..], NOW),
        (&[0x42; 1][..], 0),
        (&[0x17; 512][..], u64::MAX),
    ] {
        let req = RenewRequest::sign(id, user, spki, ts).expect("renew");
        out.push([&[0][..], &req.to_bytes()].concat());
    }
    let spk = *id.new_signed_prekey(&mut r, 2).public();
    let opks = |n: u32, r: &mut ChaCha20Rng| -> Vec<_> {
        (1..=n)
            .map(|i| {
                *sotto_core::keys::OneTimePreKeyPair::generate(r, i)
                    .expect("opk")
                    .public()
            })
            .collect()
    };
    for (spk, n) in [(None, 0), (Some(spk), 0), (None, 3), (Some(spk), 2)] {
        let upload = PrekeyUpload::new(spk, opks(n, &mut r)).expect("upload");
        out.push([&[1][..], &upload.to_bytes()].concat());
    }
    for s in &out {
        assert!(server_checks::membership(s), "membership seed rejected");
    }
    out
}

fn bundles() -> Vec<Vec<u8>> {
    let mut r = rng(6);
    let d = device(&mut r, 0x60);
    let out = vec![
        d.bundle(None).expect("bundle").to_bytes(),
        d.bundle(Some(3)).expect("bundle").to_bytes(),
        membership(7, 1, 0).0.to_bytes(),
        membership(8, 3, 5).0.to_bytes(),
    ];
    for b in &out {
        assert!(checks::bundle(b), "bundle seed rejected");
    }
    out
}

fn deliver_all(to_bob: bool, n: usize) -> impl Iterator<Item = A> {
    (0..n).map(move |_| A::Deliver { to_bob, index: 0 })
}

fn two_party() -> Vec<Vec<u8>> {
    let conversation: Vec<A> = [
        A::AliceSends(5),
        A::Deliver {
            to_bob: true,
            index: 0,
        },
    ]
    .into_iter()
    .chain([A::BobSends(20), A::BobSends(0), A::Tick { seconds: 61 }])
    .chain(deliver_all(false, 2))
    .chain([
        A::Receipt { from_bob: false },
        A::Receipt { from_bob: true },
    ])
    .chain(deliver_all(true, 1))
    .chain(deliver_all(false, 1))
    .chain([
        A::AliceSends(255),
        A::Deliver {
            to_bob: true,
            index: 0,
        },
    ])
    .collect();
    let reorder = vec![
        A::AliceSends(3),
        A::AliceSends(4),
        A::AliceSends(5),
        A::Deliver {
            to_bob: true,
            index: 2,
        },
        A::Deliver {
            to_bob: true,
            index: 0,
        },
        A::Duplicate {
            to_bob: true,
            index: 0,
        },
        A::Deliver {
            to_bob: true,
            index: 0,
        },
        A::Deliver {
            to_bob: true,
            index: 0,
        },
        A::Replay {
            to_bob: true,
            index: 0,
        },
        A::Deliver {
            to_bob: true,
            index: 0,
        },
        A::BobSends(8),
        A::Deliver {
            to_bob: false,
            index: 0,
        },
    ];
    let simultaneous = vec![
        A::AliceSends(6),
        A::BobSends(6),
        A::Deliver {
            to_bob: true,
            index: 0,
        },
        A::Deliver {
            to_bob: false,
            index: 0,
        },
        A::AliceSends(7),
        A::BobSends(7),
        A::Deliver {
            to_bob: true,
            index: 0,
        },
        A::Deliver {
            to_bob: false,
            index: 0,
        },
        A::AliceSends(8),
        A::Deliver {
            to_bob: true,
            index: 0,
        },
    ];
    let tamper = vec![
        A::AliceSends(9),
        A::Duplicate {
            to_bob: true,
            index: 0,
        },
        A::Tamper {
            to_bob: true,
            index: 0,
            byte: 40,
            value: 0x80,
        },
        A::Deliver {
            to_bob: true,
            index: 0,
        },
        A::Deliver {
            to_bob: true,
            index: 0,
        },
        A::BobSends(9),
        A::Duplicate {
            to_bob: false,
            index: 0,
        },
        A::Tamper {
            to_bob: false,
            index: 1,
            byte: 0,
            value: 1,
        },
        A::Deliver {
            to_bob: false,
            index: 1,
        },
        A::Deliver {
            to_bob: false,
            index: 0,
        },
    ];
    let mut turns = Vec::new();
    for i in 0..8u8 {
        turns.extend([
            A::AliceSends(i),
            A::Deliver {
                to_bob: true,
                index: 0,
            },
        ]);
        turns.extend([
            A::BobSends(i),
            A::Deliver {
                to_bob: false,
                index: 0,
            },
        ]);
    }
    let drops = vec![
        A::AliceSends(1),
        A::AliceSends(2),
        A::AliceSends(3),
        A::Drop {
            to_bob: true,
            index: 1,
        },
        A::Deliver {
            to_bob: true,
            index: 1,
        },
        A::KeyUpdate { from_bob: true },
        A::Deliver {
            to_bob: false,
            index: 0,
        },
        A::AliceSends(4),
        A::Deliver {
            to_bob: true,
            index: 1,
        },
        A::Deliver {
            to_bob: true,
            index: 0,
        },
        A::Tick { seconds: 65_535 },
        A::KeyUpdate { from_bob: false },
        A::Deliver {
            to_bob: true,
            index: 0,
        },
    ];
    let out = vec![
        encode_actions(0x0100, &conversation),
        encode_actions(0x0201, &reorder),
        encode_actions(0x0300, &simultaneous),
        encode_actions(0x0403, &tamper),
        encode_actions(0x0502, &turns),
        encode_actions(0x0601, &drops),
    ];
    for (bytes, actions) in out.iter().zip([
        &conversation,
        &reorder,
        &simultaneous,
        &tamper,
        &turns,
        &drops,
    ]) {
        check_encoding(bytes, actions);
        let stats = harness::two_party::run(bytes);
        println!("  two_party {stats:?}");
        assert!(
            stats.opened >= 2,
            "a two_party seed does too little: {stats:?}"
        );
    }
    out
}

fn group() -> Vec<Vec<u8>> {
    let deliver = |to: u8, n: usize| (0..n).map(move |_| G::Deliver { to, index: 0 });
    let chat: Vec<G> = [
        G::Send { from: 0, len: 10 },
        G::Send { from: 1, len: 11 },
        G::Send { from: 2, len: 0 },
    ]
    .into_iter()
    .chain(deliver(0, 2))
    .chain(deliver(1, 2))
    .chain(deliver(2, 2))
    .chain([G::Ack { from: 1 }, G::Ack { from: 2 }])
    .chain(deliver(0, 2))
    .collect();
    let remove: Vec<G> = [G::Send { from: 2, len: 5 }, G::Remove]
        .into_iter()
        .chain(deliver(1, 2))
        .chain(deliver(2, 1))
        .chain([G::Send { from: 0, len: 6 }, G::Send { from: 1, len: 7 }])
        .chain(deliver(2, 3))
        .chain(deliver(0, 2))
        .chain([G::AddBack])
        .chain(deliver(1, 1))
        .chain(deliver(2, 2))
        .chain([G::Send { from: 2, len: 8 }])
        .chain(deliver(0, 1))
        .chain(deliver(1, 2))
        .collect();
    let late: Vec<G> = [
        G::Send { from: 2, len: 4 },
        G::Remove,
        G::Deliver { to: 1, index: 1 },
        G::Deliver { to: 1, index: 0 },
        G::Deliver { to: 0, index: 0 },
        G::Send { from: 1, len: 3 },
        G::Reorder { to: 2, a: 0, b: 1 },
        G::Duplicate { to: 2, index: 0 },
        G::Deliver { to: 2, index: 0 },
        G::Deliver { to: 2, index: 0 },
        G::Deliver { to: 2, index: 0 },
    ]
    .to_vec();
    let broker: Vec<G> = [
        G::Send { from: 0, len: 1 },
        G::Send { from: 0, len: 2 },
        G::Send { from: 0, len: 3 },
        G::Reorder { to: 1, a: 0, b: 2 },
        G::Duplicate { to: 1, index: 1 },
        G::Tamper {
            to: 1,
            index: 0,
            byte: 3,
            value: 4,
        },
        G::Drop { to: 2, index: 1 },
        G::Tick { seconds: 3600 },
    ]
    .into_iter()
    .chain(deliver(1, 4))
    .chain(deliver(2, 2))
    .collect();
    // GRP-12, GRP-11: the admin hands the group to member 1, who issues epoch 1 (kind 9 keys);
    // the new admin cannot leave, the old one can and is removed; then the usual remove and add.
    let handover: Vec<G> = [
        G::HandOver { to: 1 },
        G::Deliver { to: 1, index: 0 },
        G::Deliver { to: 0, index: 0 },
        G::Deliver { to: 2, index: 0 },
        G::Send { from: 1, len: 9 },
        G::Deliver { to: 0, index: 0 },
        G::Deliver { to: 2, index: 0 },
        G::Leave { who: 1 },
        G::Leave { who: 0 },
        G::Deliver { to: 1, index: 0 },
        G::Deliver { to: 2, index: 0 },
        G::Deliver { to: 0, index: 0 },
        G::Ack { from: 2 },
        G::Deliver { to: 1, index: 0 },
        G::Remove,
        G::Deliver { to: 2, index: 0 },
        G::AddBack,
        G::Deliver { to: 2, index: 0 },
        G::Send { from: 2, len: 3 },
        G::Deliver { to: 1, index: 0 },
    ]
    .to_vec();
    // GRP-11: member 2 leaves while the role moves to member 1, whose epoch-1 key (listing 2, sent
    // before the leave reached an admin) member 2 refuses; the old admin refuses the leave; the
    // new admin's removal notice, then a new invitation.
    let leave: Vec<G> = [
        G::Leave { who: 2 },
        G::HandOver { to: 1 },
        G::Deliver { to: 1, index: 0 },
        G::Deliver { to: 2, index: 0 },
        G::Deliver { to: 0, index: 0 },
        G::Deliver { to: 0, index: 0 },
        G::Leave { who: 2 },
        G::Send { from: 1, len: 4 },
        G::Deliver { to: 2, index: 0 },
        G::Deliver { to: 0, index: 0 },
        G::Remove,
        G::Deliver { to: 2, index: 0 },
        G::AddBack,
        G::Deliver { to: 2, index: 0 },
        G::Send { from: 2, len: 5 },
        G::Deliver { to: 1, index: 0 },
    ]
    .into_iter()
    .chain(deliver(0, 3))
    .collect();
    let out = vec![
        encode_actions(0x1000, &chat),
        encode_actions(0x2000, &remove),
        encode_actions(0x3000, &late),
        encode_actions(0x4000, &broker),
        encode_actions(0x5000, &handover),
        encode_actions(0x6000, &leave),
    ];
    for (bytes, actions) in out
        .iter()
        .zip([&chat, &remove, &late, &broker, &handover, &leave])
    {
        check_encoding(bytes, actions);
        let stats = harness::group::run(bytes);
        println!("  group {stats:?}");
        assert!(stats.opened >= 2, "a group seed does too little: {stats:?}");
    }
    // The two new seeds do what they say: the role moved to member 1, and member 2 is back in
    // after its removal.
    for (seed, actions, (admin, holds)) in [
        (0x5000, &handover, (USERS_1, [None, Some(4), Some(4)])),
        (0x6000, &leave, (USERS_1, [Some(3), Some(3), Some(3)])),
    ] {
        let mut world = harness::group::World::new(seed);
        for a in actions {
            world.step(*a);
        }
        let gid = world.group();
        for (i, want) in holds.into_iter().enumerate() {
            let view = world.device(i).group_members(&gid);
            assert_eq!(
                view.as_ref().map(|v| v.0),
                want,
                "seed {seed:#x}, device {i}: {view:?}"
            );
            if let Some((_, members)) = view {
                assert_eq!(members[0], admin, "seed {seed:#x}: the admin");
            }
        }
    }
    out
}

const USERS_1: UserId = harness::group::USERS[1];

/// The bytes decode (with `arbitrary`) to exactly the actions they were written from.
fn check_encoding<'a, T>(bytes: &'a [u8], actions: &[T])
where
    T: arbitrary::Arbitrary<'a> + ToArbitraryBytes + PartialEq + core::fmt::Debug,
{
    let (_, parsed) = parse_actions::<T>(bytes, usize::MAX).expect("has a seed");
    assert_eq!(parsed, actions, "action encoding does not match arbitrary");
}

fn main() {
    let root = std::env::args().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../corpus"),
        PathBuf::from,
    );
    write(&root, "envelope", &envelopes());
    write(&root, "inner", &inners());
    write(&root, "first_message", &first_messages());
    write(&root, "card", &cards());
    write(&root, "signup", &signups());
    write(&root, "bundle", &bundles());
    write(&root, "two_party", &two_party());
    write(&root, "group", &group());
    write(&root, "filter", &filters());
    write(&root, "membership", &memberships());
    write(&root, "nats", &nats());
}

/// `nats` seeds: what a node sends a client asking the JetStream API (a greeting, a PING, the
/// answer), a refusal, an answer split mid-payload, and malformed frames.
fn nats() -> Vec<Vec<u8>> {
    let answer = br#"{"type":"io.nats.jetstream.api.v1.stream_info_response","state":{"messages":2,"bytes":512,"subjects":{"$MQTT.msgs.i.AAAAAAAAAAAAAAAA":2}}}"#;
    let msg = |reply: &str| {
        let mut m = format!("MSG _INBOX.sotto.01 1 {reply}{}\r\n", answer.len()).into_bytes();
        m.extend_from_slice(answer);
        m.extend_from_slice(b"\r\n");
        m
    };
    let greeting =
        b"INFO {\"server_id\":\"N\",\"version\":\"2.9.10\",\"max_payload\":1048576}\r\n".to_vec();
    let whole = [
        greeting.clone(),
        b"PING\r\n".to_vec(),
        msg(""),
        b"PONG\r\n".to_vec(),
    ]
    .concat();
    let seeds = vec![
        whole.clone(),
        [greeting.clone(), msg("_INBOX.reply ")].concat(),
        [greeting, b"-ERR 'Authorization Violation'\r\n".to_vec()].concat(),
        whole[..whole.len() - 40].to_vec(),
        b"+OK\r\nMSG a 1 3\r\nabcXY".to_vec(),
        b"MSG a 1 99999999999\r\n".to_vec(),
        b"HMSG a 1 10 12\r\nNATS/1.0\r\n\r\nxx\r\n".to_vec(),
    ];
    for (i, s) in seeds.iter().enumerate() {
        assert_eq!(server_checks::nats(s), [0, 1].contains(&i), "nats seed {i}");
    }
    seeds
}
