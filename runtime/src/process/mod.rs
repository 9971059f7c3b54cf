//! Processes: the [`Process`](handle::Process) handle, the bootstrap that re-executes
//! the program as a child, the child's side, the process context, how a process exits,
//! the registry of workers, the `Worker` trait and logging. Uses [`os`](crate::os) and
//! [`wire`](crate::wire).
//!
//! Lowest first: `sentinel`, `report`, `bootstrap`, `start` (start methods),
//! `forkserver` (the fork server and its client), `phase`, `context`, `exit`,
//! `logging`, `worker`, `registry`, `started` (a started child as the parent holds it),
//! then `handle` (the parent's side, shown by `display`) and `child` (the child's
//! side). The exit function shuts down children that `handle` owns: `handle`
//! registers that shutdown with `exit` when it starts a child.

pub(crate) mod bootstrap;
pub(crate) mod child;
pub(crate) mod context;
mod display;
pub(crate) mod error;
pub(crate) mod exit;
pub(crate) mod forkserver;
pub(crate) mod handle;
pub(crate) mod logging;
pub(crate) mod phase;
pub(crate) mod registry;
pub(crate) mod remote;
pub(crate) mod report;
pub(crate) mod sentinel;
pub(crate) mod start;
mod started;
pub(crate) mod worker;
