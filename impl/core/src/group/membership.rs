//! The admin-signed member list of a group epoch (GRP-1, GRP-2).
//!
//! ```text
//!   group id [16] || epoch u32 || count u8 || (user id [10] || IKs [32]) x count || sig [64]
//!   sig = Sig_IKs_admin("sotto/v1/group-members" || everything before sig),  admin = member 0
//! ```

use crate::codec::{Reader, Writer};
use crate::crypto::SignPublic;
use crate::error::{DecodeError, GroupError, Result};
use crate::ids::{GroupId, UserId};
use crate::kdf;
use crate::keys::Identity;
use crate::limits::MAX_GROUP_MEMBERS;

/// One member: user id and identity signing key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Member {
    /// The member's user id (where its inbox is).
    pub user: UserId,
    /// The member's `IKs`, which verifies its group messages (GRP-7).
    pub iks: SignPublic,
}

/// A verified, admin-signed membership (GRP-2).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Membership {
    group: GroupId,
    epoch: u32,
    members: Vec<Member>,
    sig: [u8; 64],
}

impl Membership {
    /// Signs a member list as its admin. `members[0]` must be the admin itself.
    pub fn sign(
        admin: &Identity,
        group: GroupId,
        epoch: u32,
        members: Vec<Member>,
    ) -> Result<Self> {
        check_members(&members)?;
        if members.first().map(|m| m.iks) != Some(*admin.public().iks()) {
            return Err(GroupError::NotGroupAdmin.into());
        }
        let mut m = Membership {
            group,
            epoch,
            members,
            sig: [0; 64],
        };
        m.sig = admin
            .signing()
            .sign(kdf::SIG_GROUP_MEMBERS, &[&m.signed_part()]);
        Ok(m)
    }

    /// The group id.
    pub fn group(&self) -> &GroupId {
        &self.group
    }

    /// The group epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The members, admin first.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The admin (member 0).
    pub fn admin(&self) -> Option<&Member> {
        self.members.first()
    }

    /// The index of a member.
    pub fn index_of(&self, user: &UserId) -> Option<u8> {
        self.members
            .iter()
            .position(|m| m.user == *user)
            .and_then(|i| u8::try_from(i).ok())
    }

    /// The member at `index`.
    pub fn member(&self, index: u8) -> Option<&Member> {
        self.members.get(usize::from(index))
    }

    fn signed_part(&self) -> Vec<u8> {
        let mut w =
            Writer::with_capacity(21usize.saturating_add(self.members.len().saturating_mul(42)));
        w.bytes(&self.group.0).u32(self.epoch);
        // check_members bounds the count by LIM-14 on every path that builds a Membership.
        w.u8(u8::try_from(self.members.len()).unwrap_or(u8::MAX));
        for m in &self.members {
            w.bytes(&m.user.0).bytes(&m.iks.0);
        }
        w.into_vec()
    }

    /// Appends the encoding.
    pub fn encode(&self, w: &mut Writer) {
        w.bytes(&self.signed_part()).bytes(&self.sig);
    }

