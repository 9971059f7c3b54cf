//! [`ShareableList`]: Python's `ShareableList`, a fixed-length list of [`Item`]s in a
//! [`SharedMemory`] block.
//!
//! # Layout
//!
//! All native-endian `u64` words, read and written only with atomics:
//!
//! ```text
//! 0         magic "MPSLIST1"
//! 8         n, the number of slots
//! 16 + 16i  slot i: kind | length << 32 (one word, so that a reader never pairs one
//!           value's kind with another's length), then its capacity in bytes
//! 16 + 16n  the slots' data, each `capacity` bytes, in order
//! ```
//!
//! The capacities are fixed at creation and read once by [`ShareableList::open`],
//! which checks that they fit in the block; every kind and length read later is checked
//! before use, so garbage written by another process is an error value.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{SharedMemory, SharedMemoryError};

const MAGIC: u64 = u64::from_le_bytes(*b"MPSLIST1");
const HEADER: usize = 16;
const SLOT: usize = 16;
/// The capacity of a slot holding a number, a `bool` or `None`, and the unit in which
/// string capacities are rounded up.
const WORD: usize = 8;

/// One element of a [`ShareableList`]: the kinds Python's `ShareableList` holds.
/// Serializable, so that items cross processes by other ways too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Item {
    /// Python's `None`.
    None,
    /// A `bool`.
    Bool(bool),
    /// An integer (Python's `int`, limited to 64 bits as there).
    Int(i64),
    /// A float.
    Float(f64),
    /// A string (UTF-8), up to the slot's capacity in bytes.
    Str(String),
    /// A byte string, up to the slot's capacity.
    Bytes(Vec<u8>),
}

impl Item {
    fn kind(&self) -> u64 {
        match self {
            Item::None => 0,
            Item::Bool(_) => 1,
            Item::Int(_) => 2,
            Item::Float(_) => 3,
            Item::Str(_) => 4,
            Item::Bytes(_) => 5,
        }
    }

    /// The bytes stored in the slot.
    fn data(&self) -> Vec<u8> {
        match self {
            Item::None => Vec::new(),
            Item::Bool(b) => u64::from(*b).to_le_bytes().to_vec(),
            Item::Int(i) => i.to_le_bytes().to_vec(),
            Item::Float(x) => x.to_bits().to_le_bytes().to_vec(),
            Item::Str(s) => s.as_bytes().to_vec(),
            Item::Bytes(b) => b.clone(),
        }
    }

    /// The capacity a new list gives this item's slot: a word, or the length rounded
    /// up to whole words.
    fn capacity(&self) -> usize {
        match self {
            Item::Str(s) => s.len().next_multiple_of(WORD).max(WORD),
            Item::Bytes(b) => b.len().next_multiple_of(WORD).max(WORD),
            _ => WORD,
        }
    }

    /// The format Python's `ShareableList.format` gives this item in a slot of
    /// `capacity` bytes.
    fn format(&self, capacity: usize) -> String {
        match self {
            Item::None => "xxxxxx?x".to_owned(),
            Item::Bool(_) => "xxxxxxx?".to_owned(),
            Item::Int(_) => "q".to_owned(),
            Item::Float(_) => "d".to_owned(),
            Item::Str(_) | Item::Bytes(_) => format!("{capacity}s"),
        }
    }

    /// The item of kind `kind` stored as `data`.
    fn decode(kind: u64, data: Vec<u8>) -> Result<Item, String> {
        let word = || -> Result<[u8; 8], String> {
            data.as_slice()
                .try_into()
                .map_err(|_| format!("a number of {} bytes", data.len()))
        };
        Ok(match kind {
            0 => Item::None,
            1 => Item::Bool(u64::from_le_bytes(word()?) != 0),
            2 => Item::Int(i64::from_le_bytes(word()?)),
            3 => Item::Float(f64::from_bits(u64::from_le_bytes(word()?))),
            4 => Item::Str(String::from_utf8(data).map_err(|_| "a string that is not UTF-8")?),
            5 => Item::Bytes(data),
            other => return Err(format!("a slot of kind {other}")),
        })
    }
}

impl From<i64> for Item {
    fn from(v: i64) -> Item {
        Item::Int(v)
    }
}

impl From<i32> for Item {
    fn from(v: i32) -> Item {
        Item::Int(v.into())
    }
}

impl From<f64> for Item {
    fn from(v: f64) -> Item {
        Item::Float(v)
    }
}

impl From<bool> for Item {
    fn from(v: bool) -> Item {
        Item::Bool(v)
    }
}

impl From<&str> for Item {
    fn from(v: &str) -> Item {
        Item::Str(v.to_owned())
    }
}

impl From<String> for Item {
    fn from(v: String) -> Item {
        Item::Str(v)
    }
}

