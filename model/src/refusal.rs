//! Refusal coverage: which of the model's refusal branches the explored states reach.
//!
//! A safeguard that the attacker never tests is checked by nothing: a broken variant that removes
//! it explores exactly the states of the correct protocol and passes. Every place where an honest
//! device refuses something, or where an attacker's attempt fails, is a [`Refusal`]; the model
//! counts, per branch, the explored transitions (a state and an enabled action) that take it, and
//! `check` prints the counts. The counts are of an exhaustive run: each state's actions are
//! expanded once, whatever the number of threads, so they are deterministic.
//!
//! A branch with no transition in a configuration is listed with the reason in docs/model.md.

use std::sync::atomic::{AtomicU64, Ordering};

/// A refusal branch of the model, named after the rule that refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// KEY-5: a bundle whose `sig_ikd` or `sig_spk` does not verify (`bad_signature`).
    BundleBadSignature,
    /// CARD-4, RX-9: a bundle with another `IKs` for a known user id (`identity_changed`).
    BundleIdentityChanged,
    /// X3DH-8: a first message whose `EK_A` is in the replay cache and that opens nothing
    /// (`replayed_first_message`).
    FirstReplayed,
    /// X3DH-6: a first message for a signed prekey the device does not have
    /// (`unknown_signed_prekey`).
    FirstUnknownPrekey,
    /// X3DH-9: a first message for a one-time prekey already used (`unknown_one_time_prekey`).
    FirstOneTimePrekeyUsed,
    /// X3DH-6: a first message whose identity box or key-share block does not open, or whose
    /// identity does not verify (`bad_signature`, `decrypt_failed`).
    FirstUnopenable,
    /// RX-9: a first message from a known user id with another `IKs` (`identity_changed`).
    FirstIdentityChanged,
    /// RX-2: a data message on a known chain whose key does not open it, or a counter beyond
    /// the epoch (`decrypt_failed`, `counter_out_of_range`).
    DataRefused,
    /// EPOCH-4: an epoch header that does not open or confirm (`decrypt_failed`).
    EpochRefused,
    /// RX-8: an envelope with an unknown routing tag, kept for retry.
    KeptForRetry,
    /// RX-2: a duplicate of a committed message, dropped (and receipted again, RX-6).
    Duplicate,
    /// GRP-4: a group key or removal notice whose membership the session peer did not sign, or
    /// whose first member is not the peer (`not_group_admin`).
    GroupNotSignedByPeer,
    /// GRP-4: a group control for the device's group from someone who is not its admin, without
    /// a valid handover (GRP-12), or a leave to a device that does not administer the group
    /// (GRP-11) (`not_group_admin`).
    GroupNotAdmin,
    /// GRP-4: a group key whose membership does not list the receiver (`not_a_member`), or a
    /// removal notice that does; GRP-11: a leave from a member under another `IKs`.
    GroupNotMember,
    /// GRP-4: a group key or notice for an epoch the device already passed, or a group key to a
    /// device that left and has no removal notice yet (GRP-11); a leave naming an epoch the
    /// admin does not have (`stale_group_epoch`).
    GroupStale,
    /// GRP-7: a group message that does not open, whose signature or header does not match
    /// (`bad_signature`, `decrypt_failed`).
    GroupMessageRefused,
    /// GRP-12: a handover, or a handed-over group key from someone who is not the admin held,
    /// whose handover is not from the admin held, names another member or `IKs`, or is of
    /// another epoch (`not_group_admin`, `not_a_member`, `stale_group_epoch`, `bad_signature`).
    GroupHandoverRefused,
}

impl Refusal {
    /// Every branch, in the order `check` prints them.
    pub const ALL: [Refusal; 17] = [
        Refusal::BundleBadSignature,
        Refusal::BundleIdentityChanged,
        Refusal::FirstReplayed,
        Refusal::FirstUnknownPrekey,
        Refusal::FirstOneTimePrekeyUsed,
        Refusal::FirstUnopenable,
        Refusal::FirstIdentityChanged,
        Refusal::DataRefused,
        Refusal::EpochRefused,
        Refusal::KeptForRetry,
        Refusal::Duplicate,
        Refusal::GroupNotSignedByPeer,
        Refusal::GroupNotAdmin,
        Refusal::GroupNotMember,
        Refusal::GroupStale,
        Refusal::GroupMessageRefused,
        Refusal::GroupHandoverRefused,
    ];

    /// The rule and the error name, in one line.
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::BundleBadSignature => "KEY-5 bundle signature does not verify",
            Refusal::BundleIdentityChanged => "CARD-4 RX-9 bundle with another IKs for a known id",
            Refusal::FirstReplayed => "X3DH-8 replayed first message",
            Refusal::FirstUnknownPrekey => "X3DH-6 first message for an unknown signed prekey",
            Refusal::FirstOneTimePrekeyUsed => "X3DH-9 first message for a used one-time prekey",
            Refusal::FirstUnopenable => "X3DH-6 first message does not open or verify",
            Refusal::FirstIdentityChanged => "RX-9 first message with another IKs for a known id",
            Refusal::DataRefused => "RX-2 data message does not open on its chain",
            Refusal::EpochRefused => "EPOCH-4 epoch header does not open or confirm",
            Refusal::KeptForRetry => "RX-8 unknown routing tag, kept for retry",
            Refusal::Duplicate => "RX-2 duplicate dropped",
            Refusal::GroupNotSignedByPeer => "GRP-4 membership not signed by the session peer",
            Refusal::GroupNotAdmin => "GRP-4 group control from a member who is not the admin",
            Refusal::GroupNotMember => "GRP-4 group key not listing the receiver",
            Refusal::GroupStale => "GRP-4 group key or notice of a passed epoch",
            Refusal::GroupMessageRefused => "GRP-7 group message does not open or verify",
            Refusal::GroupHandoverRefused => {
                "GRP-12 handover not from the admin held, for another member, or stale"
            }
        }
    }

    fn ix(self) -> usize {
        Refusal::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every refusal is in ALL")
    }
}

/// Per-branch counters, shared by the checker threads.
#[derive(Debug, Default)]
pub struct Counters([AtomicU64; Refusal::ALL.len()]);

impl Counters {
    /// Counts one transition taking the branch.
    pub fn hit(&self, r: Refusal) {
        self.0[r.ix()].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts, in the order of [`Refusal::ALL`].
    pub fn snapshot(&self) -> Vec<(Refusal, u64)> {
        Refusal::ALL
            .iter()
            .map(|r| (*r, self.0[r.ix()].load(Ordering::Relaxed)))
            .collect()
    }

    /// Sets every count to zero.
    pub fn reset(&self) {
        for c in &self.0 {
            c.store(0, Ordering::Relaxed);
        }
    }
}
