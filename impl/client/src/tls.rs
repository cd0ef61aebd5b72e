//! The device side of TLS-1: a rustls client configuration (TLS 1.3 only, ring provider) that
//! trusts only the service's CA and, once signed up, presents the device certificate.
//!
//! The same configuration serves both connections of a device: HTTPS to the membership service
//! ([`crate::membership::MembershipClient`]) and MQTT over mutual TLS to the message service. The
//! CA comes from the operator at signup (a file, or [`crate::pin::fetch_ca`] by fingerprint) and
//! from the signup answer afterwards; the key never leaves this crate but through the config.
//!
//! Before the CA certifies a TLS key (signup, renewal), the device proves it holds it: it presents
//! a self-signed certificate of that key ([`key_proof_pem`]) in the TLS handshake, whose
//! `CertificateVerify` only the key's holder can sign (docs/operations.md, "Membership API").

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::error::{ClientError, Result};

/// A self-signed certificate of `key_pem` (PKCS#8 PEM), PEM: what a device presents to the
/// membership service to prove it holds the TLS key it asks a certificate for. It names nothing
/// (no user id, no host; rcgen's fixed default validity, not the moment it was made).
pub fn key_proof_pem(key_pem: &str) -> Result<String> {
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|_| ClientError::KeyGeneration)?;
    let params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|_| ClientError::KeyGeneration)?;
    let cert = params
        .self_signed(&key)
        .map_err(|_| ClientError::KeyGeneration)?;
    Ok(cert.pem())
}

/// The ring crypto provider of every TLS configuration of the client.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration trusting only the certificates of `ca_pem`, presenting `identity` =
/// (certificate chain PEM, private key PEM) if given. TLS 1.3 only.
///
/// Malformed PEM is [`ClientError::BadCredentials`] naming which part.
pub fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let der = der.map_err(|_| ClientError::BadCredentials("CA certificate"))?;
        roots
            .add(der)
            .map_err(|_| ClientError::BadCredentials("CA certificate"))?;
    }
    if roots.is_empty() {
        return Err(ClientError::BadCredentials("CA certificate"));
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|_| ClientError::BadCredentials("TLS 1.3 provider"))?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<core::result::Result<Vec<_>, _>>()
                .map_err(|_| ClientError::BadCredentials("device certificate"))?;
            if chain.is_empty() {
                return Err(ClientError::BadCredentials("device certificate"));
            }
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|_| ClientError::BadCredentials("device key"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|_| ClientError::BadCredentials("device key"))?
        }
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_pem_names_the_part() {
        for (ca, id, what) in [
            ("", None, "CA certificate"),
            ("not a pem", None, "CA certificate"),
        ] {
            match client_config(ca, id) {
                Err(ClientError::BadCredentials(w)) => assert_eq!(w, what),
                other => panic!("{other:?}"),
            }
        }
    }
}
