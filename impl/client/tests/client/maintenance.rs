//! An account that maintains itself (`Client::maintain`, `sotto_client::maintenance`), over the
//! real stack on each broker: with every step due, one call refreshes the server time, renews the
//! certificate, rotates the signed prekey and refills the one-time prekeys that ten people took
//! from the directory; a first message sealed to the signed prekey of before the rotation still
//! opens (the LIM-9 grace); messages go both ways afterwards over the renewed certificate; and the
//! online loop runs what is due on its own and says so in its events.

use std::time::Duration;

use sotto_client::maintenance::{Maintenance, MaintenancePolicy};
use sotto_client::{ClientEvent, Config};
use sotto_testkit::{TestStack, WAIT, available_brokers, sync, test_config, texts};

/// Every step due at every look (and the certificate due for renewal from the start).
fn everything_due(check_every: Duration) -> MaintenancePolicy {
    MaintenancePolicy {
        check_every,
        refresh_time_every: Duration::ZERO,
        renew_before: Duration::from_secs(400 * 24 * 3600),
        rotate_signed_prekey_every: Duration::ZERO,
        check_prekeys_every: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_maintenance_step_runs_when_due_and_the_account_keeps_working() {
    for broker in available_brokers() {
        let stack = TestStack::start(broker).await;
        let config = Config {
            // Refill as soon as ten were taken from the 100 the signup left in the directory.
            prekey_low_water: 95,
            maintenance: Some(everything_due(Duration::from_millis(300))),
            ..test_config()
        };
        let mut alice = stack.signup_with("alice", config).await;
        for i in 0..10 {
            let mut someone = stack.signup(&format!("someone{i}")).await;
            someone
                .add_from_directory(&alice.user_id())
                .await
                .expect("a bundle from the directory");
        }
        // Bob fetches Alice's bundle now: his first message will use the signed prekey that the
        // maintenance is about to replace.
        let mut bob = stack.signup("bob").await;
        bob.add_from_directory(&alice.user_id())
            .await
            .expect("Bob's bundle");

        let done = alice.maintain().await;
        assert!(
            matches!(
                done[..],
                [
                    Maintenance::TimeRefreshed { .. },
                    Maintenance::CertificateRenewed { .. },
                    Maintenance::SignedPrekeyRotated,
                    Maintenance::PrekeysChecked {
                        in_directory: 90,
                        uploaded: 10
                    },
                ]
            ),
            "{broker:?}: {done:?}"
        );
        if let Maintenance::CertificateRenewed { expires_at } = done[1] {
            let year = 365 * 24 * 3600 * 1000;
            assert!(
                expires_at > alice.now() + year - 2 * 24 * 3600 * 1000,
                "a year ahead"
            );
        }

        // Bob's first message, sealed to the old signed prekey, opens (LIM-9 keeps it); Alice's
        // answer goes out over her renewed certificate.
        bob.send(&alice.user_id(), "sealed before the rotation")
            .expect("send");
        assert!(sync(&mut bob).await.published >= 1);
        assert_eq!(
            texts(&sync(&mut alice).await),
            ["sealed before the rotation"]
        );
        alice
            .send(&bob.user_id(), "after the renewal")
            .expect("send");
        assert!(
            sync(&mut alice).await.published >= 1,
            "{broker:?}: renewed certificate"
        );
        assert_eq!(texts(&sync(&mut bob).await), ["after the renewal"]);

        // Online, the loop looks by itself every 300 ms and reports each step.
        let (online, mut events) = alice.connect();
        let rotated = tokio::time::timeout(2 * WAIT, async {
            let mut seen = 0;
            while let Some(event) = events.recv().await {
                if matches!(
                    event,
                    ClientEvent::Maintained(Maintenance::SignedPrekeyRotated)
                ) {
                    seen += 1;
                    if seen == 2 {
                        return;
                    }
                }
            }
        })
        .await;
        assert!(
            rotated.is_ok(),
            "{broker:?}: the online loop maintains the account"
        );
        online.shutdown().await.expect("back");
        stack.service.shutdown().await;
    }
}
