//! Connections to a manager's server: addresses, the handshake, and one request/response
//! round trip with a short adaptive spin before blocking.
//!
//! A remote (TCP) client sends its requests as frames on the socket. A local client,
//! once authenticated, makes a [`Pipe`] and hands the server one end of it through the
//! Unix socket (`Request::Attach`, the descriptors crossing with `SCM_RIGHTS`): its
//! requests and the answers then go through the pipe's shared-memory rings, where the
//! adaptive spin on each side catches a quick message without a system call or a
//! wake-up. Every request still waits for its answer. The socket stays open, unused,
//! as the server's way to see that the client went away while a request of it waits
//! (a lock, a queue); the pipe's own socket reports a server that died.
//!
//! A client process keeps the connections it opened to each server in a pool, and a
//! proxy call borrows one for the round trip: threads never wait for each other's
//! calls (a thread blocked in `queue.get()` holds only its own connection), and a
//! process opens as many connections as it has threads calling at once.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use serde::{Deserialize, Serialize};

use crate::ipc::connection::{Connection, Pipe, RecvError};
use crate::ipc::spin::Spinner;
use crate::manager::error::{ManagerError, ManagerErrorKind};
use crate::manager::protocol::{Hello, Reply, Request, Response};
use crate::os::sys;
use crate::wire::auth::{self, AuthError};
use crate::wire::codec;
use crate::wire::frames::{self, Frame, FrameError, FrameReader};

/// How long a handshake may take before the connection is given up.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a manager's server listens.
///
/// A local manager ([`Manager::start`](crate::Manager::start)) listens on a Unix socket
/// in the abstract namespace (nothing in the file system; shown as `@name`); a served
/// one ([`Manager::serve`](crate::Manager::serve)) on TCP.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ManagerAddress {
    /// A TCP address.
    Tcp(SocketAddr),
    /// The name of a Unix socket in the abstract namespace.
    Local(String),
}

impl fmt::Display for ManagerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManagerAddress::Tcp(addr) => addr.fmt(f),
            ManagerAddress::Local(name) => write!(f, "@{name}"),
        }
    }
}

/// Something [`Manager::connect`](crate::Manager::connect) can connect to: a
/// [`ManagerAddress`], a `SocketAddr`, or a string such as `"127.0.0.1:5000"` (or
/// `"@name"` for a local manager's socket).
pub trait ToManagerAddress {
    /// The address.
    fn to_manager_address(&self) -> io::Result<ManagerAddress>;
}

impl ToManagerAddress for ManagerAddress {
    fn to_manager_address(&self) -> io::Result<ManagerAddress> {
        Ok(self.clone())
    }
}

impl ToManagerAddress for SocketAddr {
    fn to_manager_address(&self) -> io::Result<ManagerAddress> {
        Ok(ManagerAddress::Tcp(*self))
    }
}

impl ToManagerAddress for str {
    fn to_manager_address(&self) -> io::Result<ManagerAddress> {
        if let Some(name) = self.strip_prefix('@') {
            return Ok(ManagerAddress::Local(name.to_owned()));
        }
        self.to_socket_addrs()?
            .next()
            .map(ManagerAddress::Tcp)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no address {self}")))
    }
}

impl ToManagerAddress for String {
    fn to_manager_address(&self) -> io::Result<ManagerAddress> {
        self.as_str().to_manager_address()
    }
}

impl<T: ToManagerAddress + ?Sized> ToManagerAddress for &T {
    fn to_manager_address(&self) -> io::Result<ManagerAddress> {
        (**self).to_manager_address()
    }
}

/// A connected stream of either family, for the handshake's blocking reads and writes.
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

