//! The shared objects the server holds: their state, how a `Create` request makes
//! one, and how an operation on one waits without losing sight of its client.

use std::collections::{HashSet, VecDeque};
use std::os::fd::BorrowedFd;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use crate::manager::error::{ManagerError, ManagerErrorKind};
use crate::manager::managed::{self, Dispatch};
use crate::manager::protocol::{Bytes, Init, Kind, Owner, TypeTag, Wait};
use crate::os::sys;

/// How often a blocked operation checks that its client is still there.
const LIVENESS: Duration = Duration::from_millis(50);

/// A shared object and the type it was created with.
pub(super) struct Slot {
    pub(super) tag: TypeTag,
    pub(super) object: Object,
}

pub(super) enum Object {
    List(Mutex<Vec<Bytes>>),
    Dict(Mutex<IndexMap<Bytes, Bytes>>),
    Value(Mutex<Bytes>),
    Queue(Blocking<QueueState>),
    Lock(Blocking<bool>),
    RLock(Blocking<RLockState>),
    Semaphore(Blocking<SemState>),
    Event(Blocking<bool>),
    Condition(Blocking<CondState>),
    Barrier(Blocking<BarrierState>),
    Custom(Mutex<Box<dyn Dispatch>>),
}

/// State guarded by a mutex, with one condition variable for every change.
pub(super) struct Blocking<T> {
    state: Mutex<T>,
    changed: Condvar,
}

impl<T> Blocking<T> {
    fn new(state: T) -> Self {
        Blocking {
            state: Mutex::new(state),
            changed: Condvar::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, T> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `ready` holds (`true`), `wait` runs out (`false`), or the client
    /// hangs up (an error). `ready` is checked with the lock held, first at once.
    pub(super) fn wait_until<'a>(
        &'a self,
        mut guard: MutexGuard<'a, T>,
        wait: Wait,
        client: BorrowedFd<'_>,
        mut ready: impl FnMut(&mut T) -> bool,
    ) -> Result<(MutexGuard<'a, T>, bool), ManagerError> {
        let deadline = match wait {
            Wait::No => {
                return Ok({
                    let ok = ready(&mut guard);
                    (guard, ok)
                });
            }
            Wait::Forever => None,
            Wait::For(d) => Some(sys::deadline_after(d)),
        };
        loop {
            if ready(&mut guard) {
                return Ok((guard, true));
            }
            let now = Instant::now();
            let slice = match deadline {
                Some(d) if d <= now => return Ok((guard, false)),
                Some(d) => (d - now).min(LIVENESS),
                None => LIVENESS,
            };
            let (g, _) = self
                .changed
                .wait_timeout(guard, slice)
                .unwrap_or_else(PoisonError::into_inner);
            guard = g;
            // Checked before `ready`, so that a client gone is never handed an item or
            // a lock it cannot receive.
            if client_gone(client) {
                return Err(ManagerError::disconnected(
                    "the client hung up while waiting",
                ));
            }
        }
    }

    pub(super) fn notify(&self) {
        self.changed.notify_all();
    }
}

/// Whether the client of a request in progress hung up (or broke the protocol by
/// sending another request before the answer).
fn client_gone(client: BorrowedFd<'_>) -> bool {
    sys::is_readable(client).unwrap_or(true)
}

pub(super) struct QueueState {
    pub(super) items: VecDeque<Bytes>,
    /// 0: unbounded.
    pub(super) maxsize: u64,
}

pub(super) struct RLockState {
    pub(super) owner: Option<Owner>,
    pub(super) count: u64,
}

pub(super) struct SemState {
    pub(super) value: u64,
    /// The bound of a bounded semaphore.
    pub(super) max: Option<u64>,
}

pub(super) struct CondState {
    /// The condition's lock, an `RLock`.
    pub(super) lock: RLockState,
    pub(super) next_ticket: u64,
    /// Tickets of waiters not yet notified, oldest first.
    pub(super) waiting: VecDeque<u64>,
    /// Tickets notified and not yet seen by their waiter.
    pub(super) woken: HashSet<u64>,
}

pub(super) struct BarrierState {
    pub(super) parties: u64,
    pub(super) count: u64,
    pub(super) generation: u64,
    pub(super) broken: bool,
    /// The generation that `reset` ended while parties waited in it.
    pub(super) reset_of: Option<u64>,
}

pub(super) fn err(kind: ManagerErrorKind, message: impl Into<String>) -> ManagerError {
    ManagerError::new(kind, message)
}

fn count(init: &Init) -> Result<u64, ManagerError> {
    match init {
        Init::Count(n) => Ok(*n),
        _ => Err(err(ManagerErrorKind::Protocol, "a count was expected")),
    }
}

pub(super) fn new_object(tag: &TypeTag, init: Init) -> Result<Object, ManagerError> {
    Ok(match tag.kind {
        Kind::List => Object::List(Mutex::new(match init {
            Init::Items(items) => items,
            _ => Vec::new(),
        })),
        Kind::Dict => Object::Dict(Mutex::new(IndexMap::new())),
        Kind::Value => Object::Value(Mutex::new(match init {
            Init::Value(v) => v,
            _ => {
                return Err(err(
                    ManagerErrorKind::Protocol,
                    "a value needs a first value",
                ));
            }
        })),
        Kind::Queue => Object::Queue(Blocking::new(QueueState {
            items: VecDeque::new(),
            maxsize: count(&init)?,
        })),
        Kind::Lock => Object::Lock(Blocking::new(false)),
        Kind::RLock => Object::RLock(Blocking::new(RLockState {
            owner: None,
            count: 0,
        })),
        Kind::Semaphore | Kind::BoundedSemaphore => {
            let value = count(&init)?;
            Object::Semaphore(Blocking::new(SemState {
                value,
                max: (tag.kind == Kind::BoundedSemaphore).then_some(value),
            }))
        }
        Kind::Event => Object::Event(Blocking::new(false)),
        Kind::Condition => Object::Condition(Blocking::new(CondState {
            lock: RLockState {
                owner: None,
                count: 0,
            },
            next_ticket: 0,
            waiting: VecDeque::new(),
            woken: HashSet::new(),
        })),
        Kind::Barrier => {
            let parties = count(&init)?;
            if parties == 0 {
                return Err(err(
                    ManagerErrorKind::InvalidArgument,
                    "a barrier needs at least one party",
                ));
            }
            Object::Barrier(Blocking::new(BarrierState {
                parties,
                count: 0,
                generation: 0,
                broken: false,
                reset_of: None,
            }))
        }
        Kind::Custom => {
            let Init::Value(bytes) = init else {
                return Err(err(
                    ManagerErrorKind::Protocol,
                    "a managed object needs a value",
                ));
            };
            Object::Custom(Mutex::new(managed::construct(&tag.ty, &bytes)?))
        }
    })
}
