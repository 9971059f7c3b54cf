//! A manager's server on a node of a cluster: [`Manager::serve_on`](crate::Manager::serve_on).
//!
//! A launcher starts [`RemoteServerWorker`] on a node, connected back to this process
//! by the bootstrap connection (see `launch`). There it listens on TCP at a port the
//! kernel picks, tells the parent its address over that connection, and serves as a
//! local server does. The parent keeps the connection open for the server's life: the
//! server leaves when it closes, so a parent that dies takes its remote server with it,
//! as it does a local one.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::launch::slurm::{Slurm, Step};
use crate::manager::error::{ManagerError, ManagerErrorKind};
use crate::manager::server::{self, ServerArgs};
use crate::os::fd::PortableFd;
use crate::process::registry;
use crate::process::remote;
use crate::process::worker::{Failure, Worker};
use crate::wire::codec;
use crate::wire::frames::{self, FrameReader};

/// How long a remote server has to say where it listens, once started.
const ADDRESS_TIMEOUT: Duration = Duration::from_secs(30);

/// What a remote server is given.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RemoteServeArgs {
    pub(crate) authkey: Vec<u8>,
    pub(crate) server_id: u64,
}

/// The manager's server on another machine. Not public API.
#[derive(Debug)]
pub(crate) struct RemoteServerWorker;

impl Worker for RemoteServerWorker {
    type Args = (RemoteServeArgs,);
    type Output = ();
    const KEY: &'static str = "multiproc::manager::remote_server";
    const KIND: &'static str = "SyncManager";

    fn call((args,): Self::Args) -> std::result::Result<(), Failure> {
        let conn = remote::take_connection()
            .ok_or_else(|| Failure::new("a remote manager server needs a connection"))?;
        serve(args, conn).map_err(|e| Failure::new(format!("the manager's server failed: {e}")))
    }
}

registry::register_builtin_worker!(RemoteServerWorker);

/// The node's side: listen, say where, serve until shut down or the parent leaves.
fn serve(args: RemoteServeArgs, conn: TcpStream) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    let listener = TcpListener::bind("0.0.0.0:0")?;
    let port = listener.local_addr()?.port();
    let host = remote::hostname().unwrap_or_else(|| "localhost".to_owned());
    let address = codec::encode_record(&format!("{host}:{port}"))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    frames::send_frame(conn.as_fd(), &[&address], &[])
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    std::thread::Builder::new()
        .name("multiproc-parent-watch".into())
        .spawn(move || {
            let mut conn = conn;
            let mut buf = [0u8; 64];
            loop {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        log::debug!("the manager's parent closed its connection: exiting");
                        std::process::exit(0);
                    }
                    Ok(_) => {}
                }
            }
        })?;
    server::run(ServerArgs {
        listener: PortableFd::new(listener.into()),
        tcp: true,
        authkey: args.authkey,
        server_id: args.server_id,
    })
}

/// A server started on a node: its step, and the connection whose end stops it.
#[derive(Debug)]
pub(crate) struct RemoteServer {
    pub(crate) step: Step,
    pub(crate) conn: TcpStream,
}

impl RemoteServer {
    /// Ends the server (if a `Shutdown` request did not already) and its step.
    pub(crate) fn finish(self) {
        let _ = self.conn.shutdown(std::net::Shutdown::Both);
        self.step.finish(Duration::from_secs(2));
    }
}

/// Starts a server on a node with `slurm`; its `host:port` and the server.
pub(crate) fn start(
    slurm: &Slurm,
    authkey: &[u8],
    server_id: u64,
) -> Result<(String, RemoteServer)> {
    keep_registered();
    let args = RemoteServeArgs {
        authkey: authkey.to_vec(),
        server_id,
    };
    let started = slurm.start(
        RemoteServerWorker::KEY,
        RemoteServerWorker::KIND,
        1,
        &mut |_| Ok(codec::encode(&(&args,))?),
    )?;
    let step = started.step;
    let Some(worker) = started.workers.into_iter().next() else {
        return Err(no_server("no server connected".to_owned()));
    };
    let frame = FrameReader::exact()
        .read_frame(
            worker.stream.as_fd(),
            Some(Instant::now() + ADDRESS_TIMEOUT),
        )
        .map_err(|e| no_server(format!("the server did not say where it listens: {e}")))?
        .ok_or_else(|| no_server("the server ended before it said where it listens".into()))?;
    let address: String = codec::decode_record(&frame.bytes)?;
    Ok((
        address,
        RemoteServer {
            step,
            conn: worker.stream,
        },
    ))
}

fn no_server(message: String) -> crate::error::Error {
    ManagerError::new(ManagerErrorKind::Disconnected, message).into()
}
