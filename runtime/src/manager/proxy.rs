//! Proxies: typed handles on the objects a manager's server holds.
//!
//! A proxy is an address, a key and an object id; each call is one request/response
//! round trip on a connection that the calling process keeps open to the server (see
//! `transport`). Proxies are `Serialize`: they cross as worker arguments, inside queues
//! and inside other proxies' values, and connect from wherever they land.
//!
//! Values cross as their encodings, and the server compares encodings where it must
//! compare values (`ListProxy::contains`, the keys of a `DictProxy`): two values are
//! the same when their encodings are, which is `==` for the usual key types (integers,
//! strings, tuples and structs of them). It differs from `==` for floats (`0.0` and
//! `-0.0` differ, a `NaN` equals the same `NaN`) and for values whose encoding depends
//! on an iteration order (a `HashMap` inside a key).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::manager::error::{ManagerError, ManagerErrorKind};
use crate::manager::protocol::{Bytes, Kind, Op, Owner, Reply, Request, TypeTag, Wait};
use crate::manager::transport::{self, Endpoint};
use crate::wire::codec;

/// The untyped part of every proxy: where the object lives and which it is.
/// Not public API; used by generated code.
#[doc(hidden)]
#[derive(Clone)]
pub struct ProxyCore {
    endpoint: Arc<Endpoint>,
    id: u64,
    tag: TypeTag,
}

impl fmt::Debug for ProxyCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("address", &self.endpoint.address)
            .field("id", &self.id)
            .field("kind", &self.tag.kind)
            .field("type", &self.tag.ty)
            .finish()
    }
}

/// What a proxy is on the wire.
#[derive(Serialize, Deserialize)]
struct Token {
    endpoint: Endpoint,
    id: u64,
    tag: TypeTag,
}

impl Serialize for ProxyCore {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        Token {
            endpoint: (*self.endpoint).clone(),
            id: self.id,
            tag: self.tag.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ProxyCore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let token = Token::deserialize(deserializer)?;
        Ok(ProxyCore {
            endpoint: Arc::new(token.endpoint),
            id: token.id,
            tag: token.tag,
        })
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    Ok(codec::encode_record(value)?)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    Ok(codec::decode_record(bytes)?)
}

fn owner() -> Owner {
    Owner {
        process: transport::process_token(),
        thread: u64::from(crate::os::identity::current_tid()),
    }
}

impl ProxyCore {
    pub(crate) fn new(endpoint: Arc<Endpoint>, id: u64, tag: TypeTag) -> Self {
        ProxyCore { endpoint, id, tag }
    }

    fn op(&self, op: Op) -> Result<Reply> {
        transport::call(
            &self.endpoint,
            &Request::Call {
                id: self.id,
                kind: self.tag.kind,
                op,
            },
        )
    }

    /// Calls method number `method` of a `#[managed]` object with `args`.
    /// Not public API; used by generated code.
    pub fn call_method<A: Serialize, R: DeserializeOwned>(
        &self,
        method: u32,
        args: &A,
    ) -> Result<R> {
        let reply = self.op(Op::Method(method, encode(args)?))?;
        decode(&reply.value()?)
    }

    /// The core, checked to be a `tag`, for a proxy being decoded.
    fn expect<E: serde::de::Error>(self, tag: TypeTag) -> std::result::Result<Self, E> {
        if self.tag == tag {
            Ok(self)
        } else {
            Err(E::custom(ManagerError::new(
                ManagerErrorKind::WrongType,
                format!(
                    "a proxy of a {:?} of `{}` cannot be decoded as a proxy of a {:?} of `{}`",
                    self.tag.kind, self.tag.ty, tag.kind, tag.ty
                ),
            )))
        }
    }

    /// A core checked against `M`'s key, for a `#[managed]` proxy being decoded.
    /// Not public API; used by generated code.
    pub fn deserialize_managed<'de, D: Deserializer<'de>>(
        deserializer: D,
        key: &str,
    ) -> std::result::Result<Self, D::Error> {
        ProxyCore::deserialize(deserializer)?.expect(TypeTag {
            kind: Kind::Custom,
            ty: key.to_owned(),
        })
    }
}

fn tag_of<T: ?Sized>(kind: Kind) -> TypeTag {
    TypeTag {
        kind,
        ty: std::any::type_name::<T>().to_owned(),
    }
}

/// The common items of a typed proxy: its tag, `Clone`, `Debug`, serde.
macro_rules! proxy_common {
    ($name:ident < $($t:ident),* >, $kind:expr, $ty:ty) => {
        impl<$($t),*> $name<$($t),*> {
            pub(crate) fn tag() -> TypeTag {
                tag_of::<$ty>($kind)
            }

            pub(crate) fn from_core(core: ProxyCore) -> Self {
                $name { core, _types: PhantomData }
            }
        }

        impl<$($t),*> Clone for $name<$($t),*> {
            fn clone(&self) -> Self {
                $name { core: self.core.clone(), _types: PhantomData }
            }
        }

        impl<$($t),*> fmt::Debug for $name<$($t),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.core.fmt(f)
            }
        }

