//! The needles of the wiretap and the search for them: every secret of the scenario in each byte
//! form it could take ([`Needle`]), searched at every byte offset of the MQTT packets, the HTTP
//! records and the server's files. A hit is a finding (`"<kind> <which> in <where> at offset N"`);
//! the secret itself is never printed.

use sotto_server::broker::front::{TapDirection, TapRecord};
use sotto_server::membership::HttpTapRecord;
use sotto_store::Setting;

use super::WiretapError;
use super::scenario::Person;

/// A secret searched for: what it is, whose it is, and its byte forms (raw, and hex for binary
/// secrets). `Debug` never shows the bytes.
#[derive(Clone)]
pub struct Needle {
    kind: String,
    which: String,
    forms: Vec<(&'static str, Vec<u8>)>,
}

impl std::fmt::Debug for Needle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Needle")
            .field("kind", &self.kind)
            .field("which", &self.which)
            .field(
                "forms",
                &self.forms.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Needle {
    /// A text secret (canary, message text, passphrase, PEM): searched as it is.
    pub fn text(kind: &str, which: &str, bytes: impl Into<Vec<u8>>) -> Needle {
        Needle {
            kind: kind.to_owned(),
            which: which.to_owned(),
            forms: vec![("", bytes.into())],
        }
    }

    /// A binary secret (key, message id): searched raw and as lowercase hex.
    pub fn binary(kind: &str, which: &str, bytes: &[u8]) -> Needle {
        Needle {
            kind: kind.to_owned(),
            which: which.to_owned(),
            forms: vec![
                ("", bytes.to_vec()),
                (" (hex)", hex::encode(bytes).into_bytes()),
            ],
        }
    }

    /// What it is (`canary`, `text`, `identity-key`, ...).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Whose or which (`message 3 A->B`, `A signing`, ...).
    pub fn which(&self) -> &str {
        &self.which
    }
}

/// Every offset of `needle` in `haystack` (every byte offset is tried).
pub(super) fn offsets(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    let Some(&first) = needle.first() else {
        return Vec::new();
    };
    if needle.len() > haystack.len() {
        return Vec::new();
    }
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| w.first() == Some(&first) && *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Searches `haystack` (described by `place`) for every form of every needle: one finding
/// `"<kind> <which> in <place> at offset N"` per hit.
pub fn search(needles: &[Needle], place: &str, haystack: &[u8]) -> Vec<String> {
    let mut findings = Vec::new();
    for n in needles {
        for (form, bytes) in &n.forms {
            for at in offsets(haystack, bytes) {
                findings.push(format!(
                    "{}{form} {} in {place} at offset {at}",
                    n.kind, n.which
                ));
            }
        }
    }
    findings
}

/// Where a recorded packet was: `mqtt packet <i> (conn <c>, <direction>)`.
fn frame_place(index: usize, r: &TapRecord) -> String {
    let direction = match r.direction {
        TapDirection::ClientToBroker { forwarded: true } => "client->broker",
        TapDirection::ClientToBroker { forwarded: false } => "client->front (refused)",
        TapDirection::BrokerToClient => "broker->client",
        TapDirection::FrontToClient => "front->client",
    };
    format!("mqtt packet {index} (conn {}, {direction})", r.conn)
}

/// Searches every recorded MQTT packet (both directions).
pub fn search_frames(needles: &[Needle], frames: &[TapRecord]) -> Vec<String> {
    frames
        .iter()
        .enumerate()
        .flat_map(|(i, r)| search(needles, &frame_place(i, r), &r.packet))
        .collect()
}

/// Searches every recorded HTTP request (target and body) and response body.
pub fn search_http(needles: &[Needle], records: &[HttpTapRecord]) -> Vec<String> {
    let mut findings = Vec::new();
    for r in records {
        match r {
            HttpTapRecord::Request {
                exchange,
                method,
                path,
                body,
            } => {
                findings.extend(search(
                    needles,
                    &format!("http request {exchange} ({method}) target"),
                    path.as_bytes(),
                ));
                findings.extend(search(
                    needles,
                    &format!("http request {exchange} ({method}) body"),
                    body,
                ));
            }
            HttpTapRecord::Response {
                exchange,
                status,
                body,
            } => findings.extend(search(
                needles,
                &format!("http response {exchange} ({status}) body"),
                body,
            )),
        }
    }
    findings
}

/// Every secret of a person the run can know: every secret its device held at any sync
/// (identity and prekey secrets, root, ratchet, chain, message and confirmation keys, nonce
/// seeds, group keys; by class), TLS private key (PEM and DER), store passphrase.
pub(super) fn key_needles(p: &Person) -> Result<Vec<Needle>, WiretapError> {
    let mut needles: Vec<Needle> = p
        .secrets
        .iter()
        .map(|(bytes, (class, label))| {
            Needle::binary(class.name(), &format!("{} {label}", p.name), bytes)
        })
        .collect();
    needles.push(Needle::text(
        "passphrase",
        &format!("{} store", p.name),
        p.passphrase.as_bytes(),
    ));
    let pem = p
        .client
        .store()
        .setting_text(Setting::TlsKeyPem)?
        .ok_or_else(|| WiretapError::Scenario(format!("{} has no TLS key", p.name)))?;
    needles.push(Needle::text(
        "tls-key",
        &format!("{} PEM", p.name),
        pem.as_bytes(),
    ));
    let der = pem_body(&pem)
        .filter(|der| der.first() == Some(&0x30))
        .ok_or_else(|| WiretapError::Scenario(format!("{}'s TLS key is not PEM", p.name)))?;
    needles.push(Needle::binary("tls-key", &format!("{} DER", p.name), &der));
    Ok(needles)
}

/// The decoded base64 body of a one-block PEM text.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.trim().chars())
        .collect();
    base64_decode(&b64)
}

/// Standard base64 with padding (RFC 4648 section 4).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::{base64_decode, offsets, pem_body};

    #[test]
    fn base64_and_pem_decode() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("aGVsbG8h").as_deref(), Some(&b"hello!"[..]));
        assert_eq!(base64_decode("a?=="), None);
        let pem = "-----BEGIN PRIVATE KEY-----\nMAECAw==\n-----END PRIVATE KEY-----\n";
        assert_eq!(pem_body(pem), Some(vec![0x30, 0x01, 0x02, 0x03]));
    }

    #[test]
    fn every_offset_is_found() {
        assert_eq!(offsets(b"abababa", b"aba"), [0, 2, 4]);
        assert!(offsets(b"ab", b"abc").is_empty());
        assert!(offsets(b"abc", b"").is_empty());
    }
}
