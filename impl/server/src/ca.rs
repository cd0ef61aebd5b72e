//! The service PKI: one CA per deployment, created on first start and kept in the data directory
//! (TLS-1).
//!
//! ```text
//!   <dir>/ca.pem  ca.key (0600)        the CA: signs the server certificate and every client certificate
//!   <dir>/server.pem server.key (0600) SANs localhost, 127.0.0.1, ::1 (membership HTTPS + MQTT front)
//!
//!   device --SPKI (signup, LIM-16)--> membership --issue_client_cert--> PEM, CN = O = user id (ID-1)
//!   device --mTLS, client cert--> MQTT front (mqtt_server_config: certificate required)
//!   device --TLS, cert optional--> membership (https_server_config)
//! ```
//!
//! Everything is TLS 1.3 only, on rustls with the ring provider. The CA key never leaves this
//! module; no key material appears in `Debug` output or in errors.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SerialNumber,
    SubjectPublicKeyInfo,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::clock::Clock;
use crate::key_proof::ClientKeyVerifier;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

/// Validity of the CA certificate.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Validity of the server certificate.
const SERVER_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
/// Validity of a client certificate.
pub const CLIENT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Back-dating of `not_before`, so small clock skew between hosts does not reject fresh certificates.
const BACKDATE: Duration = Duration::from_secs(24 * 3600);
/// Largest SubjectPublicKeyInfo accepted for a client certificate (LIM-16).
pub const MAX_SPKI_LEN: usize = 512;
/// Largest user id accepted as a CN (ID-1 ids are 16 characters; the bound is for robustness).
const MAX_USER_ID_LEN: usize = 64;

/// Errors of the PKI. None of them carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// Reading or writing a file of the CA directory failed.
    #[error("CA directory I/O on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The CA private key file is readable by group or others.
    #[error("{path} must not be readable by group or others (mode 0600)")]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
    },
    /// A stored or supplied PEM/DER object does not parse.
    #[error("malformed {what}")]
    Malformed {
        /// What could not be parsed (no contents).
        what: &'static str,
    },
    /// The device public key is not ECDSA P-256 or Ed25519, or is too large (LIM-16).
    #[error("unsupported device public key")]
    UnsupportedKey,
    /// The user id is not a valid certificate common name.
    #[error("invalid user id for a certificate")]
    InvalidUserId,
    /// The OS random source failed.
    #[error("random source failed")]
    Random,
    /// A name the server is to be reached by is neither a DNS name nor an IP address.
    #[error("{0:?} is not a host name or an IP address")]
    BadServerName(String),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// Building a TLS configuration failed.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Building a client certificate verifier failed.
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The service PKI: the CA and the server identity it signed.
pub struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    ca_key: KeyPair,
    server_chain: Vec<CertificateDer<'static>>,
    server_key_der: Vec<u8>,
    server_key_pem: String,
    server_pem: String,
    clock: Clock,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("ca_fingerprint", &self.ca_fingerprint())
            .finish_non_exhaustive()
    }
}

