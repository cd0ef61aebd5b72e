//! The device state as bytes, for the encrypted device store (STORE-1, STORE-3): [`Device::export`]
//! and [`Device::import`](crate::Device::import).
//!
//! The format is private to one implementation (version byte `0x01`, big-endian, counts as `u32`),
//! holds every secret the device has, and must only ever be written into the encrypted store. It is
//! parsed with the same bounded [`Reader`] as wire formats: a corrupted or truncated state is a typed
//! error, never a panic.
//!
//! [`Device::export`]: crate::Device::export

use std::collections::VecDeque;

use crate::codec::{Reader, Writer};
use crate::crypto::{DhPublic, DhSecret, Secret};
use crate::error::{DecodeError, Result};
use crate::ids::{GroupId, MessageId, UserId};
use crate::keys::PublicIdentity;
use crate::keyshare::KeyShare;

/// Version of the state format [`crate::Device::export`] writes: 2 ends with the blocked user
/// ids (RX-11), 3 then with the group handovers (GRP-12) and the leaves awaiting their removal
/// notice (GRP-11).
pub const STATE_VERSION: u8 = 0x03;

/// The state format before group handovers, still read by [`crate::Device::import`].
pub const STATE_VERSION_2: u8 = 0x02;

/// The state format before blocked user ids, still read by [`crate::Device::import`].
pub const STATE_VERSION_1: u8 = 0x01;

/// A value that can be written into and read back from the device state.
pub(crate) trait Persist: Sized {
    fn write(&self, w: &mut Writer);
    fn read(r: &mut Reader<'_>) -> Result<Self>;
}

/// Implements [`Persist`] for a struct as its fields in order (used in the module that owns the
/// struct, so private fields stay private).
macro_rules! persist_struct {
    ($t:ty { $($f:ident),* $(,)? }) => {
        impl $crate::persist::Persist for $t {
            fn write(&self, w: &mut $crate::codec::Writer) {
                $( $crate::persist::Persist::write(&self.$f, w); )*
            }
            fn read(r: &mut $crate::codec::Reader<'_>) -> $crate::error::Result<Self> {
                Ok(Self { $( $f: $crate::persist::Persist::read(r)?, )* })
            }
        }
    };
}
pub(crate) use persist_struct;

impl Persist for u8 {
    fn write(&self, w: &mut Writer) {
        w.u8(*self);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(r.u8()?)
    }
}

impl Persist for u32 {
    fn write(&self, w: &mut Writer) {
        w.u32(*self);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(r.u32()?)
    }
}

impl Persist for u64 {
    fn write(&self, w: &mut Writer) {
        w.u64(*self);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(r.u64()?)
    }
}

impl Persist for bool {
    fn write(&self, w: &mut Writer) {
        w.u8(u8::from(*self));
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        match r.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::LengthOutOfRange.into()),
        }
    }
}

impl<const N: usize> Persist for [u8; N] {
    fn write(&self, w: &mut Writer) {
        w.bytes(self);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(r.array()?)
    }
}

impl<const N: usize> Persist for Secret<N> {
    fn write(&self, w: &mut Writer) {
        w.bytes(self.expose());
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Secret::new(r.array()?))
    }
}

impl Persist for DhSecret {
    fn write(&self, w: &mut Writer) {
        w.bytes(self.to_bytes().expose());
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(DhSecret::from_bytes(r.array()?))
    }
}

impl Persist for DhPublic {
    fn write(&self, w: &mut Writer) {
        w.bytes(&self.0);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(DhPublic(r.array()?))
    }
}

impl Persist for UserId {
    fn write(&self, w: &mut Writer) {
        w.bytes(&self.0);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(UserId(r.array()?))
    }
}

impl Persist for GroupId {
    fn write(&self, w: &mut Writer) {
        w.bytes(&self.0);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(GroupId(r.array()?))
    }
}

impl Persist for MessageId {
    fn write(&self, w: &mut Writer) {
        w.bytes(&self.0);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(MessageId(r.array()?))
    }
}

impl Persist for PublicIdentity {
    fn write(&self, w: &mut Writer) {
        self.encode(w);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        PublicIdentity::decode(r)
    }
}

impl Persist for KeyShare {
    fn write(&self, w: &mut Writer) {
        w.bytes(&self.to_plaintext());
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        KeyShare::from_plaintext(r.bytes(KeyShare::PLAIN_LEN)?)
    }
}

impl<T: Persist> Persist for Option<T> {
    fn write(&self, w: &mut Writer) {
        match self {
            Some(v) => {
                w.u8(1);
                v.write(w);
            }
            None => {
                w.u8(0);
            }
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        match r.u8()? {
            0 => Ok(None),
            1 => Ok(Some(T::read(r)?)),
            _ => Err(DecodeError::LengthOutOfRange.into()),
        }
    }
}

impl<A: Persist, B: Persist> Persist for (A, B) {
    fn write(&self, w: &mut Writer) {
        self.0.write(w);
        self.1.write(w);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok((A::read(r)?, B::read(r)?))
    }
}

impl<A: Persist, B: Persist, C: Persist> Persist for (A, B, C) {
    fn write(&self, w: &mut Writer) {
        self.0.write(w);
        self.1.write(w);
        self.2.write(w);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok((A::read(r)?, B::read(r)?, C::read(r)?))
    }
}

/// Writes a count as `u32` (every collection in the state is bounded far below that).
pub(crate) fn write_len(w: &mut Writer, n: usize) {
    w.u32(u32::try_from(n).unwrap_or(u32::MAX));
}

/// Reads a count that cannot exceed what is left to read (each element takes at least one byte).
pub(crate) fn read_len(r: &mut Reader<'_>) -> Result<usize> {
    let n = usize::try_from(r.u32()?).map_err(|_| DecodeError::LengthOutOfRange)?;
    if n > r.remaining() {
        return Err(DecodeError::LengthOutOfRange.into());
    }
    Ok(n)
}

impl<T: Persist> Persist for Vec<T> {
    fn write(&self, w: &mut Writer) {
        write_len(w, self.len());
        for v in self {
            v.write(w);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let n = read_len(r)?;
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(T::read(r)?);
        }
        Ok(out)
    }
}

impl<T: Persist> Persist for VecDeque<T> {
    fn write(&self, w: &mut Writer) {
        write_len(w, self.len());
        for v in self {
            v.write(w);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Vec::<T>::read(r)?.into())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::Error;

    /// A count may name as many elements as bytes remain (each takes at least one), not more.
    #[test]
    fn a_count_is_bounded_by_the_bytes_left() {
        let five = [0, 0, 0, 5, 1, 2, 3, 4, 5];
        let v: Vec<u8> = Persist::read(&mut Reader::new(&five)).unwrap();
        assert_eq!(v, [1, 2, 3, 4, 5]);
        let mut w = Writer::new();
        v.write(&mut w);
        assert_eq!(w.as_slice(), five);
        let six = [0, 0, 0, 6, 1, 2, 3, 4, 5];
        assert_eq!(
            <Vec<u8> as Persist>::read(&mut Reader::new(&six)).unwrap_err(),
            Error::Decode(DecodeError::LengthOutOfRange)
        );
    }
}
