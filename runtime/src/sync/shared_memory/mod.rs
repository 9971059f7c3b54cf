//! [`SharedMemory`] and [`ShareableList`]: Python's `multiprocessing.shared_memory`,
//! named blocks in `/dev/shm` that any process attaches by name.
//!
//! A block created with tracking (the default) is removed when the process that
//! created it and every process descended from it are gone, `SIGKILL` of all of them
//! included: see `tracker` for how.

mod error;
mod list;
mod tracker;

use std::ffi::CString;
use std::fmt;
use std::io;
use std::num::NonZeroUsize;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::os::named_shm::{self, NamedMapping};
use crate::os::shm::{copy_from_shared, copy_to_shared};
use crate::sync::shared::Plain;

pub use error::SharedMemoryError;
pub use list::{Item, ShareableList};

/// How many fresh names `create` tries before it gives up (each one is 64 random
/// bits: a second try is already a rare event).
const NAME_TRIES: usize = 8;

/// A named block of shared memory: Python's `multiprocessing.shared_memory.SharedMemory`.
///
/// [`create`](SharedMemory::create) makes a new block under a fresh name
/// (`psm_<16 hex digits>`, as Python's `psm_<hex>`), [`builder`](SharedMemory::builder)
/// one under a name of your choice or untracked; [`open`](SharedMemory::open) attaches
/// to an existing block by name, from any process, an unrelated one too: the block is a
/// POSIX shared memory object, `/dev/shm/<name>`. Dropping the handle (or
/// [`close`](SharedMemory::close)) detaches this handle only; [`unlink`](SharedMemory::unlink)
/// removes the name, and processes already attached keep their mapping.
///
/// ```
/// use multiproc::SharedMemory;
///
/// # fn main() -> Result<(), multiproc::SharedMemoryError> {
/// let shm = SharedMemory::create(1 << 20)?;
/// let same = SharedMemory::open(shm.name())?; // in any process, by name
/// shm.write(0, b"hello")?;
/// let mut buf = [0u8; 5];
/// same.read(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// assert!(shm.write(shm.size() - 1, b"no room").is_err()); // out of range
/// shm.unlink()?;
/// # Ok(())
/// # }
/// ```
///
/// # Size
///
/// [`size`](SharedMemory::size) is exactly the size asked for at creation (Linux does
/// not round a shared memory object up; Python may report a rounded size on other
/// systems). A size of 0 is an error, as in Python.
///
/// # Reading and writing
///
/// [`read`](SharedMemory::read) and [`write`](SharedMemory::write) copy with word-sized
/// relaxed atomic accesses (the crate's policy for memory other processes write), so
/// they are never undefined behaviour, whatever other processes do at the same time;
/// nothing orders them against other processes' accesses, though: synchronise with a
/// [`Lock`](crate::Lock), an [`Event`](crate::Event), a queue, as in Python.
///
/// # Typed views
///
/// [`as_slice`](SharedMemory::as_slice) and [`as_mut_slice`](SharedMemory::as_mut_slice)
/// give the block as `&[T]` and `&mut [T]` with no copy, for [`Plain`] types that are
/// valid for every bit pattern as they stand (integers, floats, arrays and
/// `derive(Plain)` structs of them; not `bool` or `char`, which need a check, a
/// compile-time error here). They are a deliberate exception to the crate's
/// atomics-only rule, which the issue asks for and Python offers (`memoryview`,
/// NumPy arrays on `shm.buf`): **if another process writes the block while this one
/// holds a view, that is a data race, and yours to prevent** (write first, then
/// publish with a lock, an event or a queue, then read), exactly as with Python. Inside
/// one process the borrow rules hold per handle: `&self` gives shared views, `&mut
/// self` the one mutable view; two handles of the same block in one process
/// ([`open`](SharedMemory::open) twice) are two ways to the same bytes, like two
/// processes.
///
/// # Caveats
///
/// A block is a plain POSIX object: it cannot be sealed, so another process of the
/// same user may `ftruncate` it smaller, and an access past its new end then kills
/// this process with `SIGBUS` (Python has the same exposure). Tracking is done by the
/// creating process only: a block opened by name is never registered (Python before
/// 3.13 registered it, and its tracker then unlinked blocks that other programs still
/// used).
pub struct SharedMemory {
    name: String,
    c_name: CString,
    map: NamedMapping,
}

