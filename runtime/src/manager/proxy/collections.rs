//! The proxies of the manager's containers: list, dict, value and queue.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{ProxyCore, decode, encode, proxy_common, tag_of};
use crate::error::Result;
use crate::manager::protocol::{Kind, Op, TypeTag, Wait};

/// A list on the manager's server: Python's `manager.list()`, shaped like a `Vec`.
///
/// Every method is one round trip to the server and returns a [`Result`]: an error when
/// the server is gone (never a hang), or, for [`set`](Self::set),
/// [`insert`](Self::insert) and [`remove`](Self::remove) at an index out of range, a
/// [`ManagerError`](crate::ManagerError) of kind
/// [`IndexOutOfRange`](crate::ManagerErrorKind::IndexOutOfRange) (Python's `IndexError`).
/// Items are copies: changing an item read from the list does not change the list,
/// unless the item is itself a proxy (a list of list proxies shares the inner lists, as
/// in Python).
pub struct ListProxy<T> {
    core: ProxyCore,
    _types: PhantomData<fn() -> T>,
}

proxy_common!(ListProxy<T>, Kind::List, T);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// Appends `item` (Python's `append`).
    pub fn push(&self, item: T) -> Result<()> {
        self.core.op(Op::Push(encode(&item)?))?.unit()?;
        Ok(())
    }

    /// Removes and returns the last item; `None` if the list is empty.
    pub fn pop(&self) -> Result<Option<T>> {
        self.core
            .op(Op::Pop)?
            .maybe()?
            .map(|b| decode(&b))
            .transpose()
    }

    /// The number of items.
    pub fn len(&self) -> Result<usize> {
        Ok(self.core.op(Op::Len)?.count()? as usize)
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of the item at `index`; `None` if out of range.
    pub fn get(&self, index: usize) -> Result<Option<T>> {
        self.core
            .op(Op::Get(index as u64))?
            .maybe()?
            .map(|b| decode(&b))
            .transpose()
    }

    /// Replaces the item at `index`; an error if out of range.
    pub fn set(&self, index: usize, item: T) -> Result<()> {
        self.core
            .op(Op::Set(index as u64, encode(&item)?))?
            .unit()?;
        Ok(())
    }

    /// Inserts `item` before `index` (at the end for `index == len`); an error for a
    /// larger index.
    pub fn insert(&self, index: usize, item: T) -> Result<()> {
        self.core
            .op(Op::Insert(index as u64, encode(&item)?))?
            .unit()?;
        Ok(())
    }

    /// Removes and returns the item at `index`; an error if out of range.
    pub fn remove(&self, index: usize) -> Result<T> {
        decode(&self.core.op(Op::RemoveAt(index as u64))?.value()?)
    }

    /// Appends every item of `items`, in one round trip.
    pub fn extend(&self, items: impl IntoIterator<Item = T>) -> Result<()> {
        let items = items
            .into_iter()
            .map(|i| encode(&i))
            .collect::<Result<Vec<_>>>()?;
        self.core.op(Op::Extend(items))?.unit()?;
        Ok(())
    }

    /// Whether an item equal to `item` is in the list (equal encodings: see the
    /// module's notes).
    pub fn contains(&self, item: &T) -> Result<bool> {
        Ok(self.core.op(Op::Contains(encode(item)?))?.bool()?)
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        self.core.op(Op::Clear)?.unit()?;
        Ok(())
    }

    /// A copy of every item, in one round trip.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.core
            .op(Op::ToVec)?
            .many()?
            .iter()
            .map(|b| decode(b))
            .collect()
    }
}

/// A dictionary on the manager's server: Python's `manager.dict()`, shaped like a
/// `HashMap`, keeping the insertion order as Python's dict does.
///
/// Keys are compared by their encodings (see the module's notes).
pub struct DictProxy<K, V> {
    core: ProxyCore,
    _types: PhantomData<fn() -> (K, V)>,
}

