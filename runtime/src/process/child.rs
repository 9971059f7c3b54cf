//! The child's side: the constructor that dispatches to the worker before `main`, the
//! worker's run, the report to the parent, and the exit.
//!
//! The constructor is a function pointer in `.init_array`, defined here in the runtime
//! crate. The dynamic loader runs `.init_array` entries in link order, and crates that
//! depend on the runtime come earlier in that order, so by the time this one runs the
//! `inventory` registrations of every `#[worker]` in the program have run too. In a
//! program started normally it only looks at `argv[1]` and returns. In a child it never
//! returns: it does what std's start-up would have done (ignore `SIGPIPE`), runs the
//! worker under `catch_unwind`, flushes, and exits, so neither the user's `main` nor a
//! test harness ever sees the selector arguments.

use std::any::Any;
use std::ffi::{CStr, c_char, c_int};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::ThreadId;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{self, SigHandler, Signal};
use nix::unistd::{Pid, getppid};

use crate::os::sys;
use crate::process::bootstrap::{self, AcceptError, Selector};
use crate::process::context::{self, ParentProcess};
use crate::process::logging;
use crate::process::registry::{self, Outcome};
use crate::wire::codec::{self, Encoded};
use crate::wire::error::{CodecError, CodecErrorKind};
use crate::wire::frames::{self, Frame};

/// The constructor has not run yet.
const PHASE_UNKNOWN: u8 = 0;
/// This process was not started as a multiproc child.
const PHASE_TOP: u8 = 1;
/// A child that has not yet started its worker.
const PHASE_BOOTSTRAP: u8 = 2;
/// A child whose worker runs.
const PHASE_WORKER: u8 = 3;

static PHASE: AtomicU8 = AtomicU8::new(PHASE_UNKNOWN);
static WORKER_THREAD: OnceLock<ThreadId> = OnceLock::new();
/// What the panic hook saw of the worker's panic, printed once the child shuts down.
static PANIC: Mutex<Option<PanicReport>> = Mutex::new(None);

type InitArrayFn = extern "C" fn(c_int, *const *const c_char, *const *const c_char);

#[used]
#[unsafe(link_section = ".init_array")]
static DISPATCH: InitArrayFn = dispatch;

extern "C" fn dispatch(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    // Unwinding out of a constructor would abort the process with no message.
    let _ = panic::catch_unwind(|| {
        let args = match child_args(argc, argv) {
            Some(args) => args,
            None => {
                PHASE.store(PHASE_TOP, Ordering::Relaxed);
                return;
            }
        };
        match Selector::parse(&args) {
            None => PHASE.store(PHASE_TOP, Ordering::Relaxed),
            Some(Ok(selector)) => run_child(&selector),
            Some(Err(message)) => exit_now(2, &format!("multiproc: {message}\n")),
        }
    });
}

/// The process's arguments if `argv[1]` is the selector; `None` otherwise. Cheap
/// for a program that is not a child: this runs at every program start.
fn child_args(argc: c_int, argv: *const *const c_char) -> Option<Vec<Vec<u8>>> {
    if argv.is_null() {
        // Some C libraries do not pass arguments to constructors: ask the kernel.
        let args = process_args();
        return Selector::parse(&args).is_some().then_some(args);
    }
    let argc = usize::try_from(argc).unwrap_or(0);
    let arg = |i: usize| {
        // SAFETY: the loader passes `argc` valid, NUL-terminated argument strings.
        let ptr = unsafe { *argv.add(i) };
        // SAFETY: as above; a null entry would end the list early.
        (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) }.to_bytes())
    };
    if argc < 2 || arg(1)? != bootstrap::SELECTOR.as_bytes() {
        return None;
    }
    (0..argc).map(|i| arg(i).map(<[u8]>::to_vec)).collect()
}

/// This process's arguments, from `/proc/self/cmdline` (which needs no help from std's
/// start-up code, unlike `std::env::args` on some C libraries).
fn process_args() -> Vec<Vec<u8>> {
    let cmdline = std::fs::read("/proc/self/cmdline").unwrap_or_default();
    let mut args: Vec<Vec<u8>> = cmdline.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
    if args.last().is_some_and(Vec::is_empty) {
        args.pop();
    }
    args
}

