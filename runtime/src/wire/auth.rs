//! Authentication of a connection by a shared key: an HMAC-SHA256 challenge and
//! response in each direction, as Python 3.12's `multiprocessing.connection` does it.
//!
//! The side that accepted the connection challenges first:
//!
//! ```text
//! server -> client   #CHALLENGE#{sha256}<40 random bytes>
//! client -> server   {sha256}<HMAC-SHA256(key, "{sha256}" + random)>
//! server -> client   #WELCOME#  or  #FAILURE#
//! ```
//!
//! and then the client challenges the server the same way, so that neither side talks to
//! a peer that does not hold the key. Each message is one frame (a 4-byte little-endian
//! length, then the bytes); before the peer is authenticated no message may be longer
//! than [`MAX_AUTH_MESSAGE`], and nothing is allocated from a length above it. The
//! answer is checked with [`Mac::verify_slice`], in constant time. Nothing here is
//! hand-rolled cryptography: the MAC is RustCrypto's `hmac` over `sha2`.

use std::fmt;
use std::io::{self, Read, Write};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The longest message accepted before the peer is authenticated.
pub(crate) const MAX_AUTH_MESSAGE: usize = 256;
/// Random bytes in a challenge (Python's `MESSAGE_LENGTH`).
const NONCE_LEN: usize = 40;
const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
const DIGEST: &[u8] = b"{sha256}";

/// Why a handshake failed.
#[derive(Debug)]
pub(crate) enum AuthError {
    /// The stream failed or ended.
    Io(io::Error),
    /// The peer does not hold the key, or did not follow the protocol.
    Refused(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Io(e) => write!(f, "the connection failed during authentication: {e}"),
            AuthError::Refused(why) => f.write_str(why),
        }
    }
}

impl From<io::Error> for AuthError {
    fn from(e: io::Error) -> Self {
        AuthError::Io(e)
    }
}

/// `len` random bytes from the kernel (`getrandom(2)`).
pub(crate) fn random_bytes(len: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        let rest = &mut out[filled..];
        // SAFETY: the pointer and length describe `rest`, which the call may write.
        let n = unsafe { nix::libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(out)
}

/// A random `u64` from the kernel.
pub(crate) fn random_u64() -> io::Result<u64> {
    let bytes = random_bytes(8)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes);
    Ok(u64::from_le_bytes(word))
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

/// Sends one handshake message.
pub(crate) fn send_message(stream: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("message too long"))?;
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(bytes);
    stream.write_all(&frame)?;
    stream.flush()
}

/// Receives one handshake message of at most `max` bytes; a longer one is refused
/// before anything is read or allocated for it.
pub(crate) fn recv_message(stream: &mut impl Read, max: usize) -> Result<Vec<u8>, AuthError> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    let len = u32::from_le_bytes(header) as usize;
    if len > max {
        return Err(AuthError::Refused(format!(
            "a message of {len} bytes during authentication, above the limit of {max}"
        )));
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Challenges the peer to prove it holds `key`; tells it whether it did.
pub(crate) fn deliver_challenge<S: Read + Write>(
    stream: &mut S,
    key: &[u8],
) -> Result<(), AuthError> {
    let mut message = DIGEST.to_vec();
    message.extend_from_slice(&random_bytes(NONCE_LEN)?);
    let mut challenge = CHALLENGE.to_vec();
    challenge.extend_from_slice(&message);
    send_message(stream, &challenge)?;
    let answer = recv_message(stream, MAX_AUTH_MESSAGE)?;
    let ok = match answer.strip_prefix(DIGEST) {
        Some(digest) => {
            let mut expected = mac(key);
            expected.update(&message);
            expected.verify_slice(digest).is_ok()
        }
        None => false,
    };
    if ok {
        send_message(stream, WELCOME)?;
        Ok(())
    } else {
        // The peer may be gone already; the refusal is what matters.
        let _ = send_message(stream, FAILURE);
        Err(AuthError::Refused(
            "authentication failed: the peer's answer does not match the key".to_owned(),
        ))
    }
}

/// Answers the peer's challenge with `key`, and learns whether it was accepted.
pub(crate) fn answer_challenge<S: Read + Write>(
    stream: &mut S,
    key: &[u8],
) -> Result<(), AuthError> {
    let challenge = recv_message(stream, MAX_AUTH_MESSAGE)?;
    let Some(message) = challenge.strip_prefix(CHALLENGE) else {
        return Err(AuthError::Refused(
            "authentication failed: the peer sent no challenge".to_owned(),
        ));
    };
    if !message.starts_with(DIGEST) {
        return Err(AuthError::Refused(
            "authentication failed: the peer asks for a digest other than sha256".to_owned(),
        ));
    }
    let mut answer = mac(key);
    answer.update(message);
    let mut reply = DIGEST.to_vec();
    reply.extend_from_slice(&answer.finalize().into_bytes());
    send_message(stream, &reply)?;
    let verdict = recv_message(stream, MAX_AUTH_MESSAGE)?;
    if verdict == WELCOME {
        Ok(())
    } else {
        Err(AuthError::Refused(
            "authentication failed: the peer refused the key".to_owned(),
        ))
    }
}

/// The accepting side's half: challenge, then answer.
pub(crate) fn authenticate_client<S: Read + Write>(
    stream: &mut S,
    key: &[u8],
) -> Result<(), AuthError> {
    deliver_challenge(stream, key)?;
    answer_challenge(stream, key)
}

/// The connecting side's half: answer, then challenge.
pub(crate) fn authenticate_server<S: Read + Write>(
    stream: &mut S,
    key: &[u8],
) -> Result<(), AuthError> {
    answer_challenge(stream, key)?;
    deliver_challenge(stream, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn handshake(server_key: &'static [u8], client_key: &'static [u8]) -> (bool, bool) {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || authenticate_client(&mut a, server_key).is_ok());
        let client = authenticate_server(&mut b, client_key).is_ok();
        drop(b);
        (server.join().unwrap(), client)
    }

    #[test]
    fn the_same_key_is_accepted_both_ways() {
        assert_eq!(handshake(b"secret", b"secret"), (true, true));
        assert_eq!(handshake(b"", b""), (true, true));
    }

    #[test]
    fn a_wrong_key_is_refused() {
        assert_eq!(handshake(b"secret", b"guess"), (false, false));
    }

    #[test]
    fn a_forged_length_is_refused_before_reading() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        b.write_all(&u32::MAX.to_le_bytes()).unwrap();
        match recv_message(&mut a, MAX_AUTH_MESSAGE) {
            Err(AuthError::Refused(why)) => assert!(why.contains("above the limit"), "{why}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn random_bytes_differ() {
        assert_ne!(random_bytes(32).unwrap(), random_bytes(32).unwrap());
    }
}
