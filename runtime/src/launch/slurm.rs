//! [`Slurm`]: workers started by `srun`, connecting back over TCP.
//!
//! The parent listens on a TCP port chosen by the kernel (port 0) and starts one job
//! step: `srun [options] <this program> --multiproc-child <key> tcp=<host:port>`, with
//! the key in the environment (`srun` passes the environment on; the command line,
//! which `ps` shows to everyone, never holds it). Each task connects, and the parent
//! admits it only once it proved it holds the key (HMAC-SHA256, `wire::auth`); a
//! connection that fails is refused and counted. The task then says who it is (its
//! rank and node) and receives its bootstrap (worker key, name, arguments) over the
//! same connection, which stays open for the worker.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::launch::error::LaunchError;
use crate::os::sys;
use crate::process::bootstrap::{Bootstrap, MAGIC, Parent, Selector, Source};
use crate::process::context;
use crate::process::logging;
use crate::process::remote::{AUTHKEY_ENV, Hello, hostname, to_hex};
use crate::wire::auth;
use crate::wire::codec::{self, Encoded};
use crate::wire::frames::{self, FrameReader};

/// How long one connecting task may take to authenticate and say hello.
const ADMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Workers on the nodes of a Slurm cluster, started by `srun`.
///
/// Inside an allocation (`salloc`, `sbatch`: `SLURM_JOB_ID` is set) the workers are a
/// job step of it; outside one, `srun` requests an allocation with the options given
/// here. Every worker runs this same program (the path of `/proc/self/exe`, which the
/// nodes are assumed to share, or a copy that [`bcast`](Self::bcast) sends them).
///
/// ```no_run
/// use multiproc::{Pool, Slurm};
///
/// #[multiproc::worker]
/// fn sqr(x: u64) -> u64 { x * x }
///
/// fn main() -> multiproc::Result<()> {
///     let pool = Pool::builder()
///         .launcher(Slurm::new().nodes(2).tasks_per_node(4))
///         .build()?;
///     assert_eq!(pool.map::<sqr>(0..4)?, [0, 1, 4, 9]);
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Slurm {
    nodes: Option<u32>,
    tasks_per_node: Option<u32>,
    ntasks: Option<u32>,
    partition: Option<String>,
    time: Option<String>,
    bcast: Option<Option<String>>,
    srun: PathBuf,
    address: Option<String>,
    start_timeout: Duration,
    heartbeat_timeout: Duration,
    retries: u32,
    extra: Vec<String>,
}

impl Default for Slurm {
    fn default() -> Self {
        Slurm::new()
    }
}

impl Slurm {
    /// One worker on one node, until set otherwise.
    pub fn new() -> Slurm {
        Slurm {
            nodes: None,
            tasks_per_node: None,
            ntasks: None,
            partition: None,
            time: None,
            bcast: None,
            srun: PathBuf::from("srun"),
            address: None,
            start_timeout: Duration::from_secs(60),
            heartbeat_timeout: Duration::from_secs(10),
            retries: 2,
            extra: Vec::new(),
        }
    }

    /// The number of nodes (`srun --nodes`).
    pub fn nodes(mut self, nodes: u32) -> Self {
        self.nodes = Some(nodes);
        self
    }

    /// Workers per node (`srun --ntasks-per-node`): the pool has `nodes *
    /// tasks_per_node` workers.
    pub fn tasks_per_node(mut self, tasks: u32) -> Self {
        self.tasks_per_node = Some(tasks);
        self
    }

    /// The number of workers in all (`srun --ntasks`), spread by Slurm; overrides
    /// `nodes * tasks_per_node` as the pool's size.
    pub fn ntasks(mut self, tasks: u32) -> Self {
        self.ntasks = Some(tasks);
        self
    }

    /// The partition to run in (`srun --partition`).
    pub fn partition(mut self, partition: impl Into<String>) -> Self {
        self.partition = Some(partition.into());
        self
    }

    /// The time limit, in Slurm's format (`srun --time`, e.g. `"10:00"`).
    pub fn time(mut self, time: impl Into<String>) -> Self {
        self.time = Some(time.into());
        self
    }

    /// Copies this program to the nodes before starting it (`srun --bcast`), for
    /// nodes that do not share its file system; `dest` is where (`None`: Slurm's
    /// default place).
    pub fn bcast(mut self, dest: Option<String>) -> Self {
        self.bcast = Some(dest);
        self
    }

    /// The `srun` program to run (`srun` from `PATH` if not set), for a wrapper.
    pub fn srun(mut self, program: impl Into<PathBuf>) -> Self {
        self.srun = program.into();
        self
    }

    /// An extra argument for `srun`, put before the program (e.g. `"--exclusive"`).
    pub fn srun_arg(mut self, arg: impl Into<String>) -> Self {
        self.extra.push(arg.into());
        self
    }

