//! The manager: a server process holding shared objects, and the proxies that reach
//! them from any process, local or remote. Uses [`os`](crate::os),
//! [`wire`](crate::wire), [`process`](crate::process) and [`ipc`](crate::ipc) (its
//! adaptive spin).

pub(crate) mod error;
pub(crate) mod handle;
pub(crate) mod managed;
pub(crate) mod protocol;
pub(crate) mod proxy;
pub(crate) mod remote;
pub(crate) mod server;
pub(crate) mod transport;

pub use handle::Manager;
pub use managed::Managed;
pub use proxy::{
    BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, DictProxy, EventProxy, ListProxy,
    LockProxy, ProxyGuard, QueueProxy, RLockProxy, SemaphoreProxy, ValueProxy,
};
pub use transport::{ManagerAddress, ToManagerAddress};
