//! Shared memory: anonymous regions that every process holding a handle maps.
//!
//! A region is a `memfd` (no name in `/dev/shm`, so nothing is left behind whatever
//! way the processes end), sized once and sealed against resizing, then mapped
//! `MAP_SHARED`. It crosses to another process as its descriptor (see
//! [`PortableFd`]); the receiver checks the size and the seals
//! before mapping it, so a peer cannot make later accesses fault by shrinking it.
//!
//! # Reading memory another process may write
//!
//! Every byte of a shared region may be written by another process at any moment: by a
//! peer following the protocol, by one that died half-way, or by one that writes
//! garbage. In Rust's memory model two accesses to the same place from different
//! threads (and processes sharing a mapping are no different), at least one a write,
//! and not both atomic, are a data race, and a data race is undefined behaviour
//! whatever the protocol says and whatever the bytes are later checked for. A
//! `volatile` access does not help: the standard library documents that volatile
//! accesses behave exactly like non-atomic ones with regard to concurrency. So the
//! policy of this crate is:
//!
//! - **Only atomics touch shared memory.** A value that lives there is a type made of
//!   atomics ([`Atomics`]), and the only safe ways to reach one, [`Shm::get`],
//!   [`Shm::table`] and [`SharedRegion::get`], require that bound: no `&u32` of a word
//!   that someone else writes is ever formed.
//! - **Bytes are copied with atomic loads and stores** into or out of a private
//!   buffer ([`copy_from_shared`], [`copy_to_shared`]), word-sized and relaxed, then
//!   **validated in the private copy** (a ring checks lengths and kinds, the codec
//!   checks what it decodes, `Plain` values are normalised). Ordering comes from the
//!   acquire and release operations on the words that publish the bytes, as for any
//!   other atomic data; a racing writer can only make the copy hold some mixture of
//!   bytes, which the validation then sees.
//! - **Memory nobody can write is the one exception**: a large message (a frame on a
//!   Unix socket, an item too large for a queue's ring) travels in a `memfd` written
//!   with `pwrite` and then sealed against writing (`F_SEAL_WRITE`), which the kernel
//!   refuses while a writable mapping exists and enforces for every process after; the
//!   receiver checks that seal before it maps the file read-only and reads it with
//!   plain loads ([`crate::os::sealed`]). Bytes that cannot change cannot race.
//!
//! Relaxed word-sized atomic loads and stores compile to the same instructions as
//! plain ones on the targets this crate supports; what is lost is only the compiler's
//! freedom to merge them into wider vector copies, which matters for large payloads,
//! not for the small records that dominate a queue's traffic.

use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};

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
        let fd = memfd(name)?;
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

    /// The descriptor of the memfd.
    pub(crate) fn fd(&self) -> &PortableFd {
        &self.fd
    }

    /// Its size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len.get()
    }

    /// A reference to a `T` at `offset`. `T` is made of atomics (the `Atomics` bound):
    /// a plain integer that another process writes is never handed out by reference.
    ///
    /// # Safety
    ///
    /// `offset` must be aligned for `T` and `offset + size_of::<T>()` within the
    /// region.
    pub(crate) unsafe fn get<T: Atomics>(&self, offset: usize) -> &T {
        debug_assert!(offset + std::mem::size_of::<T>() <= self.len());
        debug_assert_eq!(
            (self.as_ptr() as usize + offset) % std::mem::align_of::<T>(),
            0
        );
        // SAFETY: the caller guarantees bounds and alignment; `T` is `Atomics`, valid
        // for any bits and accessed only through atomics; the mapping lives as long as
        // `self`.
        unsafe { &*self.as_ptr().add(offset).cast::<T>() }
    }
}