        impl<$($t),*> Serialize for $name<$($t),*> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.core.serialize(s)
            }
        }

        impl<'de, $($t),*> Deserialize<'de> for $name<$($t),*> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let core = ProxyCore::deserialize(d)?.expect::<D::Error>(Self::tag())?;
                Ok(Self::from_core(core))
            }
        }
    };
    ($name:ident, $kind:expr) => {
        impl $name {
            pub(crate) fn tag() -> TypeTag {
                tag_of::<()>($kind)
            }

            pub(crate) fn from_core(core: ProxyCore) -> Self {
                $name { core }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.core.fmt(f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.core.serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let core = ProxyCore::deserialize(d)?.expect::<D::Error>(Self::tag())?;
                Ok(Self::from_core(core))
            }
        }
    };
}

/// A list on the manager's server: Python's `manager.list()`, shaped like a `Vec`.
///
/// Every method is one round trip to the server and returns a [`Result`]: an error when
/// the server is gone (never a hang), or, for [`set`](Self::set),
/// [`insert`](Self::insert) and [`remove`](Self::remove) at an index out of range, a
/// [`ManagerError`] of kind [`IndexOutOfRange`](ManagerErrorKind::IndexOutOfRange)
/// (Python's `IndexError`). Items are copies: changing an item read from the list does
/// not change the list, unless the item is itself a proxy (a list of list proxies shares
/// the inner lists, as in Python).
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
/// in time is a [`ManagerError`] of kind [`Empty`](ManagerErrorKind::Empty) or
/// [`Full`](ManagerErrorKind::Full), as Python's `queue.Empty` and `queue.Full`.
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

/// Releases a lock, semaphore or condition of the manager when dropped.
///
/// A release that fails while dropping (the server is gone) is ignored; call
/// [`release`](Self::release) to see its error.
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct ProxyGuard<'a> {
    core: &'a ProxyCore,
    owner: Owner,
    released: bool,
}

impl fmt::Debug for ProxyGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyGuard").field("of", self.core).finish()
    }
}

impl ProxyGuard<'_> {
    /// Releases now, and reports whether the server did.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.core.op(Op::Release(self.owner))?.unit()?;
        Ok(())
    }
}

impl Drop for ProxyGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.core.op(Op::Release(self.owner));
        }
    }
}

fn wait_of(timeout: Duration) -> Wait {
    Wait::For(timeout)
}

/// The acquiring methods shared by the lock-like proxies.
macro_rules! acquiring {
    ($guard:ident) => {
        /// Acquires, waiting as long as it takes.
        pub fn acquire(&self) -> Result<()> {
            self.core.op(Op::Acquire(owner(), Wait::Forever))?.bool()?;
            Ok(())
        }

        /// Acquires, waiting at most `timeout`; whether it did.
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
            Ok(self
                .core
                .op(Op::Acquire(owner(), wait_of(timeout)))?
                .bool()?)
        }

        /// Acquires if that is possible now; whether it did.
        pub fn try_acquire(&self) -> Result<bool> {
            Ok(self.core.op(Op::Acquire(owner(), Wait::No))?.bool()?)
        }

        /// Releases.
        pub fn release(&self) -> Result<()> {
            self.core.op(Op::Release(owner()))?.unit()?;
            Ok(())
        }

        /// Acquires and returns a guard that releases when dropped.
        pub fn $guard(&self) -> Result<ProxyGuard<'_>> {
            let owner = owner();
            self.core.op(Op::Acquire(owner, Wait::Forever))?.bool()?;
            Ok(ProxyGuard {
                core: &self.core,
                owner,
                released: false,
            })
        }
    };
}

/// A lock on the manager's server: Python's `manager.Lock()` (a `threading.Lock`:
/// any thread of any process may release it; releasing it unlocked is an error of kind
/// [`ReleasedTooManyTimes`](ManagerErrorKind::ReleasedTooManyTimes)).
#[derive(Clone)]
pub struct LockProxy {
    core: ProxyCore,
}

proxy_common!(LockProxy, Kind::Lock);

impl LockProxy {
    acquiring!(lock);

    /// Whether some thread holds the lock.
    pub fn is_locked(&self) -> Result<bool> {
        Ok(self.core.op(Op::IsLocked)?.bool()?)
    }
}

/// A re-entrant lock on the manager's server: Python's `manager.RLock()`. It is held by
/// a thread of a process; another thread's release is an error of kind
/// [`NotOwner`](ManagerErrorKind::NotOwner).
#[derive(Clone)]
pub struct RLockProxy {
    core: ProxyCore,
}

proxy_common!(RLockProxy, Kind::RLock);

impl RLockProxy {
    acquiring!(lock);

    /// Whether some thread holds the lock.
    pub fn is_locked(&self) -> Result<bool> {
        Ok(self.core.op(Op::IsLocked)?.bool()?)
    }
}