impl From<&[u8]> for Item {
    fn from(v: &[u8]) -> Item {
        Item::Bytes(v.to_vec())
    }
}

impl From<Vec<u8>> for Item {
    fn from(v: Vec<u8>) -> Item {
        Item::Bytes(v)
    }
}

impl<T: Into<Item>> From<Option<T>> for Item {
    fn from(v: Option<T>) -> Item {
        v.map_or(Item::None, Into::into)
    }
}

/// A fixed-length list of [`Item`]s (`None`, `bool`, `i64`, `f64`, strings, byte
/// strings) in a [`SharedMemory`] block that any process attaches by name: Python's
/// `multiprocessing.shared_memory.ShareableList`.
///
/// Each slot has a fixed capacity, set at creation: 8 bytes for a number, a `bool` or
/// `None`, and for a string or byte string its length rounded up to a multiple of 8
/// (at least 8). Any slot takes any kind later, as in Python, as long as it fits: a
/// string longer than the slot's capacity is [`SharedMemoryError::TooLong`]. Unlike
/// Python's, a string keeps its trailing NUL bytes (the length is stored).
///
/// ```
/// use multiproc::{Item, ShareableList};
///
/// # fn main() -> Result<(), multiproc::SharedMemoryError> {
/// let list = ShareableList::new([Item::Int(1), Item::from("howdy"), Item::None])?;
/// let same = ShareableList::open(list.name())?; // in any process, by name
/// same.set(0, 2.5)?;
/// assert_eq!(list.get(0)?, Item::Float(2.5));
/// assert_eq!(list.format()?, "d8sxxxxxx?x");
/// assert!(list.set(1, "far too long for it").is_err());
/// assert_eq!(list.index(&Item::None)?, 2);
/// list.shm().unlink()?;
/// # Ok(())
/// # }
/// ```
///
/// Slots are read and written with atomic copies: a `get` racing with another process's
/// `set` of the same slot may see part of each (then a string may fail to decode, an
/// error), and nothing orders them; synchronise as in Python. Values compare by kind
/// and value ([`count`](ShareableList::count), [`index`](ShareableList::index)), so
/// `Item::Int(1)` is not `Item::Float(1.0)` here, unlike Python's `1 == 1.0`. The layout
/// is this crate's own, not Python's.
pub struct ShareableList {
    shm: SharedMemory,
    /// Each slot's data offset and capacity, read once and checked.
    slots: Vec<(usize, usize)>,
}

impl ShareableList {
    /// A new list holding `items`, in a tracked block under a fresh name.
    pub fn new<I: Into<Item>>(
        items: impl IntoIterator<Item = I>,
    ) -> Result<ShareableList, SharedMemoryError> {
        ShareableList::create(items, None)
    }

    /// A new list holding `items`, in a tracked block named `name`.
    pub fn new_named<I: Into<Item>>(
        name: &str,
        items: impl IntoIterator<Item = I>,
    ) -> Result<ShareableList, SharedMemoryError> {
        ShareableList::create(items, Some(name))
    }

    fn create<I: Into<Item>>(
        items: impl IntoIterator<Item = I>,
        name: Option<&str>,
    ) -> Result<ShareableList, SharedMemoryError> {
        let items: Vec<Item> = items.into_iter().map(Into::into).collect();
        let mut slots = Vec::with_capacity(items.len());
        let mut at = HEADER + SLOT * items.len();
        for item in &items {
            slots.push((at, item.capacity()));
            at += item.capacity();
        }
        let mut builder = SharedMemory::builder(at);
        if let Some(name) = name {
            builder = builder.name(name);
        }
        let list = ShareableList {
            shm: builder.create()?,
            slots,
        };
        list.store(0, MAGIC);
        list.store(8, items.len() as u64);
        for (i, item) in items.iter().enumerate() {
            list.store(HEADER + SLOT * i + 8, list.slots[i].1 as u64);
            list.put(i, item)?;
        }
        Ok(list)
    }

    /// Attaches to the list in the block `name`, from any process: an error if there
    /// is no such block ([`SharedMemoryError::NotFound`]) or it holds no list
    /// ([`SharedMemoryError::Corrupt`]).
    pub fn open(name: &str) -> Result<ShareableList, SharedMemoryError> {
        let shm = SharedMemory::open(name)?;
        let corrupt = |what: String| SharedMemoryError::Corrupt(what);
        let mut list = ShareableList {
            shm,
            slots: Vec::new(),
        };
        if list.shm.size() < HEADER || list.load(0) != MAGIC {
            return Err(corrupt(format!("block {name:?} holds no shareable list")));
        }
        let size = list.shm.size();
        let count = usize::try_from(list.load(8))
            .ok()
            .filter(|n| n.checked_mul(SLOT).is_some_and(|t| t <= size - HEADER))
            .ok_or_else(|| corrupt("more slots than the block holds".to_owned()))?;
        let mut at = HEADER + SLOT * count;
        let mut slots = Vec::with_capacity(count);
        for i in 0..count {
            let capacity = usize::try_from(list.load(HEADER + SLOT * i + 8))
                .ok()
                .filter(|c| at.checked_add(*c).is_some_and(|end| end <= size))
                .ok_or_else(|| corrupt(format!("slot {i} reaches past the block")))?;
            slots.push((at, capacity));
            at += capacity;
        }
        list.slots = slots;
        Ok(list)
    }

