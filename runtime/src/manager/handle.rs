//! [`Manager`]: the handle that starts (or connects to) a manager's server and creates
//! shared objects on it.

use std::fmt;
use std::net::{TcpListener, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::launch::Launcher;
use crate::manager::error::{ManagerError, ManagerErrorKind};
use crate::manager::managed::Managed;
use crate::manager::protocol::{Init, Kind, Request, TypeTag};
use crate::manager::proxy::{
    BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, DictProxy, EventProxy, ListProxy,
    LockProxy, ProxyCore, QueueProxy, RLockProxy, SemaphoreProxy, ValueProxy,
};
use crate::manager::remote::{self, RemoteServer};
use crate::manager::server::{self, ServerArgs, ServerWorker};
use crate::manager::transport::{self, Conn, Endpoint, ManagerAddress, ToManagerAddress};
use crate::os::fd::PortableFd;
use crate::process::handle::Process;
use crate::wire::auth;

/// How long `shutdown` waits for the server to exit before it kills it.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// A manager: a server process that holds shared objects (lists, dicts, values,
/// queues, locks, your own `#[managed]` types), and the handle that creates them and
/// hands out proxies to them. Python's `multiprocessing.Manager()`.
///
/// ```
/// use multiproc::{Manager, ListProxy};
///
/// # fn main() -> multiproc::Result<()> {
/// let manager = Manager::start()?;                  // a server process: SyncManager-1
/// let conns: ListProxy<String> = manager.list()?;
/// conns.push("db-1".to_owned())?;
/// assert_eq!(conns.to_vec()?, ["db-1"]);
/// manager.shutdown()?;                              // or drop the manager
/// assert!(conns.len().is_err());                    // the server is gone
/// # Ok(())
/// # }
/// ```
///
/// # Three ways to have one
///
/// - [`Manager::start`] starts a local server, a child process named `SyncManager-N`
///   (daemonic, listed by [`active_children`](crate::active_children)). It listens on a
///   Unix socket in the abstract namespace (nothing in the file system) with a random
///   key that its proxies carry to wherever they are sent.
/// - [`Manager::serve`] starts the same server listening on TCP with your key, for
///   clients on other machines; [`address`](Self::address) is where it listens.
/// - [`Manager::connect`] connects to a served manager with its key.
///
/// Every connection authenticates with an HMAC-SHA256 challenge and response over the
/// key, in both directions, compared in constant time (Python 3.12's scheme); a wrong
/// key is an error of kind [`Authentication`](ManagerErrorKind::Authentication), and the
/// server goes on serving the others.
///
/// # Shutdown and failures
///
/// [`shutdown`](Self::shutdown) (or dropping the handle that started the server) stops
/// the server, which exits with code 0; calling it twice is fine. Afterwards this handle
/// creates nothing ([`ShutDown`](ManagerErrorKind::ShutDown)) and every proxy call is an
/// error of kind [`Disconnected`](ManagerErrorKind::Disconnected), as it is when the
/// server is killed: a proxy never hangs on a dead server. If the program that started
/// the server is killed, the server goes away with it.
///
/// # Caveats
///
/// Objects live until the server shuts down (there is no reference counting of
/// proxies, unlike Python); a name given to [`list_named`](Self::list_named) and alike
/// keeps its object for the server's life. Types are checked by their Rust type names,
/// so a remote client must be built with the same definitions of the types it shares.
/// Proxies carry the key: a proxy sent to a process gives it access to the server.
pub struct Manager {
    endpoint: Arc<Endpoint>,
    server: Option<Process<()>>,
    /// A server started on another machine by a launcher.
    remote: Mutex<Option<RemoteServer>>,
    shut_down: AtomicBool,
    stopping: Mutex<()>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.endpoint.address)
            .field("pid", &self.pid())
            .field("shut_down", &self.shut_down.load(Ordering::Relaxed))
            .finish()
    }
}

fn random_key() -> Result<Vec<u8>> {
    Ok(auth::random_bytes(32)?)
}

impl Manager {
    /// Starts a local server process (`SyncManager-N`) and connects to it.
    ///
    /// The server listens on a Unix socket in the abstract namespace, under a random
    /// name, with a random 32-byte key.
    pub fn start() -> Result<Manager> {
        let authkey = random_key()?;
        let server_id = auth::random_u64()?;
        let name = format!(
            "multiproc-manager-{}-{server_id:016x}",
            crate::os::identity::current_pid()
        );
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        let listener = UnixListener::bind_addr(&addr)?;
        let address = ManagerAddress::Local(name);
        Manager::launch(listener.into(), false, address, authkey, server_id)
    }

