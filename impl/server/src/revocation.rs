//! Certificates replaced by a renewal (`POST /v1/renew`): revoked at once, refused by the MQTT
//! front and by the membership service's certificate endpoints from the next connection on.
//!
//! ```text
//!  renew ── Store::update_certificate: the old serial into `revoked` (same transaction)
//!        └─ Revocations::revoke(old serial)            (the shared in-memory set)
//!  front / membership, after each TLS handshake:
//!        Revocations::is_revoked(serial of the client certificate) -> close / no identity
//! ```
//!
//! The set lives in memory, shared by the front and the membership service of one
//! [`crate::Service`]; the membership service loads it from its database when it starts (the
//! `revoked` table keeps each serial until the certificate would have expired anyway). Serials
//! are the certificates' random 16-byte serial numbers in hex: they name no user.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use rustls::pki_types::CertificateDer;

/// The serials of revoked client certificates (cheap to clone: one shared set).
#[derive(Clone, Debug, Default)]
pub struct Revocations(Arc<RwLock<HashSet<String>>>);

impl Revocations {
    /// An empty set.
    pub fn new() -> Revocations {
        Revocations::default()
    }

    /// Revokes the certificate with serial `serial` (hex).
    pub fn revoke(&self, serial: &str) {
        if let Ok(mut set) = self.0.write() {
            set.insert(serial.to_ascii_lowercase());
        }
    }

    /// Replaces the whole set (what the database holds at start).
    pub fn replace(&self, serials: impl IntoIterator<Item = String>) {
        if let Ok(mut set) = self.0.write() {
            *set = serials
                .into_iter()
                .map(|s| s.to_ascii_lowercase())
                .collect();
        }
    }

    /// Whether the certificate with serial `serial` (hex) is revoked. A poisoned lock counts as
    /// revoked: the service refuses rather than admits.
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.0
            .read()
            .map_or(true, |set| set.contains(&serial.to_ascii_lowercase()))
    }

    /// Whether `cert` (a client certificate the TLS layer verified) is revoked; a certificate
    /// that does not parse counts as revoked.
    pub fn is_revoked_cert(&self, cert: &CertificateDer<'_>) -> bool {
        match serial_hex(cert) {
            Some(serial) => self.is_revoked(&serial),
            None => true,
        }
    }

    /// Revoked serials held.
    pub fn len(&self) -> usize {
        self.0.read().map_or(0, |set| set.len())
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The serial number of `cert` in lowercase hex, as the directory records it.
pub fn serial_hex(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(hex::encode(x509.raw_serial()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_serials_are_shared_and_case_blind() {
        let r = Revocations::new();
        let view = r.clone();
        assert!(!view.is_revoked("0aff"));
        r.revoke("0AFF");
        assert!(view.is_revoked("0aff"));
        r.replace(vec!["01".to_owned()]);
        assert!(!view.is_revoked("0aff") && view.is_revoked("01"));
        assert!(r.is_revoked_cert(&CertificateDer::from(vec![1, 2, 3])));
    }
}