/// Options for a new [`SharedMemory`]: its size, its name and whether it is tracked.
/// From [`SharedMemory::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `create` is called"]
pub struct SharedMemoryBuilder {
    size: usize,
    name: Option<String>,
    track: bool,
}

impl SharedMemoryBuilder {
    /// The block's name, instead of a fresh `psm_<hex>` one. A leading `/` is allowed
    /// and ignored, as in Python.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Whether the block is removed when this process and all its descendants are gone
    /// (`true`, the default), or stays until someone [`unlink`](SharedMemory::unlink)s
    /// it (`false`: Python 3.13's `track=False`; the block is then yours to remove).
    pub fn track(mut self, track: bool) -> Self {
        self.track = track;
        self
    }

    /// Creates the block, zero-filled: [`SharedMemoryError::Exists`] if the name is
    /// taken, [`SharedMemoryError::ZeroSize`] for a size of 0.
    pub fn create(self) -> Result<SharedMemory, SharedMemoryError> {
        let size = NonZeroUsize::new(self.size).ok_or(SharedMemoryError::ZeroSize)?;
        match self.name {
            Some(name) => create_named(strip(&name), size, self.track),
            None => {
                let mut last = None;
                for _ in 0..NAME_TRIES {
                    let word = crate::wire::auth::random_u64()?;
                    match create_named(&format!("psm_{word:016x}"), size, self.track) {
                        Err(e @ SharedMemoryError::Exists(_)) => last = Some(e),
                        other => return other,
                    }
                }
                Err(last.unwrap_or_else(|| io::Error::other("no fresh name").into()))
            }
        }
    }
}

fn strip(name: &str) -> &str {
    name.strip_prefix('/').unwrap_or(name)
}

fn checked_name(name: &str) -> Result<CString, SharedMemoryError> {
    named_shm::c_name(name).ok_or_else(|| SharedMemoryError::InvalidName(name.to_owned()))
}

fn create_named(
    name: &str,
    size: NonZeroUsize,
    track: bool,
) -> Result<SharedMemory, SharedMemoryError> {
    let c_name = checked_name(name)?;
    // Registered first: a creator killed right after the creation leaves nothing
    // untracked behind (see `tracker`).
    if track {
        tracker::register(name)?;
    }
    let created = named_shm::create(&c_name, size).and_then(|fd| NamedMapping::map(&fd));
    match created {
        Ok(map) => Ok(SharedMemory {
            name: name.to_owned(),
            c_name,
            map,
        }),
        Err(e) => {
            if track {
                let _ = tracker::unregister(name);
            }
            if e.kind() == io::ErrorKind::AlreadyExists {
                Err(SharedMemoryError::Exists(name.to_owned()))
            } else {
                // Created but not mapped: remove it again.
                let _ = named_shm::unlink(&c_name);
                Err(e.into())
            }
        }
    }
}

impl SharedMemory {
    /// A new tracked block of `size` bytes under a fresh name, zero-filled.
    pub fn create(size: usize) -> Result<SharedMemory, SharedMemoryError> {
        SharedMemory::builder(size).create()
    }

    /// Options for a new block of `size` bytes: a name of your choice, tracking.
    pub fn builder(size: usize) -> SharedMemoryBuilder {
        SharedMemoryBuilder {
            size,
            name: None,
            track: true,
        }
    }