/// The ring crypto provider every configuration of the crate uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Pki {
    /// Loads the CA from `dir` (ca.pem, ca.key with mode 0600, server.pem, server.key), creating them on first start.
    /// The server certificate has SANs localhost, 127.0.0.1, ::1 and is signed by the CA.
    pub fn load_or_create(dir: &Path) -> Result<Pki, CaError> {
        Pki::load_or_create_for(dir, &[])
    }

    /// As [`Pki::load_or_create`], with a server certificate that also names each of
    /// `server_names` (DNS names or IP addresses: how devices reach the service). A stored server
    /// certificate with other names is replaced (same CA, new key); the CA never changes.
    pub fn load_or_create_for(dir: &Path, server_names: &[String]) -> Result<Pki, CaError> {
        let wanted = server_sans(server_names)?;
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let ca_pem_path = dir.join("ca.pem");
        let ca_key_path = dir.join("ca.key");
        let server_pem_path = dir.join("server.pem");
        let server_key_path = dir.join("server.key");

        let (ca_pem, ca_key) = if ca_pem_path.exists() && ca_key_path.exists() {
            check_private(&ca_key_path)?;
            let pem = fs::read_to_string(&ca_pem_path).map_err(io_err(&ca_pem_path))?;
            let key_pem = fs::read_to_string(&ca_key_path).map_err(io_err(&ca_key_path))?;
            let key =
                KeyPair::from_pem(&key_pem).map_err(|_| CaError::Malformed { what: "CA key" })?;
            (pem, key)
        } else {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let cert = ca_params()?.self_signed(&key)?;
            write_private(&ca_key_path, &key.serialize_pem())?;
            write_public(&ca_pem_path, &cert.pem())?;
            // A new CA invalidates any old server certificate.
            let _ = fs::remove_file(&server_pem_path);
            (cert.pem(), key)
        };
        let ca_der =
            CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|_| CaError::Malformed {
                what: "CA certificate",
            })?;
        if ca_key.subject_public_key_info() != spki_of(&ca_der)? {
            return Err(CaError::Malformed {
                what: "CA key (does not match ca.pem)",
            });
        }

        let stored_names = fs::read_to_string(&server_pem_path)
            .ok()
            .and_then(|pem| sans_of_pem(&pem));
        if stored_names.is_some_and(|names| names != wanted) {
            // Reached by other names now: a new server certificate (the CA stays).
            let _ = fs::remove_file(&server_pem_path);
        }
        let (server_pem, server_key_pem) = if server_pem_path.exists() && server_key_path.exists() {
            check_private(&server_key_path)?;
            let pem = fs::read_to_string(&server_pem_path).map_err(io_err(&server_pem_path))?;
            let key = fs::read_to_string(&server_key_path).map_err(io_err(&server_key_path))?;
            (pem, key)
        } else {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let issuer = Issuer::from_ca_cert_der(&ca_der, &ca_key)?;
            let cert = server_params(&wanted)?.signed_by(&key, &issuer)?;
            write_private(&server_key_path, &key.serialize_pem())?;
            write_public(&server_pem_path, &cert.pem())?;
            (cert.pem(), key.serialize_pem())
        };
        let server_chain = vec![
            CertificateDer::from_pem_slice(server_pem.as_bytes()).map_err(|_| {
                CaError::Malformed {
                    what: "server certificate",
                }
            })?,
            ca_der.clone(),
        ];
        let server_key_der = PrivatePkcs8KeyDer::from_pem_slice(server_key_pem.as_bytes())
            .map_err(|_| CaError::Malformed { what: "server key" })?
            .secret_pkcs8_der()
            .to_vec();

        Ok(Pki {
            ca_pem,
            ca_der,
            ca_key,
            server_chain,
            server_key_der,
            server_key_pem,
            server_pem,
            clock: Clock::system(),
        })
    }

    /// The same PKI on `clock`: what it issues certificates at and checks client certificates
    /// against ([`crate::clock`]; the service's one clock).
    pub fn with_clock(mut self, clock: Clock) -> Pki {
        self.clock = clock;
        self
    }

    /// The service's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca_der.clone()
    }

    /// SHA-256 of the CA certificate DER, lowercase hex (printed by `sotto serve` for pinning).
    pub fn ca_fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.ca_der.as_ref()))
    }

    /// The server certificate, PEM (for the Mosquitto profile).
    pub fn server_cert_pem(&self) -> &str {
        &self.server_pem
    }

    /// The server private key, PKCS#8 PEM (for the Mosquitto profile; write it with mode 0600).
    pub fn server_key_pem(&self) -> &str {
        &self.server_key_pem
    }

    /// Issues a client certificate for `spki_der` (DER SubjectPublicKeyInfo the device sent, ECDSA
    /// P-256 or Ed25519) with subject CN = user_id (and O = user_id too), valid for
    /// [`CLIENT_VALIDITY`], signed by the CA; returns PEM (TLS-1).
    pub fn issue_client_cert(&self, user_id: &str, spki_der: &[u8]) -> Result<String, CaError> {
        if user_id.is_empty()
            || user_id.len() > MAX_USER_ID_LEN
            || !user_id.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(CaError::InvalidUserId);
        }
        if spki_der.len() > MAX_SPKI_LEN {
            return Err(CaError::UnsupportedKey);
        }
        let spki = SubjectPublicKeyInfo::from_der(spki_der).map_err(|_| CaError::UnsupportedKey)?;
        let alg = spki.algorithm();
        if alg != &PKCS_ECDSA_P256_SHA256 && alg != &rcgen::PKCS_ED25519 {
            return Err(CaError::UnsupportedKey);
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, user_id);
        dn.push(DnType::OrganizationName, user_id);
        params.distinguished_name = dn;
        set_validity(&mut params, CLIENT_VALIDITY, self.clock.now());
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_ca_cert_der(&self.ca_der, &self.ca_key)?;
        Ok(params.signed_by(&spki, &issuer)?.pem())
    }

    /// TLS 1.3 server config for the membership HTTPS service: server cert, client certificates
    /// OPTIONAL; one that chains to the CA is an identity, any other only proves its key
    /// ([`crate::key_proof`]). Returns the verifier too, which tells the two apart.
    pub fn https_server_config(
        &self,
    ) -> Result<(Arc<ServerConfig>, Arc<ClientKeyVerifier>), CaError> {
        let ca = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .allow_unauthenticated()
            .build()?;
        let verifier = Arc::new(ClientKeyVerifier::new(ca, self.clock.clone()));
        Ok((self.server_config(verifier.clone())?, verifier))
    }

    /// TLS 1.3 server config for the MQTT front: client certificate REQUIRED, chained to the CA.
    pub fn mqtt_server_config(&self) -> Result<Arc<ServerConfig>, CaError> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots()?, provider()).build()?;
        self.server_config(verifier)
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, CaError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone())?;
        Ok(Arc::new(roots))
    }

    fn server_config(
        &self,
        verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    ) -> Result<Arc<ServerConfig>, CaError> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        let config = ServerConfig::builder_with_details(provider(), Arc::new(self.clock.clone()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.server_chain.clone(), key)?;
        Ok(Arc::new(config))
    }
}

