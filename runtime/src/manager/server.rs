//! The manager's server: a child process (`SyncManager-N`) that owns the shared
//! objects and serves each authenticated connection on a thread of its own.
//!
//! The server is one generic program for every user type: it stores values as their
//! encodings and compares them by their encodings (`contains`, dict keys). Operations
//! that block (a queue's `get`, a lock's `acquire`, waits) block only the thread of the
//! connection that asked; while blocked it checks every [`LIVENESS`] whether its client
//! hung up, so a client killed in the middle of a wait leaves nothing behind (it is
//! never granted a lock afterwards). Nothing a client sends makes the server panic: bad
//! frames close that connection, bad requests get an error response, and a panic in a
//! `#[managed]` method is caught and reported as an error.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::ipc::connection::{Connection, RecvError};
use crate::ipc::spin::Spinner;
use crate::manager::error::{ManagerError, ManagerErrorKind};
use crate::manager::managed::{self, Dispatch};
use crate::manager::protocol::{
    Bytes, Hello, Init, Kind, Op, Owner, Reply, Request, Response, TypeTag, Wait,
};
use crate::manager::transport::{self, HANDSHAKE_TIMEOUT, Stream};
use crate::os::fd::PortableFd;
use crate::os::sys;
use crate::process::registry::Entry;
use crate::process::worker::{Failure, Worker};
use crate::wire::auth;
use crate::wire::codec;
use crate::wire::error::CodecError;
use crate::wire::frames::{self, FrameReader};

/// How often a blocked operation checks that its client is still there.
const LIVENESS: Duration = Duration::from_millis(50);

/// What the server process is started with.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ServerArgs {
    /// The listening socket, bound by the parent before the start.
    pub(crate) listener: PortableFd,
    pub(crate) tcp: bool,
    pub(crate) authkey: Vec<u8>,
    pub(crate) server_id: u64,
}

/// The server as a worker of the runtime, so that it starts like any child.
/// Not public API.
#[derive(Debug)]
pub(crate) struct ServerWorker;

impl Worker for ServerWorker {
    type Args = ServerArgs;
    type Output = ();
    const KEY: &'static str = "multiproc::manager::server";
    const KIND: &'static str = "SyncManager";

    fn call(args: ServerArgs) -> Result<(), Failure> {
        run(args).map_err(|e| Failure::new(format!("the manager's server failed: {e}")))
    }
}