/// Whether a process started now would be started during this child's bootstrap,
/// before its worker runs (Python's "bootstrapping phase" error).
pub(crate) fn is_bootstrapping() -> bool {
    match PHASE.load(Ordering::Relaxed) {
        PHASE_BOOTSTRAP => true,
        // Called before the constructor ran (from another constructor): decide by the
        // arguments.
        PHASE_UNKNOWN => Selector::parse(&process_args()).is_some(),
        _ => false,
    }
}

fn run_child(selector: &Selector) -> ! {
    PHASE.store(PHASE_BOOTSTRAP, Ordering::Relaxed);
    // What std's start-up does before main, which this constructor pre-empts.
    // SAFETY: installs the default-ignore disposition; no handler code involved.
    let _ = unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigIgn) };

    let (boot, args, channel) = match bootstrap::accept(selector) {
        Ok(accepted) => accepted,
        Err(AcceptError::NoChannel(message) | AcceptError::Garbled(message)) => {
            exit_now(2, &format!("multiproc: {message}\n"))
        }
        Err(AcceptError::ParentGone) => die_with_parent(),
    };

    let parent = watch_parent(boot.parent_pid);
    context::init_child(
        boot.name.clone(),
        boot.ident.clone(),
        boot.daemon,
        ParentProcess::new(boot.parent_pid, boot.parent_name.clone(), parent),
    );
    if let Some(level) = boot.log_level.and_then(logging::level_from_usize) {
        logging::log_to_stderr(level);
    }
    let _ = WORKER_THREAD.set(std::thread::current().id());
    install_panic_hook();

    let entry = match registry::lookup(&boot.key) {
        Ok(entry) => entry,
        Err(e) => finish(1, Some((Report::Failed(e.to_string()), channel))),
    };
    PHASE.store(PHASE_WORKER, Ordering::Relaxed);
    log::info!("child process calling self.run()");
    let outcome = panic::catch_unwind(AssertUnwindSafe(move || entry.run(args)));
    let (code, report) = match outcome {
        Ok(Outcome::Value(bytes)) => (0, Some(Report::Value(bytes))),
        Ok(Outcome::Failed(message)) => (1, Some(Report::Failed(message))),
        Err(payload) => match payload.downcast_ref::<ExitRequest>() {
            Some(ExitRequest(code)) => (*code, None),
            None => (1, Some(panic_report(&*payload))),
        },
    };
    finish(code, report.map(|report| (report, channel)))
}

