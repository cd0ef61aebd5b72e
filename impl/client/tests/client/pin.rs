//! CA pinning by fingerprint (TLS-1, `sotto signup --ca-fingerprint`): the CA is fetched from the
//! membership service and kept only if its SHA-256 is the one the operator published.

use sotto_client::pin::{Fingerprint, fetch_ca};
use sotto_client::{ClientError, Fault};
use sotto_testkit::TestStack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_is_fetched_only_with_its_fingerprint_tls_1() {
    let stack = TestStack::embedded().await;
    let pki = stack.service.pki();
    let fingerprint = Fingerprint::parse(&pki.ca_fingerprint()).expect("the printed fingerprint");
    let pem = fetch_ca(&stack.url(), &fingerprint, &sotto_client::Resolve::none())
        .await
        .expect("fetched");
    let squash = |s: &str| s.split_whitespace().collect::<String>();
    assert_eq!(squash(&pem), squash(pki.ca_pem()));

    // Colons and upper case, as people copy fingerprints, name the same CA.
    let spaced: String = pki
        .ca_fingerprint()
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(Fingerprint::parse(&spaced).expect("spaced"), fingerprint);

    // Another fingerprint: refused, the service's fault (or someone in between), no retry.
    let wrong = Fingerprint::parse(&"00".repeat(32)).expect("well-formed");
    let e = fetch_ca(&stack.url(), &wrong, &sotto_client::Resolve::none())
        .await
        .expect_err("refused");
    assert!(matches!(e, ClientError::FingerprintMismatch), "{e:?}");
    assert_eq!(e.fault(), Fault::Service);
    assert!(!e.is_retryable());

    // Not a fingerprint, not a URL: the caller's mistake, said before anything is sent.
    assert_eq!(
        Fingerprint::parse("abc").expect_err("short").fault(),
        Fault::Caller
    );
    let e = fetch_ca(
        "http://localhost:1",
        &fingerprint,
        &sotto_client::Resolve::none(),
    )
    .await
    .expect_err("not https");
    assert_eq!(e.fault(), Fault::Caller);
}
