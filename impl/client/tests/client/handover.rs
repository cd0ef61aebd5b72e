//! Leaving a group (GRP-11) and handing its admin role over (GRP-12) over the real stack, on every
//! broker: the new admin has no session with one member and the directory is down when the
//! handover arrives, so the takeover waits (across a restart of the device) until the directory
//! is back; then members leave and the admin removes them.

use std::time::Duration;

use sotto_client::{Client, ClientEvent, GroupId, SyncReport};
use sotto_server::Broker;
use sotto_testkit::{
    PASSPHRASE, TestStack, available_brokers, exchange_cards, sync, test_config, texts,
};

fn has(report: &SyncReport, f: impl Fn(&ClientEvent) -> bool) -> bool {
    report.events.iter().any(f)
}

fn admin_of(client: &Client, group: &GroupId) -> Option<sotto_client::UserId> {
    client
        .groups()
        .into_iter()
        .find(|g| g.id == *group)
        .map(|g| g.admin)
}

async fn leave_and_hand_over(broker: Broker) {
    let mut stack = TestStack::start(broker).await;
    let mut alice = stack.signup("alice").await;
    let mut bob = stack.signup("bob").await;
    let mut carol = stack.signup("carol").await;
    // Bob and Carol do not know each other.
    exchange_cards(&mut alice, &mut bob);
    exchange_cards(&mut alice, &mut carol);
    let (bob_id, carol_id, alice_id) = (bob.user_id(), carol.user_id(), alice.user_id());
    let group = alice.create_group(&[bob_id, carol_id]).expect("create");
    sync(&mut alice).await;
    sync(&mut bob).await;
    sync(&mut carol).await;

    // The admin cannot leave; it hands over to Bob while the directory is down.
    let err = alice.leave_group(&group).expect_err("the admin stays");
    assert_eq!(err.code(), Some("admin_must_hand_over"), "{err:?}");
    stack.service.stop_membership().await;
    alice.hand_over_group(&group, &bob_id).expect("hand over");
    assert!(alice.add_to_group(&group, &carol_id).is_err());
    sync(&mut alice).await;
    let got = sync(&mut bob).await;
    assert!(
        has(
            &got,
            |e| matches!(e, ClientEvent::HandoverReceived { group: g, epoch: 1 } if *g == group)
        ),
        "{:?}",
        got.events
    );
    assert!(!has(&got, |e| matches!(
        e,
        ClientEvent::TookOverGroup { .. }
    )));
    assert!(bob.has_pending_takeovers());
    assert_eq!(admin_of(&bob, &group), Some(alice_id));

    // The pending takeover survives a restart and completes once the directory is back.
    bob.close().expect("close");
    let mut bob = Client::open_with(stack.store_path("bob"), PASSPHRASE, test_config())
        .await
        .expect("reopen");
    assert!(bob.has_pending_takeovers());
    stack.start_membership(None).await;
    let got = sync(&mut bob).await;
    assert!(
        has(
            &got,
            |e| matches!(e, ClientEvent::TookOverGroup { group: g, epoch: 1 } if *g == group)
        ),
        "{:?}",
        got.events
    );
    assert!(!bob.has_pending_takeovers());
    for member in [&mut alice, &mut carol] {
        let got = sync(member).await;
        assert!(
            has(
                &got,
                |e| matches!(e, ClientEvent::GroupKey { group: g, epoch: 1 } if *g == group)
            ),
            "{:?}",
            got.events
        );
        assert_eq!(admin_of(member, &group), Some(bob_id));
    }
    carol.send_group(&group, "hello new admin").expect("send");
    sync(&mut carol).await;
    assert_eq!(texts(&sync(&mut bob).await), ["hello new admin"]);

    // Carol leaves: her keys go at once, Bob removes her (epoch 2), she reads nothing after.
    carol.leave_group(&group).expect("leave");
    assert!(carol.groups().is_empty());
    sync(&mut carol).await;
    let got = sync(&mut bob).await;
    assert!(
        has(
            &got,
            |e| matches!(e, ClientEvent::MemberLeft { group: g, user } if *g == group && *user == carol_id)
        ),
        "{:?}",
        got.events
    );
    let info = bob
        .groups()
        .into_iter()
        .find(|g| g.id == group)
        .expect("group");
    assert_eq!(
        (info.epoch, info.members.clone()),
        (2, vec![bob_id, alice_id])
    );
    bob.send_group(&group, "without carol").expect("send");
    sync(&mut bob).await;
    assert_eq!(
        texts(&sync(&mut alice).await),
        ["hello new admin", "without carol"]
    );
    let got = sync(&mut carol).await;
    assert!(texts(&got).is_empty(), "{:?}", got.events);
    assert!(carol.groups().is_empty());

    // The old admin is a member now: it may leave.
    alice.leave_group(&group).expect("leave");
    sync(&mut alice).await;
    let got = sync(&mut bob).await;
    assert!(
        has(
            &got,
            |e| matches!(e, ClientEvent::MemberLeft { user, .. } if *user == alice_id)
        ),
        "{:?}",
        got.events
    );
    let info = bob
        .groups()
        .into_iter()
        .find(|g| g.id == group)
        .expect("group");
    assert_eq!(info.members, vec![bob_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_leave_and_the_admin_hands_over_across_a_directory_outage_grp_11_grp_12() {
    for broker in available_brokers() {
        tokio::time::timeout(Duration::from_secs(180), leave_and_hand_over(broker))
            .await
            .expect("within three minutes");
    }
}
