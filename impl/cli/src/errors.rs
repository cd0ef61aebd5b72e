//! Errors as the person reads them: what went wrong, then what to do next.
//!
//! Library errors (`ClientError`, `StoreError`) are typed and name the failure without user data;
//! here they get the store path and the command to run next, chosen by matching their variants
//! and codes (never their text). Nothing secret is ever part of a message.

use std::fmt;
use std::path::Path;

use sotto_client::{
    ApiCode, BrokerRefusal, ClientError, CryptoError, GroupError, MisuseError, NetworkFailure,
    ProtocolError, Service, SessionError, StoreError,
};

/// An error with the next step for the person.
#[derive(Debug)]
pub struct Hinted {
    /// What went wrong.
    pub what: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Hinted {}

/// A [`Hinted`] error as `anyhow::Error`.
pub fn hinted(what: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        what: what.into(),
        hint: Some(hint.into()),
    })
}

/// The whole chain, one cause per `: `.
pub fn render(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

/// Explains a client error for a command that works on the store at `store`.
pub fn client(e: ClientError, store: &Path) -> anyhow::Error {
    let shown = store.display();
    let (what, hint): (String, Option<String>) = match &e {
        ClientError::Store(s) => return self::store(s, store, e.to_string()),
        ClientError::Network {
            service,
            failure: NetworkFailure::ServerName,
            cause,
        } => (
            format!("{service} is not known by the name this device used: {cause}"),
            Some(
                "use a name the server's certificate carries (the URL `sotto serve` printed, or \
                 one of its --name), or ask the operator to add this one with `sotto serve --name`"
                    .into(),
            ),
        ),
        ClientError::Network {
            service: Service::Membership,
            failure: NetworkFailure::Tls,
            cause,
        } => (
            format!("the membership service failed the TLS check: {cause}"),
            Some(
                "is the CA the one `sotto serve` printed? (a TLS failure means the CA does not \
                 match)"
                    .into(),
            ),
        ),
        ClientError::Network {
            service: Service::Membership,
            cause,
            ..
        } => (
            format!("could not reach the membership service: {cause}"),
            Some(
                "is `sotto serve` running at that URL? Messages already in the store are not \
                 affected; try again once it is up (a host name DNS does not know can be mapped \
                 with --resolve NAME=ADDRESS)"
                    .into(),
            ),
        ),
        ClientError::Refused { code, .. } => (e.to_string(), refused_hint(*code)),
        ClientError::NoAccount(_) => (
            format!("the store at {shown} has no account"),
            Some("run `sotto signup --server URL --ca CA.pem` to create one".into()),
        ),
        ClientError::IdentityChanged(user) => (
            format!("the identity of {user} in the directory differs from the one you have"),
            Some(format!(
                "`sotto identity {user}` shows both safety numbers; compare the new one with \
                 {user} in person, then `sotto accept {user}`"
            )),
        ),
        ClientError::Network { .. }
        | ClientError::Timeout
        | ClientError::BrokerRefused(BrokerRefusal::ServerUnavailable) => (
            format!("could not reach the message service: {e}"),
            Some(
                "is `sotto serve` running? Your messages stay queued in the store and go out \
                 with the next `sotto send`, `sotto inbox` or `sotto chat`"
                    .into(),
            ),
        ),
        ClientError::BrokerRefused(_) | ClientError::SubscriptionRefused => (
            e.to_string(),
            Some(
                "the broker did not accept this device's certificate: was the server's data \
                 directory (its CA) replaced? Then sign up again with a new store"
                    .into(),
            ),
        ),
        ClientError::Protocol(p) => (e.to_string(), protocol_hint(*p)),
        _ => (e.to_string(), None),
    };
    anyhow::Error::new(Hinted { what, hint })
}

/// What to do about a refusal of the membership service.
fn refused_hint(code: ApiCode) -> Option<String> {
    let hint = match code {
        ApiCode::UnknownUser => "check the user id (16 letters a-z and digits 2-7)",
        ApiCode::Core(ProtocolError::Crypto(CryptoError::InsufficientWork))
        | ApiCode::UnknownChallenge => "try `sotto signup` again",
        ApiCode::Internal | ApiCode::Timeout => "the service had a problem; try again later",
        ApiCode::RateLimited => "the service limits how often this is done; try again later",
        _ => return None,
    };
    Some(hint.to_owned())
}

/// What to do about a refusal of the protocol core.
fn protocol_hint(e: ProtocolError) -> Option<String> {
    let hint = match e {
        ProtocolError::Misuse(MisuseError::UnknownPeer) => {
            "add the person first: `sotto add <card URI or user id>`"
        }
        ProtocolError::Group(GroupError::NotAMember) => {
            "add the person to the group first: `sotto group add GROUP USER_ID`"
        }
        ProtocolError::Session(SessionError::Blocked) => {
            "you blocked this person: `sotto unblock <contact>` lifts it"
        }
        ProtocolError::Group(GroupError::UnknownGroup) => "see your groups with `sotto group list`",
        ProtocolError::Group(GroupError::NotGroupAdmin) => {
            "only the group's admin changes its members (see `sotto group list`; an admin that \
             handed the group over is a member once the new admin's key arrived)"
        }
        ProtocolError::Misuse(MisuseError::AdminMustHandOver) => {
            "hand the group over first: `sotto group handover GROUP USER_ID`; once the new \
             admin's key arrived (`sotto inbox`), `sotto group leave GROUP`"
        }
        _ => return None,
    };
    Some(hint.to_owned())
}

/// Explains why the CA could not be fetched by its fingerprint (`signup --ca-fingerprint`).
pub fn fetch_ca(e: ClientError, url: &str) -> anyhow::Error {
    match e {
        ClientError::Invalid(_) => hinted(
            format!("{url:?} is not an https:// URL"),
            "give the membership URL `sotto serve` printed, e.g. https://localhost:7443",
        ),
        ClientError::FingerprintMismatch => hinted(
            "the server's CA does not have the fingerprint you gave: signup stopped",
            "check the fingerprint with the operator; someone may be in between",
        ),
        ClientError::Network { cause, .. } => hinted(
            format!("cannot fetch the CA from {url}: {cause}"),
            "is `sotto serve` running at that URL?",
        ),
        other => anyhow::Error::new(other),
    }
}

/// Explains a store error.
pub fn store(s: &StoreError, store: &Path, text: String) -> anyhow::Error {
    let shown = store.display();
    let (what, hint) = match s {
        StoreError::WrongPassphrase => (
            format!("the passphrase does not open this store ({shown})"),
            "check SOTTO_PASSPHRASE, or unset it to be asked; the store was not changed".into(),
        ),
        StoreError::NotFound | StoreError::MissingHeader => (
            format!("no store at {shown}"),
            "run `sotto signup --server URL --ca CA.pem` first, or point --store / SOTTO_STORE \
             at your store"
                .to_string(),
        ),
        StoreError::AlreadyExists => (
            format!("a store already exists at {shown}"),
            "use it as it is, or choose another path with --store".to_string(),
        ),
        StoreError::InUse => (
            format!("another process has this store open ({shown})"),
            "a store is used by one sotto at a time: finish the other (for example `sotto chat`) \
             and try again"
                .to_string(),
        ),
        StoreError::EmptyPassphrase => (
            "the passphrase is empty".to_string(),
            "choose a passphrase (SOTTO_PASSPHRASE or the prompt)".to_string(),
        ),
        StoreError::NotAStore(_) | StoreError::Corrupt(_) | StoreError::BadHeader(_) => (
            format!("{text} ({shown})"),
            "restore the store from a backup, or sign up again with a new --store".to_string(),
        ),
        _ => {
            return anyhow::Error::new(Hinted {
                what: format!("{text} ({shown})"),
                hint: None,
            });
        }
    };
    anyhow::Error::new(Hinted {
        what,
        hint: Some(hint),
    })
}
