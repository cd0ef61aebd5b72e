//! The account: one device's keys and state in its encrypted store, its TLS credentials, and the
//! operations that need no broker (signup, contacts, groups, sealing messages into the outbox).
//!
//! Every operation follows the store's contract (STORE-3): the core changes the in-memory
//! [`Device`], the store commits that state together with what it concerns, and if the commit
//! fails the device is reloaded from the store so memory never runs ahead of the disk.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rand_core::OsRng;
use sotto_core::keys::OneTimePreKeyPair;
use sotto_core::signup::SignupRequest;
use sotto_core::{Device, Identity, ServerClock, UserId};
use sotto_store::{Setting, Store};
use sotto_wire::membership_api::PrekeyUpload;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::error::Fault;
use crate::error::{BadAnswer, ClientError, Result};
use crate::maintenance::{self, Maintenance, MaintenanceStep};
use crate::membership::MembershipClient;
use crate::tls::NewTlsKey;

/// The service addresses and TLS credentials, as kept in the store's settings.
pub(crate) struct Credentials {
    pub(crate) server_url: String,
    pub(crate) broker: String,
    pub(crate) ca_pem: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: Zeroizing<String>,
    /// The device's name overrides ([`Config::resolve`]; not kept in the store).
    pub(crate) resolve: crate::Resolve,
}

impl core::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Credentials")
            .field("server_url", &self.server_url)
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    fn load(store: &Store, resolve: crate::Resolve) -> Result<Credentials> {
        let text = |s: Setting, name: &'static str| -> Result<Zeroizing<String>> {
            store.setting_text(s)?.ok_or(ClientError::NoAccount(name))
        };
        Ok(Credentials {
            server_url: text(Setting::ServerUrl, "server_url")?.to_string(),
            broker: text(Setting::BrokerAddress, "broker_address")?.to_string(),
            ca_pem: text(Setting::CaPem, "ca_pem")?.to_string(),
            cert_pem: text(Setting::CertificatePem, "certificate_pem")?.to_string(),
            key_pem: text(Setting::TlsKeyPem, "tls_key_pem")?,
            resolve,
        })
    }

    fn save(&self, store: &mut Store) -> Result<()> {
        store.set_setting(Setting::ServerUrl, self.server_url.as_bytes())?;
        store.set_setting(Setting::BrokerAddress, self.broker.as_bytes())?;
        store.set_setting(Setting::CaPem, self.ca_pem.as_bytes())?;
        store.set_setting(Setting::CertificatePem, self.cert_pem.as_bytes())?;
        store.set_setting(Setting::TlsKeyPem, self.key_pem.as_bytes())?;
        Ok(())
    }

    /// A membership client presenting the device certificate (TLS-1).
    pub(crate) fn membership(&self) -> Result<MembershipClient> {
        MembershipClient::resolving(
            &self.server_url,
            &self.ca_pem,
            Some((&self.cert_pem, &self.key_pem)),
            &self.resolve,
        )
    }
}

/// A device's account: its encrypted store, the protocol state, the TLS credentials and the
/// server clock (TIME-1). See the crate documentation for the flow.
///
/// Nothing of it is reachable from outside but through its methods: no private key, no store
/// handle (the `test-utils` feature adds read access for conformance runs).
pub struct Client {
    pub(crate) store: Store,
    pub(crate) device: Device,
    pub(crate) clock: ServerClock,
    pub(crate) creds: Credentials,
    pub(crate) config: Config,
    pub(crate) rng: OsRng,
    /// A first message met a full replay cache since the last rotation (X3DH-8).
    pub(crate) replay_cache_full: bool,
    /// How far this device's local clock is ahead of the system's, ms: 0 but in tests
    /// (`advance_local_clock`, feature `test-utils`).
    pub(crate) local_ahead_ms: u64,
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("user_id", self.device.user_id())
            .field("store", &self.store)
            .field("creds", &self.creds)
            .finish_non_exhaustive()
    }
}

