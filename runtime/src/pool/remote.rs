//! Pool workers on other machines: [`RemoteLink`], the pool's side of one, and
//! [`RemotePoolWorker`], the worker that runs there.
//!
//! A launcher (`launch`) starts the worker and hands the pool an authenticated TCP
//! connection to it. Tasks go down that connection as frames (the same encoded
//! batches a local worker reads from its queue); results come back up it, with a
//! heartbeat every second. A thread per worker reads them and puts the results on
//! the pool's result queue, so the pool's engine sees them as a local worker's. When
//! the connection ends, fails, or stays silent past the heartbeat timeout, that
//! thread marks the worker ended (its sentinel becomes ready) after it has put every
//! result it read: the pool then requeues the worker's tasks at once, without waiting
//! for `srun` to notice the lost node.

use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ipc::queue::Queue;
use crate::launch::slurm::Remote;
use crate::os::sys;
use crate::pool::link::{Link, SendFail};
use crate::pool::message::{Bytes, FromWorker, Item, Packet};
use crate::pool::worker::{SendResults, Tasks, serve};
use crate::process::handle::Sentinel;
use crate::process::registry;
use crate::process::remote;
use crate::process::worker::{Failure, Worker};
use crate::wire::codec;
use crate::wire::frames::{self, FrameReader};

/// Packets waiting for one worker's connection.
const SEND_QUEUE: usize = 64;
/// A remote worker says it is alive this often.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// What a remote worker sends up its connection.
#[derive(Debug, Serialize, Deserialize)]
enum Up {
    /// Still alive.
    Beat,
    /// What a local worker puts on the result queue.
    Worker(FromWorker),
}

/// What a remote pool worker is given.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RemoteArgs {
    pub(crate) slot: u32,
    pub(crate) maxtasks: Option<u64>,
    /// The initializer's registry key and arguments.
    pub(crate) init: Option<(String, Item)>,
}

/// The worker a pool's process on another machine runs. Not public API.
#[derive(Debug)]
pub(crate) struct RemotePoolWorker;

impl Worker for RemotePoolWorker {
    type Args = (RemoteArgs,);
    type Output = ();
    const KEY: &'static str = "multiproc::pool::remote_worker";
    const KIND: &'static str = "SpawnPoolWorker";

    fn call((args,): Self::Args) -> std::result::Result<(), Failure> {
        let stream = remote::take_connection()
            .ok_or_else(|| Failure::new("a remote pool worker needs a connection to its pool"))?;
        run_remote(args, stream).map_err(|e| Failure::new(e.to_string()))
    }
}

registry::register_builtin_worker!(RemotePoolWorker);

/// Tasks read from the connection to the pool.
struct Incoming {
    stream: Arc<TcpStream>,
    reader: FrameReader,
}

impl Incoming {
    fn packet(frame: frames::Frame) -> Packet {
        Packet {
            bytes: Bytes(frame.bytes.into_vec()),
            fds: Vec::new(),
        }
    }
}

impl Tasks for Incoming {
    fn try_next(&mut self) -> std::result::Result<Option<Packet>, ()> {
        if let Some(frame) = self.reader.next_frame().map_err(|_| ())? {
            return Ok(Some(Incoming::packet(frame)));
        }
        let ready = sys::poll_until(
            &[(self.stream.as_fd(), PollFlags::POLLIN)],
            Some(Instant::now()),
        )
        .map_err(|_| ())?;
        if ready[0].is_empty() {
            return Ok(None);
        }
        self.next().map(Some).ok_or(())
    }

    fn next(&mut self) -> Option<Packet> {
        match self.reader.read_frame(self.stream.as_fd(), None) {
            Ok(Some(frame)) => Some(Incoming::packet(frame)),
            Ok(None) => None,
            Err(e) => {
                log::debug!("remote pool worker cannot read its tasks: {e}");
                None
            }
        }
    }
}

/// Sends `up` on `stream` (writes serialized by `lock`).
fn send_up(stream: &TcpStream, lock: &Mutex<()>, up: &Up) -> std::result::Result<(), String> {
    let encoded = codec::encode(up).map_err(|e| e.to_string())?;
    if !encoded.fds.is_empty() {
        return Err(
            "a result holds handles (queues, locks, shared memory), which cannot \
                    go to another machine"
                .to_owned(),
        );
    }
    let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
    frames::send_frame(stream.as_fd(), &[&encoded.bytes], &[]).map_err(|e| e.to_string())
}

/// The worker's side: tasks down the connection, results and heartbeats up.
fn run_remote(args: RemoteArgs, stream: TcpStream) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let stream = Arc::new(stream);
    let lock = Arc::new(Mutex::new(()));
    let beat = {
        let (stream, lock) = (stream.clone(), lock.clone());
        std::thread::Builder::new()
            .name("multiproc-heartbeat".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(HEARTBEAT);
                    if let Err(e) = send_up(&stream, &lock, &Up::Beat) {
                        // The pool is gone, or dropped this worker: a task may still
                        // run, but no one waits for its result.
                        log::debug!("remote pool worker lost its pool: {e}");
                        std::process::exit(1);
                    }
                }
            })?
    };
    drop(beat);
    let send: SendResults = {
        let (stream, lock) = (stream.clone(), lock.clone());
        Box::new(move |message| send_up(&stream, &lock, &Up::Worker(message)))
    };
    let word = AtomicU64::new(0);
    let mut tasks = Incoming {
        stream: stream.clone(),
        reader: FrameReader::default(),
    };
    serve(args.slot, args.maxtasks, args.init, &word, &mut tasks, send);
    // Every result is sent: say so by closing, then leave.
    let _ = stream.shutdown(Shutdown::Both);
    Ok(())
}

