//! The operations on each kind of shared object: one `Op` of a `Call` request, run
//! against the object's state.

use std::os::fd::BorrowedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::objects::{BarrierState, Blocking, CondState, Object, RLockState, err};
use crate::manager::error::{ManagerError, ManagerErrorKind};
use crate::manager::protocol::{Op, Owner, Reply, Response, Wait};

fn index_error(index: u64, len: usize) -> ManagerError {
    err(
        ManagerErrorKind::IndexOutOfRange,
        format!("list index {index} out of range for a list of {len} items"),
    )
}

fn too_many() -> ManagerError {
    err(
        ManagerErrorKind::ReleasedTooManyTimes,
        "semaphore or lock released too many times",
    )
}

fn index(i: u64) -> usize {
    usize::try_from(i).unwrap_or(usize::MAX)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unsupported(op: &Op) -> ManagerError {
    err(
        ManagerErrorKind::WrongType,
        format!("this object has no operation {op:?}"),
    )
}

/// Acquires an `RLock`-like state for `owner`, waiting as `wait` allows.
fn acquire_rlock<T>(
    b: &Blocking<T>,
    owner: Owner,
    wait: Wait,
    client: BorrowedFd<'_>,
    state: impl Fn(&mut T) -> &mut RLockState,
) -> Result<bool, ManagerError> {
    let guard = b.lock();
    let (mut guard, ok) = b.wait_until(guard, wait, client, |s| {
        let l = state(s);
        l.owner.is_none() || l.owner == Some(owner)
    })?;
    if ok {
        let l = state(&mut guard);
        l.owner = Some(owner);
        l.count += 1;
    }
    Ok(ok)
}

fn release_rlock(l: &mut RLockState, owner: Owner) -> Result<bool, ManagerError> {
    if l.owner != Some(owner) {
        return Err(err(
            ManagerErrorKind::NotOwner,
            "cannot release un-acquired lock: the calling thread does not hold it",
        ));
    }
    l.count -= 1;
    if l.count == 0 {
        l.owner = None;
        return Ok(true);
    }
    Ok(false)
}

pub(super) fn call(object: &Object, op: Op, client: BorrowedFd<'_>) -> Response {
    match object {
        Object::List(list) => {
            let mut list = lock(list);
            Ok(match op {
                Op::Push(v) => {
                    list.push(v);
                    Reply::Unit
                }
                Op::Pop => Reply::Maybe(list.pop()),
                Op::Len => Reply::Count(list.len() as u64),
                Op::Get(i) => Reply::Maybe(list.get(index(i)).cloned()),
                Op::Set(i, v) => {
                    let len = list.len();
                    let slot = list.get_mut(index(i)).ok_or_else(|| index_error(i, len))?;
                    *slot = v;
                    Reply::Unit
                }
                Op::Insert(i, v) => {
                    if index(i) > list.len() {
                        return Err(index_error(i, list.len()));
                    }
                    list.insert(index(i), v);
                    Reply::Unit
                }
                Op::RemoveAt(i) => {
                    if index(i) >= list.len() {
                        return Err(index_error(i, list.len()));
                    }
                    Reply::Value(list.remove(index(i)))
                }
                Op::Extend(items) => {
                    list.extend(items);
                    Reply::Unit
                }
                Op::Contains(v) => Reply::Bool(list.contains(&v)),
                Op::Clear => {
                    list.clear();
                    Reply::Unit
                }
                Op::ToVec => Reply::Many(list.clone()),
                other => return Err(unsupported(&other)),
            })
        }
        Object::Dict(dict) => {
            let mut dict = lock(dict);
            Ok(match op {
                Op::DictInsert(k, v) => Reply::Maybe(dict.insert(k, v)),
                Op::DictGet(k) => Reply::Maybe(dict.get(&k).cloned()),
                Op::DictRemove(k) => Reply::Maybe(dict.shift_remove(&k)),
                Op::ContainsKey(k) => Reply::Bool(dict.contains_key(&k)),
                Op::Len => Reply::Count(dict.len() as u64),
                Op::Keys => Reply::Many(dict.keys().cloned().collect()),
                Op::Values => Reply::Many(dict.values().cloned().collect()),
                Op::Items => {
                    Reply::Pairs(dict.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                }
                Op::Clear => {
                    dict.clear();
                    Reply::Unit
                }
                other => return Err(unsupported(&other)),
            })
        }
        Object::Value(value) => {
            let mut value = lock(value);
            Ok(match op {
                Op::Load => Reply::Value(value.clone()),
                Op::Store(v) => {
                    *value = v;
                    Reply::Unit
                }
                other => return Err(unsupported(&other)),
            })
        }
        Object::Queue(q) => match op {
            Op::Put(item, wait) => {
                let guard = q.lock();
                let (mut guard, ok) = q.wait_until(guard, wait, client, |s| {
                    s.maxsize == 0 || (s.items.len() as u64) < s.maxsize
                })?;
                if !ok {
                    return Err(err(ManagerErrorKind::Full, "the queue is full"));
                }
                guard.items.push_back(item);
                drop(guard);
                q.notify();
                Ok(Reply::Unit)
            }
            Op::Take(wait) => {
                let guard = q.lock();
                let (mut guard, ok) = q.wait_until(guard, wait, client, |s| !s.items.is_empty())?;
                let item = guard.items.pop_front();
                drop(guard);
                match item {
                    Some(item) if ok => {
                        q.notify();
                        Ok(Reply::Value(item))
                    }
                    _ => Err(err(ManagerErrorKind::Empty, "the queue is empty")),
                }
            }
            Op::Qsize => Ok(Reply::Count(q.lock().items.len() as u64)),
            Op::IsEmpty => Ok(Reply::Bool(q.lock().items.is_empty())),
            Op::IsFull => {
                let s = q.lock();
                Ok(Reply::Bool(
                    s.maxsize != 0 && s.items.len() as u64 >= s.maxsize,
                ))
            }
            other => Err(unsupported(&other)),
        },
        Object::Lock(l) => match op {
            Op::Acquire(_, wait) => {
                let guard = l.lock();
                let (mut guard, ok) = l.wait_until(guard, wait, client, |locked| !*locked)?;
                if ok {
                    *guard = true;
                }
                Ok(Reply::Bool(ok))
            }
            Op::Release(_) => {
                let mut guard = l.lock();
                if !*guard {
                    return Err(too_many());
                }
                *guard = false;
                drop(guard);
                l.notify();
                Ok(Reply::Unit)
            }
            Op::IsLocked => Ok(Reply::Bool(*l.lock())),
            other => Err(unsupported(&other)),
        },
        Object::RLock(l) => match op {
            Op::Acquire(owner, wait) => {
                acquire_rlock(l, owner, wait, client, |s| s).map(Reply::Bool)
            }
            Op::Release(owner) => {
                let freed = release_rlock(&mut l.lock(), owner)?;
                if freed {
                    l.notify();
                }
                Ok(Reply::Unit)
            }
            Op::IsLocked => Ok(Reply::Bool(l.lock().owner.is_some())),
            other => Err(unsupported(&other)),
        },
        Object::Semaphore(sem) => match op {
            Op::Acquire(_, wait) => {
                let guard = sem.lock();
                let (mut guard, ok) = sem.wait_until(guard, wait, client, |s| s.value > 0)?;
                if ok {
                    guard.value -= 1;
                }
                Ok(Reply::Bool(ok))
            }
            Op::Release(_) => {
                let mut guard = sem.lock();
                if guard.max.is_some_and(|max| guard.value >= max) {
                    return Err(too_many());
                }
                guard.value += 1;
                drop(guard);
                sem.notify();
                Ok(Reply::Unit)
            }
            Op::SemValue => Ok(Reply::Count(sem.lock().value)),
            other => Err(unsupported(&other)),
        },
        Object::Event(e) => match op {
            Op::SetEvent => {
                *e.lock() = true;
                e.notify();
                Ok(Reply::Unit)
            }
            Op::ClearEvent => {
                *e.lock() = false;
                Ok(Reply::Unit)
            }
            Op::IsSet => Ok(Reply::Bool(*e.lock())),
            Op::WaitEvent(wait) => {
                let guard = e.lock();
                let (guard, ok) = e.wait_until(guard, wait, client, |set| *set)?;
                drop(guard);
                Ok(Reply::Bool(ok))
            }
            other => Err(unsupported(&other)),
        },
        Object::Condition(c) => condition(c, op, client),
        Object::Barrier(b) => barrier(b, op, client),
        Object::Custom(obj) => match op {
            Op::Method(index, args) => {
                let mut obj = lock(obj);
                match catch_unwind(AssertUnwindSafe(|| obj.dispatch(index, &args))) {
                    Ok(result) => result.map(Reply::Value),
                    Err(panic) => {
                        let message = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic".to_owned());
                        Err(err(
                            ManagerErrorKind::Method,
                            format!("the method panicked on the server: {message}"),
                        ))
                    }
                }
            }
            other => Err(unsupported(&other)),
        },
    }
}

fn not_owned(what: &str) -> ManagerError {
    err(
        ManagerErrorKind::NotOwner,
        format!("cannot {what}: the condition's lock is not held by the calling thread"),
    )
}

fn condition(c: &Blocking<CondState>, op: Op, client: BorrowedFd<'_>) -> Response {
    match op {
        Op::Acquire(owner, wait) => {
            acquire_rlock(c, owner, wait, client, |s| &mut s.lock).map(Reply::Bool)
        }
        Op::Release(owner) => {
            let freed = release_rlock(&mut c.lock().lock, owner)?;
            if freed {
                c.notify();
            }
            Ok(Reply::Unit)
        }
        Op::WaitCondition(owner, wait) => {
            let mut guard = c.lock();
            if guard.lock.owner != Some(owner) {
                return Err(not_owned("wait"));
            }
            let saved = guard.lock.count;
            guard.lock.owner = None;
            guard.lock.count = 0;
            let ticket = guard.next_ticket;
            guard.next_ticket += 1;
            guard.waiting.push_back(ticket);
            c.notify();
            let waited = c.wait_until(guard, wait, client, |s| s.woken.contains(&ticket));
            // Whatever ended the wait, take the ticket back, then the lock (unless the
            // client is gone).
            let (mut guard, woken) = match waited {
                Ok(x) => x,
                Err(e) => {
                    let mut guard = c.lock();
                    guard.waiting.retain(|t| *t != ticket);
                    guard.woken.remove(&ticket);
                    return Err(e);
                }
            };
            guard.waiting.retain(|t| *t != ticket);
            guard.woken.remove(&ticket);
            let (mut guard, _) =
                c.wait_until(guard, Wait::Forever, client, |s| s.lock.owner.is_none())?;
            guard.lock.owner = Some(owner);
            guard.lock.count = saved;
            Ok(Reply::Bool(woken))
        }
        Op::Notify(owner, n) => {
            let mut guard = c.lock();
            if guard.lock.owner != Some(owner) {
                return Err(not_owned("notify"));
            }
            for _ in 0..n {
                match guard.waiting.pop_front() {
                    Some(t) => {
                        guard.woken.insert(t);
                    }
                    None => break,
                }
            }
            drop(guard);
            c.notify();
            Ok(Reply::Unit)
        }
        Op::NotifyAll(owner) => {
            let mut guard = c.lock();
            if guard.lock.owner != Some(owner) {
                return Err(not_owned("notify"));
            }
            let all: Vec<u64> = guard.waiting.drain(..).collect();
            guard.woken.extend(all);
            drop(guard);
            c.notify();
            Ok(Reply::Unit)
        }
        Op::IsLocked => Ok(Reply::Bool(c.lock().lock.owner.is_some())),
        other => Err(unsupported(&other)),
    }
}

fn broken() -> ManagerError {
    err(ManagerErrorKind::BrokenBarrier, "the barrier is broken")
}

fn barrier(b: &Blocking<BarrierState>, op: Op, client: BorrowedFd<'_>) -> Response {
    match op {
        Op::WaitBarrier(wait) => {
            let mut guard = b.lock();
            if guard.broken {
                return Err(broken());
            }
            let arrival = guard.count;
            guard.count += 1;
            if guard.count == guard.parties {
                guard.count = 0;
                guard.generation += 1;
                drop(guard);
                b.notify();
                return Ok(Reply::Count(arrival));
            }
            let generation = guard.generation;
            let waited = b.wait_until(guard, wait, client, |s| {
                s.generation != generation || s.broken
            });
            let (mut guard, passed) = match waited {
                Ok(x) => x,
                Err(e) => {
                    // A party that left breaks the barrier for the others, as a timeout does.
                    let mut guard = b.lock();
                    if guard.generation == generation {
                        guard.broken = true;
                    }
                    drop(guard);
                    b.notify();
                    return Err(e);
                }
            };
            if guard.generation != generation {
                if guard.reset_of == Some(generation) {
                    return Err(broken());
                }
                return Ok(Reply::Count(arrival));
            }
            if !passed {
                guard.broken = true;
                drop(guard);
                b.notify();
            }
            Err(broken())
        }
        Op::Reset => {
            let mut guard = b.lock();
            if guard.count > 0 {
                guard.reset_of = Some(guard.generation);
            }
            guard.generation += 1;
            guard.count = 0;
            guard.broken = false;
            drop(guard);
            b.notify();
            Ok(Reply::Unit)
        }
        Op::Abort => {
            b.lock().broken = true;
            b.notify();
            Ok(Reply::Unit)
        }
        Op::Parties => Ok(Reply::Count(b.lock().parties)),
        Op::NWaiting => Ok(Reply::Count(b.lock().count)),
        Op::IsBroken => Ok(Reply::Bool(b.lock().broken)),
        other => Err(unsupported(&other)),
    }
}
