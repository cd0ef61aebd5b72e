//! The service's secure random source (ring's `SystemRandom`, through the rustls provider): keys
//! drawn at each start (the admission's and the rate limits' hash keys), secrets and unlinkable
//! ids of the broker.

use zeroize::Zeroizing;

/// `N` bytes from the system's secure random source, zeroized when dropped; `None` if the source
/// failed.
pub(crate) fn random_bytes<const N: usize>() -> Option<Zeroizing<[u8; N]>> {
    let mut bytes = Zeroizing::new([0u8; N]);
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes[..])
        .ok()?;
    Some(bytes)
}