    /// Reads a membership and verifies the admin's signature (GRP-2). Decoders of larger layouts
    /// use `Membership::read_unverified` and `Membership::verify` (NOT-5).
    pub fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let m = Membership::read_unverified(r)?;
        m.verify()?;
        Ok(m)
    }

    /// Reads a membership's layout and bounds (GRP-2: count, distinct user ids) without checking
    /// the admin's signature (NOT-5: call [`Membership::verify`] once the whole layout is read).
    pub(crate) fn read_unverified(r: &mut Reader<'_>) -> Result<Self> {
        let group = GroupId(r.array()?);
        let epoch = r.u32()?;
        let count = usize::from(r.u8()?);
        if count == 0 || (count > MAX_GROUP_MEMBERS && !mutated!(Mutation::SkipGroupSizeBound)) {
            return Err(DecodeError::LengthOutOfRange.into());
        }
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            members.push(Member {
                user: UserId(r.array()?),
                iks: SignPublic(r.array()?),
            });
        }
        check_members(&members)?;
        let sig: [u8; 64] = r.array()?;
        Ok(Membership {
            group,
            epoch,
            members,
            sig,
        })
    }

    /// Checks the admin's signature (GRP-2).
    pub(crate) fn verify(&self) -> Result<()> {
        if mutated!(Mutation::SkipMembershipSignature) {
            return Ok(());
        }
        let admin = self.admin().ok_or(DecodeError::LengthOutOfRange)?;
        admin
            .iks
            .verify(kdf::SIG_GROUP_MEMBERS, &[&self.signed_part()], &self.sig)?;
        Ok(())
    }

    /// The encoding as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.into_vec()
    }

    /// Decodes a whole byte string.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let m = Membership::read_unverified(&mut r)?;
        r.finish()?;
        m.verify()?;
        Ok(m)
    }
}

fn check_members(members: &[Member]) -> Result<()> {
    if members.is_empty() || members.len() > MAX_GROUP_MEMBERS {
        return Err(DecodeError::LengthOutOfRange.into());
    }
    let mut users: Vec<&UserId> = members.iter().map(|m| &m.user).collect();
    users.sort_unstable();
    users.dedup();
    if users.len() != members.len() && !mutated!(Mutation::AllowDuplicateMembers) {
        return Err(DecodeError::LengthOutOfRange.into());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::CryptoError;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// LIM-14 when signing: 1 to 64 members.
    #[test]
    fn an_admin_signs_one_to_lim_14_members() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let admin = Identity::generate(&mut rng);
        let list = |n: usize| -> Vec<Member> {
            let mut v = vec![Member {
                user: UserId([0; 10]),
                iks: *admin.public().iks(),
            }];
            v.extend((1..n).map(|i| Member {
                user: UserId([i as u8; 10]),
                iks: *admin.public().iks(),
            }));
            v
        };
        let sign = |members: Vec<Member>| Membership::sign(&admin, GroupId([1; 16]), 0, members);
        assert!(sign(list(1)).is_ok());
        assert!(sign(list(MAX_GROUP_MEMBERS)).is_ok());
        for bad in [Vec::new(), list(MAX_GROUP_MEMBERS + 1)] {
            assert_eq!(sign(bad).unwrap_err(), DecodeError::LengthOutOfRange.into());
        }
    }

    #[test]
    fn signed_by_the_admin_grp_2() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let admin = Identity::generate(&mut rng);
        let bob = Identity::generate(&mut rng);
        let members = vec![
            Member {
                user: UserId([1; 10]),
                iks: *admin.public().iks(),
            },
            Member {
                user: UserId([2; 10]),
                iks: *bob.public().iks(),
            },
        ];
        let m = Membership::sign(&admin, GroupId([9; 16]), 3, members.clone()).unwrap();
        let bytes = m.to_bytes();
        assert_eq!(bytes.len(), 16 + 4 + 1 + 2 * 42 + 64);
        assert_eq!(Membership::from_bytes(&bytes).unwrap(), m);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x04;
            assert!(Membership::from_bytes(&b).is_err(), "byte {i}");
        }
        // Bob cannot sign a list naming the admin first, nor one naming himself admin over the admin.
        assert_eq!(
            Membership::sign(&bob, GroupId([9; 16]), 3, members).unwrap_err(),
            GroupError::NotGroupAdmin.into()
        );
        let mut forged = bytes.clone();
        let sig_at = forged.len() - 64;
        forged[sig_at..].copy_from_slice(
            &bob.signing()
                .sign(kdf::SIG_GROUP_MEMBERS, &[&bytes[..sig_at]]),
        );
        assert_eq!(
            Membership::from_bytes(&forged).unwrap_err(),
            CryptoError::BadSignature.into()
        );
    }
}
