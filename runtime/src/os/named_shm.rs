//! Named shared memory: POSIX `shm_open` objects, which live in `/dev/shm` under their
//! name until `shm_unlink`, so that any process (an unrelated one too) attaches by
//! name.
//!
//! Unlike the crate's own regions ([`SharedRegion`](crate::os::shm::SharedRegion), a
//! sealed `memfd`), such an object cannot be sealed: a process with write access may
//! `ftruncate` it under the others, and an access past the new end then faults
//! (`SIGBUS`). The size is read once, when the object is mapped.

use std::ffi::CString;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap, shm_open, shm_unlink};
use nix::sys::stat::{Mode, fstat};
use nix::unistd::ftruncate;

/// The longest name (without the leading `/`) that `/dev/shm` takes: `NAME_MAX`.
pub(crate) const NAME_MAX: usize = 255;

/// `name` as the C string `shm_open` takes (`/name`), or `None` if it cannot name an
/// object: empty, longer than [`NAME_MAX`], holding a `/` or a NUL, or `.`/`..`.
pub(crate) fn c_name(name: &str) -> Option<CString> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && !name.contains(['/', '\0'])
        && name != "."
        && name != "..";
    ok.then(|| CString::new(format!("/{name}")).ok()).flatten()
}

/// Creates the object `name` (from [`c_name`]) with `size` bytes, readable and writable
/// by this user only; `AlreadyExists` if the name is taken. On any failure after the
/// creation the name is removed again.
pub(crate) fn create(name: &CString, size: NonZeroUsize) -> io::Result<OwnedFd> {
    let fd = retry(|| {
        shm_open(
            name.as_c_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
    })?;
    let sized = i64::try_from(size.get())
        .map_err(|_| Errno::EINVAL)
        .and_then(|len| retry(|| ftruncate(&fd, len)));
    if let Err(e) = sized {
        let _ = shm_unlink(name.as_c_str());
        return Err(e.into());
    }
    Ok(fd)
}

/// Opens the existing object `name` for reading and writing; `NotFound` if there is
/// none.
pub(crate) fn open(name: &CString) -> io::Result<OwnedFd> {
    Ok(retry(|| {
        shm_open(name.as_c_str(), OFlag::O_RDWR, Mode::empty())
    })?)
}

/// Removes the name `name` (processes that mapped the object keep their mapping).
pub(crate) fn unlink(name: &CString) -> io::Result<()> {
    Ok(shm_unlink(name.as_c_str())?)
}

fn retry<T>(mut f: impl FnMut() -> nix::Result<T>) -> nix::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// A shared, readable and writable mapping of a whole named object.
#[derive(Debug)]
pub(crate) struct NamedMapping {
    ptr: NonNull<u8>,
    len: NonZeroUsize,
}

// SAFETY: the mapping is plain memory shared on purpose; what its users do with it is
// theirs to synchronise.
unsafe impl Send for NamedMapping {}
// SAFETY: as above.
unsafe impl Sync for NamedMapping {}

impl NamedMapping {
    /// Maps the whole of `fd` (its size now); `InvalidData` for an object of no size
    /// (one whose creator has not sized it yet).
    pub(crate) fn map(fd: &OwnedFd) -> io::Result<NamedMapping> {
        let size = fstat(fd.as_fd())?.st_size;
        let len = usize::try_from(size)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the shared memory block has no size (yet)",
                )
            })?;
        // SAFETY: a fresh shared mapping of a descriptor of `len` bytes; if another
        // process shrinks the object later, accesses past its end fault (documented).
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
        Ok(NamedMapping {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The start of the mapping (page-aligned).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Its size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len.get()
    }
}

impl Drop for NamedMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `map` with this address and length, and no
        // reference into it outlives `self` (views borrow the owner).
        let _ = unsafe { munmap(self.ptr.cast(), self.len.get()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(c_name("psm_1").unwrap().as_bytes(), b"/psm_1");
        for bad in ["", "a/b", ".", "..", "a\0b"] {
            assert!(c_name(bad).is_none(), "{bad:?}");
        }
        assert!(c_name(&"x".repeat(NAME_MAX)).is_some());
        assert!(c_name(&"x".repeat(NAME_MAX + 1)).is_none());
    }

    #[test]
    fn create_open_unlink() {
        let name = c_name(&format!("mp_test_{}", std::process::id())).unwrap();
        let fd = create(&name, NonZeroUsize::new(100).unwrap()).unwrap();
        let again = create(&name, NonZeroUsize::new(100).unwrap()).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        let other = open(&name).unwrap();
        assert_eq!(NamedMapping::map(&other).unwrap().len(), 100);
        drop(fd);
        unlink(&name).unwrap();
        assert_eq!(open(&name).unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