    /// The block that holds the list (to [`unlink`](SharedMemory::unlink) it).
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    /// The name of the block that holds the list.
    pub fn name(&self) -> &str {
        self.shm.name()
    }

    /// The number of slots (fixed).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the list has no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The item at `index`.
    pub fn get(&self, index: usize) -> Result<Item, SharedMemoryError> {
        let (at, capacity) = self.slot(index)?;
        let word = self.load(HEADER + SLOT * index);
        let (kind, len) = (
            word & 0xff,
            usize::try_from(word >> 32).unwrap_or(usize::MAX),
        );
        if len > capacity {
            return Err(SharedMemoryError::Corrupt(format!(
                "slot {index} claims {len} bytes of its {capacity}"
            )));
        }
        let mut data = vec![0u8; len];
        self.shm.read(at, &mut data)?;
        Item::decode(kind, data)
            .map_err(|what| SharedMemoryError::Corrupt(format!("slot {index}: {what}")))
    }

    /// Replaces the item at `index` by `value`, of any kind that fits the slot.
    pub fn set(&self, index: usize, value: impl Into<Item>) -> Result<(), SharedMemoryError> {
        self.put(index, &value.into())
    }

    fn put(&self, index: usize, item: &Item) -> Result<(), SharedMemoryError> {
        let (at, capacity) = self.slot(index)?;
        let data = item.data();
        if data.len() > capacity {
            return Err(SharedMemoryError::TooLong {
                index,
                len: data.len(),
                capacity,
            });
        }
        self.shm.write(at, &data)?;
        self.store(
            HEADER + SLOT * index,
            item.kind() | (data.len() as u64) << 32,
        );
        Ok(())
    }

    /// Every item, in order.
    pub fn to_vec(&self) -> Result<Vec<Item>, SharedMemoryError> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// How many items equal `value` (Python's `count`).
    pub fn count(&self, value: &Item) -> Result<usize, SharedMemoryError> {
        Ok(self.to_vec()?.iter().filter(|i| *i == value).count())
    }

    /// The position of the first item equal to `value` (Python's `index`):
    /// [`SharedMemoryError::NotInList`] if there is none.
    pub fn index(&self, value: &Item) -> Result<usize, SharedMemoryError> {
        for i in 0..self.len() {
            if self.get(i)? == *value {
                return Ok(i);
            }
        }
        Err(SharedMemoryError::NotInList)
    }

    /// The `struct` format Python's `ShareableList.format` gives the items as they
    /// are now: `q` an int, `d` a float, `xxxxxxx?` a bool, `xxxxxx?x` `None`, `<n>s`
    /// a string or byte string in a slot of `n` bytes.
    pub fn format(&self) -> Result<String, SharedMemoryError> {
        let mut out = String::new();
        for (i, item) in self.to_vec()?.iter().enumerate() {
            out.push_str(&item.format(self.slots[i].1));
        }
        Ok(out)
    }

    fn slot(&self, index: usize) -> Result<(usize, usize), SharedMemoryError> {
        self.slots
            .get(index)
            .copied()
            .ok_or(SharedMemoryError::Index {
                index,
                len: self.len(),
            })
    }

    /// The word at `offset` (a multiple of 8 within the header or slot table, checked
    /// against the block's size by the callers' layout), with an acquire load.
    fn load(&self, offset: usize) -> u64 {
        self.word(offset).load(Ordering::Acquire)
    }

    /// Stores `value` at `offset` with a release store, publishing the bytes written
    /// before it.
    fn store(&self, offset: usize, value: u64) {
        self.word(offset).store(value, Ordering::Release);
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        assert!(offset % 8 == 0 && offset + 8 <= self.shm.size());
        // SAFETY: aligned (the mapping is page-aligned, `offset` a multiple of 8) and
        // inside the mapping (asserted), which `self.shm` keeps; only accessed
        // atomically.
        unsafe { AtomicU64::from_ptr(self.shm.map.as_ptr().add(offset).cast()) }
    }
}

/// A list crosses to another process as the name of its block, and is opened again by
/// name on arrival (as Python pickles one).
impl Serialize for ShareableList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shm.name().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        ShareableList::open(&name).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareableList")
            .field("name", &self.shm.name())
            .field("len", &self.len())
            .finish()
    }
}
