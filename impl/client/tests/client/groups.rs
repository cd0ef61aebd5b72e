//! Groups over the real stack: a group of three, a removal (GRP-6), receipts from every member
//! (GRP-10).

use sotto_client::{Chat, ClientEvent, MessageState};

use sotto_testkit::{TestStack, exchange_cards, sync, texts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_three_with_a_removal_grp_6() {
    let stack = TestStack::embedded().await;
    let mut alice = stack.signup("alice").await;
    let mut bob = stack.signup("bob").await;
    let mut carol = stack.signup("carol").await;
    exchange_cards(&mut alice, &mut bob);
    exchange_cards(&mut alice, &mut carol);

    let group = alice
        .create_group(&[bob.user_id(), carol.user_id()])
        .expect("create");
    let first = alice.send_group(&group, "hello group").expect("send");
    sync(&mut alice).await;

    for member in [&mut bob, &mut carol] {
        let got = sync(member).await;
        assert!(
            got.events
                .iter()
                .any(|e| matches!(e, ClientEvent::GroupKey { group: g, epoch: 0 } if *g == group)),
            "{:?}",
            got.events
        );
        assert_eq!(texts(&got), ["hello group"]);
        let msgs = member.messages(&Chat::Group(group)).expect("messages");
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].sender, Some(alice.user_id()));
    }
    let acks = sync(&mut alice).await;
    assert_eq!(
        acks.events
            .iter()
            .filter(|e| matches!(e, ClientEvent::MemberConfirmed { .. }))
            .count(),
        2,
        "both members confirmed the epoch (GRP-9): {:?}",
        acks.events
    );
    assert_eq!(
        alice.outgoing_state(&first).expect("state"),
        Some(MessageState::Delivered)
    );

    // Carol leaves: a new epoch for Alice and Bob, a removal notice for Carol.
    alice
        .remove_from_group(&group, &carol.user_id())
        .expect("remove");
    let second = alice.send_group(&group, "without carol").expect("send");
    sync(&mut alice).await;

    let got = sync(&mut bob).await;
    assert!(
        got.events
            .iter()
            .any(|e| matches!(e, ClientEvent::GroupKey { group: g, epoch: 1 } if *g == group)),
        "{:?}",
        got.events
    );
    assert_eq!(texts(&got), ["without carol"]);

    let got = sync(&mut carol).await;
    assert!(
        got.events
            .iter()
            .any(|e| matches!(e, ClientEvent::RemovedFromGroup(g) if *g == group)),
        "{:?}",
        got.events
    );
    assert!(texts(&got).is_empty());
    assert_eq!(
        carol.messages(&Chat::Group(group)).expect("messages").len(),
        1
    );
    assert!(carol.groups().is_empty());

    // Bob writes to the group: only Alice is a recipient now.
    let from_bob = bob.send_group(&group, "bob here").expect("send");
    sync(&mut bob).await;
    assert_eq!(texts(&sync(&mut alice).await), ["bob here"]);
    sync(&mut bob).await;
    assert_eq!(
        bob.outgoing_state(&from_bob).expect("state"),
        Some(MessageState::Delivered)
    );
    assert_eq!(
        alice.outgoing_state(&second).expect("state"),
        Some(MessageState::Delivered)
    );
    assert!(texts(&sync(&mut carol).await).is_empty());
    assert_eq!(
        bob.messages(&Chat::Group(group)).expect("messages").len(),
        3
    );
}