impl Stream {
    pub(crate) fn connect(address: &ManagerAddress) -> io::Result<Stream> {
        match address {
            ManagerAddress::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, HANDSHAKE_TIMEOUT)?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            ManagerAddress::Local(name) => {
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                Ok(Stream::Unix(UnixStream::connect_addr(&addr)?))
            }
        }
    }

    pub(crate) fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)
            }
            Stream::Tcp(s) => {
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)
            }
        }
    }

    /// The descriptor, non-blocking, for the frames that follow the handshake.
    pub(crate) fn into_nonblocking_fd(self) -> io::Result<OwnedFd> {
        self.set_timeouts(None)?;
        match self {
            Stream::Unix(s) => {
                s.set_nonblocking(true)?;
                Ok(s.into())
            }
            Stream::Tcp(s) => {
                s.set_nonblocking(true)?;
                Ok(s.into())
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A [`ManagerError`] for a failed handshake.
pub(crate) fn auth_error(e: AuthError) -> ManagerError {
    match e {
        AuthError::Refused(why) => ManagerError::new(ManagerErrorKind::Authentication, why),
        AuthError::Io(e) => ManagerError::disconnected(e),
    }
}

/// Reads one frame from a non-blocking socket: first by spinning on non-blocking reads
/// (the answer to a short request usually comes within microseconds), then by
/// blocking in `poll`. `Ok(None)` at a clean end of the stream.
pub(crate) fn read_frame(
    fd: BorrowedFd<'_>,
    reader: &mut FrameReader,
    spinner: &Spinner,
    deadline: Option<Instant>,
) -> Result<Option<Frame>, FrameError> {
    loop {
        if let Some(frame) = reader.next_frame()? {
            return Ok(Some(frame));
        }
        let mut outcome: Option<Result<usize, FrameError>> = None;
        let mut attempt = || match reader.fill(fd) {
            Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => false,
            other => {
                outcome = Some(other);
                true
            }
        };
        if !attempt() {
            spinner.spin(deadline, 0, &mut attempt);
        }
        match outcome {
            Some(Ok(0)) if reader.pending() == 0 => return Ok(None),
            Some(Ok(0)) => {
                return Err(FrameError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the stream ended {} bytes into a frame", reader.pending()),
                )));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None => {
                let ready = sys::poll_until(&[(fd, PollFlags::POLLIN)], deadline)?;
                if ready[0].is_empty() {
                    return Err(FrameError::Io(io::ErrorKind::TimedOut.into()));
                }
            }
        }
    }
}

/// Who a client talks to: the server's address, the key, and the server's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Endpoint {
    pub(crate) address: ManagerAddress,
    pub(crate) authkey: Vec<u8>,
    /// The server's random id (0: not known yet, accept any).
    pub(crate) server_id: u64,
}

/// How a connection's requests and answers travel.
enum Link {
    /// As frames on the socket (a remote client).
    Socket {
        reader: FrameReader,
        spinner: Spinner,
    },
    /// Through a shared-memory pipe whose other end the server holds (a local client).
    Shared(Connection<Vec<u8>>),
}

/// One authenticated connection of a client.
pub(crate) struct Conn {
    /// The socket; with a [`Link::Shared`] it carries nothing more, and its closing
    /// tells the server that this client is gone.
    fd: OwnedFd,
    link: Link,
    pub(crate) hello: Hello,
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn").field("fd", &self.fd).finish()
    }
}

impl Conn {
    /// Connects to `endpoint` and authenticates.
    pub(crate) fn open(endpoint: &Endpoint) -> Result<Conn, ManagerError> {
        let mut stream = Stream::connect(&endpoint.address).map_err(|e| {
            ManagerError::disconnected(format!("cannot connect to {}: {e}", endpoint.address))
        })?;
        stream
            .set_timeouts(Some(HANDSHAKE_TIMEOUT))
            .map_err(ManagerError::disconnected)?;
        // The pipe is made while the server, perhaps still starting, is yet to send
        // its challenge, and its end is sent right after the handshake, ahead of the
        // greeting: attaching costs no round trip of its own.
        let attaching = match &stream {
            Stream::Unix(_) => new_pipe(),
            Stream::Tcp(_) => None,
        };
        auth::authenticate_server(&mut stream, &endpoint.authkey).map_err(auth_error)?;
        let attaching = match attaching {
            Some((ours, request)) => {
                let fd = stream.as_fd();
                frames::send_frame(fd, &[&request.bytes], &request.fds).map_err(lost)?;
                Some(ours)
            }
            None => None,
        };
        let hello = auth::recv_message(&mut stream, auth::MAX_AUTH_MESSAGE).map_err(auth_error)?;
        let hello: Hello = codec::decode_record(&hello).map_err(|e| {
            ManagerError::new(ManagerErrorKind::Protocol, format!("bad greeting: {e}"))
        })?;
        if endpoint.server_id != 0 && hello.server_id != endpoint.server_id {
            return Err(ManagerError::disconnected(format!(
                "another server now listens at {}",
                endpoint.address
            )));
        }
        let fd = stream
            .into_nonblocking_fd()
            .map_err(ManagerError::disconnected)?;
        let mut conn = Conn {
            fd,
            link: Link::Socket {
                reader: FrameReader::default(),
                spinner: Spinner::default(),
            },
            hello,
        };
        if let Some(ours) = attaching {
            match conn.receive().and_then(|reply| Ok(reply.unit()?)) {
                Ok(()) => conn.link = Link::Shared(ours),
                Err(crate::error::Error::Manager(e)) => return Err(e),
                Err(e) => {
                    return Err(ManagerError::new(ManagerErrorKind::Protocol, e.to_string()));
                }
            }
        }
        Ok(conn)
    }

