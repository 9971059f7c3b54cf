//! Processes: the [`Process`](handle::Process) handle, the bootstrap that re-executes
//! the program as a child, the child's side, the process context, the registry of
//! workers, the `Worker` trait and logging. Uses [`os`](crate::os) and
//! [`wire`](crate::wire).

pub(crate) mod bootstrap;
pub(crate) mod child;
pub(crate) mod context;
pub(crate) mod error;
pub(crate) mod handle;
pub(crate) mod logging;
pub(crate) mod registry;
pub(crate) mod worker;