    /// Attaches to the existing block `name` (a leading `/` is allowed), from any
    /// process: [`SharedMemoryError::NotFound`] if there is none.
    pub fn open(name: &str) -> Result<SharedMemory, SharedMemoryError> {
        let name = strip(name);
        let c_name = checked_name(name)?;
        let fd = named_shm::open(&c_name).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SharedMemoryError::NotFound(name.to_owned()),
            _ => SharedMemoryError::Io(e),
        })?;
        let map = NamedMapping::map(&fd)?;
        Ok(SharedMemory {
            name: name.to_owned(),
            c_name,
            map,
        })
    }

    /// The block's name, without a leading `/` (as Python's `name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The block's size in bytes.
    pub fn size(&self) -> usize {
        self.map.len()
    }

    /// The byte range `offset..offset + len`, if it is inside the block.
    fn check(&self, offset: usize, len: usize) -> Result<(), SharedMemoryError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size() => Ok(()),
            _ => Err(SharedMemoryError::OutOfRange {
                offset,
                len,
                size: self.size(),
            }),
        }
    }

    /// Copies `buf.len()` bytes of the block from `offset` into `buf`;
    /// [`SharedMemoryError::OutOfRange`] if they are not all inside the block.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), SharedMemoryError> {
        self.check(offset, buf.len())?;
        // SAFETY: the range is inside the live mapping (checked above); every access of
        // this crate to it is atomic, and a user's view is documented as theirs to
        // synchronise.
        unsafe { copy_from_shared(self.map.as_ptr().add(offset), buf) };
        Ok(())
    }

    /// Copies `bytes` into the block at `offset`; [`SharedMemoryError::OutOfRange`]
    /// if they do not all fit.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<(), SharedMemoryError> {
        self.check(offset, bytes.len())?;
        // SAFETY: as in `read`.
        unsafe { copy_to_shared(bytes, self.map.as_ptr().add(offset)) };
        Ok(())
    }

    /// The block as `size / size_of::<T>()` elements of `T`, with no copy (trailing
    /// bytes that make no whole `T` are left out). See the type's docs on typed views:
    /// concurrent writes by other processes are yours to synchronise.
    ///
    /// `T` must be valid for every bit pattern (not `bool`, `char` or a struct holding
    /// one), checked at compile time:
    ///
    /// ```compile_fail
    /// # fn main() -> Result<(), multiproc::SharedMemoryError> {
    /// let shm = multiproc::SharedMemory::create(64)?;
    /// let flags: &[bool] = shm.as_slice(); // a byte 2 would be no `bool`
    /// # Ok(())
    /// # }
    /// ```
    pub fn as_slice<T: Plain>(&self) -> &[T] {
        let len = view_len::<T>(self.size());
        // SAFETY: the mapping is page-aligned (so aligned for `T`, whose alignment is
        // at most a page for every plain type), `len` elements fit in it, `T` is valid
        // for any bits (checked by `view_len`), and the slice borrows `self`, which
        // keeps the mapping. Writes by other processes are the documented exception.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<T>(), len) }
    }

    /// The block as `size / size_of::<T>()` mutable elements of `T`, with no copy. As
    /// [`as_slice`](SharedMemory::as_slice); `&mut self` makes it the only view
    /// through this handle.
    pub fn as_mut_slice<T: Plain>(&mut self) -> &mut [T] {
        let len = view_len::<T>(self.size());
        // SAFETY: as in `as_slice`; `&mut self` excludes every other view through
        // this handle while the slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr().cast::<T>(), len) }
    }

    /// Detaches this handle (as dropping it does); the block stays, for this process
    /// too through other handles, until it is unlinked.
    pub fn close(self) {
        drop(self);
    }

    /// Removes the block's name: later [`open`](SharedMemory::open)s fail, processes
    /// already attached keep their mapping, and the memory is freed when the last one
    /// detaches. Call it once, from any process; a tracked block is also forgotten by
    /// this process's tracker. [`SharedMemoryError::NotFound`] if the name is already
    /// gone.
    pub fn unlink(&self) -> Result<(), SharedMemoryError> {
        named_shm::unlink(&self.c_name).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => SharedMemoryError::NotFound(self.name.clone()),
            _ => SharedMemoryError::Io(e),
        })?;
        // The name is gone either way; a tracker that missed this only finds nothing
        // to remove at the end.
        let _ = tracker::unregister(&self.name);
        Ok(())
    }
}

/// How many `T`s a view of `size` bytes holds; refuses, at compile time, a `T` that is
/// not valid for every bit pattern or has no size.
fn view_len<T: Plain>(size: usize) -> usize {
    const {
        assert!(
            T::VALID_FOR_ANY_BITS,
            "a typed view of shared memory needs a type valid for every bit pattern \
             (not `bool`, `char`, or a struct holding one)"
        );
        assert!(
            std::mem::size_of::<T>() > 0,
            "a typed view of a zero-sized type"
        );
        assert!(std::mem::align_of::<T>() <= 4096);
    };
    size / std::mem::size_of::<T>()
}

/// A handle crosses to another process (as a worker argument, a queue item, ...) as its
/// name, and is attached again by name on arrival, as Python pickles one: the receiver
/// gets its own mapping, and an error if the block was unlinked meanwhile.
impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.name.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        SharedMemory::open(&name).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("size", &self.size())
            .finish()
    }
}
