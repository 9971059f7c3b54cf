//! The fork server ([`StartMethod::ForkServer`]) from the outside: its children are
//! the program's own, it is started again after it died, it refuses requests from any
//! process but its parent, it leaves nothing behind its program, and a child sees the
//! parent's environment, working directory and umask as they are at the start.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::Duration;

use common::{give_as_fd_3, helper_command, is_helper};
use multiproc::StartMethod;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

const METHODS: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::ForkServer];

/// The child's view of its surroundings: its parent pid (`getppid`), the parent
/// `parent_process` names, an environment variable, its working directory and umask.
#[multiproc::worker]
fn surroundings(var: String) -> (u32, u32, Option<String>, String, u32) {
    let umask = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Umask:")
                .map(|m| u32::from_str_radix(m.trim(), 8).unwrap())
        })
        .unwrap();
    (
        nix::unistd::getppid().as_raw() as u32,
        multiproc::parent_process().unwrap().pid(),
        std::env::var(var).ok(),
        std::env::current_dir().unwrap().display().to_string(),
        umask,
    )
}

#[multiproc::worker]
fn sleep_long() {
    std::thread::sleep(Duration::from_secs(60));
}

#[multiproc::worker]
fn double(x: u64) -> u64 {
    x * 2
}

fn pidfd_open(pid: i32) -> OwnedFd {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    assert!(fd >= 0, "pidfd_open({pid}) failed");
    // SAFETY: a fresh descriptor nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Whether the process behind `pidfd` ends within `limit`.
fn ends_within(pidfd: &OwnedFd, limit: Duration) -> bool {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let ms = u16::try_from(limit.as_millis()).unwrap_or(u16::MAX);
    poll(&mut fds, PollTimeout::from(ms)).unwrap() == 1
}

#[test]
fn children_of_the_server_are_the_programs_own() {
    let me = std::process::id();
    let p = surroundings::process("HOME".into())
        .with_start_method(StartMethod::ForkServer)
        .unwrap();
    p.start().unwrap();
    let (ppid, parent, _, _, _) = p.join_value().unwrap();
    let server = multiproc::__private::forkserver_pid().expect("the fork server runs");
    assert_ne!(server, me);
    assert_eq!((ppid, parent), (me, me));
    assert_ne!(p.pid(), Some(server));
}

#[test]
fn start_method_is_set_once_and_before_any_start() {
    // Reading the method fixes it, as in Python.
    let method = multiproc::get_start_method();
    let err = multiproc::set_start_method(method).unwrap_err();
    assert_eq!(err.to_string(), "context has already been set");
    let p = double::spawn(1).unwrap();
    let mut p2 = double::process(2);
    assert!(p2.set_start_method(StartMethod::Spawn).is_ok());
    assert!(p.join().is_ok());
    assert!(
        double::spawn(3)
            .unwrap()
            .with_start_method(StartMethod::Spawn)
            .is_err()
    );
}

#[test]
fn interrupt_sends_sigint_under_both_methods() {
    for method in METHODS {
        let p = sleep_long::process().with_start_method(method).unwrap();
        p.start().unwrap();
        p.interrupt().unwrap();
        assert_eq!(p.join().unwrap(), -2, "{method:?}");
    }
}

#[test]
fn a_killed_server_is_started_again() {
    const NAME: &str = "a_killed_server_is_started_again";
    if is_helper(NAME) {
        multiproc::set_start_method(StartMethod::ForkServer).unwrap();
        for round in 0..3u64 {
            assert_eq!(
                double::spawn(round).unwrap().join_value().unwrap(),
                round * 2
            );
            let server = multiproc::__private::forkserver_pid().unwrap();
            let pidfd = pidfd_open(server as i32);
            kill(Pid::from_raw(server as i32), Signal::SIGKILL).unwrap();
            assert!(ends_within(&pidfd, Duration::from_secs(10)));
            assert_eq!(multiproc::__private::forkserver_pid(), None);
            assert_eq!(double::spawn(10).unwrap().join_value().unwrap(), 20);
            assert_ne!(multiproc::__private::forkserver_pid(), Some(server));
        }
        println!("restarted");
        return;
    }
    let out = common::run_helper(NAME);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(common::lines(&out.stdout).contains(&"restarted".to_owned()));
}

/// Starts a fork server by hand, with one end of a socket pair as its channel; the
/// server and the test's end.
fn server_by_hand() -> (std::process::Child, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    // As the runtime's own end: credentials go with every message sent on it.
    nix::sys::socket::setsockopt(&ours, nix::sys::socket::sockopt::PassCred, &true).unwrap();
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--multiproc-child",
        multiproc::__private::FORKSERVER_KEY,
        "fd=3",
    ])
    .stdin(Stdio::null())
    .stderr(Stdio::piped());
    give_as_fd_3(&mut cmd, theirs.as_raw_fd());
    let server = cmd.spawn().unwrap();
    drop(theirs);
    (server, ours)
}

