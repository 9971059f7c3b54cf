//! The operating system: system calls, futexes and the robust lock word, process
//! identity, shared memory. Uses nothing else of the crate.

pub(crate) mod fd;
pub(crate) mod futex;
pub(crate) mod identity;
pub(crate) mod named_shm;
pub(crate) mod sealed;
pub(crate) mod shm;
pub(crate) mod sys;