/// A worker on another machine, reached over its connection.
pub(crate) struct RemoteLink {
    name: String,
    node: String,
    stream: Arc<TcpStream>,
    tasks: Mutex<Option<SyncSender<Packet>>>,
    ended: Sentinel,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl RemoteLink {
    /// Takes over a started worker in `slot`: its results go to `results`; it is
    /// lost once silent for `heartbeat`.
    pub(crate) fn new(
        worker: Remote,
        slot: u32,
        results: Queue<FromWorker>,
        heartbeat: Duration,
    ) -> Result<RemoteLink> {
        let ended: Arc<OwnedFd> = Arc::new(sys::eventfd()?);
        let stream = Arc::new(worker.stream);
        stream.set_nonblocking(true)?;
        let node = worker.hello.node().to_owned();
        let (tx, rx) = sync_channel::<Packet>(SEND_QUEUE);
        let writer = {
            let (stream, ended, name) = (stream.clone(), ended.clone(), worker.name.clone());
            std::thread::Builder::new()
                .name("multiproc-pool-send".into())
                .spawn(move || write_loop(&stream, &rx, &ended, &name))?
        };
        let reader = {
            let (stream, ended, name) = (stream.clone(), ended.clone(), worker.name.clone());
            std::thread::Builder::new()
                .name("multiproc-pool-recv".into())
                .spawn(move || read_loop(&stream, slot, &results, heartbeat, &ended, &name))
        };
        let reader = match reader {
            Ok(reader) => reader,
            Err(e) => {
                let _ = stream.shutdown(Shutdown::Both);
                drop(tx);
                let _ = writer.join();
                return Err(e.into());
            }
        };
        Ok(RemoteLink {
            name: format!("{}@{node}", worker.name),
            node,
            stream,
            tasks: Mutex::new(Some(tx)),
            ended: Sentinel::new(ended),
            threads: Mutex::new(vec![writer, reader]),
        })
    }
}

/// Marks the worker ended: its connection is closed both ways and its sentinel ready.
fn end(stream: &TcpStream, ended: &OwnedFd) {
    let _ = stream.shutdown(Shutdown::Both);
    if let Err(e) = sys::eventfd_signal(ended.as_fd()) {
        log::warn!("cannot mark a remote worker ended: {e}");
    }
}

fn write_loop(stream: &TcpStream, packets: &Receiver<Packet>, ended: &OwnedFd, name: &str) {
    for packet in packets {
        if let Err(e) = frames::send_frame(stream.as_fd(), &[&packet.bytes.0], &[]) {
            log::info!("pool lost {name}: cannot send it tasks: {e}");
            end(stream, ended);
            return;
        }
    }
    // No more tasks: the worker finishes what it has, sends the results, and closes.
    let _ = stream.shutdown(Shutdown::Write);
}

fn read_loop(
    stream: &TcpStream,
    slot: u32,
    results: &Queue<FromWorker>,
    heartbeat: Duration,
    ended: &OwnedFd,
    name: &str,
) {
    let mut reader = FrameReader::default();
    loop {
        let frame = match reader.read_frame(stream.as_fd(), Some(Instant::now() + heartbeat)) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                log::debug!("{name} closed its connection");
                break;
            }
            Err(e) => {
                log::info!("pool lost {name}: {e}");
                break;
            }
        };
        let message = match codec::decode_record::<Up>(&frame.bytes) {
            Ok(Up::Beat) => continue,
            Ok(Up::Worker(message)) => message,
            Err(e) => {
                log::warn!("pool dropped {name}: it sent garbage: {e}");
                break;
            }
        };
        // The slot is the pool's to say, not the worker's.
        let message = match message {
            FromWorker::Results { results, .. } => FromWorker::Results { slot, results },
            FromWorker::InitFailed { message, .. } => FromWorker::InitFailed { slot, message },
        };
        if let Err(e) = results.put(message) {
            log::debug!("the pool is gone: {e}");
            break;
        }
    }
    end(stream, ended);
}

impl Link for RemoteLink {
    fn send(&self, packet: Packet) -> std::result::Result<(), SendFail> {
        if !packet.fds.is_empty() {
            return Err(SendFail::Refused(
                "a task for a worker on another machine cannot hold handles (queues, locks, \
                 shared memory)"
                    .to_owned(),
            ));
        }
        let tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = tasks.as_ref() else {
            return Err(SendFail::Gone("the worker was told to stop".to_owned()));
        };
        match tx.try_send(packet) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(SendFail::Full),
            Err(TrySendError::Disconnected(_)) => Err(SendFail::Gone("connection lost".into())),
        }
    }

    fn stop(&self) {
        // The writer sends what is queued, then closes its half.
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    fn kill(&self) {
        self.stop();
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn exitcode(&self) -> Option<i32> {
        None
    }

    fn join(&self) {
        let threads: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        for thread in threads {
            let _ = thread.join();
        }
    }

    fn sentinel(&self) -> Sentinel {
        self.ended.clone()
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    fn node(&self) -> Option<&str> {
        Some(&self.node)
    }
}