#[test]
fn a_forged_request_runs_nothing() {
    const NAME: &str = "a_forged_request_runs_nothing";
    if is_helper(NAME) {
        // The forger: holds the server's socket, but did not start the server.
        // SAFETY: descriptor 3 is the socket the observer gave this process.
        let sock = unsafe { OwnedFd::from_raw_fd(3) };
        let (_keep, child_end) = UnixStream::pair().unwrap();
        let answer =
            multiproc::__private::forkserver_request(sock.as_fd(), "x::y", child_end.as_fd());
        println!("forged answer: {:?}", answer.ok().flatten());
        return;
    }
    let (mut server, ours) = server_by_hand();

    // The parent's own request is served: a child of this process, which then finds
    // no bootstrap on its channel and exits with status 2.
    let (keep, child_end) = UnixStream::pair().unwrap();
    let pid = multiproc::__private::forkserver_request(ours.as_fd(), "x::y", child_end.as_fd())
        .unwrap()
        .expect("the parent's request is served");
    drop((keep, child_end));
    assert_eq!(
        waitpid(Pid::from_raw(pid), None).unwrap(),
        WaitStatus::Exited(Pid::from_raw(pid), 2)
    );

    // Another process's request over the same socket is refused, and the server ends.
    let mut forger = helper_command(NAME);
    give_as_fd_3(&mut forger, ours.as_raw_fd());
    let out = forger.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        common::lines(&out.stdout).contains(&"forged answer: None".to_owned()),
        "{:?}",
        common::lines(&out.stdout)
    );
    let status = server.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("not from the parent") && stderr.contains("refused"),
        "{stderr}"
    );
}

#[test]
fn a_server_given_no_channel_runs_nothing() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--multiproc-child",
            multiproc::__private::FORKSERVER_KEY,
            "fd=7",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("descriptor 7 is not open"));
}

#[test]
fn the_server_ends_with_its_program() {
    const NAME: &str = "the_server_ends_with_its_program";
    if is_helper(NAME) {
        multiproc::set_start_method(StartMethod::ForkServer).unwrap();
        assert_eq!(double::spawn(4).unwrap().join_value().unwrap(), 8);
        println!("{}", multiproc::__private::forkserver_pid().unwrap());
        if std::env::var_os("KILL_ME").is_some() {
            std::thread::sleep(Duration::from_secs(60));
        }
        return;
    }
    for killed in [false, true] {
        let mut cmd = helper_command(NAME);
        if killed {
            cmd.env("KILL_ME", "1");
        }
        let mut program = cmd.stdout(Stdio::piped()).spawn().unwrap();
        // Read until the pid, and keep the pipe open until the program ends.
        let mut out = BufReader::new(program.stdout.take().unwrap());
        let server: i32 = loop {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "no pid printed");
            if let Ok(pid) = line.trim().parse() {
                break pid;
            }
        };
        let pidfd = pidfd_open(server);
        if killed {
            program.kill().unwrap();
        }
        program.wait().unwrap();
        drop(out);
        assert!(
            ends_within(&pidfd, Duration::from_secs(10)),
            "the fork server outlived its program (killed: {killed})"
        );
    }
}

#[test]
fn children_see_the_parents_current_surroundings() {
    const NAME: &str = "children_see_the_parents_current_surroundings";
    if is_helper(NAME) {
        // The server starts with the surroundings as they are now ...
        assert_eq!(double::spawn(1).unwrap().join_value().unwrap(), 2);
        let dir = std::env::temp_dir().join(format!("multiproc-fs-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        // ... and the children see them as they are at their start.
        // SAFETY: this helper program runs this one test, on one thread.
        unsafe { std::env::set_var("MULTIPROC_FS_PROBE", "changed") };
        std::env::set_current_dir(&dir).unwrap();
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o027));
        let dir_name = std::env::current_dir().unwrap().display().to_string();
        let me = std::process::id();
        for method in METHODS {
            let p = surroundings::process("MULTIPROC_FS_PROBE".into())
                .with_start_method(method)
                .unwrap();
            p.start().unwrap();
            assert_eq!(
                p.join_value().unwrap(),
                (me, me, Some("changed".to_owned()), dir_name.clone(), 0o027),
                "{method:?}"
            );
        }
        std::env::set_current_dir("/").unwrap();
        std::fs::remove_dir(&dir).unwrap();
        println!("surroundings seen");
        return;
    }
    for method in METHODS {
        let out = helper_command(NAME)
            .env(multiproc::START_METHOD_ENV, method.name())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(common::lines(&out.stdout).contains(&"surroundings seen".to_owned()));
    }
}

#[multiproc::worker]
fn triple(x: u64) -> u64 {
    x * 3
}

#[test]
fn pools_start_their_workers_the_builders_way() {
    const NAME: &str = "pools_start_their_workers_the_builders_way";
    if is_helper(NAME) {
        multiproc::set_start_method(StartMethod::Spawn).unwrap();
        let pool = multiproc::Pool::builder()
            .processes(2)
            .start_method(StartMethod::Spawn)
            .build()
            .unwrap();
        assert_eq!(pool.map::<triple>([1, 2, 3]).unwrap(), [3, 6, 9]);
        assert_eq!(multiproc::__private::forkserver_pid(), None);
        drop(pool);
        let pool = multiproc::Pool::builder()
            .processes(2)
            .start_method(StartMethod::ForkServer)
            .build()
            .unwrap();
        assert_eq!(pool.map::<triple>([4, 5]).unwrap(), [12, 15]);
        assert!(multiproc::__private::forkserver_pid().is_some());
        println!("pools done");
        return;
    }
    let out = common::run_helper(NAME);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(common::lines(&out.stdout).contains(&"pools done".to_owned()));
}

#[test]
fn the_server_holds_nothing_of_the_program_but_its_channel() {
    // A pipe without close-on-exec, open when the server may start.
    let (read, write) = nix::unistd::pipe().unwrap();
    let p = double::process(5)
        .with_start_method(StartMethod::ForkServer)
        .unwrap();
    p.start().unwrap();
    assert_eq!(p.join_value().unwrap(), 10);
    let server = multiproc::__private::forkserver_pid().unwrap();
    let fds: Vec<i32> = std::fs::read_dir(format!("/proc/{server}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    assert_eq!(fds.len(), 4, "{fds:?}");
    assert!(fds.iter().all(|fd| (0..=4).contains(fd)), "{fds:?}");
    drop((read, write));
}
