//! RFC 4648 base32, lowercase, no padding (NOT-3): user ids (ID-1) and card URIs (CARD-2).

use crate::error::DecodeError;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Encodes `bytes` as lowercase base32 without padding.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().saturating_mul(8).div_ceil(5));
    let mut acc: u16 = 0;
    let mut bits: u32 = 0;
    for &b in bytes {
        acc = (acc << 8) | u16::from(b);
        bits = bits.saturating_add(8);
        while bits >= 5 {
            bits = bits.saturating_sub(5);
            out.push(symbol(acc >> bits));
        }
        acc &= (1u16 << bits).saturating_sub(1);
    }
    if bits > 0 {
        out.push(symbol(acc << (5u32.saturating_sub(bits))));
    }
    out
}

fn symbol(v: u16) -> char {
    char::from(*ALPHABET.get(usize::from(v & 0x1f)).unwrap_or(&b'a'))
}

fn value(c: u8) -> Option<u16> {
    match c {
        b'a'..=b'z' => Some(u16::from(c.wrapping_sub(b'a'))),
        b'A'..=b'Z' => Some(u16::from(c.wrapping_sub(b'A'))),
        b'2'..=b'7' => Some(u16::from(c.wrapping_sub(b'2')).wrapping_add(26)),
        _ => None,
    }
}

/// Decodes base32 in either case; rejects other characters, impossible lengths and non-zero trailing
/// bits.
pub fn decode(text: &str) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(text.len().saturating_mul(5) / 8);
    let mut acc: u16 = 0;
    let mut bits: u32 = 0;
    for &c in text.as_bytes() {
        let v = value(c).ok_or(DecodeError::InvalidBase32)?;
        acc = (acc << 5) | v;
        bits = bits.saturating_add(5);
        if bits >= 8 {
            bits = bits.saturating_sub(8);
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1u16 << bits).saturating_sub(1);
        }
    }
    // A valid encoding leaves fewer than 5 bits, all zero.
    if bits >= 5 || (acc != 0 && !mutated!(Mutation::AllowBase32TrailingBits)) {
        return Err(DecodeError::InvalidBase32);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc4648_known_answers_not_3() {
        for (plain, enc) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(encode(plain.as_bytes()), enc);
            assert_eq!(decode(enc).unwrap(), plain.as_bytes());
            assert_eq!(decode(&enc.to_uppercase()).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn rejects_bad_input_not_3() {
        for bad in ["m", "mzx", "my=", "mz", "m1", "my "] {
            assert_eq!(decode(bad), Err(DecodeError::InvalidBase32), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = decode(&s);
        }
    }
}