/// A pidfd of the parent, and a thread that kills this process when the parent ends
/// without having ended it first (killed, or gone without running its exit function),
/// so that no child outlives its parent as an orphan.
fn watch_parent(parent_pid: u32) -> Option<Arc<OwnedFd>> {
    let expected = Pid::from_raw(i32::try_from(parent_pid).unwrap_or(0));
    let pidfd = sys::pidfd_open(expected).ok();
    // Still our parent after the pidfd was opened: it is the right process.
    if getppid() != expected {
        die_with_parent();
    }
    let pidfd = Arc::new(pidfd?);
    let watched = pidfd.clone();
    let spawned = std::thread::Builder::new()
        .name("multiproc-parent-watch".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            // No allocation on this thread: malloc would give it an arena of its own.
            let mut fds = [PollFd::new(watched.as_fd(), PollFlags::POLLIN)];
            loop {
                match poll(&mut fds, PollTimeout::NONE) {
                    Err(Errno::EINTR) => continue,
                    Ok(_) => die_with_parent(),
                    Err(_) => return,
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot watch the parent process: {e}");
    }
    Some(pidfd)
}

fn die_with_parent() -> ! {
    let _ = signal::kill(Pid::this(), Signal::SIGKILL);
    // SIGKILL cannot be caught; this line is never reached in practice.
    std::process::abort()
}

/// Python's end of `Process._bootstrap`: the exit function (children joined), the
/// failure report, the last log line, flushed streams, then the exit.
///
/// The report goes to the parent last, just before the exit, so that the parent's
/// wake-up for it usually finds the child already gone and reaps it at once.
fn finish(code: i32, report: Option<(Report, UnixStream)>) -> ! {
    context::exit_function();
    if let Some(text) = report.as_ref().and_then(|(r, _)| r.stderr_text()) {
        let name = context::current_name();
        let _ = std::io::stderr()
            .lock()
            .write_all(format!("Process {name}:\n{text}\n").as_bytes());
    }
    log::info!("process exiting with exitcode {code}");
    let _ = std::io::stdout().flush();
    if let Some((report, channel)) = report {
        if let Err(e) = report.send(&channel) {
            log::debug!("cannot send the result to the parent: {e}");
        }
    }
    std::process::exit(code)
}

/// Leaves at once, before any worker code ran.
fn exit_now(code: i32, message: &str) -> ! {
    let _ = std::io::stderr().lock().write_all(message.as_bytes());
    std::process::exit(code)
}

/// The payload [`exit`] unwinds the worker's stack with.
struct ExitRequest(i32);

/// See [`crate::exit`].
pub(crate) fn exit(code: i32) -> ! {
    match PHASE.load(Ordering::Relaxed) {
        PHASE_WORKER | PHASE_BOOTSTRAP => {
            let on_worker = WORKER_THREAD.get() == Some(&std::thread::current().id());
            if cfg!(panic = "unwind") && on_worker && PHASE.load(Ordering::Relaxed) == PHASE_WORKER
            {
                panic::resume_unwind(Box::new(ExitRequest(code)))
            }
            finish(code, None)
        }
        _ => std::process::exit(code),
    }
}

struct PanicReport {
    message: String,
    location: Option<String>,
    backtrace: std::backtrace::Backtrace,
}

fn install_panic_hook() {
    let previous: Arc<dyn Fn(&PanicHookInfo<'_>) + Send + Sync> = Arc::from(panic::take_hook());
    panic::set_hook(Box::new(move |info| {
        if WORKER_THREAD.get() != Some(&std::thread::current().id()) {
            return previous(info);
        }
        let report = PanicReport {
            message: payload_text(info.payload()).to_owned(),
            location: info.location().map(ToString::to_string),
            backtrace: std::backtrace::Backtrace::capture(),
        };
        if cfg!(panic = "abort") {
            // The process aborts right after this hook: report now.
            let name = context::current_name();
            let text = format!("Process {name}:\n{}\n", describe(&report));
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
        *PANIC.lock().unwrap_or_else(PoisonError::into_inner) = Some(report);
    }));
}

fn describe(report: &PanicReport) -> String {
    let mut text = match &report.location {
        Some(location) => format!("panicked at {location}:\n{}", report.message),
        None => format!("panicked:\n{}", report.message),
    };
    match report.backtrace.status() {
        std::backtrace::BacktraceStatus::Captured => {
            let full = report.backtrace.to_string();
            let full_wanted = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v == "full");
            let shown = if full_wanted {
                full
            } else {
                short_backtrace(&full)
            };
            text.push_str(&format!("\nstack backtrace:\n{shown}"));
            if !full_wanted {
                text.push_str(
                    "note: some details are omitted, run with `RUST_BACKTRACE=full` for a \
                     verbose backtrace.",
                );
            }
        }
        _ => text.push_str(
            "\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        ),
    }
    text
}

/// The frames of a backtrace between the panic machinery and the runtime's call of the
/// worker, renumbered from 0, as std's short backtraces show a thread's panic.
fn short_backtrace(full: &str) -> String {
    // Each frame is a `N: symbol` line followed by `at file:line` lines.
    let mut frames: Vec<Vec<&str>> = Vec::new();
    for line in full.lines() {
        let is_head = line
            .trim_start()
            .split_once(": ")
            .is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty());
        match frames.last_mut() {
            Some(frame) if !is_head => frame.push(line),
            _ => frames.push(vec![line]),
        }
    }
    fn symbol<'a>(frame: &[&'a str]) -> &'a str {
        frame.first().copied().unwrap_or_default()
    }
    let start = frames
        .iter()
        .rposition(|f| {
            let s = symbol(f);
            s.contains("rust_begin_unwind") || s.contains("core::panicking::")
        })
        .map_or(0, |i| i + 1);
    let end = frames
        .iter()
        .position(|f| symbol(f).contains("multiproc_runtime::registry::run_worker"))
        .filter(|end| *end > start)
        .unwrap_or(frames.len());
    let mut out = String::new();
    for (n, frame) in frames[start..end].iter().enumerate() {
        let head = symbol(frame);
        let rest = head.trim_start().split_once(": ").map_or(head, |(_, s)| s);
        out.push_str(&format!("{n:>4}: {rest}\n"));
        for line in &frame[1..] {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The text of a panic payload, as std's hook prints it.
fn payload_text(payload: &(dyn Any + Send)) -> &str {
    match payload.downcast_ref::<&str>() {
        Some(s) => s,
        None => payload
            .downcast_ref::<String>()
            .map_or("Box<dyn Any>", String::as_str),
    }
}

/// The report of a panic whose payload is `payload`, with what the hook saw of it.
fn panic_report(payload: &(dyn Any + Send)) -> Report {
    let seen = PANIC.lock().unwrap_or_else(PoisonError::into_inner).take();
    let (message, location, text) = match seen {
        Some(seen) => {
            let text = describe(&seen);
            (seen.message, seen.location, text)
        }
        // Another panic hook replaced ours: the payload is all there is.
        None => {
            let message = payload_text(payload).to_owned();
            let text = format!("panicked:\n{message}");
            (message, None, text)
        }
    };
    Report::Panic {
        message,
        location,
        text,
    }
}

/// What a child tells its parent when its worker ends. Sent as one frame whose first
/// byte is the kind.
#[derive(Debug)]
pub(crate) enum Report {
    /// The worker returned this encoded value.
    Value(Encoded),
    /// The worker panicked.
    Panic {
        message: String,
        location: Option<String>,
        /// What the child printed (not sent).
        text: String,
    },
    /// The worker returned `Err` with this description.
    Failed(String),
}

const REPORT_VALUE: u8 = 0;
const REPORT_PANIC: u8 = 1;
const REPORT_FAILED: u8 = 2;

impl Report {
    fn stderr_text(&self) -> Option<String> {
        match self {
            Report::Value(_) => None,
            Report::Panic { text, .. } => Some(text.clone()),
            Report::Failed(message) => Some(format!("Error: {message}")),
        }
    }

    fn send(&self, channel: &UnixStream) -> crate::error::Result<()> {
        let sock = channel.as_fd();
        match self {
            Report::Value(value) => {
                frames::send_frame(sock, &[&[REPORT_VALUE], &value.bytes], &value.fds)?
            }
            Report::Panic {
                message, location, ..
            } => {
                let body = codec::encode_record(&(message, location))?;
                frames::send_frame(sock, &[&[REPORT_PANIC], &body], &[])?
            }
            Report::Failed(message) => {
                let body = codec::encode_record(message)?;
                frames::send_frame(sock, &[&[REPORT_FAILED], &body], &[])?
            }
        }
        Ok(())
    }

    /// Reads a report frame. Never trusts the bytes.
    pub(crate) fn parse(mut frame: Frame) -> Result<Report, CodecError> {
        if frame.bytes.is_empty() {
            return Err(CodecError::new(CodecErrorKind::Truncated, "empty report"));
        }
        let kind = frame.bytes.remove(0);
        match kind {
            REPORT_VALUE => Ok(Report::Value(Encoded {
                bytes: frame.bytes,
                fds: frame.fds,
            })),
            REPORT_PANIC => {
                let (message, location): (String, Option<String>) =
                    codec::decode_record(&frame.bytes)?;
                Ok(Report::Panic {
                    message,
                    location,
                    text: String::new(),
                })
            }
            REPORT_FAILED => Ok(Report::Failed(codec::decode_record(&frame.bytes)?)),
            other => Err(CodecError::new(
                CodecErrorKind::Decode,
                format!("unknown report kind {other}"),
            )),
        }
    }
}
