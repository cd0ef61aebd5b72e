//! Name overrides, as `curl --resolve` does: for a host name in the map, connect to the given
//! address instead of asking DNS, and still verify the server's certificate for the *name*.
//! For a server reached by a name that DNS does not (yet) know: a test of a deployment, a LAN
//! without a name server, a name that resolves elsewhere from where the device is.
//!
//! Every connection of a device honours it: HTTPS to the membership service
//! ([`crate::membership::MembershipClient`]), the CA fetch by fingerprint
//! ([`crate::pin::fetch_ca`]) and MQTT to the message service (the online loop).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::error::{ClientError, Result};

/// Host name → address overrides (see the module documentation). Names compare without case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolve {
    names: BTreeMap<String, IpAddr>,
}

impl Resolve {
    /// No overrides: every name goes to DNS.
    pub fn none() -> Resolve {
        Resolve::default()
    }

    /// Adds (or replaces) the override of `name`.
    pub fn insert(&mut self, name: &str, addr: IpAddr) {
        self.names.insert(name.to_ascii_lowercase(), addr);
    }

    /// Parses `NAME=ADDRESS` (the form of `sotto --resolve`), for example
    /// `chat.example=127.0.0.1` or `chat.example=::1`.
    pub fn parse_entry(entry: &str) -> Result<(String, IpAddr)> {
        const BAD: ClientError =
            ClientError::Invalid("a name override is NAME=ADDRESS, e.g. chat.example=127.0.0.1");
        let (name, addr) = entry.split_once('=').ok_or(BAD)?;
        let name = name.trim();
        let addr = addr.trim().trim_start_matches('[').trim_end_matches(']');
        if name.is_empty() || name.parse::<IpAddr>().is_ok() {
            return Err(BAD);
        }
        Ok((name.to_ascii_lowercase(), addr.parse().map_err(|_| BAD)?))
    }

    /// The address `host` goes to instead of DNS, if overridden.
    pub fn lookup(&self, host: &str) -> Option<IpAddr> {
        self.names.get(&host.to_ascii_lowercase()).copied()
    }

    /// Every override, name first.
    pub fn entries(&self) -> impl Iterator<Item = (&str, IpAddr)> {
        self.names.iter().map(|(n, a)| (n.as_str(), *a))
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_look_up_without_case() {
        let (name, addr) = Resolve::parse_entry("Chat.Example=127.0.0.2").expect("entry");
        let mut r = Resolve::none();
        r.insert(&name, addr);
        assert_eq!(
            r.lookup("chat.example"),
            Some("127.0.0.2".parse().expect("ip"))
        );
        assert_eq!(
            r.lookup("CHAT.EXAMPLE"),
            Some("127.0.0.2".parse().expect("ip"))
        );
        assert_eq!(r.lookup("other.example"), None);
        let (_, v6) = Resolve::parse_entry("chat.example=[::1]").expect("v6");
        assert_eq!(v6, "::1".parse::<IpAddr>().expect("ip"));
        for bad in [
            "chat.example",
            "=127.0.0.1",
            "chat.example=",
            "chat.example=not-an-ip",
            "127.0.0.1=127.0.0.2",
        ] {
            assert!(Resolve::parse_entry(bad).is_err(), "{bad}");
        }
    }
}
