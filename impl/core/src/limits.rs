//! Every bound of protocol.md section 16 (LIM-1..LIM-18), in one place.

/// LIM-1: largest envelope, in bytes.
pub const MAX_ENVELOPE: usize = 8192;
/// LIM-2: largest text body, in bytes.
pub const MAX_TEXT: usize = 4000;
/// LIM-3: most keys skipped by one message in one chain.
pub const MAX_SKIP: u32 = 1000;
/// LIM-4: most skipped keys kept per session (oldest evicted).
pub const MAX_SKIPPED_PER_SESSION: usize = 2000;
/// LIM-5: lifetime of a skipped key, in milliseconds (14 days).
pub const SKIPPED_KEY_TTL_MS: u64 = 14 * 24 * 3600 * 1000;
/// LIM-6: peer epochs whose receive chains are kept for late messages.
pub const MAX_RECV_EPOCHS: usize = 3;
/// LIM-7: delivered message ids remembered per device.
pub const MAX_DELIVERED_IDS: usize = 4096;
/// LIM-8: replay cache entries per device.
pub const MAX_REPLAY_ENTRIES: usize = 65_536;
/// LIM-9: signed prekeys kept (current and grace).
pub const MAX_SIGNED_PREKEYS: usize = 3;
/// LIM-10: message ids per receipt.
pub const MAX_RECEIPT_IDS: usize = 64;
/// LIM-11: retired epoch tags remembered per session.
pub const MAX_RETIRED_TAGS: usize = 64;
/// LIM-12: envelopes a shell keeps for retry.
pub const MAX_PENDING: usize = 1000;
/// LIM-13: sessions kept per peer.
pub const MAX_SESSIONS_PER_PEER: usize = 3;
/// LIM-14: members of a group.
pub const MAX_GROUP_MEMBERS: usize = 64;
/// LIM-15: one-time prekeys per upload.
pub const MAX_OPK_UPLOAD: usize = 100;
/// LIM-16: TLS SubjectPublicKeyInfo in a signup request, in bytes.
pub const MAX_SPKI: usize = 512;
/// LIM-17: characters of a card URI.
pub const MAX_CARD_URI: usize = 512;
/// LIM-18: groups per device.
pub const MAX_GROUPS: usize = 256;
/// SIGNUP-1: bytes of the service's challenge.
pub const MAX_CHALLENGE: usize = 32;
/// SIGNUP-3: highest proof-of-work difficulty, in bits.
pub const MAX_POW_DIFFICULTY: u8 = 32;

#[cfg(test)]
mod tests {
    #[test]
    fn limits_match_the_spec_lim() {
        let spec = include_str!("../../../docs/protocol.md");
        for (id, value) in [
            ("LIM-1", "8,192"),
            ("LIM-2", "4,000"),
            ("LIM-3", "1,000"),
            ("LIM-4", "2,000"),
            ("LIM-5", "14 days"),
            ("LIM-6", "| 3 |"),
            ("LIM-7", "4,096"),
            ("LIM-8", "65,536"),
            ("LIM-10", "| 64 |"),
            ("LIM-14", "| 64 |"),
            ("LIM-15", "| 100 |"),
            ("LIM-16", "512 bytes"),
            ("LIM-17", "512 characters"),
            ("LIM-18", "| 256 |"),
        ] {
            let line = spec
                .lines()
                .find(|l| l.starts_with(&format!("| **{id}** |")))
                .unwrap_or_default();
            assert!(line.contains(value), "{id}: {line}");
        }
        assert_eq!(super::MAX_ENVELOPE, 8192);
        assert_eq!(super::MAX_SKIP, 1000);
        assert_eq!(super::MAX_DELIVERED_IDS, 4096);
        assert_eq!(super::MAX_REPLAY_ENTRIES, 65_536);
        assert_eq!(
            super::SKIPPED_KEY_TTL_MS,
            1_209_600_000,
            "LIM-5: 14 days in ms"
        );
    }
}
