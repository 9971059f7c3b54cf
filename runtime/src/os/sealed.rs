//! Sealed payloads: bytes handed to another process in a `memfd` that nobody can
//! write any more.
//!
//! A large message does not go through a stream socket (two copies in the kernel, and
//! a fresh buffer at the receiver faulted in page by page): the sender writes it into
//! a new `memfd` with `pwrite`, seals it against growing, shrinking and writing
//! ([`PAYLOAD_SEALS`]) and sends the descriptor; the receiver checks the seals and the
//! size and maps it read-only ([`SealedMap`]).
//!
//! Reading the mapping with plain loads is the documented exception to the
//! shared-memory policy of [`crate::os::shm`] (only atomics touch shared memory): the
//! kernel refuses `F_SEAL_WRITE` while a writable shared mapping of the file exists,
//! and once it is set refuses every later `write` and every writable shared mapping,
//! for every process holding the file. The sender never maps it. So no byte of a
//! write-sealed `memfd` can change while we read it, and a `&[u8]` of its mapping
//! is as immutable as Rust requires. `F_SEAL_SHRINK` keeps every mapped page backed
//! (no `SIGBUS`), and the size is checked before mapping, so nothing beyond what the
//! file holds is mapped.

use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use nix::sys::stat::{SFlag, fstat};
use nix::unistd::{Whence, lseek};

use crate::os::shm;

/// The seals of a payload: it can no longer grow, shrink or be written, and the seals
/// can no longer change.
pub(crate) const PAYLOAD_SEALS: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_WRITE)
    .union(SealFlag::F_SEAL_SEAL);

/// The seals a receiver requires before it maps a payload.
const REQUIRED: SealFlag = SealFlag::F_SEAL_SHRINK
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_WRITE);

/// A new empty `memfd` named `name`, to be written with `pwrite` (never mapped) and
/// then [`seal`]ed.
pub(crate) fn payload_file(name: &str) -> io::Result<File> {
    Ok(File::from(shm::memfd(name)?))
}

/// Seals `file` (made by [`payload_file`] and written) with [`PAYLOAD_SEALS`].
pub(crate) fn seal(file: File) -> io::Result<OwnedFd> {
    fcntl(&file, FcntlArg::F_ADD_SEALS(PAYLOAD_SEALS))?;
    Ok(OwnedFd::from(file))
}

/// A new `memfd` named `name` holding `parts` one after another, written with `pwrite`
/// (never mapped here), then sealed with [`PAYLOAD_SEALS`].
pub(crate) fn seal_parts(name: &str, parts: &[&[u8]]) -> io::Result<OwnedFd> {
    let file = payload_file(name)?;
    let len: usize = parts.iter().map(|p| p.len()).sum();
    // Sized first: one size change, not one per write.
    file.set_len(len as u64)?;
    let mut at = 0u64;
    for part in parts {
        file.write_all_at(part, at)?;
        at += part.len() as u64;
    }
    seal(file)
}

