//! [`SharedMemoryError`]: what [`SharedMemory`](super::SharedMemory) and
//! [`ShareableList`](super::ShareableList) refuse, in Python's terms where Python
//! raises for the same thing.

use std::fmt;
use std::io;

/// Why a [`SharedMemory`](crate::SharedMemory) or
/// [`ShareableList`](crate::ShareableList) operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SharedMemoryError {
    /// `create` with a name that already names a block (Python's `FileExistsError`).
    Exists(String),
    /// `open` of a name that names no block (Python's `FileNotFoundError`).
    NotFound(String),
    /// `create` with a size of 0 (Python's `ValueError`).
    ZeroSize,
    /// A name that cannot name a block: empty, longer than 255 bytes, or holding a `/`
    /// (other than one leading `/`) or a NUL.
    InvalidName(String),
    /// A read or write of `len` bytes at `offset` reaches past the block's `size`.
    OutOfRange {
        /// Where the access starts.
        offset: usize,
        /// How many bytes it covers.
        len: usize,
        /// The block's size.
        size: usize,
    },
    /// A [`ShareableList`](crate::ShareableList) index at or past its length (Python's
    /// `IndexError`).
    Index {
        /// The index asked for.
        index: usize,
        /// The list's length.
        len: usize,
    },
    /// A string or byte string too long for the slot it is written to (Python's
    /// `ValueError`: "exceeds available storage").
    TooLong {
        /// The slot.
        index: usize,
        /// The value's length in bytes.
        len: usize,
        /// What the slot holds at most, fixed when the list was created.
        capacity: usize,
    },
    /// [`ShareableList::index`](crate::ShareableList::index) of a value the list does
    /// not hold (Python's `ValueError`).
    NotInList,
    /// The block does not hold what was expected: not a `ShareableList`, or a slot
    /// whose kind or length is out of range (another process wrote garbage).
    Corrupt(String),
    /// The operating system refused (the tracker could not be started, no memory,
    /// no permission, ...).
    Io(io::Error),
}

impl SharedMemoryError {
    /// Whether the name already names a block.
    pub fn is_exists(&self) -> bool {
        matches!(self, SharedMemoryError::Exists(_))
    }

    /// Whether the name names no block.
    pub fn is_not_found(&self) -> bool {
        matches!(self, SharedMemoryError::NotFound(_))
    }

    /// Whether an access reached past the block.
    pub fn is_out_of_range(&self) -> bool {
        matches!(self, SharedMemoryError::OutOfRange { .. })
    }
}

impl fmt::Display for SharedMemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SharedMemoryError::Exists(name) => {
                write!(f, "file exists: a shared memory block is named {name:?}")
            }
            SharedMemoryError::NotFound(name) => {
                write!(f, "no such file: no shared memory block is named {name:?}")
            }
            SharedMemoryError::ZeroSize => {
                f.write_str("'size' must be a positive number different from zero")
            }
            SharedMemoryError::InvalidName(name) => {
                write!(f, "{name:?} cannot name a shared memory block")
            }
            SharedMemoryError::OutOfRange { offset, len, size } => write!(
                f,
                "{len} bytes at offset {offset} reach past the end of a shared memory \
                 block of {size} bytes"
            ),
            SharedMemoryError::Index { index, len } => {
                write!(f, "index {index} out of range for a list of {len}")
            }
            SharedMemoryError::TooLong {
                index,
                len,
                capacity,
            } => write!(
                f,
                "a value of {len} bytes exceeds the available storage of slot {index} \
                 ({capacity} bytes)"
            ),
            SharedMemoryError::NotInList => f.write_str("value not in this container"),
            SharedMemoryError::Corrupt(what) => write!(f, "corrupt shared list: {what}"),
            SharedMemoryError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SharedMemoryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Transparent, as `Display` shows the error itself.
            SharedMemoryError::Io(e) => e.source(),
            _ => None,
        }
    }
}

impl From<io::Error> for SharedMemoryError {
    fn from(e: io::Error) -> Self {
        SharedMemoryError::Io(e)
    }
}

impl From<SharedMemoryError> for crate::error::Error {
    fn from(e: SharedMemoryError) -> Self {
        crate::error::Error::SharedMemory(e)
    }
}