/// A semaphore on the manager's server: Python's `manager.Semaphore(n)`.
#[derive(Clone)]
pub struct SemaphoreProxy {
    core: ProxyCore,
}

proxy_common!(SemaphoreProxy, Kind::Semaphore);

impl SemaphoreProxy {
    acquiring!(permit);

    /// The current value.
    pub fn value(&self) -> Result<u64> {
        Ok(self.core.op(Op::SemValue)?.count()?)
    }
}

/// A bounded semaphore on the manager's server: Python's
/// `manager.BoundedSemaphore(n)`; releasing above the initial value is an error of kind
/// [`ReleasedTooManyTimes`](ManagerErrorKind::ReleasedTooManyTimes).
#[derive(Clone)]
pub struct BoundedSemaphoreProxy {
    core: ProxyCore,
}

proxy_common!(BoundedSemaphoreProxy, Kind::BoundedSemaphore);

impl BoundedSemaphoreProxy {
    acquiring!(permit);

    /// The current value.
    pub fn value(&self) -> Result<u64> {
        Ok(self.core.op(Op::SemValue)?.count()?)
    }
}

/// An event on the manager's server: Python's `manager.Event()`.
#[derive(Clone)]
pub struct EventProxy {
    core: ProxyCore,
}

proxy_common!(EventProxy, Kind::Event);

impl EventProxy {
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) -> Result<()> {
        self.core.op(Op::SetEvent)?.unit()?;
        Ok(())
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        self.core.op(Op::ClearEvent)?.unit()?;
        Ok(())
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        Ok(self.core.op(Op::IsSet)?.bool()?)
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        self.core.op(Op::WaitEvent(Wait::Forever))?.bool()?;
        Ok(())
    }

    /// Waits at most `timeout` for the flag; whether it is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self.core.op(Op::WaitEvent(wait_of(timeout)))?.bool()?)
    }
}

/// A condition variable on the manager's server, with its own re-entrant lock:
/// Python's `manager.Condition()`. `wait` and `notify` need the lock, held by the
/// calling thread (else an error of kind [`NotOwner`](ManagerErrorKind::NotOwner)).
#[derive(Clone)]
pub struct ConditionProxy {
    core: ProxyCore,
}

proxy_common!(ConditionProxy, Kind::Condition);

impl ConditionProxy {
    acquiring!(lock);

    /// Releases the lock, waits for a notification, and takes the lock back.
    pub fn wait(&self) -> Result<()> {
        self.core
            .op(Op::WaitCondition(owner(), Wait::Forever))?
            .bool()?;
        Ok(())
    }

    /// As [`wait`](Self::wait), at most `timeout`; whether it was notified.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self
            .core
            .op(Op::WaitCondition(owner(), wait_of(timeout)))?
            .bool()?)
    }

    /// Wakes one waiter.
    pub fn notify(&self) -> Result<()> {
        self.notify_n(1)
    }

    /// Wakes up to `n` waiters, the longest waiting first.
    pub fn notify_n(&self, n: usize) -> Result<()> {
        self.core.op(Op::Notify(owner(), n as u64))?.unit()?;
        Ok(())
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> Result<()> {
        self.core.op(Op::NotifyAll(owner()))?.unit()?;
        Ok(())
    }
}

/// A barrier on the manager's server: Python's `manager.Barrier(parties)`. A broken
/// barrier gives errors of kind [`BrokenBarrier`](ManagerErrorKind::BrokenBarrier).
#[derive(Clone)]
pub struct BarrierProxy {
    core: ProxyCore,
}

proxy_common!(BarrierProxy, Kind::Barrier);

impl BarrierProxy {
    /// Waits for every party; this party's arrival index, distinct among the parties
    /// of one pass.
    pub fn wait(&self) -> Result<usize> {
        Ok(self.core.op(Op::WaitBarrier(Wait::Forever))?.count()? as usize)
    }

    /// As [`wait`](Self::wait), at most `timeout`; a timeout breaks the barrier.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        Ok(self.core.op(Op::WaitBarrier(wait_of(timeout)))?.count()? as usize)
    }

    /// Breaks the barrier for the parties waiting and those to come, until `reset`.
    pub fn abort(&self) -> Result<()> {
        self.core.op(Op::Abort)?.unit()?;
        Ok(())
    }

    /// Back to the initial state; parties waiting now get a broken-barrier error.
    pub fn reset(&self) -> Result<()> {
        self.core.op(Op::Reset)?.unit()?;
        Ok(())
    }

    /// The number of parties.
    pub fn parties(&self) -> Result<usize> {
        Ok(self.core.op(Op::Parties)?.count()? as usize)
    }

    /// The number of parties waiting now.
    pub fn n_waiting(&self) -> Result<usize> {
        Ok(self.core.op(Op::NWaiting)?.count()? as usize)
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> Result<bool> {
        Ok(self.core.op(Op::IsBroken)?.bool()?)
    }
}