/// The server's registry entry. It is submitted by the `multiproc` facade crate, not
/// here: the runtime's dispatching constructor may run before the runtime's own
/// `inventory` constructors, but always after those of the crates that depend on it.
/// Not public API; used by the facade crate.
#[doc(hidden)]
pub const SERVER_ENTRY: Entry = Entry::new::<ServerWorker>(file!(), line!());

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Serves until a `Shutdown` request arrives.
fn run(args: ServerArgs) -> io::Result<()> {
    let fd: OwnedFd = args.listener.try_clone_owned()?;
    drop(args.listener);
    let listener_fd = fd.as_raw_fd();
    let listener = if args.tcp {
        Listener::Tcp(TcpListener::from(fd))
    } else {
        Listener::Unix(UnixListener::from(fd))
    };
    let server = Arc::new(Server {
        authkey: args.authkey,
        server_id: args.server_id,
        listener_fd,
        stopping: AtomicBool::new(false),
        objects: RwLock::new(HashMap::new()),
        names: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
    });
    log::debug!("manager serving (server id {:#x})", server.server_id);
    loop {
        let stream = match &listener {
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Listener::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }),
        };
        if server.stopping.load(Ordering::SeqCst) {
            break;
        }
        match stream {
            Ok(stream) => {
                let server = server.clone();
                let spawned = std::thread::Builder::new()
                    .name("manager-conn".to_owned())
                    .spawn(move || server.serve_connection(stream));
                if let Err(e) = spawned {
                    log::debug!("manager cannot start a connection thread: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // EMFILE and alike: wait a little rather than spin on the error.
                log::debug!("manager accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    log::debug!("manager shutting down");
    Ok(())
}

/// A shared object and the type it was created with.
struct Slot {
    tag: TypeTag,
    object: Object,
}

enum Object {
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
struct Blocking<T> {
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

    fn lock(&self) -> MutexGuard<'_, T> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `ready` holds (`true`), `wait` runs out (`false`), or the client
    /// hangs up (an error). `ready` is checked with the lock held, first at once.
    fn wait_until<'a>(
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

    fn notify(&self) {
        self.changed.notify_all();
    }
}

/// Whether the client of a request in progress hung up (or broke the protocol by
/// sending another request before the answer).
fn client_gone(client: BorrowedFd<'_>) -> bool {
    sys::is_readable(client).unwrap_or(true)
}

struct QueueState {
    items: VecDeque<Bytes>,
    /// 0: unbounded.
    maxsize: u64,
}

struct RLockState {
    owner: Option<Owner>,
    count: u64,
}

struct SemState {
    value: u64,
    /// The bound of a bounded semaphore.
    max: Option<u64>,
}

struct CondState {
    /// The condition's lock, an `RLock`.
    lock: RLockState,
    next_ticket: u64,
    /// Tickets of waiters not yet notified, oldest first.
    waiting: VecDeque<u64>,
    /// Tickets notified and not yet seen by their waiter.
    woken: HashSet<u64>,
}

struct BarrierState {
    parties: u64,
    count: u64,
    generation: u64,
    broken: bool,
    /// The generation that `reset` ended while parties waited in it.
    reset_of: Option<u64>,
}

struct Server {
    authkey: Vec<u8>,
    server_id: u64,
    listener_fd: RawFd,
    stopping: AtomicBool,
    objects: RwLock<HashMap<u64, Arc<Slot>>>,
    names: Mutex<HashMap<String, u64>>,
    next_id: AtomicU64,
}

fn err(kind: ManagerErrorKind, message: impl Into<String>) -> ManagerError {
    ManagerError::new(kind, message)
}

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

impl Server {
    fn serve_connection(self: Arc<Self>, mut stream: Stream) {
        if stream.set_timeouts(Some(HANDSHAKE_TIMEOUT)).is_err() {
            return;
        }
        if let Err(e) = auth::authenticate_client(&mut stream, &self.authkey) {
            log::debug!("manager refused a connection: {e}");
            return;
        }
        let hello = Hello {
            server_id: self.server_id,
            pid: crate::os::identity::current_pid(),
        };
        let sent = codec::encode_record(&hello)
            .map_err(io::Error::other)
            .and_then(|bytes| auth::send_message(&mut stream, &bytes));
        if sent.is_err() {
            return;
        }
        let local = matches!(stream, Stream::Unix(_));
        let Ok(fd) = stream.into_nonblocking_fd() else {
            return;
        };
        let mut reader = FrameReader::default();
        let spinner = Spinner::default();
        loop {
            let frame = match transport::read_frame(fd.as_fd(), &mut reader, &spinner, None) {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(e) => {
                    log::debug!("manager closes a connection: {e}");
                    return;
                }
            };
            let request = codec::decode::<Request>(&frame.bytes, frame.fds);
            if let Ok(Request::Attach(pipe)) = request {
                if !local {
                    let refused = Err(err(
                        ManagerErrorKind::Protocol,
                        "shared-memory connections are for local clients",
                    ));
                    if !self.answer_on_socket(fd.as_fd(), &refused) {
                        return;
                    }
                    continue;
                }
                if self.answer_on_socket(fd.as_fd(), &Ok(Reply::Unit)) {
                    self.serve_pipe(&pipe, fd.as_fd());
                }
                return;
            }
            let (response, stop) = self.respond(request, fd.as_fd());
            let Some(bytes) = encode_response(&response) else {
                return;
            };
            if frames::send_frame(fd.as_fd(), &[&bytes], &[]).is_err() || stop {
                return;
            }
        }
    }

    /// Serves a local client through the shared-memory pipe it attached, until it
    /// closes it (or dies). `client` is its socket, which it no longer writes to: it
    /// turns readable when the client is gone.
    fn serve_pipe(&self, pipe: &Connection<Vec<u8>>, client: BorrowedFd<'_>) {
        loop {
            let bytes = match pipe.recv_bytes() {
                Ok(bytes) => bytes,
                Err(RecvError::Disconnected) => return,
                Err(e) => {
                    log::debug!("manager closes a connection: {e}");
                    return;
                }
            };
            let request = codec::decode_record::<Request>(&bytes);
            let (response, stop) = self.respond(request, client);
            let Some(bytes) = encode_response(&response) else {
                return;
            };
            if pipe.send_bytes(&bytes).is_err() || stop {
                return;
            }
        }
    }

    /// Sends `response` as a frame on the socket; `false` if the client is gone.
    fn answer_on_socket(&self, fd: BorrowedFd<'_>, response: &Response) -> bool {
        encode_response(response)
            .is_some_and(|bytes| frames::send_frame(fd, &[&bytes], &[]).is_ok())
    }

    /// Answers one decoded request, and whether the server is stopping (after a
    /// `Shutdown`, whose answer is the last on this connection).
    fn respond(
        &self,
        request: Result<Request, CodecError>,
        client: BorrowedFd<'_>,
    ) -> (Response, bool) {
        match request {
            Ok(Request::Shutdown) => {
                self.stop();
                (Ok(Reply::Unit), true)
            }
            Ok(Request::Attach(_)) => (
                Err(err(
                    ManagerErrorKind::Protocol,
                    "a connection attaches a pipe only once, first",
                )),
                false,
            ),
            Ok(request) => {
                let response = match catch_unwind(AssertUnwindSafe(|| self.handle(request, client)))
                {
                    Ok(response) => response,
                    Err(_) => Err(err(
                        ManagerErrorKind::Protocol,
                        "the server failed on this request",
                    )),
                };
                (response, false)
            }
            Err(e) => (
                Err(err(ManagerErrorKind::Protocol, format!("bad request: {e}"))),
                false,
            ),
        }
    }

    /// Makes the accept loop end: the process then exits with code 0.
    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // SAFETY: `listener_fd` stays open until `run` returns, which waits for this.
        let fd = unsafe { BorrowedFd::borrow_raw(self.listener_fd) };
        // On Linux, shutting a listening socket down wakes a thread blocked in accept.
        let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Both);
    }

    fn slot(&self, id: u64) -> Result<Arc<Slot>, ManagerError> {
        self.objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
            .ok_or_else(|| err(ManagerErrorKind::UnknownObject, format!("no object {id}")))
    }

    fn handle(&self, request: Request, client: BorrowedFd<'_>) -> Response {
        match request {
            Request::Create { tag, init, name } => self.create(tag, init, name).map(Reply::Id),
            Request::Check { id, tag } => {
                let slot = self.slot(id)?;
                if slot.tag != tag {
                    return Err(wrong_type(&slot.tag, &tag));
                }
                Ok(Reply::Unit)
            }
            Request::Call { id, kind, op } => {
                let slot = self.slot(id)?;
                if slot.tag.kind != kind {
                    return Err(err(
                        ManagerErrorKind::WrongType,
                        format!("object {id} is a {:?}, not a {kind:?}", slot.tag.kind),
                    ));
                }
                call(&slot.object, op, client)
            }
            Request::Shutdown | Request::Attach(_) => Ok(Reply::Unit),
        }
    }

    fn create(&self, tag: TypeTag, init: Init, name: Option<String>) -> Result<u64, ManagerError> {
        let mut names = name
            .as_ref()
            .map(|_| self.names.lock().unwrap_or_else(PoisonError::into_inner));
        if let (Some(name), Some(names)) = (&name, &names) {
            if let Some(&id) = names.get(name) {
                let slot = self.slot(id)?;
                if slot.tag != tag {
                    return Err(err(
                        ManagerErrorKind::WrongType,
                        format!(
                            "the object named {name:?} is a {:?} of `{}`, not a {:?} of `{}`",
                            slot.tag.kind, slot.tag.ty, tag.kind, tag.ty
                        ),
                    ));
                }
                return Ok(id);
            }
        }
        let object = new_object(&tag, init)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.objects
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::new(Slot { tag, object }));
        if let (Some(name), Some(names)) = (name, names.as_mut()) {
            names.insert(name, id);
        }
        Ok(id)
    }
}

fn wrong_type(have: &TypeTag, want: &TypeTag) -> ManagerError {
    err(
        ManagerErrorKind::WrongType,
        format!(
            "the object is a {:?} of `{}`, not a {:?} of `{}`",
            have.kind, have.ty, want.kind, want.ty
        ),
    )
}

fn count(init: &Init) -> Result<u64, ManagerError> {
    match init {
        Init::Count(n) => Ok(*n),
        _ => Err(err(ManagerErrorKind::Protocol, "a count was expected")),
    }
}

fn new_object(tag: &TypeTag, init: Init) -> Result<Object, ManagerError> {
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

/// A response's encoding; one that cannot be encoded becomes an error response.
fn encode_response(response: &Response) -> Option<Vec<u8>> {
    match codec::encode_record(response) {
        Ok(bytes) => Some(bytes),
        Err(e) => codec::encode_record::<Response>(&Err(err(
            ManagerErrorKind::Protocol,
            format!("cannot encode the answer: {e}"),
        )))
        .ok(),
    }
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

fn call(object: &Object, op: Op, client: BorrowedFd<'_>) -> Response {
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

#[cfg(test)]
mod tests {
    use std::os::linux::net::SocketAddrExt;
    use std::sync::atomic::AtomicUsize;
    use std::thread::JoinHandle;

    use super::*;
    use crate::ipc::connection::Pipe;
    use crate::manager::transport::{Conn, Endpoint, ManagerAddress};

    const KEY: &[u8] = b"test key";

    /// Runs a server on a thread of this process, listening on `listener`.
    fn serve(listener: OwnedFd, tcp: bool) -> JoinHandle<io::Result<()>> {
        let args = ServerArgs {
            listener: PortableFd::new(listener),
            tcp,
            authkey: KEY.to_vec(),
            server_id: 7,
        };
        std::thread::spawn(move || run(args))
    }

    fn endpoint(address: ManagerAddress) -> Endpoint {
        Endpoint {
            address,
            authkey: KEY.to_vec(),
            server_id: 7,
        }
    }

    fn new_list(conn: &mut Conn) -> u64 {
        let create = Request::Create {
            tag: TypeTag {
                kind: Kind::List,
                ty: "u64".to_owned(),
            },
            init: Init::Items(Vec::new()),
            name: None,
        };
        conn.call(&create).unwrap().id().unwrap()
    }

    fn shut_down(conn: &mut Conn, server: JoinHandle<io::Result<()>>) {
        conn.call(&Request::Shutdown).unwrap().unit().unwrap();
        server.join().unwrap().unwrap();
    }

    #[test]
    fn a_local_client_talks_through_shared_memory() {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "multiproc-manager-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        let server = serve(listener.into(), false);
        let endpoint = endpoint(ManagerAddress::Local(name));
        let mut conn = Conn::open(&endpoint).unwrap();
        assert!(conn.is_shared());
        let id = new_list(&mut conn);
        for i in 0..100u64 {
            let push = Request::Call {
                id,
                kind: Kind::List,
                op: Op::Push(codec::encode_record(&i).unwrap()),
            };
            conn.call(&push).unwrap().unit().unwrap();
        }
        let len = Request::Call {
            id,
            kind: Kind::List,
            op: Op::Len,
        };
        // Seen from a second connection: the items are on the server.
        let mut other = Conn::open(&endpoint).unwrap();
        assert_eq!(other.call(&len).unwrap().count().unwrap(), 100);
        assert_eq!(conn.call(&len).unwrap().count().unwrap(), 100);
        drop(other);
        shut_down(&mut conn, server);
    }

    #[test]
    fn a_tcp_client_cannot_attach_a_pipe_and_keeps_its_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = ManagerAddress::Tcp(listener.local_addr().unwrap());
        let server = serve(listener.into(), true);
        let endpoint = endpoint(address);
        let mut conn = Conn::open(&endpoint).unwrap();
        assert!(!conn.is_shared());

        // By hand: an Attach sent on TCP gets an error, and the connection still serves.
        let mut raw = Stream::connect(&endpoint.address).unwrap();
        raw.set_timeouts(Some(HANDSHAKE_TIMEOUT)).unwrap();
        auth::authenticate_server(&mut raw, KEY).unwrap();
        auth::recv_message(&mut raw, auth::MAX_AUTH_MESSAGE).unwrap();
        let fd = raw.into_nonblocking_fd().unwrap();
        let (_ours, theirs) = Pipe::<Vec<u8>>::new().unwrap();
        let attach = codec::encode(&Request::Attach(theirs)).unwrap();
        let mut reader = FrameReader::default();
        let spinner = Spinner::default();
        let mut round_trip = |bytes: &[u8], fds: &[OwnedFd]| -> Response {
            frames::send_frame(fd.as_fd(), &[bytes], fds).unwrap();
            let deadline = Some(sys::deadline_after(HANDSHAKE_TIMEOUT));
            let frame = transport::read_frame(fd.as_fd(), &mut reader, &spinner, deadline)
                .unwrap()
                .unwrap();
            codec::decode_record(&frame.bytes).unwrap()
        };
        match round_trip(&attach.bytes, &attach.fds) {
            Err(e) => assert_eq!(e.kind(), ManagerErrorKind::Protocol, "{e}"),
            Ok(reply) => panic!("an attach on TCP was accepted: {reply:?}"),
        }
        let len = codec::encode_record(&Request::Call {
            id: new_list(&mut conn),
            kind: Kind::List,
            op: Op::Len,
        })
        .unwrap();
        assert_eq!(round_trip(&len, &[]).unwrap().count().unwrap(), 0);
        shut_down(&mut conn, server);
    }
}