/// The CN of a peer certificate (the user id), if it parses.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = x509.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

fn ca_params() -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Sotto service CA");
    dn.push(DnType::OrganizationName, "Sotto");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial()?);
    set_validity(&mut params, CA_VALIDITY, SystemTime::now());
    Ok(params)
}

/// The names every server certificate carries.
pub const DEFAULT_SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The subject alternative names of the server certificate: the defaults and `extra`, each
/// checked (a DNS name rustls accepts, or an IP address) and lowercased, sorted, without repeats.
fn server_sans(extra: &[String]) -> Result<Vec<String>, CaError> {
    let mut names = std::collections::BTreeSet::new();
    for name in DEFAULT_SERVER_NAMES
        .iter()
        .map(|n| (*n).to_owned())
        .chain(extra.iter().cloned())
    {
        let name = name.trim().to_ascii_lowercase();
        let name = match name.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => {
                let valid = !name.contains('*')
                    && !name.ends_with('.')
                    && rustls::pki_types::DnsName::try_from(name.as_str()).is_ok();
                if !valid {
                    return Err(CaError::BadServerName(name));
                }
                name
            }
        };
        names.insert(name);
    }
    Ok(names.into_iter().collect())
}

/// The DNS and IP names of a PEM certificate, as [`server_sans`] writes them.
fn sans_of_pem(pem: &str) -> Option<Vec<String>> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, x509) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let san = x509.subject_alternative_name().ok()??;
    let mut names = std::collections::BTreeSet::new();
    for name in &san.value.general_names {
        match name {
            x509_parser::extensions::GeneralName::DNSName(d) => {
                names.insert(d.to_ascii_lowercase());
            }
            x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*bytes).ok()?),
                    16 => std::net::IpAddr::from(<[u8; 16]>::try_from(*bytes).ok()?),
                    _ => return None,
                };
                names.insert(ip.to_string());
            }
            _ => {}
        }
    }
    Some(names.into_iter().collect())
}

fn server_params(names: &[String]) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    set_validity(&mut params, SERVER_VALIDITY, SystemTime::now());
    Ok(params)
}

/// Validity from the start of the current UTC day, minus [`BACKDATE`], to the start of the UTC
/// day after `validity` from now: a certificate's dates, and what the directory records of them,
/// name only days, never the moment of a signup or a renewal (Req1).
fn set_validity(params: &mut CertificateParams, validity: Duration, now: SystemTime) {
    let day = Duration::from_secs(24 * 3600);
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let today = SystemTime::UNIX_EPOCH
        + Duration::from_secs(since_epoch.as_secs() - since_epoch.as_secs() % day.as_secs());
    params.not_before = (today - BACKDATE).into();
    params.not_after = (today + validity + day).into();
}

/// A positive 16-byte serial number from the OS random source (ring's `SystemRandom`).
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| CaError::Random)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn spki_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, CaError> {
    let (_, x509) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| CaError::Malformed {
            what: "CA certificate",
        })?;
    Ok(x509.public_key().raw.to_vec())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_owned(),
        source,
    }
}

