//! How the operating system's objects travel inside values: a shared region crosses as
//! its descriptor (a [`PortableFd`]) and its length, and is checked and mapped again on
//! arrival.

use std::num::NonZeroUsize;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::os::fd::PortableFd;
use crate::os::shm::{Atomics, SharedRegion, Shm};

impl Serialize for SharedRegion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.fd(), self.len() as u64).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedRegion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let (fd, len): (PortableFd, u64) = Deserialize::deserialize(deserializer)?;
        let len = usize::try_from(len)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| D::Error::custom("a shared region of no size"))?;
        SharedRegion::check(&fd, len).map_err(D::Error::custom)?;
        SharedRegion::map(fd, len).map_err(D::Error::custom)
    }
}

impl<H: Atomics> Serialize for Shm<H> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&**self.region(), self.offset() as u64).serialize(serializer)
    }
}

impl<'de, H: Atomics> Deserialize<'de> for Shm<H> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (region, offset): (SharedRegion, u64) = Deserialize::deserialize(deserializer)?;
        let offset = usize::try_from(offset).map_err(serde::de::Error::custom)?;
        Shm::at(Arc::new(region), offset).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn a_region_crosses_as_its_descriptor() {
        let region = SharedRegion::new("test", 4096).unwrap();
        // SAFETY: offset 0 is aligned and in bounds; AtomicU64 accepts any bits.
        unsafe { region.get::<AtomicU64>(0) }.store(42, Ordering::SeqCst);
        let encoded = crate::wire::codec::encode(&region).unwrap();
        let other: SharedRegion = crate::wire::codec::decode(&encoded.bytes, encoded.fds).unwrap();
        assert_ne!(other.as_ptr(), region.as_ptr());
        // SAFETY: as above.
        let seen = unsafe { other.get::<AtomicU64>(0) };
        assert_eq!(seen.load(Ordering::SeqCst), 42);
        seen.store(7, Ordering::SeqCst);
        // SAFETY: as above.
        assert_eq!(
            unsafe { region.get::<AtomicU64>(0) }.load(Ordering::SeqCst),
            7
        );
    }
}
