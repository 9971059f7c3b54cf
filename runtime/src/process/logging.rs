//! [`log_to_stderr`]: Python's `multiprocessing.log_to_stderr` for the `log` crate.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use log::{LevelFilter, Log, Metadata, Record};

use crate::process::context;
use crate::process::exit;

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;
/// The level given to `log_to_stderr`, as `LevelFilter as usize`; 0 (`Off`) until then.
static LEVEL: AtomicUsize = AtomicUsize::new(0);

/// Installs a `log` logger that writes `[LEVEL/ProcessName] message` lines to stderr,
/// in this process and in every child it starts from now on.
///
/// This is Python's `multiprocessing.log_to_stderr(level)`: the process name is the
/// current process's (`MainProcess`, `Process-1`, ...), level names are Python's
/// (`DEBUG`, `INFO`, `WARNING`, `ERROR`; `TRACE` for `log`'s extra level), and
/// multiproc logs its own lifecycle events through it with Python's wording and levels:
///
/// ```text
/// [INFO/Process-1] child process calling self.run()
/// [INFO/Process-1] process shutting down
/// [INFO/Process-1] process exiting with exitcode 0
/// [INFO/MainProcess] process shutting down
/// [INFO/MainProcess] calling join() for process Process-1
/// ```
///
/// Every record at or above `level` is printed, whatever its target, so the program's
/// own `log::info!` lines appear in the same format. Each line is one `write` to
/// stderr, so lines from several processes do not interleave mid-line.
///
/// Calling it again changes the level. If the program has already installed another
/// logger, that logger stays (the `log` crate allows one), multiproc's records go to
/// it, and children still get this format at `level`. Without any logger, multiproc
/// prints nothing of its own.
pub fn log_to_stderr(level: LevelFilter) {
    let ours = log::set_logger(&LOGGER).is_ok() || is_ours();
    LEVEL.store(level as usize, Ordering::Relaxed);
    if ours {
        log::set_max_level(level);
    }
    exit::ensure_exit_hook();
}

fn is_ours() -> bool {
    std::ptr::addr_eq(log::logger(), &LOGGER)
}

/// The level children should log at: the one given to `log_to_stderr`, if any.
pub(crate) fn child_level() -> Option<LevelFilter> {
    level_from_usize(LEVEL.load(Ordering::Relaxed)).filter(|l| *l != LevelFilter::Off)
}

pub(crate) fn level_from_usize(n: usize) -> Option<LevelFilter> {
    LevelFilter::iter().find(|l| *l as usize == n)
}

fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "ERROR",
        log::Level::Warn => "WARNING",
        log::Level::Info => "INFO",
        log::Level::Debug => "DEBUG",
        log::Level::Trace => "TRACE",
    }
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() as usize <= LEVEL.load(Ordering::Relaxed)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "[{}/{}] {}\n",
            level_name(record.level()),
            context::current_name(),
            record.args()
        );
        // One write for the whole line; a failing stderr is not worth a panic.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}
