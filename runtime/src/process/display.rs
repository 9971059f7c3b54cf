//! How a [`Process`] shows itself: its `Debug`, and its `Display` in the form of
//! Python's `repr`.

use std::fmt;

use nix::sys::signal::Signal;

use crate::process::handle::{Phase, Process};

/// What the `Debug` and `Display` of a [`Process`] show, copied out of its state so
/// that no lock is held while the formatter writes (it may write to a pipe that blocks).
struct Description {
    name: String,
    daemon: bool,
    /// `None` before the start and after the close.
    pid: Option<i32>,
    exitcode: Option<i32>,
    phase: &'static str,
}

impl<R> Process<R> {
    fn describe(&self) -> Description {
        let state = self.state();
        let (phase, pid, exitcode) = match &state.phase {
            Phase::Initial(_) => ("initial", None, None),
            Phase::Started {
                child,
                exitcode: None,
            } => ("started", Some(child.pid.as_raw()), None),
            Phase::Started {
                child,
                exitcode: Some(code),
            } => ("stopped", Some(child.pid.as_raw()), Some(*code)),
            Phase::Closed { .. } => ("closed", None, None),
        };
        Description {
            name: state.name.clone(),
            daemon: state.daemon,
            pid,
            exitcode,
            phase,
        }
    }
}

impl<R> fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seen = self.describe();
        let mut d = f.debug_struct("Process");
        d.field("name", &seen.name).field("state", &seen.phase);
        if let Some(pid) = seen.pid {
            d.field("pid", &pid);
        }
        if let Some(code) = seen.exitcode {
            d.field("exitcode", &code);
        }
        d.field("daemon", &seen.daemon).finish()
    }
}

/// Python's `repr`: `<Process name='Process-1' pid=1234 parent=1200 started daemon>`.
impl<R> fmt::Display for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seen = self.describe();
        write!(f, "<Process name='{}'", seen.name)?;
        let parent = std::process::id();
        match (seen.pid, seen.exitcode) {
            _ if seen.phase == "closed" => f.write_str(" closed")?,
            (None, _) => write!(f, " parent={parent} initial")?,
            (Some(pid), None) => write!(f, " pid={pid} parent={parent} started")?,
            (Some(pid), Some(code)) => {
                write!(f, " pid={pid} parent={parent}")?;
                match Signal::try_from(-code) {
                    Ok(sig) if code < 0 => write!(f, " stopped exitcode=-{}", sig.as_str())?,
                    _ => write!(f, " stopped exitcode={code}")?,
                }
            }
        }
        if seen.daemon {
            f.write_str(" daemon")?;
        }
        f.write_str(">")
    }
}
