//! Name overrides (`Resolve`) and server names: a membership client reaching the service under a
//! name its certificate carries works; under another name it fails the TLS check, typed as such.

use sotto_client::membership::MembershipClient;
use sotto_client::{ClientError, NetworkFailure, Resolve};
use sotto_testkit::TestStack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_override_reaches_the_service_and_the_certificate_is_checked_for_the_name() {
    let stack = TestStack::build(sotto_server::Broker::Embedded, |b| {
        b.server_names(vec!["chat.sotto.test".to_owned()])
    })
    .await;
    let port = stack.service.membership_addr().port();
    let mut resolve = Resolve::none();
    resolve.insert("chat.sotto.test", "127.0.0.1".parse().expect("ip"));
    resolve.insert("wrong.sotto.test", "127.0.0.1".parse().expect("ip"));
    let right = MembershipClient::resolving(
        &format!("https://chat.sotto.test:{port}"),
        stack.ca_pem(),
        None,
        &resolve,
    )
    .expect("client");
    right
        .time()
        .await
        .expect("the service answers under its name");
    let wrong = MembershipClient::resolving(
        &format!("https://wrong.sotto.test:{port}"),
        stack.ca_pem(),
        None,
        &resolve,
    )
    .expect("client");
    match wrong.time().await {
        Err(ClientError::Network {
            failure: NetworkFailure::ServerName,
            ..
        }) => {}
        other => panic!("a name the certificate does not carry: {other:?}"),
    }
}
