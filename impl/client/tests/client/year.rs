//! One account through a simulated year, on the service's clock moved ahead four weeks at a time
//! (`sotto_server::clock::Clock::skewed`; certificates are issued and checked on it, and it is the
//! server time devices follow, TIME-1), 392 days in all: every step a newcomer finds the account in
//! the directory and writes first, and an old contact writes too. The account only syncs; its maintenance
//! (`sotto_client::maintenance`) refreshes the time, rotates the signed prekey, refills one-time
//! prekeys and renews the certificate before the first one expires, so it keeps working past a
//! year, and every step shows in its events.

use std::time::Duration;

use sotto_client::maintenance::Maintenance;
use sotto_client::{ClientEvent, Config};
use sotto_server::Broker;
use sotto_server::clock::Clock;
use sotto_server::membership::quota::QuotaLimits;
use sotto_testkit::{TestStack, exchange_cards, sync, test_config, texts};

const STEP: Duration = Duration::from_secs(28 * 24 * 3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_keeps_working_through_a_simulated_year() {
    let clock = Clock::skewed();
    let stack = TestStack::build(Broker::Embedded, |b| {
        b.clock(clock.clone())
            .membership_quotas(QuotaLimits::DEFAULT.with_signup_burst(50))
    })
    .await;
    let config = Config {
        // Refill once a few of the 100 one-time prekeys were taken (the directory hands a
        // newcomer at most 10 of one account's at once, KEY-4).
        prekey_low_water: 97,
        ..test_config()
    };
    let mut alice = stack.signup_with("alice", config).await;
    let mut bob = stack.signup("bob").await;
    exchange_cards(&mut alice, &mut bob);
    let (mut renewed, mut rotated, mut refreshed, mut refilled, mut failed) = (0, 0, 0, 0, 0);
    for week in (4..=56u32).step_by(4) {
        // The service's clock and the devices' clocks move alike, as days passing would.
        clock.advance(STEP);
        alice.advance_local_clock(STEP);
        bob.advance_local_clock(STEP);
        let mut newcomer = stack.signup(&format!("newcomer{week}")).await;
        newcomer
            .add_from_directory(&alice.user_id())
            .await
            .unwrap_or_else(|e| panic!("week {week}: the directory: {e}"));
        let first = format!("week {week}: hello from a newcomer");
        newcomer.send(&alice.user_id(), &first).expect("send");
        assert!(sync(&mut newcomer).await.published >= 1, "week {week}");
        let from_bob = format!("week {week}: bob again");
        bob.send(&alice.user_id(), &from_bob).expect("send");
        assert!(sync(&mut bob).await.published >= 1, "week {week}: bob");

        let report = sync(&mut alice).await;
        let mut got = texts(&report);
        got.sort();
        let mut want = vec![first.clone(), from_bob.clone()];
        want.sort();
        assert_eq!(got, want, "week {week}");
        for event in &report.events {
            match event {
                ClientEvent::Maintained(Maintenance::CertificateRenewed { .. }) => renewed += 1,
                ClientEvent::Maintained(Maintenance::SignedPrekeyRotated) => rotated += 1,
                ClientEvent::Maintained(Maintenance::TimeRefreshed { .. }) => refreshed += 1,
                ClientEvent::Maintained(Maintenance::PrekeysChecked { uploaded, .. })
                    if *uploaded > 0 =>
                {
                    refilled += 1;
                }
                ClientEvent::Maintained(Maintenance::Failed { .. }) => failed += 1,
                _ => {}
            }
        }
        // Alice answers both; the newcomer's answer arrives over the session it started.
        alice
            .send(&bob.user_id(), &format!("week {week}: to bob"))
            .expect("answer bob");
        assert!(sync(&mut alice).await.published >= 1, "week {week}: alice");
        assert!(
            texts(&sync(&mut bob).await).contains(&format!("week {week}: to bob")),
            "week {week}: bob reads alice"
        );
    }
    assert_eq!(failed, 0, "no maintenance step failed");
    assert_eq!(
        renewed, 1,
        "the certificate renewed once, before it expired"
    );
    assert_eq!(
        rotated, 14,
        "the signed prekey rotated at every step (due weekly)"
    );
    assert_eq!(
        refreshed, 14,
        "the time refreshed at every step (due daily)"
    );
    assert!(refilled >= 1, "one-time prekeys refilled: {refilled}");
}
