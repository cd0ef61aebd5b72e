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

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

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

/// A fresh TLS key of this device (ECDSA P-256) with what asking for its certificate takes: its
/// SubjectPublicKeyInfo and the self-signed certificate that proves it ([`key_proof_pem`]).
pub(crate) struct NewTlsKey {
    /// The private key, PKCS#8 PEM.
    pub(crate) key_pem: zeroize::Zeroizing<String>,
    /// Its DER SubjectPublicKeyInfo, for the signup or renewal request.
    pub(crate) spki: Vec<u8>,
    /// The self-signed certificate the request's connection presents.
    pub(crate) proof_pem: String,
}

impl NewTlsKey {
    pub(crate) fn generate() -> Result<NewTlsKey> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|_| ClientError::KeyGeneration)?;
        let key_pem = zeroize::Zeroizing::new(key.serialize_pem());
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        drop(key);
        let proof_pem = key_proof_pem(&key_pem)?;
        Ok(NewTlsKey {
            key_pem,
            spki,
            proof_pem,
        })
    }
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
    configure(ca_pem, identity, None)
}

/// As [`client_config`], but the server's certificate is verified for `name`, whatever the
/// connection was opened with: a [`crate::resolve::Resolve`] override opens it by address.
pub(crate) fn client_config_verifying(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    name: &str,
) -> Result<Arc<ClientConfig>> {
    let name = ServerName::try_from(name.to_owned())
        .map_err(|_| ClientError::Invalid("the server name is not a valid host name"))?;
    configure(ca_pem, identity, Some(name))
}

fn configure(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    verify_as: Option<ServerName<'static>>,
) -> Result<Arc<ClientConfig>> {
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
    let versions = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|_| ClientError::BadCredentials("TLS 1.3 provider"))?;
    let builder = match verify_as {
        None => versions.with_root_certificates(roots),
        Some(name) => {
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|_| ClientError::BadCredentials("CA certificate"))?;
            versions
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(VerifyAs { inner, name }))
        }
    };
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

/// The CA's ordinary verification (chain, dates, name), for a fixed name.
#[derive(Debug)]
struct VerifyAs {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for VerifyAs {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _opened_as: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> core::result::Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> core::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> core::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
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