    /// The host name or address the workers connect to: this machine's host name if
    /// not set. An IP address is also where the parent listens (every address
    /// otherwise).
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// How long the workers have to connect back (60 s if not set): Slurm may have to
    /// wait for free nodes first.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// A worker that sends nothing for this long (it sends a heartbeat every second)
    /// is taken as lost, as if its connection had dropped (10 s if not set).
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = timeout;
        self
    }

    /// How many times a task whose worker was lost is handed to another worker
    /// before it fails (2 if not set).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The number of workers this launcher starts.
    pub(crate) fn workers(&self) -> usize {
        match self.ntasks {
            Some(n) => n as usize,
            None => self.nodes.unwrap_or(1) as usize * self.tasks_per_node.unwrap_or(1) as usize,
        }
    }

    /// This launcher for one replacement worker, away from node `exclude`.
    pub(crate) fn replacement(&self, exclude: Option<&str>) -> Slurm {
        let mut one = self.clone();
        one.nodes = None;
        one.tasks_per_node = None;
        one.ntasks = Some(1);
        if let Some(node) = exclude {
            one.extra.push(format!("--exclude={node}"));
        }
        one
    }

    pub(crate) fn heartbeat(&self) -> Duration {
        self.heartbeat_timeout
    }

    pub(crate) fn retry_limit(&self) -> u32 {
        self.retries
    }

    /// `srun`'s options for `n` tasks.
    fn srun_args(&self, n: usize) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(nodes) = self.nodes {
            args.push(format!("--nodes={nodes}"));
        }
        if let Some(tasks) = self.tasks_per_node.filter(|_| self.ntasks.is_none()) {
            args.push(format!("--ntasks-per-node={tasks}"));
        }
        args.push(format!("--ntasks={n}"));
        if let Some(partition) = &self.partition {
            args.push(format!("--partition={partition}"));
        }
        if let Some(time) = &self.time {
            args.push(format!("--time={time}"));
        }
        match &self.bcast {
            Some(Some(dest)) => args.push(format!("--bcast={dest}")),
            Some(None) => args.push("--bcast".to_owned()),
            None => {}
        }
        if std::env::var_os("SLURM_JOB_ID").is_some() {
            // A step beside others of the same allocation (a pool and a manager).
            args.push("--overlap".to_owned());
        }
        // A worker that fails must not end the others: the pool decides.
        args.push("--kill-on-bad-exit=0".to_owned());
        args.push("--input=none".to_owned());
        args.extend(self.extra.iter().cloned());
        args
    }

    /// Starts `count` workers running entry `key` (named `kind-N`), each given the
    /// arguments `args(i)` for its rank `i`; returns once all have connected and
    /// received their bootstrap.
    pub(crate) fn start(
        &self,
        key: &str,
        kind: &str,
        count: usize,
        args: &mut dyn FnMut(usize) -> Result<Encoded>,
    ) -> Result<Started> {
        let fail =
            |message: String, refused: usize| Error::Launch(LaunchError::new(message, refused));
        let bind_ip = self
            .address
            .as_deref()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let listener = TcpListener::bind(SocketAddr::new(bind_ip, 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let host = match &self.address {
            Some(address) => address.clone(),
            None => hostname().ok_or_else(|| {
                fail(
                    "this machine has no host name to give the workers".to_owned(),
                    0,
                )
            })?,
        };
        let authkey = auth::random_bytes(32)?;
        let exe = std::env::current_exe()?;
        let selector = Selector {
            key: key.to_owned(),
            source: Source::Tcp(format!("{host}:{port}")),
        };
        let mut command = Command::new(&self.srun);
        command
            .args(self.srun_args(count))
            .arg(&exe)
            .args(selector.to_args())
            .env(AUTHKEY_ENV, to_hex(&authkey))
            .stdin(Stdio::null());
        let child = command
            .spawn()
            .map_err(|e| fail(format!("cannot run `{}`: {e}", self.srun.display()), 0))?;
        let mut step = Step { child: Some(child) };
        let deadline = Instant::now() + self.start_timeout;
        let mut admitted: Vec<(TcpStream, Hello)> = Vec::with_capacity(count);
        let mut refused = 0;
        while admitted.len() < count {
            match listener.accept() {
                Ok((stream, peer)) => match admit(stream, key, &authkey) {
                    Ok(worker) => admitted.push(worker),
                    Err(why) => {
                        log::warn!("refused a worker connection from {peer}: {why}");
                        refused += 1;
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Some(status) = step.try_wait() {
                        return Err(fail(
                            format!(
                                "`{}` ended ({status}) after {} of {count} workers connected",
                                self.srun.display(),
                                admitted.len()
                            ),
                            refused,
                        ));
                    }
                    if Instant::now() >= deadline {
                        return Err(fail(
                            format!(
                                "{} of {count} workers connected within {:?}",
                                admitted.len(),
                                self.start_timeout
                            ),
                            refused,
                        ));
                    }
                    let wake = (Instant::now() + Duration::from_millis(20)).min(deadline);
                    sys::poll_until(&[(listener.as_fd(), PollFlags::POLLIN)], Some(wake))?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Ranks in Slurm's order, so that names follow them.
        admitted.sort_by_key(|(_, hello)| hello.procid);
        let parent = Parent {
            name: context::current_name(),
            log_level: logging::child_level().map(|l| l as usize),
        };
        let mut workers = Vec::with_capacity(count);
        for (rank, (stream, hello)) in admitted.into_iter().enumerate() {
            let (name, ident) = context::next_identity(kind);
            let boot = Bootstrap::new(key, &name, &ident, true, parent.clone());
            let record = codec::encode_record(&boot)?;
            let encoded = args(rank)?;
            if !encoded.fds.is_empty() {
                return Err(fail(
                    "the arguments of a worker on another node cannot hold handles".to_owned(),
                    refused,
                ));
            }
            frames::send_frame(stream.as_fd(), &[&record], &[])
                .and_then(|()| frames::send_frame(stream.as_fd(), &[&encoded.bytes], &[]))
                .map_err(|e| fail(format!("cannot send {name} its bootstrap: {e}"), refused))?;
            workers.push(Remote {
                stream,
                hello,
                name,
            });
        }
        Ok(Started { step, workers })
    }
}

/// Checks one connection: the key, then the hello of a worker for `key`.
fn admit(
    stream: TcpStream,
    key: &str,
    authkey: &[u8],
) -> std::result::Result<(TcpStream, Hello), String> {
    let mut stream = stream;
    let setup = |s: &TcpStream| -> std::io::Result<()> {
        s.set_nonblocking(false)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(ADMIT_TIMEOUT))?;
        s.set_write_timeout(Some(ADMIT_TIMEOUT))
    };
    setup(&stream).map_err(|e| e.to_string())?;
    auth::authenticate_client(&mut stream, authkey).map_err(|e| e.to_string())?;
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    let frame = FrameReader::exact()
        .read_frame(stream.as_fd(), Some(Instant::now() + ADMIT_TIMEOUT))
        .map_err(|e| format!("no hello: {e}"))?
        .ok_or("the worker closed the connection before its hello")?;
    let hello: Hello = codec::decode_record(&frame.bytes).map_err(|e| format!("bad hello: {e}"))?;
    if hello.magic != MAGIC || hello.key != key {
        return Err(format!(
            "the worker runs `{}` of protocol {:#x}, not `{key}`",
            hello.key, hello.magic
        ));
    }
    Ok((stream, hello))
}

/// The workers of a started step, each connected and bootstrapped.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) step: Step,
    pub(crate) workers: Vec<Remote>,
}

/// One worker on a node: its connection (non-blocking), what it said of itself, and
/// the name it was given.
#[derive(Debug)]
pub(crate) struct Remote {
    pub(crate) stream: TcpStream,
    pub(crate) hello: Hello,
    pub(crate) name: String,
}

/// The `srun` process of a step. Dropping it ends the step: `SIGTERM` (which `srun`
/// passes on to the tasks), then `SIGKILL` if it lingers.
#[derive(Debug)]
pub(crate) struct Step {
    child: Option<Child>,
}

impl Step {
    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn wait_until(&mut self, deadline: Instant) -> bool {
        loop {
            if self.try_wait().is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits up to `grace` for `srun` to end by itself (its tasks have ended), then
    /// ends it.
    pub(crate) fn finish(mut self, grace: Duration) {
        if !self.wait_until(Instant::now() + grace) {
            log::debug!("srun outlived its workers by {grace:?}: ending it");
        }
        // `Drop` ends it if it still runs, and reaps it.
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        let mut step = Step { child: Some(child) };
        if !step.wait_until(Instant::now() + Duration::from_secs(3)) {
            if let Some(child) = step.child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // `step` holds a reaped child now: its own drop returns at once.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srun_gets_the_options_asked_for() {
        let slurm = Slurm::new()
            .nodes(2)
            .tasks_per_node(3)
            .partition("short")
            .time("5:00")
            .bcast(None)
            .srun_arg("--exclusive");
        assert_eq!(slurm.workers(), 6);
        let args = slurm.srun_args(slurm.workers());
        for wanted in [
            "--nodes=2",
            "--ntasks-per-node=3",
            "--ntasks=6",
            "--partition=short",
            "--time=5:00",
            "--bcast",
            "--kill-on-bad-exit=0",
            "--input=none",
            "--exclusive",
        ] {
            assert!(args.iter().any(|a| a == wanted), "{wanted} not in {args:?}");
        }
        assert_eq!(Slurm::new().ntasks(5).nodes(2).workers(), 5);
        assert_eq!(Slurm::new().workers(), 1);
    }

    #[test]
    fn a_replacement_is_one_task_away_from_the_lost_node() {
        let one = Slurm::new()
            .nodes(2)
            .tasks_per_node(2)
            .replacement(Some("n2"));
        assert_eq!(one.workers(), 1);
        let args = one.srun_args(1);
        assert!(args.iter().any(|a| a == "--exclude=n2"), "{args:?}");
        assert!(args.iter().any(|a| a == "--ntasks=1"), "{args:?}");
        assert!(!args.iter().any(|a| a.starts_with("--nodes")), "{args:?}");
    }
}