    /// Starts a server process listening on TCP at `addr` (port 0 picks a free port:
    /// see [`address`](Self::address)) that accepts clients holding `authkey`.
    ///
    /// The handle returned owns the server, and is a client of it too.
    pub fn serve(addr: impl ToSocketAddrs, authkey: impl AsRef<[u8]>) -> Result<Manager> {
        let listener = TcpListener::bind(addr)?;
        let address = ManagerAddress::Tcp(listener.local_addr()?);
        let server_id = auth::random_u64()?;
        Manager::launch(
            listener.into(),
            true,
            address,
            authkey.as_ref().to_vec(),
            server_id,
        )
    }

    fn launch(
        listener: OwnedFd,
        tcp: bool,
        address: ManagerAddress,
        authkey: Vec<u8>,
        server_id: u64,
    ) -> Result<Manager> {
        let args = ServerArgs {
            listener: PortableFd::new(listener),
            tcp,
            authkey: authkey.clone(),
            server_id,
        };
        // The arguments are encoded (the listener duplicated) here, and our own
        // descriptor closed with `args`: only the server holds the listener.
        server::keep_registered();
        let process = Process::<()>::from_worker::<ServerWorker>(args).with_daemon(true)?;
        process.start()?;
        log::debug!("manager {} started at {address}", process.name());
        let manager = Manager {
            endpoint: Arc::new(Endpoint {
                address,
                authkey,
                server_id,
            }),
            server: Some(process),
            remote: Mutex::new(None),
            shut_down: AtomicBool::new(false),
            stopping: Mutex::new(()),
        };
        // One connection now: the server is up when `start` returns, and the first
        // proxy call finds the connection open.
        let conn = Conn::open(&manager.endpoint)?;
        transport::adopt(&manager.endpoint, conn);
        Ok(manager)
    }

