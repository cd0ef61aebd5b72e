//! What an operator watches, on the running service with each broker: `GET /metrics` counts what
//! happened (signups, sessions, publishes, accounts, connections) and names no one (no user id,
//! no address in the text), and `GET /health` says which part is down when one is. Skipped for
//! Mosquitto with a notice when it is not installed.

use sotto_testkit::{TestStack, WAIT, exchange_cards, sync, texts};

/// A plain-HTTP client (reqwest wants a TLS configuration all the same: the ring provider's).
fn http(ca_pem: &str) -> reqwest::Client {
    let tls = sotto_client::tls::client_config(ca_pem, None).expect("tls");
    reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .build()
        .expect("client")
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, String) {
    let response = tokio::time::timeout(WAIT, http.get(url).send())
        .await
        .expect("bounded")
        .expect("an answer");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

/// The value of the sample line `name` (with its labels) in `text`.
fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened_and_name_no_one_and_health_names_the_part_down() {
    for broker in sotto_testkit::available_brokers() {
        let mut stack = TestStack::build(broker, |b| {
            b.metrics_listen("127.0.0.1:0".parse().expect("addr"))
        })
        .await;
        let addr = stack.service.metrics_addr().expect("metrics served");
        let http = http(stack.ca_pem());
        let (metrics_url, health_url) = (
            format!("http://{addr}/metrics"),
            format!("http://{addr}/health"),
        );

        let mut alice = stack.signup("alice").await;
        let mut bob = stack.signup("bob").await;
        exchange_cards(&mut alice, &mut bob);
        alice.send(&bob.user_id(), "counted").expect("send");
        assert!(sync(&mut alice).await.published >= 1);
        assert_eq!(texts(&sync(&mut bob).await), ["counted"]);

        let (status, text) = get(&http, &metrics_url).await;
        assert_eq!(status, 200, "{broker:?}");
        assert_eq!(value(&text, "sotto_signups_total"), 2.0, "{text}");
        assert_eq!(value(&text, "sotto_accounts"), 2.0, "{text}");
        assert!(value(&text, "sotto_mqtt_sessions_total") >= 2.0, "{text}");
        assert!(value(&text, "sotto_mqtt_publishes_total") >= 1.0, "{text}");
        assert!(
            value(
                &text,
                "sotto_connections_accepted_total{listener=\"front\"}"
            ) >= 2.0
        );
        assert!(
            value(
                &text,
                "sotto_connections_accepted_total{listener=\"membership\"}"
            ) >= 2.0
        );
        assert_eq!(value(&text, "sotto_up{part=\"front\"}"), 1.0, "{text}");
        assert_eq!(value(&text, "sotto_up{part=\"membership\"}"), 1.0, "{text}");
        for who in [alice.user_id().to_text(), bob.user_id().to_text()] {
            assert!(!text.contains(&who), "a user id in the metrics:\n{text}");
        }
        assert!(
            !text.contains("127.0.0.1"),
            "an address in the metrics:\n{text}"
        );
        assert_eq!(get(&http, &health_url).await, (200, "ok\n".to_owned()));

        // The membership service down, then the broker behind the front.
        stack.service.stop_membership().await;
        assert_eq!(
            get(&http, &health_url).await,
            (503, "membership: down\n".to_owned()),
            "{broker:?}"
        );
        stack
            .service
            .start_membership(None)
            .await
            .expect("membership again");
        assert_eq!(get(&http, &health_url).await.0, 200);
        stack.service.stop_broker().await.expect("stop the broker");
        assert_eq!(
            get(&http, &health_url).await,
            (503, "front: down\n".to_owned()),
            "{broker:?}"
        );
        let (_, text) = get(&http, &metrics_url).await;
        assert_eq!(value(&text, "sotto_up{part=\"front\"}"), 0.0, "{text}");
        stack.service.shutdown().await;
    }
}
