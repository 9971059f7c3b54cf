//! The records a client and the manager's server exchange once authenticated: one
//! [`Request`] frame, one [`Response`] frame, strictly in turn (on the socket, or on the
//! shared-memory pipe a local client attaches).
//!
//! The server is one generic program for every user type, so values travel and are
//! stored as their encodings ([`Bytes`]); only the proxies, which know `T`, encode and
//! decode them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ipc::connection::Connection;
use crate::manager::error::{ManagerError, ManagerErrorKind};

/// An encoded value.
pub(crate) type Bytes = Vec<u8>;

/// What kind of object an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Kind {
    List,
    Dict,
    Value,
    Queue,
    Lock,
    RLock,
    Semaphore,
    BoundedSemaphore,
    Event,
    Condition,
    Barrier,
    Custom,
}

/// An object's type as the server checks it: its kind, and the Rust type of what it
/// holds (`type_name` of the element, of `(K, V)`, or a `#[managed]` type's key).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct TypeTag {
    pub(crate) kind: Kind,
    pub(crate) ty: String,
}

/// How long a blocking operation may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Wait {
    /// Not at all.
    No,
    /// Until it can proceed.
    Forever,
    /// At most this long.
    For(Duration),
}

/// What a new object starts with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Init {
    Empty,
    /// A value, or a `#[managed]` object, encoded.
    Value(Bytes),
    /// A list's items.
    Items(Vec<Bytes>),
    /// A semaphore's value, a barrier's parties, a queue's bound.
    Count(u64),
}

/// Who holds an `RLock` or a condition's lock: a thread of a client process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Owner {
    pub(crate) process: u64,
    pub(crate) thread: u64,
}

/// One request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Creates an object (or finds the one of this name): `Reply::Id`.
    Create {
        tag: TypeTag,
        init: Init,
        name: Option<String>,
    },
    /// Checks that `id` exists with type `tag` (a proxy decoded in another process).
    Check { id: u64, tag: TypeTag },
    /// An operation on object `id`, which must have kind `kind`.
    Call { id: u64, kind: Kind, op: Op },
    /// Stops the server (only the owning handle sends it).
    Shutdown,
    /// From a local client, first after the greeting: the server's end of a pipe,
    /// through which the requests and answers that follow travel (`Reply::Unit`, sent
    /// on the socket). Refused on TCP.
    Attach(Connection<Vec<u8>>),
}

/// An operation on one object.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    // Lists.
    Push(Bytes),
    Pop,
    Len,
    Get(u64),
    Set(u64, Bytes),
    Insert(u64, Bytes),
    RemoveAt(u64),
    Extend(Vec<Bytes>),
    Contains(Bytes),
    Clear,
    ToVec,
    // Dicts (and `Len`, `Clear`).
    DictInsert(Bytes, Bytes),
    DictGet(Bytes),
    DictRemove(Bytes),
    ContainsKey(Bytes),
    Keys,
    Values,
    Items,
    // Values.
    Load,
    Store(Bytes),
    // Queues.
    Put(Bytes, Wait),
    Take(Wait),
    Qsize,
    IsEmpty,
    IsFull,
    // Locks, semaphores, conditions.
    Acquire(Owner, Wait),
    Release(Owner),
    IsLocked,
    SemValue,
    // Events.
    SetEvent,
    ClearEvent,
    IsSet,
    WaitEvent(Wait),
    // Conditions.
    WaitCondition(Owner, Wait),
    Notify(Owner, u64),
    NotifyAll(Owner),
    // Barriers.
    WaitBarrier(Wait),
    Reset,
    Abort,
    Parties,
    NWaiting,
    IsBroken,
    // `#[managed]` types.
    Method(u32, Bytes),
}

/// A successful answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Unit,
    Bool(bool),
    Count(u64),
    Id(u64),
    Value(Bytes),
    Maybe(Option<Bytes>),
    Many(Vec<Bytes>),
    Pairs(Vec<(Bytes, Bytes)>),
}

/// The answer to one request.
pub(crate) type Response = Result<Reply, ManagerError>;

/// The first frame after authentication, from the server: who it is.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) server_id: u64,
    pub(crate) pid: u32,
}

impl Reply {
    fn unexpected(self, wanted: &str) -> ManagerError {
        ManagerError::new(
            ManagerErrorKind::Protocol,
            format!("the server answered {self:?} where {wanted} was expected"),
        )
    }

    pub(crate) fn unit(self) -> Result<(), ManagerError> {
        match self {
            Reply::Unit => Ok(()),
            other => Err(other.unexpected("nothing")),
        }
    }

    pub(crate) fn bool(self) -> Result<bool, ManagerError> {
        match self {
            Reply::Bool(b) => Ok(b),
            other => Err(other.unexpected("a bool")),
        }
    }

    pub(crate) fn count(self) -> Result<u64, ManagerError> {
        match self {
            Reply::Count(n) => Ok(n),
            other => Err(other.unexpected("a count")),
        }
    }

    pub(crate) fn id(self) -> Result<u64, ManagerError> {
        match self {
            Reply::Id(id) => Ok(id),
            other => Err(other.unexpected("an object id")),
        }
    }

    pub(crate) fn value(self) -> Result<Bytes, ManagerError> {
        match self {
            Reply::Value(v) => Ok(v),
            other => Err(other.unexpected("a value")),
        }
    }

    pub(crate) fn maybe(self) -> Result<Option<Bytes>, ManagerError> {
        match self {
            Reply::Maybe(v) => Ok(v),
            other => Err(other.unexpected("an optional value")),
        }
    }

    pub(crate) fn many(self) -> Result<Vec<Bytes>, ManagerError> {
        match self {
            Reply::Many(v) => Ok(v),
            other => Err(other.unexpected("values")),
        }
    }

    pub(crate) fn pairs(self) -> Result<Vec<(Bytes, Bytes)>, ManagerError> {
        match self {
            Reply::Pairs(v) => Ok(v),
            other => Err(other.unexpected("pairs")),
        }
    }
}