/// A new empty `memfd` named `name` for `/proc/<pid>/maps`, close-on-exec, that can be
/// sealed.
pub(crate) fn memfd(name: &str) -> std::io::Result<OwnedFd> {
    let cname = std::ffi::CString::new(format!("multiproc:{name}"))
        .unwrap_or_else(|_| c"multiproc".to_owned());
    Ok(memfd_create(
        cname.as_c_str(),
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )?)
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
/// In practice: `repr(C)` (or `repr(transparent)`), and every field an atomic integer,
/// an array of them, or another `Atomics` type; padding is allowed (a reference never
/// reads it).
pub(crate) unsafe trait Atomics: Sized + 'static {}

// SAFETY: an atomic.
unsafe impl Atomics for AtomicU32 {}
// SAFETY: an atomic.
unsafe impl Atomics for AtomicU64 {}

/// Copies `dst.len()` bytes of shared memory starting at `src` into the private buffer
/// `dst`, with relaxed atomic loads (the policy in the module docs): a naturally aligned
/// piece of 2, 4 or 8 bytes is one load, longer runs are 8-byte loads. What the copy
/// holds is not trusted: the caller validates it.
///
/// # Safety
///
/// `src..src + dst.len()` must be inside a live shared mapping. Whoever else accesses
/// those bytes concurrently must do so with atomics too (every user of this module
/// does; a process that does not only harms itself).
#[inline]
pub(crate) unsafe fn copy_from_shared(src: *const u8, dst: &mut [u8]) {
    let mut done = 0;
    while done < dst.len() {
        // SAFETY: `src + done` plus the width chosen below is within the range the
        // caller gave, and aligned for that width.
        let at = unsafe { src.add(done) };
        let rest = &mut dst[done..];
        let width = width(at as usize, rest.len());
        // SAFETY: as above; `from_ptr` needs an aligned address valid for the
        // atomic's size, and every concurrent access is atomic.
        unsafe {
            match width {
                8 => rest[..8].copy_from_slice(
                    &AtomicU64::from_ptr(at.cast_mut().cast())
                        .load(Ordering::Relaxed)
                        .to_ne_bytes(),
                ),
                4 => rest[..4].copy_from_slice(
                    &AtomicU32::from_ptr(at.cast_mut().cast())
                        .load(Ordering::Relaxed)
                        .to_ne_bytes(),
                ),
                2 => rest[..2].copy_from_slice(
                    &AtomicU16::from_ptr(at.cast_mut().cast())
                        .load(Ordering::Relaxed)
                        .to_ne_bytes(),
                ),
                _ => rest[0] = AtomicU8::from_ptr(at.cast_mut()).load(Ordering::Relaxed),
            }
        }
        done += width;
    }
}

/// Copies the private bytes `src` into shared memory at `dst`, with relaxed atomic
/// stores (the mirror of [`copy_from_shared`]); the caller publishes them afterwards
/// with a release (or stronger) store of the word that makes them visible.
///
/// # Safety
///
/// `dst..dst + src.len()` must be inside a live shared mapping, written concurrently
/// (if at all) only with atomics.
#[inline]
pub(crate) unsafe fn copy_to_shared(src: &[u8], dst: *mut u8) {
    let mut done = 0;
    while done < src.len() {
        // SAFETY: as in `copy_from_shared`.
        let at = unsafe { dst.add(done) };
        let rest = &src[done..];
        let width = width(at as usize, rest.len());
        // SAFETY: as in `copy_from_shared`.
        unsafe {
            match width {
                8 => AtomicU64::from_ptr(at.cast())
                    .store(u64::from_ne_bytes(chunk(rest)), Ordering::Relaxed),
                4 => AtomicU32::from_ptr(at.cast())
                    .store(u32::from_ne_bytes(chunk(rest)), Ordering::Relaxed),
                2 => AtomicU16::from_ptr(at.cast())
                    .store(u16::from_ne_bytes(chunk(rest)), Ordering::Relaxed),
                _ => AtomicU8::from_ptr(at).store(rest[0], Ordering::Relaxed),
            }
        }
        done += width;
    }
}

/// The widest atomic (8, 4, 2 or 1 bytes) that `addr` is aligned for and that `left`
/// bytes fill.
#[inline(always)]
fn width(addr: usize, left: usize) -> usize {
    if addr % 8 == 0 && left >= 8 {
        8
    } else if addr % 4 == 0 && left >= 4 {
        4
    } else if addr % 2 == 0 && left >= 2 {
        2
    } else {
        1
    }
}

/// The first `N` bytes of `bytes` (which holds at least `N`).
#[inline(always)]
fn chunk<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// Gives back the memory of the `len` bytes of the region behind `fd` at `offset`
/// (`fallocate` with `PUNCH_HOLE | KEEP_SIZE`): those pages are freed at once in every
/// process mapping them, and read as zeros until written again. The size is kept, so
/// seals against resizing do not forbid it. For memory no live data is in.
pub(crate) fn punch_hole(fd: &PortableFd, offset: usize, len: usize) -> std::io::Result<()> {
    use nix::fcntl::{FallocateFlags, fallocate};
    if len == 0 {
        return Ok(());
    }
    let offset = i64::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let len = i64::try_from(len).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    fallocate(
        fd.as_fd(),
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        offset,
        len,
    )?;
    Ok(())
}

/// The bytes of memory the region behind `fd` holds now (its allocated blocks): for
/// a sparse region, less than its size.
#[cfg(test)]
pub(crate) fn allocated_bytes(fd: &PortableFd) -> std::io::Result<u64> {
    let blocks = fstat(fd.as_fd())?.st_blocks;
    Ok(u64::try_from(blocks).unwrap_or(0) * 512)
}

/// The largest sparse region worth creating now, in bytes: a quarter of the
/// machine's memory (or of the memory cgroup's limit, if lower), and, under an
/// address space limit (`RLIMIT_AS`), an eighth of the room left below it, since
/// every process that holds the region maps all of it.
/// A region this size costs nothing until its pages are written (a `memfd` reserves
/// no memory up front).
pub(crate) fn sparse_budget() -> usize {
    let memory = nix::sys::sysinfo::sysinfo()
        .map(|info| info.ram_total() / 4)
        .unwrap_or(0);
    let memory = memory.min(cgroup_memory_limit().map_or(u64::MAX, |limit| limit / 4));
    let mut budget = usize::try_from(memory).unwrap_or(usize::MAX);
    let mut limit = nix::libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given and touches nothing else.
    let limited = unsafe { nix::libc::getrlimit(nix::libc::RLIMIT_AS, &mut limit) } == 0
        && limit.rlim_cur != nix::libc::RLIM_INFINITY;
    if limited {
        let used = address_space_used().unwrap_or(u64::MAX);
        let room = limit.rlim_cur.saturating_sub(used) / 8;
        budget = budget.min(usize::try_from(room).unwrap_or(usize::MAX));
    }
    budget
}

/// The memory limit of this process's cgroup (v2's `memory.max`, or v1's
/// `memory.limit_in_bytes`), if one is set and visible.
fn cgroup_memory_limit() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok()?.trim().parse().ok())
}

/// This process's mapped address space (`VmSize` in `/proc/self/status`), in bytes.
fn address_space_used() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmSize:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

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
    fn atomic_copies_round_trip_at_every_alignment() {
        let region = SharedRegion::new("test", 256).unwrap();
        let bytes: Vec<u8> = (0..100u8).map(|b| b.wrapping_mul(37) ^ 0x5a).collect();
        for start in 0..16 {
            for len in [0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 64, 100] {
                // SAFETY: `start + len <= 116`, inside the 256-byte region.
                unsafe { copy_to_shared(&bytes[..len], region.as_ptr().add(start)) };
                let mut out = vec![0xffu8; len];
                // SAFETY: as above.
                unsafe { copy_from_shared(region.as_ptr().add(start), &mut out) };
                assert_eq!(out, bytes[..len], "start {start}, len {len}");
            }
        }
    }

    #[test]
    fn a_region_cannot_be_resized() {
        let region = SharedRegion::new("test", 4096).unwrap();
        assert!(ftruncate(region.fd.as_fd(), 0).is_err());
        assert!(ftruncate(region.fd.as_fd(), 1 << 20).is_err());
    }
}
