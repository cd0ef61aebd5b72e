//! Proof of possession of a TLS key before the CA certifies it (signup and renewal).
//!
//! ```text
//!  device ──TLS 1.3, client certificate──▶ membership service
//!           a certificate of the CA        -> an identity (the certificate endpoints)
//!           any other (self-signed)        -> only the key it proves: the handshake's
//!                                             CertificateVerify was signed with it
//!  POST /v1/signup, /v1/renew: the request's TLS key must be the key the connection proved
//! ```
//!
//! The membership service's TLS layer ([`ClientKeyVerifier`]) accepts a client certificate that
//! chains to the service CA, or any certificate that parses: in both cases rustls checks the TLS
//! 1.3 `CertificateVerify` signature with the certificate's key, so the connection proves that the
//! client holds that key. Which of the two a connection is, the accept loop asks
//! [`ClientKeyVerifier::is_certified`] again: only a certificate of the CA gives an identity
//! ([`ProvenKey`] is what the others give). A certificate is thus issued only for a key its
//! requester has shown it holds; no one gets a certificate for somebody else's public key.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

/// The membership service's client certificate verifier (see the module docs).
#[derive(Debug)]
pub struct ClientKeyVerifier {
    /// Certificates of the service CA (optional: anonymous clients are allowed).
    ca: Arc<dyn ClientCertVerifier>,
    /// The service's clock, what a certificate's dates are checked against.
    clock: crate::clock::Clock,
}

/// The DER SubjectPublicKeyInfo of the key a connection proved it holds (its client certificate's
/// key), whatever issued the certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvenKey(pub Vec<u8>);

impl ClientKeyVerifier {
    /// Accepts the certificates `ca` accepts, and any other that parses.
    pub fn new(ca: Arc<dyn ClientCertVerifier>, clock: crate::clock::Clock) -> ClientKeyVerifier {
        ClientKeyVerifier { ca, clock }
    }

    /// Whether `cert` is a certificate of the service CA (then its CN is an identity).
    pub fn is_certified(&self, cert: &CertificateDer<'_>) -> bool {
        self.ca
            .verify_client_cert(
                cert,
                &[],
                rustls::time_provider::TimeProvider::current_time(&self.clock)
                    .unwrap_or_else(UnixTime::now),
            )
            .is_ok()
    }

    /// The key `cert` carries, as DER SubjectPublicKeyInfo; `None` if it does not parse.
    pub fn proven_key(cert: &CertificateDer<'_>) -> Option<ProvenKey> {
        let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
        Some(ProvenKey(x509.public_key().raw.to_vec()))
    }
}

impl ClientCertVerifier for ClientKeyVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.ca.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if self
            .ca
            .verify_client_cert(end_entity, intermediates, now)
            .is_ok()
        {
            return Ok(ClientCertVerified::assertion());
        }
        // Not the CA's: accepted as a key only, if it parses (its handshake signature is still
        // checked with its key below).
        match ClientKeyVerifier::proven_key(end_entity) {
            Some(_) => Ok(ClientCertVerified::assertion()),
            None => Err(Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.ca.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.ca.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.ca.supported_verify_schemes()
    }
}
