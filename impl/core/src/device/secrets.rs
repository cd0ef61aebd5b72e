//! Every secret a device holds, listed for the wiretap (feature `test-utils` only): the
//! conformance run searches everything the server side saw for each of them, by class.

use super::Device;

/// What kind of secret a [`HeldSecret`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretClass {
    /// The identity's signing seed and DH secret.
    IdentityKey,
    /// Signed and one-time prekey secrets.
    PrekeySecret,
    /// A session's root key.
    RootKey,
    /// A session's current ratchet secret.
    RatchetSecret,
    /// A chain key (pairwise or group).
    ChainKey,
    /// A message key: the next of a chain, or a skipped one kept.
    MessageKey,
    /// A chain's nonce seed.
    NonceSeed,
    /// An epoch's key-confirmation key.
    ConfirmKey,
    /// A key share's master key and random numbers (pairwise epochs keep theirs only as chains;
    /// groups keep their group master key and seeds for the group epoch).
    KeyShare,
}

impl SecretClass {
    /// Every class.
    pub const ALL: [SecretClass; 9] = [
        SecretClass::IdentityKey,
        SecretClass::PrekeySecret,
        SecretClass::RootKey,
        SecretClass::RatchetSecret,
        SecretClass::ChainKey,
        SecretClass::MessageKey,
        SecretClass::NonceSeed,
        SecretClass::ConfirmKey,
        SecretClass::KeyShare,
    ];

    /// The class's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            SecretClass::IdentityKey => "identity-key",
            SecretClass::PrekeySecret => "prekey-secret",
            SecretClass::RootKey => "root-key",
            SecretClass::RatchetSecret => "ratchet-secret",
            SecretClass::ChainKey => "chain-key",
            SecretClass::MessageKey => "message-key",
            SecretClass::NonceSeed => "nonce-seed",
            SecretClass::ConfirmKey => "confirm-key",
            SecretClass::KeyShare => "key-share",
        }
    }
}

/// One secret a device holds, with where it sits.
#[derive(Clone, PartialEq, Eq)]
pub struct HeldSecret {
    /// Its class.
    pub class: SecretClass,
    /// Where in the device it sits (no secret in it).
    pub label: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl core::fmt::Debug for HeldSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeldSecret")
            .field("class", &self.class)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl HeldSecret {
    pub(crate) fn new(class: SecretClass, label: String, bytes: &[u8]) -> HeldSecret {
        HeldSecret {
            class,
            label,
            bytes: bytes.to_vec(),
        }
    }
}

impl Device {
    /// Every secret this device holds now: identity, prekeys, each session's root key, ratchet
    /// secret, chains, confirmation and skipped keys, each group's keys and chains.
    pub fn held_secrets(&self) -> Vec<HeldSecret> {
        let mut out = Vec::new();
        out.push(HeldSecret::new(
            SecretClass::IdentityKey,
            "identity signing seed".to_owned(),
            self.identity.signing().to_seed().expose(),
        ));
        out.push(HeldSecret::new(
            SecretClass::IdentityKey,
            "identity DH secret".to_owned(),
            self.identity.dh().to_bytes().expose(),
        ));
        for spk in &self.spks {
            out.push(HeldSecret::new(
                SecretClass::PrekeySecret,
                format!("signed prekey {}", spk.public().id()),
                spk.secret().to_bytes().expose(),
            ));
        }
        for (id, opk) in self.opks.iter() {
            out.push(HeldSecret::new(
                SecretClass::PrekeySecret,
                format!("one-time prekey {id}"),
                opk.secret().to_bytes().expose(),
            ));
        }
        for (n, s) in self.sessions.iter() {
            s.held_secrets(&format!("session {n}"), &mut out);
        }
        for (n, (_, g)) in self.groups.iter().enumerate() {
            g.held_secrets(&format!("group {n}"), &mut out);
        }
        out
    }
}
