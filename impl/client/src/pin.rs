//! CA pinning by fingerprint (TLS-1): fetch the service CA from the membership service and keep it
//! only if its SHA-256 matches the fingerprint the operator published (`sotto serve` prints it;
//! `sotto signup --ca-fingerprint` uses this). The result is the CA PEM that
//! [`crate::Client::signup`] then pins like a CA file.
//!
//! ```text
//!  TLS 1.3 handshake with the server, chain recorded, nothing sent ── chain [server, CA]
//!      └─ the certificate whose SHA-256 == fingerprint  ──> CA PEM ──> Client::signup (verifies
//!         the server against it like any pinned CA)
//! ```
//!
//! The first handshake accepts any chain because it only *collects* certificates: no request is
//! sent on it. Trust comes from the fingerprint comparison alone; the signup connection then
//! verifies the server certificate against the matched CA as usual.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use crate::error::{Cause, ClientError, NetworkFailure, Result, Service};
use crate::resolve::Resolve;

/// How long fetching the CA may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Records the presented chain; checks only the handshake signature.
#[derive(Debug)]
struct Collect {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Collect {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut chain) = self.chain.lock() {
            chain.push(end_entity.clone().into_owned());
            chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `https://host:port[/...]` to (host, port).
fn host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, 443),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// Normalizes a fingerprint: hex digits only (colons and spaces dropped), lowercase, 64 long.
fn normalize(fp: &str) -> Option<String> {
    let hex: String = fp
        .chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// The SHA-256 fingerprint of a CA certificate, as `sotto serve` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// 64 hex digits, any case, colons and spaces allowed between them;
    /// [`ClientError::Invalid`] otherwise.
    pub fn parse(text: &str) -> Result<Fingerprint> {
        normalize(text).map(Fingerprint).ok_or(ClientError::Invalid(
            "a CA fingerprint is 64 hex digits (SHA-256)",
        ))
    }
}

impl core::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Fetches the CA certificate of the membership service at `url` (`https://host[:port]`) whose
/// SHA-256 is `fingerprint`, as PEM; the host is reached at the address `resolve` gives for it,
/// if any.
///
/// A CA with another fingerprint is [`ClientError::FingerprintMismatch`]: someone may be in
/// between, trust nothing from that server.
pub async fn fetch_ca(url: &str, fingerprint: &Fingerprint, resolve: &Resolve) -> Result<String> {
    let want = &fingerprint.0;
    let (host, port) = host_port(url).ok_or(ClientError::Invalid(
        "the membership URL must be https://host[:port]",
    ))?;
    let provider = crate::tls::provider();
    let collect = Arc::new(Collect {
        chain: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|_| ClientError::BadCredentials("TLS 1.3 provider"))?
        .dangerous()
        .with_custom_certificate_verifier(collect.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.clone())
        .map_err(|_| ClientError::Invalid("the membership URL names no valid host"))?;
    let handshake = async {
        let tcp = match resolve.lookup(&host) {
            Some(ip) => TcpStream::connect((ip, port)).await,
            None => TcpStream::connect((host.as_str(), port)).await,
        }
        .map_err(|e| (NetworkFailure::Connect, e))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let _tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| (NetworkFailure::Tls, e))?;
        Ok::<_, (NetworkFailure, std::io::Error)>(())
    };
    match tokio::time::timeout(TIMEOUT, handshake).await {
        Ok(Ok(())) => {}
        Ok(Err((failure, e))) => {
            return Err(ClientError::network(
                Service::Membership,
                failure,
                Cause::new(e),
            ));
        }
        Err(_) => {
            return Err(ClientError::network(
                Service::Membership,
                NetworkFailure::Timeout,
                Cause::text("the TLS handshake timed out"),
            ));
        }
    }
    let chain = collect.chain.lock().map_err(|_| ClientError::Task)?.clone();
    let ca = chain
        .iter()
        .find(|c| hex::encode(Sha256::digest(c.as_ref())) == *want)
        .ok_or(ClientError::FingerprintMismatch)?;
    Ok(to_pem(ca.as_ref()))
}

/// DER as a PEM `CERTIFICATE` block.
fn to_pem(der: &[u8]) -> String {
    let b64 = base64(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = usize::try_from((n >> (18 - 6 * i)) & 63).unwrap_or(0);
                out.push(ALPHABET.get(idx).map_or('=', |&b| char::from(b)));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn urls_and_fingerprints_parse() {
        assert_eq!(
            host_port("https://localhost:7443"),
            Some(("localhost".into(), 7443))
        );
        assert_eq!(host_port("https://[::1]:9/x"), Some(("::1".into(), 9)));
        assert_eq!(
            host_port("https://example.org"),
            Some(("example.org".into(), 443))
        );
        assert_eq!(host_port("http://x:1"), None);
        let fp = "AB:".repeat(31) + "AB";
        assert_eq!(normalize(&fp), Some("ab".repeat(32)));
        assert_eq!(normalize("abc"), None);
    }
}