/// The local clock in ms since the Unix epoch (0 if the clock is before it).
pub(crate) fn local_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Client {
    // ------------------------------------------------------------------ signup and open

    /// Signs up with the membership service at `server_url` (trusting only `ca_pem`, the CA the
    /// operator distributed) and creates the encrypted store at `store_path` (Req1, SIGNUP-1..4),
    /// with the default [`Config`].
    pub async fn signup(
        server_url: &str,
        ca_pem: &str,
        store_path: impl AsRef<Path>,
        passphrase: &[u8],
    ) -> Result<Client> {
        Client::signup_with(
            server_url,
            ca_pem,
            store_path,
            passphrase,
            Config::default(),
        )
        .await
    }

    /// [`Client::signup`] with a [`Config`] (kept for as long as the account is open, like
    /// [`Client::open_with`]).
    ///
    /// 1. a challenge and the difficulty from the service (SIGNUP-3);
    /// 2. a TLS key pair (ECDSA P-256, KEY-6), the identity, signed prekey 1 and one-time prekeys;
    /// 3. the signup request with its proof of work (on a blocking thread);
    /// 4. the store, with the certificate, TLS key, pinned CA, broker address and time offset;
    /// 5. a check of the certificate against the directory (prekey count, refilled if low);
    /// 6. optionally a first connection, so the broker keeps the inbox (BROKER-4).
    pub async fn signup_with(
        server_url: &str,
        ca_pem: &str,
        store_path: impl AsRef<Path>,
        passphrase: &[u8],
        config: Config,
    ) -> Result<Client> {
        config.check()?;
        let path: PathBuf = store_path.as_ref().to_owned();
        if passphrase.is_empty() {
            return Err(sotto_store::StoreError::EmptyPassphrase.into());
        }
        if path.exists() {
            return Err(sotto_store::StoreError::AlreadyExists.into());
        }
        // The signup's connection proves the device holds the TLS key it asks a certificate for.
        let NewTlsKey {
            key_pem,
            spki,
            proof_pem: proof,
        } = NewTlsKey::generate()?;
        let anonymous = MembershipClient::resolving(
            server_url,
            ca_pem,
            Some((&proof, &key_pem)),
            &config.resolve,
        )?;
        let (challenge, difficulty) = anonymous.challenge().await?;

        let opk_count = config.signup_one_time_prekeys;
        let (identity, spk, opks, request) = tokio::task::spawn_blocking(move || {
            let mut rng = OsRng;
            let identity = Identity::generate(&mut rng);
            let spk = identity.new_signed_prekey(&mut rng, 1);
            let mut opks = Vec::with_capacity(opk_count);
            for id in 1..=opk_count {
                let id = u32::try_from(id).map_err(|_| ClientError::Invalid("prekey id"))?;
                opks.push(OneTimePreKeyPair::generate(&mut rng, id)?);
            }
            let publics: Vec<_> = opks.iter().map(|o| *o.public()).collect();
            let request = SignupRequest::build(
                &identity,
                &spki,
                spk.public(),
                &publics,
                &challenge,
                difficulty,
            )?;
            Ok::<_, ClientError>((identity, spk, opks, request))
        })
        .await
        .map_err(|_| ClientError::Task)??;

        let response = anonymous.signup(&request.to_bytes()).await?;
        let mut clock = ServerClock::new();
        clock.observe(response.server_time_ms, local_ms());
        let user_id = UserId::parse(&response.user_id)
            .map_err(|_| ClientError::BadAnswer(BadAnswer::UserId))?;
        let mut device = Device::from_keys(user_id, identity, spk);
        for opk in opks {
            device.insert_one_time_prekey(opk);
        }
        let now = clock.now(local_ms());
        let kdf = config.kdf;
        let pass = Zeroizing::new(passphrase.to_vec());
        let resend = config.resend;
        let (store, device) = tokio::task::spawn_blocking(move || {
            let mut store = Store::create_with_params(&path, &pass, &device, now, kdf)?;
            store.set_backoff(resend);
            Ok::<_, ClientError>((store, device))
        })
        .await
        .map_err(|_| ClientError::Task)??;
        let creds = Credentials {
            server_url: server_url.to_owned(),
            broker: response.broker,
            ca_pem: response.ca_pem,
            cert_pem: response.certificate_pem,
            key_pem,
            resolve: config.resolve.clone(),
        };
        let establish_inbox = config.establish_inbox;
        let low_water = config.prekey_low_water;
        let mut client = Client {
            store,
            device,
            clock,
            creds,
            config,
            rng: OsRng,
            replay_cache_full: false,
            local_ahead_ms: 0,
        };
        client.creds.save(&mut client.store)?;
        client.store.set_time_offset(client.clock.offset_ms())?;
        // What the signup did counts as the first maintenance (crate::maintenance).
        for setting in [
            Setting::TimeRefreshedAt,
            Setting::SignedPrekeyMadeAt,
            Setting::PrekeysCheckedAt,
        ] {
            client.store.set_time_setting(setting, now)?;
        }
        tracing::info!(user = %client.user_id(), "signed up");

        client.refill_prekeys(low_water).await?;
        if let Some(wait) = establish_inbox {
            if let Err(e) = client.sync(wait).await {
                tracing::warn!(error = %e, "could not establish the inbox session after signup");
            }
        }
        Ok(client)
    }

    /// Opens the account in the store at `store_path` (STORE-1, STORE-2: a wrong passphrase is
    /// `ClientError::Store(StoreError::WrongPassphrase)` and changes nothing), with the default
    /// [`Config`].
    pub async fn open(store_path: impl AsRef<Path>, passphrase: &[u8]) -> Result<Client> {
        Client::open_with(store_path, passphrase, Config::default()).await
    }

    /// [`Client::open`] with a [`Config`].
    pub async fn open_with(
        store_path: impl AsRef<Path>,
        passphrase: &[u8],
        config: Config,
    ) -> Result<Client> {
        config.check()?;
        let path = store_path.as_ref().to_owned();
        let pass = Zeroizing::new(passphrase.to_vec());
        let (store, device) = tokio::task::spawn_blocking(move || {
            let store = Store::open(&path, &pass)?;
            let device = store.load_device()?;
            Ok::<_, ClientError>((store, device))
        })
        .await
        .map_err(|_| ClientError::Task)??;
        let mut store = store;
        store.set_backoff(config.resend);
        let creds = Credentials::load(&store, config.resolve.clone())?;
        let clock = ServerClock::with_offset(store.time_offset()?.unwrap_or(0));
        Ok(Client {
            store,
            device,
            clock,
            creds,
            config,
            rng: OsRng,
            replay_cache_full: false,
            local_ahead_ms: 0,
        })
    }

    // ------------------------------------------------------------------ accessors

    /// This device's user id (ID-1).
    pub fn user_id(&self) -> UserId {
        *self.device.user_id()
    }

    /// The encrypted store (messages, contacts, outbox), read-only. For conformance runs and
    /// tests only (feature `test-utils`).
    #[cfg(feature = "test-utils")]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The protocol state, read-only. For conformance runs and tests only (feature
    /// `test-utils`): it holds the private keys.
    #[cfg(feature = "test-utils")]
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Fills the first-message replay cache with `n` synthetic entries and commits them, as an
    /// account that accepted that many first messages (feature `test-utils`; for the benchmark of
    /// the commit cost with a full cache).
    #[cfg(feature = "test-utils")]
    pub fn fill_replay_cache(&mut self, n: usize) -> Result<()> {
        self.mutate(
            |d, _, _| Ok(d.fill_replay_cache(n)?),
            |s, d, _, now| Ok(s.commit_device(d, now, &[])?),
        )
    }

    /// The configuration this account was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The membership service URL this account signed up with.
    pub fn server_url(&self) -> &str {
        &self.creds.server_url
    }

    /// The broker address (`host:port`) the service named at signup.
    pub fn broker_address(&self) -> &str {
        &self.creds.broker
    }

    /// The server-corrected time, ms (TIME-1).
    pub fn now(&self) -> u64 {
        self.clock.now(self.local())
    }

    /// The device's local clock, ms.
    fn local(&self) -> u64 {
        local_ms().saturating_add(self.local_ahead_ms)
    }

    /// Moves this device's local clock `by` ahead, as days passing would (feature `test-utils`;
    /// with the service's clock moved alike, a test lives through months in seconds).
    #[cfg(feature = "test-utils")]
    pub fn advance_local_clock(&mut self, by: std::time::Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.local_ahead_ms = self.local_ahead_ms.saturating_add(ms);
    }

    /// Closes the store.
    pub fn close(self) -> Result<()> {
        Ok(self.store.close()?)
    }

    // ------------------------------------------------------------------ state changes (STORE-3)

    /// Runs `op` on the device, then `commit`; on any error the device is reloaded from the store.
    pub(crate) fn mutate<T>(
        &mut self,
        op: impl FnOnce(&mut Device, &mut OsRng, u64) -> Result<T>,
        commit: impl FnOnce(&mut Store, &mut Device, &T, u64) -> Result<()>,
    ) -> Result<T> {
        let now = self.now();
        let result = op(&mut self.device, &mut self.rng, now)
            .and_then(|t| commit(&mut self.store, &mut self.device, &t, now).map(|()| t));
        if result.is_err() {
            self.reload()?;
        }
        result
    }

    /// Drops the in-memory device and reloads the last committed one.
    pub(crate) fn reload(&mut self) -> Result<()> {
        self.device = self.store.load_device()?;
        Ok(())
    }

    /// Records the server time of the last membership response (TIME-1).
    pub(crate) fn observe(&mut self, membership: &MembershipClient) -> Result<()> {
        if let Some(t) = membership.last_server_time_ms() {
            self.clock.observe(t, self.local());
            self.store.set_time_offset(self.clock.offset_ms())?;
        }
        Ok(())
    }

    // ------------------------------------------------------------------ prekeys

    /// Asks the directory how many one-time prekeys are left and, below `min`, generates and
    /// uploads enough to reach LIM-15 (the new private keys are committed before the upload).
    /// Returns the count in the directory afterwards.
    pub async fn refill_prekeys(&mut self, min: u32) -> Result<u32> {
        let (left, uploaded) = self.refill(min).await?;
        Ok(left.saturating_add(uploaded))
    }

    /// [`Client::refill_prekeys`], returning (the count before, how many were uploaded).
    async fn refill(&mut self, min: u32) -> Result<(u32, u32)> {
        let membership = self.creds.membership()?;
        let left = membership.prekey_count().await;
        self.observe(&membership)?;
        let left = left?;
        if left >= min {
            return Ok((left, 0));
        }
        let max = u32::try_from(sotto_core::limits::MAX_OPK_UPLOAD).unwrap_or(u32::MAX);
        let n = usize::try_from(max.saturating_sub(left)).unwrap_or(0);
        let opks = self.mutate(
            |d, rng, _| Ok(d.generate_one_time_prekeys(rng, n)?),
            |s, d, _, now| Ok(s.commit_device(d, now, &[])?),
        )?;
        let upload = PrekeyUpload::new(None, opks)?;
        membership.upload_prekeys(&upload).await?;
        self.observe(&membership)?;
        tracing::debug!(uploaded = n, "one-time prekeys uploaded");
        Ok((left, u32::try_from(n).unwrap_or(0)))
    }

    /// Rotates the signed prekey (KEY-3; the core keeps LIM-9 of them for first messages in
    /// flight) and uploads the new one; the new private key is committed before the upload.
    pub async fn rotate_signed_prekey(&mut self) -> Result<()> {
        let membership = self.creds.membership()?;
        let spk = self.mutate(
            |d, rng, _| {
                d.rotate_signed_prekey(rng)?;
                Ok(*d.bundle(None)?.signed_prekey())
            },
            |s, d, _, now| Ok(s.commit_device(d, now, &[])?),
        )?;
        let upload = PrekeyUpload::new(Some(spk), Vec::new())?;
        let sent = membership.upload_prekeys(&upload).await;
        self.observe(&membership)?;
        sent?;
        tracing::debug!("signed prekey rotated");
        Ok(())
    }

    /// Asks the membership service for its time and keeps the offset (TIME-1).
    pub async fn refresh_time(&mut self) -> Result<i64> {
        let membership = self.creds.membership()?;
        let local_before = self.local();
        let server = membership.time().await?;
        let local_after = self.local();
        // The server read its clock somewhere in between: take the midpoint.
        let local = local_before + local_after.saturating_sub(local_before) / 2;
        self.clock.observe(server, local);
        self.store.set_time_offset(self.clock.offset_ms())?;
        Ok(self.clock.offset_ms())
    }

    /// A new TLS key and a certificate for it (`POST /v1/renew`, signed with the identity key,
    /// over a connection that proves the new key: SIGNUP-4), the key and the certificate replaced
    /// together in the store. The old certificate is revoked by the service: connections open
    /// with it stay, new ones use the new one. Returns the new certificate's `notAfter`, ms.
    pub async fn renew_certificate(&mut self) -> Result<u64> {
        let NewTlsKey {
            key_pem,
            spki,
            proof_pem: proof,
        } = NewTlsKey::generate()?;
        let membership = MembershipClient::resolving(
            &self.creds.server_url,
            &self.creds.ca_pem,
            Some((&proof, &key_pem)),
            &self.creds.resolve,
        )?;
        let request =
            sotto_wire::membership_api::RenewRequest::by_device(&self.device, &spki, self.now())?;
        let answer = membership.renew(&request).await;
        self.observe(&membership)?;
        let answer = answer?;
        let expires_at = certificate_expiry(&answer.certificate_pem)
            .ok_or(ClientError::BadAnswer(BadAnswer::Malformed))?;
        self.store.set_settings(&[
            (Setting::CertificatePem, answer.certificate_pem.as_bytes()),
            (Setting::TlsKeyPem, key_pem.as_bytes()),
        ])?;
        self.creds.cert_pem = answer.certificate_pem;
        self.creds.key_pem = key_pem;
        tracing::info!("certificate renewed");
        Ok(expires_at)
    }

    /// Runs every maintenance step due now ([`crate::maintenance`]; nothing when
    /// [`Config::maintenance`] is `None`) and says what each did. A failed step is reported and
    /// due again next time; after a network failure the steps left wait for next time too.
    pub async fn maintain(&mut self) -> Vec<Maintenance> {
        let Some(policy) = self.config.maintenance else {
            return Vec::new();
        };
        let now = self.now();
        let record = match self.maintenance_record() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the maintenance record");
                return Vec::new();
            }
        };
        let due = maintenance::due(&policy, &record, now);
        let mut done = Vec::new();
        let steps = [
            (due.refresh_time, MaintenanceStep::RefreshTime),
            (due.renew_certificate, MaintenanceStep::RenewCertificate),
            (
                due.rotate_signed_prekey,
                MaintenanceStep::RotateSignedPrekey,
            ),
            (due.check_prekeys, MaintenanceStep::CheckPrekeys),
        ];
        for (_, step) in steps.into_iter().filter(|(is_due, _)| *is_due) {
            match self.maintenance_step(step).await {
                Ok(m) => done.push(m),
                Err(e) => {
                    tracing::warn!(?step, error = %e, "maintenance step failed");
                    let network = e.fault() == Fault::Network;
                    done.push(Maintenance::Failed {
                        step,
                        fault: e.fault(),
                        retryable: e.is_retryable(),
                    });
                    if network {
                        break;
                    }
                }
            }
        }
        done
    }

    async fn maintenance_step(&mut self, step: MaintenanceStep) -> Result<Maintenance> {
        let done = match step {
            MaintenanceStep::RefreshTime => {
                let offset_ms = self.refresh_time().await?;
                let now = self.now();
                self.store.set_time_setting(Setting::TimeRefreshedAt, now)?;
                Maintenance::TimeRefreshed { offset_ms }
            }
            MaintenanceStep::RenewCertificate => Maintenance::CertificateRenewed {
                expires_at: self.renew_certificate().await?,
            },
            MaintenanceStep::RotateSignedPrekey => {
                self.rotate_signed_prekey().await?;
                let now = self.now();
                self.store
                    .set_time_setting(Setting::SignedPrekeyMadeAt, now)?;
                self.replay_cache_full = false;
                Maintenance::SignedPrekeyRotated
            }
            MaintenanceStep::CheckPrekeys => {
                let (in_directory, uploaded) = self.refill(self.config.prekey_low_water).await?;
                let now = self.now();
                self.store
                    .set_time_setting(Setting::PrekeysCheckedAt, now)?;
                Maintenance::PrekeysChecked {
                    in_directory,
                    uploaded,
                }
            }
        };
        Ok(done)
    }

    /// What the store recorded of the last maintenance.
    fn maintenance_record(&self) -> Result<maintenance::Record> {
        Ok(maintenance::Record {
            time_refreshed_at: self.store.time_setting(Setting::TimeRefreshedAt)?,
            certificate_expires_at: certificate_expiry(&self.creds.cert_pem),
            signed_prekey_made_at: self.store.time_setting(Setting::SignedPrekeyMadeAt)?,
            prekeys_checked_at: self.store.time_setting(Setting::PrekeysCheckedAt)?,
            replay_cache_full: self.replay_cache_full,
        })
    }
}

/// The `notAfter` of a PEM certificate, ms since the Unix epoch.
fn certificate_expiry(cert_pem: &str) -> Option<u64> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    u64::try_from(cert.validity().not_after.timestamp())
        .ok()?
        .checked_mul(1000)
}
