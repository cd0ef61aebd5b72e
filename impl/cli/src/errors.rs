//! Errors as the person reads them: what went wrong, then what to do next.
//!
//! Library errors (`ClientError`, `StoreError`) name the failure without user data; here they get
//! the store path and the command to run next. Nothing secret is ever part of a message.

use std::fmt;
use std::path::Path;

use sotto_client::ClientError;
use sotto_server::membership::ClientError as MembershipError;
use sotto_store::StoreError;

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
        ClientError::Membership(m) => return membership(m, e.to_string()),
        ClientError::MissingSetting(_) => (
            format!("the store at {shown} has no account"),
            Some("run `sotto signup --server URL --ca CA.pem` to create one".into()),
        ),
        ClientError::IdentityChanged(user) => (
            format!("the identity of {user} in the directory differs from the one you have"),
            Some(format!(
                "compare safety numbers with {user} in person before trusting the new identity"
            )),
        ),
        ClientError::Connection(_) | ClientError::Timeout => (
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
        ClientError::Core(c) => match c.code() {
            "unknown_peer" => (
                e.to_string(),
                Some("add the person first: `sotto add <card URI or user id>`".into()),
            ),
            "not_a_member" => (
                e.to_string(),
                Some("add the person to the group first: `sotto group add GROUP USER_ID`".into()),
            ),
            "unknown_group" => (
                e.to_string(),
                Some("see your groups with `sotto group list`".into()),
            ),
            "not_group_admin" => (
                e.to_string(),
                Some("only the group's admin (its creator) changes its members".into()),
            ),
            _ => (e.to_string(), None),
        },
        _ => (e.to_string(), None),
    };
    anyhow::Error::new(Hinted { what, hint })
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

fn membership(m: &MembershipError, text: String) -> anyhow::Error {
    if let MembershipError::Transport(t) = m
        && (t.is_connect() || t.is_timeout())
    {
        let at = t
            .url()
            .map(|u| format!(" at {}", u.origin().ascii_serialization()))
            .unwrap_or_default();
        // The innermost cause says why (connection refused, timed out, ...); the layers above it
        // repeat the URL.
        let mut cause: &dyn std::error::Error = t;
        while let Some(next) = cause.source() {
            cause = next;
        }
        return anyhow::Error::new(Hinted {
            what: format!("could not reach the membership service{at}: {cause}"),
            hint: Some(
                "is `sotto serve` running at that URL? Messages already in the store are not \
                 affected; try again once it is up"
                    .to_owned(),
            ),
        });
    }
    let hint = match m.code() {
        Some("unknown_user") => Some("check the user id (16 letters a-z and digits 2-7)"),
        Some("insufficient_work" | "unknown_challenge") => Some("try `sotto signup` again"),
        Some(_) => None,
        None => Some(
            "is `sotto serve` running at that URL, and is the CA the one it printed? \
             (a TLS failure means the CA does not match)",
        ),
    };
    anyhow::Error::new(Hinted {
        what: text,
        hint: hint.map(str::to_owned),
    })
}
