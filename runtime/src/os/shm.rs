//! Shared memory: anonymous regions that every process holding a handle maps.
//!
//! A region is a `memfd` (no name in `/dev/shm`, so nothing is left behind whatever
//! way the processes end), sized once and sealed against resizing, then mapped
//! `MAP_SHARED`. It crosses to another process as its descriptor (see
//! [`PortableFd`]); the receiver checks the size and the seals
//! before mapping it, so a peer cannot make later accesses fault by shrinking it.

use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use nix::sys::stat::fstat;
use nix::unistd::ftruncate;

use crate::os::fd::PortableFd;

/// A mapped region of shared memory, zero-filled when created.
#[derive(Debug)]
pub(crate) struct SharedRegion {
    fd: PortableFd,
    ptr: NonNull<u8>,
    len: NonZeroUsize,
}

// SAFETY: the region is plain memory shared on purpose; every user synchronises its
// accesses with atomics in the region itself.
unsafe impl Send for SharedRegion {}
// SAFETY: as above.
unsafe impl Sync for SharedRegion {}

const SEALS: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_SEAL);

impl SharedRegion {
    /// A new zero-filled region of `len` bytes (at least 1), named `name` for
    /// `/proc/<pid>/maps`.
    pub(crate) fn new(name: &str, len: usize) -> std::io::Result<SharedRegion> {
        let len = NonZeroUsize::new(len).ok_or(std::io::ErrorKind::InvalidInput)?;
        let cname = std::ffi::CString::new(format!("multiproc:{name}"))
            .unwrap_or_else(|_| c"multiproc".to_owned());
        let fd = memfd_create(
            cname.as_c_str(),
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )?;
        let size = i64::try_from(len.get()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        ftruncate(&fd, size)?;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(SEALS))?;
        Self::map(PortableFd::new(fd), len)
    }

    /// Maps a region received as a bare descriptor (not inside a value), with the
    /// same checks as a deserialized one: at least `len` bytes, sealed against
    /// shrinking.
    pub(crate) fn from_fd(fd: OwnedFd, len: usize) -> std::io::Result<SharedRegion> {
        let fd = PortableFd::new(fd);
        let len = NonZeroUsize::new(len).ok_or_else(|| invalid("a shared region of no size"))?;
        Self::check(&fd, len)?;
        Self::map(fd, len)
    }

    /// Checks that `fd` is at least `len` bytes and sealed against shrinking.
    pub(crate) fn check(fd: &PortableFd, len: NonZeroUsize) -> std::io::Result<()> {
        let size = fstat(fd.as_fd())?.st_size;
        if u64::try_from(size).unwrap_or(0) < len.get() as u64 {
            return Err(invalid(format!(
                "a shared region of {size} bytes, not the {len} announced"
            )));
        }
        let seals = fcntl(fd.as_fd(), FcntlArg::F_GET_SEALS)?;
        if !SealFlag::from_bits_truncate(seals).contains(SealFlag::F_SEAL_SHRINK) {
            return Err(invalid("a shared region that can still shrink"));
        }
        Ok(())
    }

    pub(crate) fn map(fd: PortableFd, len: NonZeroUsize) -> std::io::Result<SharedRegion> {
        // SAFETY: a fresh shared mapping of a descriptor whose size is at least `len`
        // and can no longer shrink.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd.as_fd(),
                0,
            )?
        };
        Ok(SharedRegion {
            fd,
            ptr: ptr.cast(),
            len,
        })
    }

    /// A new descriptor of the region, to send it on its own (not inside a value).
    pub(crate) fn dup_fd(&self) -> std::io::Result<OwnedFd> {
        self.fd.as_fd().try_clone_to_owned()
    }

    /// The start of the region.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Its size in bytes.
    /// The descriptor of the memfd.
    pub(crate) fn fd(&self) -> &PortableFd {
        &self.fd
    }

    pub(crate) fn len(&self) -> usize {
        self.len.get()
    }

    /// A reference to a `T` at `offset`.
    ///
    /// # Safety
    ///
    /// `offset` must be aligned for `T` and `offset + size_of::<T>()` within the
    /// region, and `T` must be valid for any bit pattern another process may write
    /// (atomics and plain integers are).
    pub(crate) unsafe fn get<T>(&self, offset: usize) -> &T {
        debug_assert!(offset + std::mem::size_of::<T>() <= self.len());
        debug_assert_eq!(
            (self.as_ptr() as usize + offset) % std::mem::align_of::<T>(),
            0
        );
        // SAFETY: the caller guarantees bounds, alignment and validity; the mapping
        // lives as long as `self`.
        unsafe { &*self.as_ptr().add(offset).cast::<T>() }
    }
}

