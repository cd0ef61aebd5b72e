//! The admin role handed from one member to another (GRP-12), and a member's leave (GRP-11).
//!
//! ```text
//!   handover (kind 8): group id [16] || epoch u32 || new admin user id [10] || sig [64]
//!   sig = Sig_IKs_admin("sotto/v1/group-handover" || group id || epoch || new admin user id
//!                       || new admin IKs [32])          epoch = the new admin's first epoch
//!   leave (kind 7):    group id [16] || epoch u32       to the admin, over the pairwise session
//! ```
//!
//! The new admin sends every group key it issues with the handover in front (kind 9), so a member
//! that still holds the old admin accepts the new one only with the old admin's signature.

use crate::codec::{Reader, Writer};
use crate::error::{GroupError, Result};
use crate::group::membership::Member;
use crate::ids::{GroupId, UserId};
use crate::kdf;
use crate::keys::Identity;
use crate::persist::Persist;

/// Bytes of an encoded handover: 16 + 4 + 10 + 64.
pub const HANDOVER_LEN: usize = 94;

/// The admin's signed statement that `new_admin` administers `group` from `epoch` on (GRP-12).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Handover {
    /// The group.
    pub group: GroupId,
    /// The first epoch the new admin issues (the old admin's newest + 1).
    pub epoch: u32,
    /// The new admin's user id.
    pub new_admin: UserId,
    /// `Sig_IKs_admin("sotto/v1/group-handover" || group || epoch || new admin || new admin IKs)`.
    pub sig: [u8; 64],
}

impl Handover {
    /// The admin `admin` hands `group` over to `to` from `epoch` on.
    pub fn sign(admin: &Identity, group: GroupId, epoch: u32, to: &Member) -> Self {
        let mut h = Handover {
            group,
            epoch,
            new_admin: to.user,
            sig: [0; 64],
        };
        h.sig = admin
            .signing()
            .sign(kdf::SIG_GROUP_HANDOVER, &[&h.signed_part(to)]);
        h
    }

    /// Checks the signature under the old admin's `IKs`, naming `to` (user id and `IKs`):
    /// `not_group_admin` if `to` is not the member the handover names, `bad_signature` if the
    /// signature does not hold.
    pub fn verify(&self, old_admin: &Member, to: &Member) -> Result<()> {
        if self.new_admin != to.user {
            return Err(GroupError::NotGroupAdmin.into());
        }
        if mutated!(Mutation::SkipHandoverSignature) {
            return Ok(());
        }
        old_admin
            .iks
            .verify(kdf::SIG_GROUP_HANDOVER, &[&self.signed_part(to)], &self.sig)?;
        Ok(())
    }

    // KDF-22's message: group id || epoch || new admin user id || new admin IKs.
    fn signed_part(&self, to: &Member) -> Vec<u8> {
        let mut w = Writer::with_capacity(62);
        w.bytes(&self.group.0)
            .u32(self.epoch)
            .bytes(&self.new_admin.0)
            .bytes(&to.iks.0);
        w.into_vec()
    }

    /// Appends the 94-byte encoding.
    pub fn encode(&self, w: &mut Writer) {
        w.bytes(&self.group.0)
            .u32(self.epoch)
            .bytes(&self.new_admin.0)
            .bytes(&self.sig);
    }

    /// Reads the layout (`truncated` if it ends early); the signature is checked by
    /// [`Handover::verify`] once the receiver knows whose it must be.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Handover {
            group: GroupId(r.array()?),
            epoch: r.u32()?,
            new_admin: UserId(r.array()?),
            sig: r.array()?,
        })
    }
}

impl Persist for Handover {
    fn write(&self, w: &mut Writer) {
        self.encode(w);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Handover::decode(r)
    }
}

/// A member's leave (GRP-11): the group and the newest epoch the leaver held.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Leave {
    /// The group.
    pub group: GroupId,
    /// The newest epoch the leaver held.
    pub epoch: u32,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn member(id: &Identity, n: u8) -> Member {
        Member {
            user: UserId([n; 10]),
            iks: *id.public().iks(),
        }
    }

    /// GRP-12: the handover holds only under the old admin's key, for the member it names, and
    /// its encoding is 94 bytes that decode to the same handover.
    #[test]
    fn a_handover_names_one_member_under_the_admins_key_grp_12() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let (admin, to, other) = (
            Identity::generate(&mut rng),
            Identity::generate(&mut rng),
            Identity::generate(&mut rng),
        );
        let (a, b, c) = (member(&admin, 1), member(&to, 2), member(&other, 3));
        let h = Handover::sign(&admin, GroupId([7; 16]), 4, &b);
        assert!(h.verify(&a, &b).is_ok());
        assert_eq!(
            h.verify(&a, &c).unwrap_err(),
            GroupError::NotGroupAdmin.into()
        );
        assert_eq!(
            h.verify(&c, &b).unwrap_err(),
            crate::error::CryptoError::BadSignature.into()
        );
        let same_user_other_key = Member {
            user: b.user,
            iks: c.iks,
        };
        assert!(h.verify(&a, &same_user_other_key).is_err());
        let mut w = Writer::with_capacity(HANDOVER_LEN);
        h.encode(&mut w);
        let bytes = w.into_vec();
        assert_eq!(bytes.len(), HANDOVER_LEN);
        let mut r = Reader::new(&bytes);
        assert_eq!(Handover::decode(&mut r).unwrap(), h);
        assert!(r.finish().is_ok());
        for len in 0..HANDOVER_LEN {
            let mut r = Reader::new(&bytes[..len]);
            assert!(Handover::decode(&mut r).is_err(), "{len}");
        }
    }
}