proxy_common!(DictProxy<K, V>, Kind::Dict, (K, V));

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// Inserts `value` under `key`; the value it replaces, if any.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        self.core
            .op(Op::DictInsert(encode(&key)?, encode(&value)?))?
            .maybe()?
            .map(|b| decode(&b))
            .transpose()
    }

    /// A copy of the value under `key`, if any (Python's `dict.get`).
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        self.core
            .op(Op::DictGet(encode(key)?))?
            .maybe()?
            .map(|b| decode(&b))
            .transpose()
    }

    /// Removes the value under `key` and returns it, if any.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        self.core
            .op(Op::DictRemove(encode(key)?))?
            .maybe()?
            .map(|b| decode(&b))
            .transpose()
    }

    /// Whether there is a value under `key`.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        Ok(self.core.op(Op::ContainsKey(encode(key)?))?.bool()?)
    }

    /// The number of entries.
    pub fn len(&self) -> Result<usize> {
        Ok(self.core.op(Op::Len)?.count()? as usize)
    }

    /// Whether the dictionary has no entries.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order.
    pub fn keys(&self) -> Result<Vec<K>> {
        self.core
            .op(Op::Keys)?
            .many()?
            .iter()
            .map(|b| decode(b))
            .collect()
    }

    /// The values, in insertion order of their keys.
    pub fn values(&self) -> Result<Vec<V>> {
        self.core
            .op(Op::Values)?
            .many()?
            .iter()
            .map(|b| decode(b))
            .collect()
    }

    /// The entries, in insertion order.
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.core
            .op(Op::Items)?
            .pairs()?
            .iter()
            .map(|(k, v)| Ok((decode(k)?, decode(v)?)))
            .collect()
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        self.core.op(Op::Clear)?.unit()?;
        Ok(())
    }
}

/// One value on the manager's server: Python's `manager.Value`.
pub struct ValueProxy<T> {
    core: ProxyCore,
    _types: PhantomData<fn() -> T>,
}

proxy_common!(ValueProxy<T>, Kind::Value, T);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// A copy of the value.
    pub fn get(&self) -> Result<T> {
        decode(&self.core.op(Op::Load)?.value()?)
    }

    /// Replaces the value.
    pub fn set(&self, value: T) -> Result<()> {
        self.core.op(Op::Store(encode(&value)?))?.unit()?;
        Ok(())
    }
}

/// A FIFO queue on the manager's server: Python's `manager.Queue()`.
///
/// Unlike a [`Queue`](crate::Queue), which moves items through shared memory, every
/// operation is a round trip to the server; but the proxy travels anywhere a proxy does
/// (inside other proxies, to a remote client). An item that could not be taken or put
/// in time is a [`ManagerError`](crate::ManagerError) of kind
/// [`Empty`](crate::ManagerErrorKind::Empty) or [`Full`](crate::ManagerErrorKind::Full), as
/// Python's `queue.Empty` and `queue.Full`.
pub struct QueueProxy<T> {
    core: ProxyCore,
    _types: PhantomData<fn() -> T>,
}

proxy_common!(QueueProxy<T>, Kind::Queue, T);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    fn put_wait(&self, item: T, wait: Wait) -> Result<()> {
        self.core.op(Op::Put(encode(&item)?, wait))?.unit()?;
        Ok(())
    }

    fn get_wait(&self, wait: Wait) -> Result<T> {
        decode(&self.core.op(Op::Take(wait))?.value()?)
    }

    /// Puts `item`, waiting for room in a bounded queue.
    pub fn put(&self, item: T) -> Result<()> {
        self.put_wait(item, Wait::Forever)
    }

    /// Puts `item`, waiting at most `timeout` for room (then a `Full` error).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<()> {
        self.put_wait(item, Wait::For(timeout))
    }

    /// Puts `item` if there is room now (else a `Full` error): Python's `put_nowait`.
    pub fn try_put(&self, item: T) -> Result<()> {
        self.put_wait(item, Wait::No)
    }

    /// Takes the oldest item, waiting for one.
    pub fn get(&self) -> Result<T> {
        self.get_wait(Wait::Forever)
    }

    /// Takes the oldest item, waiting at most `timeout` (then an `Empty` error).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_wait(Wait::For(timeout))
    }

    /// Takes the oldest item if there is one now (else an `Empty` error): Python's
    /// `get_nowait`.
    pub fn try_get(&self) -> Result<T> {
        self.get_wait(Wait::No)
    }

    /// The number of items in the queue.
    pub fn qsize(&self) -> Result<usize> {
        Ok(self.core.op(Op::Qsize)?.count()? as usize)
    }

    /// Whether the queue is empty.
    pub fn empty(&self) -> Result<bool> {
        Ok(self.core.op(Op::IsEmpty)?.bool()?)
    }

    /// Whether a bounded queue is full.
    pub fn full(&self) -> Result<bool> {
        Ok(self.core.op(Op::IsFull)?.bool()?)
    }
}