fn invalid(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `map` with this address and length, and no
        // reference into it outlives `self`.
        let _ = unsafe { munmap(self.ptr.cast(), self.len.get()) };
    }
}

/// A `repr(C)` type made only of atomics (or arrays of them), to be placed in shared
/// memory.
///
/// # Safety
///
/// Every bit pattern must be a valid value, the type must need no drop, and every access
/// to it must go through its atomics: other processes read and write it concurrently.
pub(crate) unsafe trait Atomics: Sized + 'static {}

// SAFETY: an atomic.
unsafe impl Atomics for std::sync::atomic::AtomicU32 {}
// SAFETY: an atomic.
unsafe impl Atomics for std::sync::atomic::AtomicU64 {}

/// The state `H` of one object at `offset` in a shared region, possibly followed by a
/// table (see [`Shm::table`]). Clones share the region.
pub(crate) struct Shm<H> {
    region: Arc<SharedRegion>,
    offset: usize,
    state: PhantomData<fn() -> H>,
}

impl<H> Clone for Shm<H> {
    fn clone(&self) -> Self {
        Shm {
            region: self.region.clone(),
            offset: self.offset,
            state: PhantomData,
        }
    }
}

impl<H: Atomics> Shm<H> {
    /// A new region named `name` holding a zeroed `H` followed by `tail` bytes.
    pub(crate) fn create(name: &str, tail: usize) -> std::io::Result<Shm<H>> {
        let len = std::mem::size_of::<H>()
            .checked_add(tail)
            .ok_or(std::io::ErrorKind::InvalidInput)?;
        let region = SharedRegion::new(name, len.max(1))?;
        Ok(Shm {
            region: Arc::new(region),
            offset: 0,
            state: PhantomData,
        })
    }

    /// The `H` at `offset` in `region`, if it fits there and is aligned.
    pub(crate) fn at(region: Arc<SharedRegion>, offset: usize) -> Result<Shm<H>, String> {
        let fits = offset
            .checked_add(std::mem::size_of::<H>())
            .is_some_and(|end| end <= region.len());
        if !fits || offset % std::mem::align_of::<H>() != 0 {
            return Err(format!(
                "no room for a {} at offset {offset} of a shared region of {} bytes",
                std::any::type_name::<H>(),
                region.len()
            ));
        }
        Ok(Shm {
            region,
            offset,
            state: PhantomData,
        })
    }

    /// The state.
    #[inline]
    pub(crate) fn get(&self) -> &H {
        // SAFETY: `create` and `at` checked that an aligned `H` fits at `offset`; `H` is
        // `Atomics`, valid for any bits and safe to share; the mapping lives as long as
        // `self.region`.
        unsafe { self.region.get(self.offset) }
    }

    /// The `E`s that fill the region after the state, as many as fit (the region's
    /// length, checked when it was mapped, bounds the table: never a count read from
    /// shared memory).
    pub(crate) fn table<E: Atomics>(&self) -> &[E] {
        let size = std::mem::size_of::<E>();
        let align = std::mem::align_of::<E>();
        let start = (self.offset + std::mem::size_of::<H>()).next_multiple_of(align);
        let len = self.region.len().saturating_sub(start) / size.max(1);
        if len == 0 {
            return &[];
        }
        // SAFETY: `start` is aligned for `E` (the region starts on a page) and
        // `start + len * size` is within the region; `E` is `Atomics`.
        unsafe { std::slice::from_raw_parts(self.region.as_ptr().add(start).cast::<E>(), len) }
    }

    pub(crate) fn region(&self) -> &Arc<SharedRegion> {
        &self.region
    }

    pub(crate) fn offset(&self) -> usize {
        self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_cannot_be_resized() {
        let region = SharedRegion::new("test", 4096).unwrap();
        assert!(ftruncate(region.fd.as_fd(), 0).is_err());
        assert!(ftruncate(region.fd.as_fd(), 1 << 20).is_err());
    }
}