    /// Whether requests go through a shared-memory pipe.
    #[cfg(test)]
    pub(crate) fn is_shared(&self) -> bool {
        matches!(self.link, Link::Shared(_))
    }

    /// Sends `request` and waits for its response.
    pub(crate) fn call(&mut self, request: &Request) -> Result<Reply, crate::error::Error> {
        let bytes = codec::encode_record(request)?;
        match &self.link {
            Link::Socket { .. } => {
                frames::send_frame(self.fd.as_fd(), &[&bytes], &[]).map_err(lost)?;
            }
            Link::Shared(pipe) => pipe
                .send_bytes(&bytes)
                .map_err(ManagerError::disconnected)?,
        }
        self.receive()
    }

    /// Waits for the answer to the request just sent.
    fn receive(&mut self) -> Result<Reply, crate::error::Error> {
        let closed = || ManagerError::disconnected("the connection was closed");
        let bytes = match &mut self.link {
            Link::Socket { reader, spinner } => {
                match read_frame(self.fd.as_fd(), reader, spinner, None) {
                    Ok(Some(frame)) => frame.bytes,
                    Ok(None) => return Err(closed().into()),
                    Err(e) => return Err(lost(e).into()),
                }
            }
            Link::Shared(pipe) => match pipe.recv_bytes() {
                Ok(bytes) => bytes.into(),
                Err(RecvError::Disconnected) => return Err(closed().into()),
                Err(e) => return Err(ManagerError::disconnected(e).into()),
            },
        };
        let response: Response = codec::decode_record(&bytes).map_err(|e| {
            ManagerError::new(ManagerErrorKind::Protocol, format!("bad response: {e}"))
        })?;
        Ok(response?)
    }
}

/// A pipe for a local connection, and the `Attach` request that carries its other end
/// to the server; `None` if none can be made (the connection then stays on its
/// socket). The other end lives on only in the request: once the server holds it, its
/// death closes it.
fn new_pipe() -> Option<(Connection<Vec<u8>>, codec::Encoded)> {
    let made = Pipe::<Vec<u8>>::new()
        .and_then(|(ours, theirs)| Ok((ours, codec::encode(&Request::Attach(theirs))?)));
    match made {
        Ok(made) => Some(made),
        Err(e) => {
            log::debug!("manager connection stays on its socket: {e}");
            None
        }
    }
}

fn lost(e: FrameError) -> ManagerError {
    ManagerError::disconnected(e)
}

type Pool = HashMap<(ManagerAddress, u64), Vec<Conn>>;

fn pool() -> &'static Mutex<Pool> {
    static POOL: OnceLock<Mutex<Pool>> = OnceLock::new();
    POOL.get_or_init(Default::default)
}

/// Runs `request` on a pooled connection to `endpoint` (opening one if none is idle).
/// A connection that failed is dropped, not pooled again.
pub(crate) fn call(endpoint: &Endpoint, request: &Request) -> Result<Reply, crate::error::Error> {
    let key = (endpoint.address.clone(), endpoint.server_id);
    let pooled = pool()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_mut(&key)
        .and_then(Vec::pop);
    let mut conn = match pooled {
        Some(conn) => conn,
        None => Conn::open(endpoint)?,
    };
    let result = conn.call(request);
    let broken = matches!(&result, Err(crate::error::Error::Manager(e))
        if matches!(e.kind(), ManagerErrorKind::Disconnected | ManagerErrorKind::Protocol));
    if !broken {
        put_back(key, conn);
    }
    result
}

/// Pools `conn`, a fresh connection to `endpoint`.
pub(crate) fn adopt(endpoint: &Endpoint, conn: Conn) {
    put_back((endpoint.address.clone(), endpoint.server_id), conn);
}

/// Pools `conn` under `key` for the next call.
fn put_back(key: (ManagerAddress, u64), conn: Conn) {
    pool()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key)
        .or_default()
        .push(conn);
}

/// Forgets the pooled connections to `endpoint` (after its server was shut down).
pub(crate) fn forget(endpoint: &Endpoint) {
    let key = (endpoint.address.clone(), endpoint.server_id);
    let conns = pool()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&key);
    drop(conns);
}

/// An identity for this process in lock ownership: random, drawn once.
pub(crate) fn process_token() -> u64 {
    static TOKEN: OnceLock<u64> = OnceLock::new();
    *TOKEN.get_or_init(|| {
        auth::random_u64().unwrap_or_else(|_| {
            u64::from(crate::os::identity::current_pid()) << 32
                ^ Instant::now().elapsed().subsec_nanos() as u64
        })
    })
}
