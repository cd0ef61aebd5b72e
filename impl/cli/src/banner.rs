//! The lines `sotto serve` prints on start-up, and their reader. Whoever starts `sotto serve` as a
//! child process (the soak test, the integration tests, a script) waits for the `ready` line and
//! takes the membership URL and the CA file from the lines before it; printing and reading them
//! here keeps the two in step ([`crate::serve_child`] reads them).

use std::fmt::Display;
use std::path::PathBuf;

/// The label of the membership service's URL.
pub const MEMBERSHIP: &str = "membership:";
/// The label of the CA file's path.
pub const CA_FILE: &str = "CA file:";
/// The label of the CA certificate's SHA-256 fingerprint.
pub const CA_SHA256: &str = "CA SHA-256:";
/// The start of the last line: the service is up.
pub const READY: &str = "ready";

/// One labelled start-up line, the values aligned after the labels.
pub fn line(label: &str, value: impl Display) -> String {
    format!("{label:<15} {value}")
}

/// What the start-up lines said, read one line at a time.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Banner {
    /// The membership service's URL.
    pub membership_url: Option<String>,
    /// The CA certificate file.
    pub ca_file: Option<PathBuf>,
    /// The CA certificate's SHA-256 fingerprint.
    pub ca_fingerprint: Option<String>,
}

impl Banner {
    /// Takes one line of `sotto serve`'s output; `true` once it is the `ready` line.
    pub fn read_line(&mut self, line: &str) -> bool {
        let value = |label: &str| {
            line.strip_prefix(label)
                .and_then(|v| v.split_whitespace().next())
                .map(str::to_owned)
        };
        if let Some(v) = value(MEMBERSHIP) {
            self.membership_url = Some(v);
        } else if let Some(v) = value(CA_FILE) {
            self.ca_file = Some(PathBuf::from(v));
        } else if let Some(v) = value(CA_SHA256) {
            self.ca_fingerprint = Some(v);
        } else if line.starts_with(READY) {
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_lines_read_back() {
        let mut banner = Banner::default();
        let printed = [
            line("data directory:", "/srv/sotto"),
            line(MEMBERSHIP, "https://localhost:8443"),
            line(CA_FILE, "/srv/sotto/ca.pem"),
            line(CA_SHA256, "ab12"),
        ];
        for l in &printed {
            assert!(!banner.read_line(l), "{l}");
        }
        assert!(banner.read_line(&format!("{READY}; Ctrl-C stops the service")));
        assert_eq!(
            banner,
            Banner {
                membership_url: Some("https://localhost:8443".to_owned()),
                ca_file: Some(PathBuf::from("/srv/sotto/ca.pem")),
                ca_fingerprint: Some("ab12".to_owned()),
            }
        );
        assert_eq!(printed[1], "membership:     https://localhost:8443");
    }

    #[test]
    fn a_label_without_a_value_is_not_a_value() {
        let mut banner = Banner::default();
        assert!(!banner.read_line(MEMBERSHIP));
        assert_eq!(banner, Banner::default());
    }
}
