//! A child started on another machine by a cluster launcher: it connects to its parent
//! over TCP, proves it holds the key (HMAC-SHA256, [`auth`](crate::wire::auth)), says
//! where it runs ([`Hello`]), then reads the same bootstrap record and arguments an
//! inherited channel carries. The connection stays open for the worker
//! ([`take_connection`]): it is the worker's only link to its parent, and its end is
//! how each side learns that the other is gone.
//!
//! The key comes from the environment variable [`AUTHKEY_ENV`] (hex), never from the
//! command line, which every user of the node can read with `ps`; it is removed from
//! the environment once read.

use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::process::bootstrap::{self, AcceptError, Bootstrap, MAGIC};
use crate::wire::auth;
use crate::wire::codec;
use crate::wire::frames::{self, Frame, FrameReader};

/// The environment variable that holds the key, hex-encoded.
pub(crate) const AUTHKEY_ENV: &str = "MULTIPROC_AUTHKEY";

/// How long a child tries to reach its parent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// What a remote child tells its parent once authenticated: who and where it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) magic: u32,
    /// The entry the selector names.
    pub(crate) key: String,
    pub(crate) pid: u32,
    pub(crate) host: String,
    /// `SLURM_PROCID`, when started by `srun`.
    pub(crate) procid: Option<u32>,
    /// `SLURM_NODEID`.
    pub(crate) nodeid: Option<u32>,
    /// `SLURMD_NODENAME`.
    pub(crate) nodename: Option<String>,
}

impl Hello {
    /// This process's hello, for entry `key`.
    pub(crate) fn current(key: &str) -> Hello {
        let var = |name: &str| std::env::var(name).ok();
        Hello {
            magic: MAGIC,
            key: key.to_owned(),
            pid: std::process::id(),
            host: hostname().unwrap_or_default(),
            procid: var("SLURM_PROCID").and_then(|v| v.parse().ok()),
            nodeid: var("SLURM_NODEID").and_then(|v| v.parse().ok()),
            nodename: var("SLURMD_NODENAME"),
        }
    }

    /// The node's name: Slurm's if known, else the host's.
    pub(crate) fn node(&self) -> &str {
        self.nodename.as_deref().unwrap_or(&self.host)
    }
}

/// This machine's host name (from the kernel, as `gethostname` reads it).
pub(crate) fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The connection to the parent, kept for the worker once the bootstrap is read.
static CONNECTION: Mutex<Option<TcpStream>> = Mutex::new(None);

/// Takes the connection to the parent (`None` in a process not started over TCP, or
/// once taken).
pub(crate) fn take_connection() -> Option<TcpStream> {
    CONNECTION
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
}

/// `bytes` as lower-case hex.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of the hex string `text`; `None` if it is not hex.
pub(crate) fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The child's side: connects to `addr`, authenticates, says hello, reads the
/// bootstrap for entry `key`, and keeps the connection for [`take_connection`].
pub(crate) fn accept(addr: &str, key: &str) -> Result<(Bootstrap, Frame), AcceptError> {
    let no_key = || {
        AcceptError::NoChannel(format!(
            "this process was started with a TCP bootstrap source, which is for multiproc's \
             own use, but `{AUTHKEY_ENV}` holds no key; nothing was run"
        ))
    };
    let authkey = std::env::var(AUTHKEY_ENV).map_err(|_| no_key())?;
    let authkey = from_hex(&authkey).ok_or_else(no_key)?;
    // SAFETY: this runs in the child's dispatch, a constructor that runs before
    // `main`, while the process has one thread: nothing reads the environment
    // concurrently.
    unsafe { std::env::remove_var(AUTHKEY_ENV) };
    let io = |what: &str, e: std::io::Error| AcceptError::Garbled(format!("{what}: {e}"));
    let mut stream = connect(addr).map_err(|e| io(&format!("cannot connect to {addr}"), e))?;
    stream
        .set_nodelay(true)
        .map_err(|e| io("cannot set up the connection", e))?;
    auth::authenticate_server(&mut stream, &authkey)
        .map_err(|e| AcceptError::Garbled(format!("the parent at {addr}: {e}")))?;
    let hello = codec::encode_record(&Hello::current(key))
        .map_err(|e| AcceptError::Garbled(e.to_string()))?;
    frames::send_frame(stream.as_fd(), &[&hello], &[])
        .map_err(|e| AcceptError::Garbled(format!("cannot greet the parent: {e}")))?;
    // Exactly the two frames: what follows is the worker's.
    let mut reader = FrameReader::exact();
    let (boot, args) = bootstrap::read_bootstrap(&mut reader, stream.as_fd(), key)?;
    *CONNECTION.lock().unwrap_or_else(PoisonError::into_inner) = Some(stream);
    Ok((boot, args))
}

/// A connection to the first address of `addr` that answers.
fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::other(format!("`{addr}` names no address"));
    for sock in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&sock, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&bytes), "0001abff");
        assert_eq!(from_hex("0001abff").as_deref(), Some(&bytes[..]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