    /// Starts the server where `launcher` runs workers, listening on TCP there at a
    /// port the system picks, for clients holding `authkey`: with
    /// [`Slurm`](crate::Slurm), on a node of the cluster (`srun` places it; pass
    /// `srun_arg("--nodelist=<node>")` to choose the node), so that pool workers on
    /// other nodes can use it by its [`address`](Self::address) and key.
    /// [`Launcher::Local`](crate::Launcher::Local) is [`serve`](Self::serve) on every
    /// address of this machine.
    ///
    /// The handle owns the server: [`shutdown`](Self::shutdown), or dropping it, stops
    /// the server and its job step; if this program dies, the server leaves too.
    ///
    /// ```no_run
    /// use multiproc::{Manager, Slurm};
    ///
    /// # fn main() -> multiproc::Result<()> {
    /// let manager = Manager::serve_on(Slurm::new().srun_arg("--nodelist=n1"), b"key")?;
    /// let seen = manager.list_named::<u64>("seen")?;
    /// // ... pool workers on other nodes call Manager::connect(address, b"key") ...
    /// println!("served at {} with {} items", manager.address(), seen.len()?);
    /// manager.shutdown()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn serve_on(launcher: impl Into<Launcher>, authkey: impl AsRef<[u8]>) -> Result<Manager> {
        let slurm = match launcher.into() {
            Launcher::Local => return Manager::serve("0.0.0.0:0", authkey),
            Launcher::Slurm(slurm) => slurm,
        };
        let server_id = auth::random_u64()?;
        let (address, server) = remote::start(&slurm, authkey.as_ref(), server_id)?;
        let manager = match Manager::connect(address.as_str(), authkey.as_ref()) {
            Ok(manager) => manager,
            Err(e) => {
                server.finish();
                return Err(e);
            }
        };
        log::debug!("manager started at {address} by {slurm:?}");
        *manager
            .remote
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(server);
        Ok(manager)
    }

    /// Connects to a server started by [`serve`](Self::serve) (or to any manager's
    /// [`address`](Self::address)) with its key.
    pub fn connect(addr: impl ToManagerAddress, authkey: impl AsRef<[u8]>) -> Result<Manager> {
        let address = addr.to_manager_address()?;
        let mut endpoint = Endpoint {
            address,
            authkey: authkey.as_ref().to_vec(),
            server_id: 0,
        };
        let conn = Conn::open(&endpoint)?;
        endpoint.server_id = conn.hello.server_id;
        let endpoint = Arc::new(endpoint);
        transport::adopt(&endpoint, conn);
        Ok(Manager {
            endpoint,
            server: None,
            remote: Mutex::new(None),
            shut_down: AtomicBool::new(false),
            stopping: Mutex::new(()),
        })
    }

    /// Where the server listens: give it to [`connect`](Self::connect).
    pub fn address(&self) -> ManagerAddress {
        self.endpoint.address.clone()
    }

    /// The key clients authenticate with.
    pub fn authkey(&self) -> &[u8] {
        &self.endpoint.authkey
    }

    /// The server's process id, for a handle that started it (`None` for one that
    /// connected).
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().and_then(Process::pid)
    }

    /// The server's process, for a handle that started it.
    pub fn process(&self) -> Option<&Process<()>> {
        self.server.as_ref()
    }

    /// Stops the server (for a handle that started it) and closes this handle; a
    /// handle that connected only closes. Calling it again does nothing.
    ///
    /// The server exits with code 0. Proxies of its objects give errors from then on.
    pub fn shutdown(&self) -> Result<()> {
        let _one_at_a_time = self.stopping.lock().unwrap_or_else(PoisonError::into_inner);
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let result = match &self.server {
            Some(process) => {
                let asked = transport::call(&self.endpoint, &Request::Shutdown);
                let exited = process.join_timeout(EXIT_GRACE)?;
                if exited.is_none() {
                    log::debug!("manager {} did not exit: killing it", process.name());
                    process.kill()?;
                    process.join()?;
                }
                match asked {
                    // A server that died already has nothing left to stop.
                    Err(crate::error::Error::Manager(e)) if e.is_disconnected() => Ok(()),
                    Err(e) => Err(e),
                    Ok(_) => Ok(()),
                }
            }
            None => {
                let remote = self
                    .remote
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                match remote {
                    Some(remote) => {
                        let asked = transport::call(&self.endpoint, &Request::Shutdown);
                        remote.finish();
                        match asked {
                            Err(crate::error::Error::Manager(e)) if e.is_disconnected() => Ok(()),
                            Err(e) => Err(e),
                            Ok(_) => Ok(()),
                        }
                    }
                    None => Ok(()),
                }
            }
        };
        transport::forget(&self.endpoint);
        result
    }

    fn check_open(&self) -> Result<()> {
        if self.shut_down.load(Ordering::SeqCst) {
            return Err(ManagerError::new(
                ManagerErrorKind::ShutDown,
                "the manager was shut down: it creates no more objects",
            )
            .into());
        }
        Ok(())
    }

    fn new_object(&self, tag: TypeTag, init: Init, name: Option<&str>) -> Result<ProxyCore> {
        self.check_open()?;
        let id = transport::call(
            &self.endpoint,
            &Request::Create {
                tag: tag.clone(),
                init,
                name: name.map(str::to_owned),
            },
        )?
        .id()?;
        Ok(ProxyCore::new(self.endpoint.clone(), id, tag))
    }

    /// A new, empty list.
    pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<ListProxy<T>> {
        self.list_from(Vec::new())
    }

    /// A new list holding `items`.
    pub fn list_from<T: Serialize + DeserializeOwned>(
        &self,
        items: Vec<T>,
    ) -> Result<ListProxy<T>> {
        let items = items
            .iter()
            .map(|i| Ok(crate::wire::codec::encode_record(i)?))
            .collect::<Result<Vec<_>>>()?;
        let core = self.new_object(ListProxy::<T>::tag(), Init::Items(items), None)?;
        Ok(ListProxy::from_core(core))
    }

    /// The list named `name`, created empty on first use; an error of kind
    /// [`WrongType`](ManagerErrorKind::WrongType) if the name holds something else.
    pub fn list_named<T: Serialize + DeserializeOwned>(&self, name: &str) -> Result<ListProxy<T>> {
        let core = self.new_object(ListProxy::<T>::tag(), Init::Items(Vec::new()), Some(name))?;
        Ok(ListProxy::from_core(core))
    }

    /// A new, empty dictionary.
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        let core = self.new_object(DictProxy::<K, V>::tag(), Init::Empty, None)?;
        Ok(DictProxy::from_core(core))
    }

    /// The dictionary named `name`, created empty on first use.
    pub fn dict_named<K, V>(&self, name: &str) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        let core = self.new_object(DictProxy::<K, V>::tag(), Init::Empty, Some(name))?;
        Ok(DictProxy::from_core(core))
    }

    /// A new value holding `value`.
    pub fn value<T: Serialize + DeserializeOwned>(&self, value: T) -> Result<ValueProxy<T>> {
        let init = Init::Value(crate::wire::codec::encode_record(&value)?);
        let core = self.new_object(ValueProxy::<T>::tag(), init, None)?;
        Ok(ValueProxy::from_core(core))
    }

    /// The value named `name`, created holding `value` on first use (an existing one
    /// keeps what it holds).
    pub fn value_named<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        value: T,
    ) -> Result<ValueProxy<T>> {
        let init = Init::Value(crate::wire::codec::encode_record(&value)?);
        let core = self.new_object(ValueProxy::<T>::tag(), init, Some(name))?;
        Ok(ValueProxy::from_core(core))
    }

    /// A new unbounded queue.
    pub fn queue<T: Serialize + DeserializeOwned>(&self) -> Result<QueueProxy<T>> {
        self.queue_bounded(0)
    }

    /// A new queue that holds at most `maxsize` items (0: unbounded), as Python's
    /// `manager.Queue(maxsize)`.
    pub fn queue_bounded<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: usize,
    ) -> Result<QueueProxy<T>> {
        let core = self.new_object(QueueProxy::<T>::tag(), Init::Count(maxsize as u64), None)?;
        Ok(QueueProxy::from_core(core))
    }

    /// The unbounded queue named `name`, created on first use.
    pub fn queue_named<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<QueueProxy<T>> {
        let core = self.new_object(QueueProxy::<T>::tag(), Init::Count(0), Some(name))?;
        Ok(QueueProxy::from_core(core))
    }

    /// A new lock.
    pub fn lock(&self) -> Result<LockProxy> {
        Ok(LockProxy::from_core(self.new_object(
            LockProxy::tag(),
            Init::Empty,
            None,
        )?))
    }

    /// The lock named `name`, created on first use.
    pub fn lock_named(&self, name: &str) -> Result<LockProxy> {
        Ok(LockProxy::from_core(self.new_object(
            LockProxy::tag(),
            Init::Empty,
            Some(name),
        )?))
    }

    /// A new re-entrant lock.
    pub fn rlock(&self) -> Result<RLockProxy> {
        Ok(RLockProxy::from_core(self.new_object(
            RLockProxy::tag(),
            Init::Empty,
            None,
        )?))
    }

    /// A new semaphore with value `value`.
    pub fn semaphore(&self, value: u32) -> Result<SemaphoreProxy> {
        let core = self.new_object(SemaphoreProxy::tag(), Init::Count(u64::from(value)), None)?;
        Ok(SemaphoreProxy::from_core(core))
    }

    /// A new bounded semaphore with value (and bound) `value`.
    pub fn bounded_semaphore(&self, value: u32) -> Result<BoundedSemaphoreProxy> {
        let core = self.new_object(
            BoundedSemaphoreProxy::tag(),
            Init::Count(u64::from(value)),
            None,
        )?;
        Ok(BoundedSemaphoreProxy::from_core(core))
    }

    /// A new event, not set.
    pub fn event(&self) -> Result<EventProxy> {
        Ok(EventProxy::from_core(self.new_object(
            EventProxy::tag(),
            Init::Empty,
            None,
        )?))
    }

    /// The event named `name`, created on first use.
    pub fn event_named(&self, name: &str) -> Result<EventProxy> {
        Ok(EventProxy::from_core(self.new_object(
            EventProxy::tag(),
            Init::Empty,
            Some(name),
        )?))
    }

    /// A new condition variable, with its own re-entrant lock.
    pub fn condition(&self) -> Result<ConditionProxy> {
        let core = self.new_object(ConditionProxy::tag(), Init::Empty, None)?;
        Ok(ConditionProxy::from_core(core))
    }

    /// A new barrier for `parties` parties (at least one).
    pub fn barrier(&self, parties: usize) -> Result<BarrierProxy> {
        let core = self.new_object(BarrierProxy::tag(), Init::Count(parties as u64), None)?;
        Ok(BarrierProxy::from_core(core))
    }

    /// Serves `value`, a type with a `#[multiproc::managed]` impl block, and returns
    /// its proxy (`CounterProxy` for `Counter`): Python's `BaseManager.register`, typed.
    pub fn create<M: Managed>(&self, value: M) -> Result<M::Proxy> {
        let init = Init::Value(crate::wire::codec::encode_record(&value)?);
        let tag = TypeTag {
            kind: Kind::Custom,
            ty: M::KEY.to_owned(),
        };
        Ok(M::wrap(self.new_object(tag, init, None)?))
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let remote = self
            .remote
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        if self.server.is_some() || remote {
            if let Err(e) = self.shutdown() {
                log::debug!("manager shutdown at drop failed: {e}");
            }
        }
    }
}
