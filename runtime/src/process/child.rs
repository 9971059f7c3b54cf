//! The child's side: the constructor that dispatches to the worker before `main`, the
//! watch on the parent, and the worker's run under a panic hook. What the child tells its
//! parent is in `report`; how it ends, in `exit`.
//!
//! The constructor is a function pointer in `.init_array`, defined here in the runtime
//! crate. The dynamic loader runs `.init_array` entries in link order, and crates that
//! depend on the runtime come earlier in that order, so by the time this one runs the
//! `inventory` registrations of every `#[worker]` in the program have run too. In a
//! program started normally it only looks at `argv[1]` and returns. In a child it never
//! returns: it does what std's start-up would have done (ignore `SIGPIPE`), runs the
//! worker under `catch_unwind`, flushes, and exits, so neither the user's `main` nor a
//! test harness ever sees the selector arguments. The fork server's selector leads to
//! its loop instead (`forkserver::server`), whose forked children continue in the same
//! child path as an exec'd child.

use std::any::Any;
use std::ffi::{CStr, c_char, c_int};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{self, SigHandler, Signal};
use nix::unistd::{Pid, getppid};

use crate::os::sys;
use crate::process::bootstrap::{self, AcceptError, Selector, Source};
use crate::process::context::{self, ParentProcess};
use crate::process::exit::{self, ExitRequest};
use crate::process::forkserver;
use crate::process::logging;
use crate::process::phase::{self, Phase};
use crate::process::registry::{self, Outcome};
use crate::process::remote;
use crate::process::report::Report;

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
                phase::enter(Phase::Top);
                return;
            }
        };
        match Selector::parse(&args) {
            None => phase::enter(Phase::Top),
            Some(Ok(selector)) if selector.key == forkserver::SERVER_KEY => {
                forkserver::server::serve(&selector, run_child)
            }
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
        let args = bootstrap::process_args();
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

/// The child path from the bootstrap on: an exec'd child comes here from its
/// constructor, a child of the fork server right after the fork.
fn run_child(selector: &Selector) -> ! {
    phase::enter(Phase::Bootstrap);
    // What std's start-up does before main, which this constructor pre-empts.
    // SAFETY: installs the default-ignore disposition; no handler code involved.
    let _ = unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigIgn) };

    // A child on another machine has no channel for a report, and no parent process
    // here to watch: its connection (kept for the worker) is both.
    let accepted = match &selector.source {
        Source::Tcp(addr) => remote::accept(addr, &selector.key).map(|(b, a)| (b, a, None)),
        Source::Inherited(_) => bootstrap::accept(selector).map(|(b, a, c)| (b, a, Some(c))),
    };
    let (boot, args, channel) = match accepted {
        Ok(accepted) => accepted,
        Err(AcceptError::NoChannel(message) | AcceptError::Garbled(message)) => {
            exit_now(2, &format!("multiproc: {message}\n"))
        }
        Err(AcceptError::ParentGone) => die_with_parent(),
    };

    let parent = match channel {
        Some(_) => watch_parent(boot.parent_pid),
        None => None,
    };
    context::init_child(
        boot.name.clone(),
        boot.ident.clone(),
        boot.daemon,
        ParentProcess::new(boot.parent_pid, boot.parent_name.clone(), parent),
    );
    if let Some(level) = boot.log_level.and_then(logging::level_from_usize) {
        logging::log_to_stderr(level);
    }
    phase::set_worker_thread();
    install_panic_hook();

    let entry = match registry::lookup(&boot.key) {
        Ok(entry) => entry,
        Err(e) => exit::end_child(1, channel.map(|c| (Report::Failed(e.to_string()), c))),
    };
    phase::enter(Phase::Worker);
    log::info!("child process calling self.run()");
    let outcome = panic::catch_unwind(AssertUnwindSafe(move || entry.run(args)));
    let (code, report) = match outcome {
        Ok(Outcome::Value(message)) => (0, Some(Report::Returned(message))),
        Ok(Outcome::Failed(message)) => (1, Some(Report::Failed(message))),
        Err(payload) => match payload.downcast_ref::<ExitRequest>() {
            Some(ExitRequest(code)) => (*code, None),
            None => (1, Some(panic_report(&*payload))),
        },
    };
    exit::end_child(code, report.zip(channel))
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

/// Leaves at once, before any worker code ran.
fn exit_now(code: i32, message: &str) -> ! {
    let _ = std::io::stderr().lock().write_all(message.as_bytes());
    std::process::exit(code)
}

struct PanicReport {
    message: String,
    location: Option<String>,
    backtrace: std::backtrace::Backtrace,
}

fn install_panic_hook() {
    let previous: Arc<dyn Fn(&PanicHookInfo<'_>) + Send + Sync> = Arc::from(panic::take_hook());
    panic::set_hook(Box::new(move |info| {
        if !phase::on_worker_thread() {
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
        .position(|f| symbol(f).contains("multiproc_runtime::process::registry::run_worker"))
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