/// The `len` bytes of the sealed payload `fd`, read into a buffer (for a stream that
/// cannot carry the descriptor).
pub(crate) fn read_back(fd: &OwnedFd, len: usize) -> io::Result<Vec<u8>> {
    let file = File::from(fd.try_clone()?);
    let mut bytes = vec![0; len];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

/// Checks that `fd` is what [`seal_parts`] makes: a `memfd` (a regular file that takes
/// seals) of exactly `len` bytes, sealed against resizing and writing, and without
/// holes (every byte written: a sparse file would cost the reader a fresh page per
/// hole it reads). Errors are `InvalidData` with what was wrong.
pub(crate) fn check_payload(fd: &OwnedFd, len: usize) -> io::Result<()> {
    let stat = fstat(fd.as_fd())?;
    let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
    if kind != SFlag::S_IFREG {
        let what = match kind {
            SFlag::S_IFIFO => "a pipe",
            SFlag::S_IFSOCK => "a socket",
            SFlag::S_IFCHR => "a character device",
            SFlag::S_IFDIR => "a directory",
            _ => "not a regular file",
        };
        return Err(invalid(format!("a sealed payload that is {what}")));
    }
    let size = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
    if size != len as u64 {
        return Err(invalid(format!(
            "a sealed payload of {size} bytes, announced as {len}"
        )));
    }
    let seals = match fcntl(fd.as_fd(), FcntlArg::F_GET_SEALS) {
        Ok(seals) => SealFlag::from_bits_truncate(seals),
        Err(Errno::EINVAL) => {
            return Err(invalid("a sealed payload that is not a memfd"));
        }
        Err(e) => return Err(e.into()),
    };
    if !seals.contains(REQUIRED) {
        return Err(invalid(
            "a sealed payload that is not sealed against resizing and writing",
        ));
    }
    // A kernel that cannot tell where the holes are (EINVAL) leaves this check out.
    let first_hole = lseek(fd, 0, Whence::SeekHole).unwrap_or(stat.st_size);
    if first_hole < stat.st_size {
        return Err(invalid(format!(
            "a sealed payload of {len} bytes with a hole at byte {first_hole}"
        )));
    }
    Ok(())
}

/// The bytes of a sealed payload, mapped read-only.
#[derive(Debug)]
pub(crate) struct SealedMap {
    ptr: NonNull<u8>,
    len: NonZeroUsize,
}

// SAFETY: the mapping is read-only and its bytes can never change (see the module
// docs); sharing or sending a view of immutable memory is sound.
unsafe impl Send for SealedMap {}
// SAFETY: as above.
unsafe impl Sync for SealedMap {}

impl SealedMap {
    /// Maps the payload `fd` of `len` bytes (at least 1) after [`check_payload`], with
    /// its pages mapped in one call (`MAP_POPULATE`), not faulted in one by one. The
    /// descriptor is closed; the mapping keeps the memory.
    pub(crate) fn open(fd: OwnedFd, len: usize) -> io::Result<SealedMap> {
        let len = NonZeroUsize::new(len).ok_or_else(|| invalid("an empty sealed payload"))?;
        check_payload(&fd, len.get())?;
        // SAFETY: a fresh read-only shared mapping of `len` bytes of a file that holds
        // exactly `len` bytes and can neither shrink nor be written (checked above):
        // every page stays backed and no byte changes while it is mapped.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED | MapFlags::MAP_POPULATE,
                fd.as_fd(),
                0,
            )?
        };
        Ok(SealedMap {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The payload's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` is a live read-only mapping owned by `self`, whose
        // bytes nobody can write (the write seal, module docs).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len.get()) }
    }
}

impl Drop for SealedMap {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `open` with this address and length, and no
        // reference into it outlives `self` (`bytes` borrows `self`).
        let _ = unsafe { munmap(self.ptr.cast(), self.len.get()) };
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_payload_maps_back() {
        let fd = seal_parts("test", &[b"hello ", b"", b"world"]).unwrap();
        let seals = SealFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GET_SEALS).unwrap());
        assert!(seals.contains(PAYLOAD_SEALS));
        // Nobody can write it any more, by `pwrite` or by a mapping.
        let file = File::from(fd.try_clone().unwrap());
        assert!(file.write_all_at(b"X", 0).is_err());
        let map = SealedMap::open(fd, 11).unwrap();
        assert_eq!(map.bytes(), b"hello world");
    }

    fn refused(fd: OwnedFd, len: usize) -> String {
        let e = SealedMap::open(fd, len).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        e.to_string()
    }

    #[test]
    fn what_is_not_a_sealed_payload_is_refused() {
        // Another size than announced, either way.
        let e = refused(seal_parts("test", &[b"abc"]).unwrap(), 4);
        assert!(e.contains("3 bytes, announced as 4"), "{e}");
        assert!(refused(seal_parts("test", &[b"abc"]).unwrap(), 2).contains("announced"));
        assert!(refused(seal_parts("test", &[b"abc"]).unwrap(), 0).contains("empty"));
        // Not write-sealed: a queue's or a shared region's memory.
        let region = shm::memfd("test").unwrap();
        File::from(region.try_clone().unwrap())
            .write_all_at(b"abc", 0)
            .unwrap();
        fcntl(
            &region,
            FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW),
        )
        .unwrap();
        assert!(refused(region, 3).contains("not sealed"));
        // Not sealed at all.
        let open = shm::memfd("test").unwrap();
        File::from(open.try_clone().unwrap())
            .write_all_at(b"abc", 0)
            .unwrap();
        assert!(refused(open, 3).contains("not sealed"));
        // A pipe, a socket, a regular file that takes no seals.
        let (pipe, _w) = nix::unistd::pipe().unwrap();
        assert!(refused(pipe, 3).contains("a pipe"));
        let (sock, _other) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(refused(sock.into(), 3).contains("a socket"));
        let dev_null = OwnedFd::from(File::open("/dev/null").unwrap());
        assert!(refused(dev_null, 3).contains("character device"));
        // A sparse one: sized but never written.
        let sparse = shm::memfd("test").unwrap();
        nix::unistd::ftruncate(&sparse, 1 << 20).unwrap();
        fcntl(&sparse, FcntlArg::F_ADD_SEALS(PAYLOAD_SEALS)).unwrap();
        assert!(refused(sparse, 1 << 20).contains("hole"));
    }
}
