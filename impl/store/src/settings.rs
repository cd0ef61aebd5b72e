//! Settings (`kv`): where the services are, the device's TLS credentials, the server time offset
//! (TIME-1). They live inside the encrypted file like everything else; the TLS private key is
//! returned in a buffer that is zeroized on drop.

use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};
use crate::store::Store;

/// Largest setting value, bytes.
pub const MAX_SETTING: usize = 64 * 1024;

/// The settings the shells keep.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Setting {
    /// The membership service's URL.
    ServerUrl,
    /// The message broker's address (`host:port`).
    BrokerAddress,
    /// The device's client certificate, PEM (TLS-1).
    CertificatePem,
    /// The device's TLS private key, PEM (TLS-1).
    TlsKeyPem,
    /// The service CA certificate pinned at signup, PEM (TLS-1).
    CaPem,
    /// `server time - local time`, ms (TIME-1): an `i64`, see [`Store::time_offset`].
    TimeOffset,
    /// Server time of the last look at the directory's one-time prekey count (a `u64`,
    /// [`Store::time_setting`]).
    PrekeysCheckedAt,
    /// Server time the current signed prekey was made (a `u64`).
    SignedPrekeyMadeAt,
    /// Server time of the last refresh of [`Setting::TimeOffset`] (a `u64`).
    TimeRefreshedAt,
}

impl Setting {
    /// The key in the `kv` table.
    pub fn key(self) -> &'static str {
        match self {
            Setting::ServerUrl => "server_url",
            Setting::BrokerAddress => "broker_address",
            Setting::CertificatePem => "certificate_pem",
            Setting::TlsKeyPem => "tls_key_pem",
            Setting::CaPem => "ca_pem",
            Setting::TimeOffset => "time_offset_ms",
            Setting::PrekeysCheckedAt => "prekeys_checked_at_ms",
            Setting::SignedPrekeyMadeAt => "signed_prekey_made_at_ms",
            Setting::TimeRefreshedAt => "time_refreshed_at_ms",
        }
    }
}

impl Store {
    /// Sets a setting.
    pub fn set_setting(&mut self, setting: Setting, value: &[u8]) -> Result<()> {
        if value.len() > MAX_SETTING {
            return Err(StoreError::Invalid("setting too long"));
        }
        self.conn.execute(
            "INSERT INTO kv (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![setting.key(), value],
        )?;
        Ok(())
    }

    /// A setting's value, if set.
    pub fn setting(&self, setting: Setting) -> Result<Option<Zeroizing<Vec<u8>>>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM kv WHERE key = ?1",
                [setting.key()],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()?
            .map(Zeroizing::new))
    }

    /// A text setting (URL, address, PEM); a value that is not UTF-8 is `Corrupt`.
    pub fn setting_text(&self, setting: Setting) -> Result<Option<Zeroizing<String>>> {
        match self.setting(setting)? {
            None => Ok(None),
            Some(v) => {
                let s = std::str::from_utf8(&v)
                    .map_err(|_| StoreError::Corrupt("text setting is not UTF-8"))?;
                Ok(Some(Zeroizing::new(s.to_owned())))
            }
        }
    }

    /// Removes a setting; returns whether it was set.
    pub fn remove_setting(&mut self, setting: Setting) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM kv WHERE key = ?1", [setting.key()])?
            == 1)
    }

    /// Saves the server time offset, ms (TIME-1).
    pub fn set_time_offset(&mut self, offset_ms: i64) -> Result<()> {
        self.set_setting(Setting::TimeOffset, &offset_ms.to_be_bytes())
    }

    /// Sets several settings in one transaction: all or none (a new TLS key with its
    /// certificate).
    pub fn set_settings(&mut self, settings: &[(Setting, &[u8])]) -> Result<()> {
        if settings.iter().any(|(_, v)| v.len() > MAX_SETTING) {
            return Err(StoreError::Invalid("setting too long"));
        }
        let tx = self.conn.transaction()?;
        for (setting, value) in settings {
            tx.execute(
                "INSERT INTO kv (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![setting.key(), value],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Sets a time setting (milliseconds, server time).
    pub fn set_time_setting(&mut self, setting: Setting, ms: u64) -> Result<()> {
        self.set_setting(setting, &ms.to_be_bytes())
    }

    /// A time setting, if set.
    pub fn time_setting(&self, setting: Setting) -> Result<Option<u64>> {
        match self.setting(setting)? {
            None => Ok(None),
            Some(v) => {
                let b: [u8; 8] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("time setting"))?;
                Ok(Some(u64::from_be_bytes(b)))
            }
        }
    }

    /// The saved server time offset, ms (TIME-1).
    pub fn time_offset(&self) -> Result<Option<i64>> {
        match self.setting(Setting::TimeOffset)? {
            None => Ok(None),
            Some(v) => {
                let b: [u8; 8] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("time offset"))?;
                Ok(Some(i64::from_be_bytes(b)))
            }
        }
    }
}
