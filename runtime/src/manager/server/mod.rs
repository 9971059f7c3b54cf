//! The manager's server: a child process (`SyncManager-N`) that owns the shared
//! objects and serves each authenticated connection on a thread of its own.
//!
//! The server is one generic program for every user type: it stores values as their
//! encodings and compares them by their encodings (`contains`, dict keys). Operations
//! that block (a queue's `get`, a lock's `acquire`, waits) block only the thread of the
//! connection that asked; while blocked it checks every [`LIVENESS`](objects::LIVENESS) whether its client
//! hung up, so a client killed in the middle of a wait leaves nothing behind (it is
//! never granted a lock afterwards). Nothing a client sends makes the server panic: bad
//! frames close that connection, bad requests get an error response, and a panic in a
//! `#[managed]` method is caught and reported as an error.

mod objects;
mod operations;

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::objects::{Slot, err, new_object};
use self::operations::call;
use crate::ipc::connection::{Connection, RecvError};
use crate::ipc::spin::Spinner;
use crate::manager::error::{ManagerError, ManagerErrorKind};
use crate::manager::protocol::{Hello, Init, Reply, Request, Response, TypeTag};
use crate::manager::transport::{self, HANDSHAKE_TIMEOUT, Stream};
use crate::os::fd::PortableFd;
use crate::process::registry;
use crate::process::worker::{Failure, Worker};
use crate::wire::auth;
use crate::wire::codec;
use crate::wire::error::CodecError;
use crate::wire::frames::{self, FrameReader};

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

registry::register_builtin_worker!(ServerWorker);

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Serves until a `Shutdown` request arrives.
pub(crate) fn run(args: ServerArgs) -> io::Result<()> {
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

struct Server {
    authkey: Vec<u8>,
    server_id: u64,
    listener_fd: RawFd,
    stopping: AtomicBool,
    objects: RwLock<HashMap<u64, Arc<Slot>>>,
    names: Mutex<HashMap<String, u64>>,
    next_id: AtomicU64,
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

#[cfg(test)]
mod tests {
    use std::os::linux::net::SocketAddrExt;
    use std::sync::atomic::AtomicUsize;
    use std::thread::JoinHandle;

    use super::*;
    use crate::ipc::connection::Pipe;
    use crate::manager::protocol::{Kind, Op};
    use crate::manager::transport::{Conn, Endpoint, ManagerAddress};
    use crate::os::sys;

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
