//! Start methods: how a new child process comes to be ([`StartMethod`]), and the
//! program's choice ([`set_start_method`]).

use std::sync::Mutex;

use crate::error::Result;
use crate::process::error::ProcessError;

/// The environment variable that picks the program's start method when
/// [`set_start_method`] was not called: `spawn` or `forkserver`.
pub const START_METHOD_ENV: &str = "MULTIPROC_START_METHOD";

/// How a child process is started, as Python's start methods.
///
/// Nothing a program can observe differs between the two except the time a start
/// takes: exit codes, values, names, the parent seen by the child, signals, sentinels,
/// daemon rules, logging and handles crossing as arguments are the same. A child sees
/// its parent's current environment, working directory, umask, stdout and stderr
/// whichever way it started.
///
/// The default is [`ForkServer`](StartMethod::ForkServer), as Python 3.14's on Linux:
/// a fork of the small server replaces the exec and the dynamic loader's work, and a
/// start and join measured at about 0.5-0.65x of the exec path's (the README's "Start
/// methods" section has the figures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StartMethod {
    /// A fresh `posix_spawn` + exec of the program for each child. The parent's memory
    /// is never copied; the cost is an exec and the dynamic loader's work each time.
    Spawn,
    /// A server process, this same program exec'd once when the first child starts,
    /// single-threaded, that forks each new child on request. The child is a child of
    /// the program, not of the server (`CLONE_PARENT`), and gets the program's current
    /// environment, working directory, umask, stdout, stderr and descriptors without
    /// close-on-exec with the request. The
    /// server ends with the program, and is started again if it died.
    ForkServer,
}

impl StartMethod {
    /// Python's name of the method: `"spawn"` or `"forkserver"`.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
        }
    }

    fn from_name(name: &str) -> Option<StartMethod> {
        match name {
            "spawn" => Some(StartMethod::Spawn),
            "forkserver" => Some(StartMethod::ForkServer),
            _ => None,
        }
    }
}

/// The program's start method once set or used; `None` until then.
static CHOSEN: Mutex<Option<StartMethod>> = Mutex::new(None);

/// Sets the start method of the program's children (those not given one of their own
/// with [`Process::set_start_method`](crate::Process::set_start_method) or the pool
/// builder's [`start_method`](crate::PoolBuilder::start_method)).
///
/// As Python's `set_start_method`: once only, and before the first child starts (a
/// start uses the method, which fixes it); afterwards it fails with
/// [`ProcessError::StartMethodSet`] ("context has already been set").
pub fn set_start_method(method: StartMethod) -> Result<()> {
    let mut chosen = CHOSEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if chosen.is_some() {
        return Err(ProcessError::StartMethodSet.into());
    }
    *chosen = Some(method);
    Ok(())
}

/// The program's start method, fixing it if it was not set: what [`set_start_method`]
/// chose, else the `MULTIPROC_START_METHOD` environment variable, else the default
/// ([`StartMethod::ForkServer`]).
pub fn get_start_method() -> StartMethod {
    let mut chosen = CHOSEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *chosen.get_or_insert_with(|| match std::env::var(START_METHOD_ENV) {
        Ok(name) => StartMethod::from_name(&name).unwrap_or_else(|| {
            log::warn!("{START_METHOD_ENV}: cannot find context for '{name}'; using the default");
            StartMethod::ForkServer
        }),
        Err(_) => StartMethod::ForkServer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in [StartMethod::Spawn, StartMethod::ForkServer] {
            assert_eq!(StartMethod::from_name(m.name()), Some(m));
        }
        assert_eq!(StartMethod::from_name("bogus"), None);
    }
}