fn check_private(path: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(io_err(path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(CaError::KeyPermissions {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Writes a private file with mode 0600 (created with that mode, never world-readable in between).
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), CaError> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(contents.as_bytes()).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

fn write_public(path: &Path, contents: &str) -> Result<(), CaError> {
    fs::write(path, contents).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pki_is_shareable_across_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Pki>();
    }

    #[test]
    fn tls1_ca_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Pki::load_or_create(dir.path()).expect("create");
        let b = Pki::load_or_create(dir.path()).expect("reload");
        assert_eq!(a.ca_fingerprint(), b.ca_fingerprint());
        assert_eq!(a.ca_fingerprint().len(), 64);
        assert_eq!(a.server_cert_pem(), b.server_cert_pem());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("ca.key"))
            .expect("ca.key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(format!("{a:?}").contains(&a.ca_fingerprint()));
    }

    /// The server certificate names what devices reach the service by; another set of names
    /// replaces it (the CA stays); a name that is neither a host name nor an address is refused.
    #[test]
    fn tls1_the_server_certificate_names_the_service() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["Chat.Example".to_owned(), "192.0.2.7".to_owned()];
        let a = Pki::load_or_create_for(dir.path(), &names).expect("create");
        let sans = sans_of_pem(a.server_cert_pem()).expect("SANs");
        assert_eq!(
            sans,
            ["127.0.0.1", "192.0.2.7", "::1", "chat.example", "localhost"]
        );
        let b = Pki::load_or_create_for(dir.path(), &names).expect("reload");
        assert_eq!(
            a.server_cert_pem(),
            b.server_cert_pem(),
            "same names, same certificate"
        );
        let c = Pki::load_or_create(dir.path()).expect("defaults again");
        assert_ne!(
            a.server_cert_pem(),
            c.server_cert_pem(),
            "other names, new certificate"
        );
        assert_eq!(a.ca_fingerprint(), c.ca_fingerprint(), "the CA stays");
        assert_eq!(
            sans_of_pem(c.server_cert_pem()).expect("SANs"),
            ["127.0.0.1", "::1", "localhost"]
        );
        for bad in ["*.example", "chat example", "", "chat.example."] {
            assert!(
                matches!(
                    Pki::load_or_create_for(dir.path(), &[bad.to_owned()]),
                    Err(CaError::BadServerName(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tls1_group_readable_ca_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        Pki::load_or_create(dir.path()).expect("create");
        fs::set_permissions(dir.path().join("ca.key"), fs::Permissions::from_mode(0o644))
            .expect("chmod");
        assert!(matches!(
            Pki::load_or_create(dir.path()),
            Err(CaError::KeyPermissions { .. })
        ));
    }

    /// A device's TLS key, as a client makes it (`sotto-testkit`).
    fn generate_device_key() -> sotto_testkit::mqtt::DeviceTlsKey {
        sotto_testkit::mqtt::DeviceTlsKey::generate()
    }

    /// The device side of TLS-1 (`sotto-client`).
    fn client_config(
        ca_pem: &str,
        identity: Option<(&str, &str)>,
    ) -> sotto_client::Result<Arc<rustls::ClientConfig>> {
        sotto_client::tls::client_config(ca_pem, identity)
    }

    #[test]
    fn tls1_client_cert_has_user_id_as_cn_and_works_in_client_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("create");
        let device = generate_device_key();
        let pem = pki
            .issue_client_cert("abcdefghijklmnop", &device.spki_der)
            .expect("issue");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem");
        assert_eq!(common_name(&der).as_deref(), Some("abcdefghijklmnop"));
        client_config(pki.ca_pem(), Some((&pem, &device.key_pem))).expect("client config");
        client_config(pki.ca_pem(), None).expect("client config");
        pki.https_server_config().expect("https");
        pki.mqtt_server_config().expect("mqtt");
        assert!(!format!("{device:?}").contains("PRIVATE"));
    }

    #[test]
    fn tls1_ed25519_device_key_is_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("create");
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519");
        pki.issue_client_cert("abcdefghijklmnop", &key.subject_public_key_info())
            .expect("issue");
    }

    #[test]
    fn tls1_bad_inputs_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("create");
        let device = generate_device_key();
        assert!(matches!(
            pki.issue_client_cert("abcdefghijklmnop", b"garbage"),
            Err(CaError::UnsupportedKey)
        ));
        assert!(matches!(
            pki.issue_client_cert("abcdefghijklmnop", &[0u8; 600]),
            Err(CaError::UnsupportedKey)
        ));
        assert!(matches!(
            pki.issue_client_cert("a/b", &device.spki_der),
            Err(CaError::InvalidUserId)
        ));
        assert!(matches!(
            pki.issue_client_cert("", &device.spki_der),
            Err(CaError::InvalidUserId)
        ));
    }

    #[test]
    fn tls1_handshake_in_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::load_or_create(dir.path()).expect("create");
        let device = generate_device_key();
        let pem = pki
            .issue_client_cert("abcdefghijklmnop", &device.spki_der)
            .expect("issue");
        let client = client_config(pki.ca_pem(), Some((&pem, &device.key_pem))).expect("client");
        let server = pki.mqtt_server_config().expect("server");
        let mut c = rustls::ClientConnection::new(client, "localhost".try_into().expect("name"))
            .expect("client conn");
        let mut s = rustls::ServerConnection::new(server).expect("server conn");
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).expect("write");
            s.read_tls(&mut buf.as_slice()).expect("read");
            s.process_new_packets().expect("server process");
            let mut buf = Vec::new();
            s.write_tls(&mut buf).expect("write");
            c.read_tls(&mut buf.as_slice()).expect("read");
            c.process_new_packets().expect("client process");
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
        }
        assert!(!s.is_handshaking());
        let peer = s.peer_certificates().expect("peer certs");
        assert_eq!(common_name(&peer[0]).as_deref(), Some("abcdefghijklmnop"));
        assert_eq!(s.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    }
}
