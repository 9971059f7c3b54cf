//! All encoding lives here, so that the codec can be swapped in one place.
//!
//! Values are encoded in bincode 2's standard encoding (its serde support, standard
//! configuration): written by `encoder`, which copies large plain vectors in one piece,
//! and read by bincode through `bounded`.
//! Messages on a stream are framed as a 4-byte little-endian length followed by that
//! many bytes (see `frames`). Nothing here trusts its input: an input above
//! [`MAX_MESSAGE_LEN`] is refused before anything is allocated, no allocation made while
//! decoding exceeds what the input can hold (see `bounded`), and a value must use every
//! byte of its message.
//!
//! # Descriptors inside values
//!
//! A handle that owns a file descriptor (a queue's shared memory, a connection's
//! socket) holds it as a [`PortableFd`]. Encoding such a value with [`encode`] collects a
//! duplicate of each descriptor beside the bytes, which hold only its index; the
//! transport sends the descriptors with the bytes (`SCM_RIGHTS`), and [`decode`] hands
//! them back to the `PortableFd`s being decoded. Encoding a handle any other way (with
//! another serde format, or in one of multiproc's own records) is an error: a descriptor
//! number alone means nothing in another process.

use std::cell::RefCell;
use std::fs::File;
use std::os::fd::OwnedFd;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub(crate) use crate::os::fd::PortableFd;
use crate::os::sealed;
use crate::wire::bounded::BoundedSeed;
use crate::wire::encoder;
use crate::wire::error::{CodecError, CodecErrorKind};
use crate::wire::sink::{Body, Sink};

/// The largest message multiproc encodes or accepts: 1 GiB.
///
/// Arguments, return values and every other message crossing a process boundary must
/// fit; a larger one is refused with a [`CodecError`](crate::CodecError) of kind
/// [`Oversized`](crate::CodecErrorKind::Oversized) on the sending side, and a frame that
/// declares a larger length is refused on the receiving side.
pub const MAX_MESSAGE_LEN: usize = 1 << 30;

/// Bytes in a frame header.
pub(crate) const HEADER_LEN: usize = 4;

/// The encoding's configuration. No byte limit: bincode's counts each integer at its
/// full width rather than its varint length, so it would refuse some genuine messages
/// below [`MAX_MESSAGE_LEN`]; the input's length is checked instead, and allocations
/// are bounded by it.
fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

/// The most descriptors one message can carry (the kernel's `SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = 253;

/// An encoded value: its bytes, and the descriptors of the handles inside it.
///
/// One made by [`encode_message`] may hold its bytes in a sealed `memfd` instead
/// (`sealed`, and then `bytes` is empty): only the send paths that take such a value
/// (`frames::send_encoded`, the queue's put) are handed one.
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
    pub(crate) sealed: Option<Sealed>,
}

/// The bytes of a message in a `memfd` sealed with `PAYLOAD_SEALS`
/// ([`crate::os::sealed`]), of `len` bytes.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub(crate) fd: OwnedFd,
    pub(crate) len: usize,
}

thread_local! {
    /// The descriptors collected by the `encode` running on this thread.
    static OUTGOING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    /// The descriptors handed to the `decode` running on this thread.
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Restores a thread-local slot when dropped, so that a panicking serializer does not
/// leave a collector behind.
struct Restore<T: 'static> {
    key: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    previous: Option<Option<T>>,
}

impl<T: 'static> Restore<T> {
    fn install(key: &'static std::thread::LocalKey<RefCell<Option<T>>>, value: T) -> Self {
        let previous = key.with(|slot| slot.replace(Some(value)));
        Restore {
            key,
            previous: Some(previous),
        }
    }

    fn take(mut self) -> Option<T> {
        let previous = self.previous.take().flatten();
        self.key.with(|slot| slot.replace(previous))
    }
}

impl<T: 'static> Drop for Restore<T> {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            self.key.with(|slot| slot.replace(previous));
        }
    }
}

/// Encodes `value`, with a duplicate of every descriptor its handles hold.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Encoded, CodecError> {
    let mut bytes = Vec::new();
    let fds = encode_into(value, &mut bytes)?;
    Ok(Encoded {
        bytes,
        fds,
        sealed: None,
    })
}

/// Encodes a whole message, `prefix` then `value`, for a send path that takes a sealed
/// `memfd`: one of [`SEAL_ABOVE`](crate::wire::frames::SEAL_ABOVE) bytes or more is
/// encoded straight into a sealed `memfd` (see `sink`), without a buffer of this
/// process in between; a smaller one into `bytes`. The size limit applies to `value`'s
/// bytes, as in [`encode`]. If the `memfd` cannot be made or written, the message is
/// encoded into `bytes` instead (the send path then reports what the system refuses).
pub(crate) fn encode_message<T: Serialize + ?Sized>(
    prefix: &[u8],
    value: &T,
) -> Result<Encoded, CodecError> {
    let mut bytes = prefix.to_vec();
    let (fds, memfd) = encode_message_into(value, &mut bytes)?;
    let sealed = match memfd {
        None => None,
        Some((file, len)) => match sealed::seal(file) {
            Ok(fd) => Some(Sealed { fd, len }),
            Err(e) => {
                log::debug!("sealing an encoded message failed ({e}): into a buffer instead");
                drop(fds);
                let mut bytes = prefix.to_vec();
                let fds = encode_into(value, &mut bytes)?;
                return Ok(Encoded {
                    bytes,
                    fds,
                    sealed: None,
                });
            }
        },
    };
    if sealed.is_some() {
        // Only the prefix, which the `memfd` holds too.
        bytes = Vec::new();
    }
    Ok(Encoded { bytes, fds, sealed })
}

/// A message's `memfd`, written but not yet sealed, and its length in bytes.
pub(crate) type Unsealed = (File, usize);

/// As [`encode_message`], after the prefix already in `bytes` (fewer than
/// `SEAL_ABOVE` bytes), but a large message's `memfd` is returned unsealed, with its
/// length: the caller may still write over the prefix (a sequence number known only
/// later) before sealing it (`sealed::seal`). `bytes` then holds the prefix only.
pub(crate) fn encode_message_into<T: Serialize + ?Sized>(
    value: &T,
    bytes: &mut Vec<u8>,
) -> Result<(Vec<OwnedFd>, Option<Unsealed>), CodecError> {
    let prefix = Prefix::new(bytes);
    let mut sink = Sink::sealable(std::mem::take(bytes));
    let collector = Restore::install(&OUTGOING, Vec::new());
    let result = encoder::encode_to_sink(value, &mut sink);
    let fds = collector.take().unwrap_or_default();
    let fds = finish_encode(result, sink.len() - prefix.len(), fds)?;
    match sink.finish() {
        Ok(Body::Heap(buf)) => {
            *bytes = buf;
            Ok((fds, None))
        }
        Ok(Body::Memfd { file, len }) => {
            prefix.restore(bytes);
            Ok((fds, Some((file, len))))
        }
        Err(e) => {
            log::debug!("encoding into a memfd failed ({e}): into a buffer instead");
            drop(fds);
            prefix.restore(bytes);
            Ok((encode_into(value, bytes)?, None))
        }
    }
}

/// The bytes in front of a message (room for a sequence number, a kind byte), kept
/// aside while the sink holds the buffer: without an allocation when they are short,
/// as they are on every `Connection::send`.
enum Prefix {
    Short([u8; 16], usize),
    Long(Vec<u8>),
}

impl Prefix {
    fn new(bytes: &[u8]) -> Prefix {
        match bytes.len() {
            n @ 0..=16 => {
                let mut short = [0; 16];
                short[..n].copy_from_slice(bytes);
                Prefix::Short(short, n)
            }
            _ => Prefix::Long(bytes.to_vec()),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Prefix::Short(short, n) => &short[..*n],
            Prefix::Long(long) => long,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Makes `bytes` hold the prefix alone.
    fn restore(&self, bytes: &mut Vec<u8>) {
        bytes.clear();
        bytes.extend_from_slice(self.as_slice());
    }
}

/// Encodes `value` at the end of `bytes` (a buffer the caller reuses), and returns a
/// duplicate of every descriptor its handles hold. On error, `bytes` may hold part of
/// the value.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    bytes: &mut Vec<u8>,
) -> Result<Vec<OwnedFd>, CodecError> {
    let start = bytes.len();
    let collector = Restore::install(&OUTGOING, Vec::new());
    let result = encoder::encode_to(value, bytes);
    let fds = collector.take().unwrap_or_default();
    finish_encode(result, bytes.len() - start, fds)
}

/// The checks after one value is encoded (`len` bytes, `fds` collected): the encoder's
/// own error, the message size limit, and the limit on descriptors per message.
fn finish_encode(
    result: Result<(), encoder::EncodeFailure>,
    len: usize,
    fds: Vec<OwnedFd>,
) -> Result<Vec<OwnedFd>, CodecError> {
    result.map_err(|e| CodecError::new(CodecErrorKind::Encode, e.0))?;
    check_len(len)?;
    if fds.len() > MAX_FDS {
        return Err(CodecError::new(
            CodecErrorKind::Oversized,
            format!(
                "{} handles in one message, above the limit of {MAX_FDS}",
                fds.len()
            ),
        ));
    }
    Ok(fds)
}

/// Whether an encode that collects descriptors is running on this thread (a value
/// serialized inside it must add its handles to that encode's descriptors): what
/// the small-item fast path (`small.rs`) asks before it encodes without a collector.
#[inline]
pub(crate) fn collecting() -> bool {
    OUTGOING.with(|slot| slot.try_borrow().map_or(true, |slot| slot.is_some()))
}

/// Encodes one of multiproc's own records, which hold no handles.
pub(crate) fn encode_record<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut bytes = Vec::new();
    encoder::encode_to(value, &mut bytes)
        .map_err(|e| CodecError::new(CodecErrorKind::Encode, e.0))?;
    check_len(bytes.len())?;
    Ok(bytes)
}

/// Decodes a `T` that must use every byte of `bytes`, giving the handles inside it the
/// descriptors `fds` (in the order they were encoded). Descriptors left over are closed.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<T, CodecError> {
    if fds.is_empty() {
        return decode_record(bytes);
    }
    let supply = Restore::install(&INCOMING, fds.into_iter().map(Some).collect());
    let result = decode_record(bytes);
    drop(supply.take());
    result
}

/// Decodes one of multiproc's own records (or a value without handles).
pub(crate) fn decode_record<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    check_len(bytes.len())?;
    let seed = BoundedSeed::<T>::new(bytes.len());
    let (value, used) =
        bincode::serde::seed_decode_from_slice(seed, bytes, config()).map_err(|e| match e {
            bincode::error::DecodeError::UnexpectedEnd { .. } => CodecError::new(
                CodecErrorKind::Truncated,
                format!(
                    "{} bytes end before a whole `{}`",
                    bytes.len(),
                    std::any::type_name::<T>()
                ),
            ),
            other => CodecError::new(
                CodecErrorKind::Decode,
                format!("as `{}`: {other}", std::any::type_name::<T>()),
            ),
        })?;
    if used != bytes.len() {
        return Err(CodecError::new(
            CodecErrorKind::TrailingBytes,
            format!(
                "{} bytes left over after a `{}`",
                bytes.len() - used,
                std::any::type_name::<T>()
            ),
        ));
    }
    Ok(value)
}

fn check_len(len: usize) -> Result<(), CodecError> {
    if len > MAX_MESSAGE_LEN {
        return Err(CodecError::new(
            CodecErrorKind::Oversized,
            format!("{len} bytes, above the limit of {MAX_MESSAGE_LEN}"),
        ));
    }
    Ok(())
}

/// Encodes values one after another, each exactly as [`encode_into`] does, with one
/// collector of descriptors installed for all of them: installing and removing it
/// costs more than encoding a small value (a queue's `put_many` encodes hundreds).
pub(crate) struct EncodeMany {
    _collector: Restore<Vec<OwnedFd>>,
}

impl EncodeMany {
    pub(crate) fn new() -> EncodeMany {
        EncodeMany {
            _collector: Restore::install(&OUTGOING, Vec::new()),
        }
    }

    /// As [`encode_into`]: appends `value` to `bytes` and returns a duplicate of every
    /// descriptor its handles hold.
    pub(crate) fn encode_into<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
        bytes: &mut Vec<u8>,
    ) -> Result<Vec<OwnedFd>, CodecError> {
        let start = bytes.len();
        // The same encoding call as `encode_into`'s.
        let result = encoder::encode_to(value, bytes);
        // This value's descriptors: what the collector gathered since the last value.
        let fds = OUTGOING
            .with(|slot| slot.borrow_mut().as_mut().map(std::mem::take))
            .unwrap_or_default();
        finish_encode(result, bytes.len() - start, fds)
    }
}

impl Serialize for PortableFd {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = OUTGOING.with(|slot| -> Result<u32, String> {
            let mut slot = slot.borrow_mut();
            let fds = slot.as_mut().ok_or_else(|| {
                "a multiproc handle can only cross to another process through multiproc \
                 (a worker's arguments or value, a queue, a pipe): its descriptor means \
                 nothing elsewhere"
                    .to_owned()
            })?;
            let dup = self
                .try_clone_owned()
                .map_err(|e| format!("cannot duplicate a descriptor: {e}"))?;
            fds.push(dup);
            u32::try_from(fds.len() - 1).map_err(|_| "too many descriptors".to_owned())
        });
        match index {
            Ok(index) => serializer.serialize_u32(index),
            Err(message) => Err(serde::ser::Error::custom(message)),
        }
    }
}

impl<'de> Deserialize<'de> for PortableFd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(deserializer)? as usize;
        let fd = INCOMING.with(|slot| {
            slot.borrow_mut()
                .as_mut()
                .and_then(|fds| fds.get_mut(index))
                .and_then(Option::take)
        });
        match fd {
            Some(fd) => Ok(PortableFd::new(fd)),
            None => Err(serde::de::Error::custom(format!(
                "the message names descriptor {index}, which did not come with it"
            ))),
        }
    }
}

/// The header announcing a message of `len` bytes.
pub(crate) fn frame_header(len: usize) -> Result<[u8; HEADER_LEN], CodecError> {
    check_len(len)?;
    // MAX_MESSAGE_LEN fits in a u32, so the conversion cannot fail after the check.
    let len = u32::try_from(len).map_err(|_| {
        CodecError::new(
            CodecErrorKind::Oversized,
            format!("{len} bytes in one frame"),
        )
    })?;
    Ok(len.to_le_bytes())
}

/// Set in the header of a frame whose message travels in a sealed `memfd` (the frame's
/// last descriptor) rather than in the stream: such a frame's body is only the
/// message's length, [`SEALED_BODY`] bytes (a little-endian `u64`). Free in every
/// other header, since [`MAX_MESSAGE_LEN`] is below it.
const SEALED_FLAG: u32 = 1 << 31;

/// Bytes in the body of a sealed frame: the message's length.
pub(crate) const SEALED_BODY: usize = 8;

/// What a frame header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Bytes of the frame after its header, in the stream.
    pub(crate) len: usize,
    /// Whether the message is in a sealed `memfd` (the body is its length).
    pub(crate) sealed: bool,
}

/// The header of a sealed frame.
pub(crate) fn sealed_header() -> [u8; HEADER_LEN] {
    (SEALED_FLAG | SEALED_BODY as u32).to_le_bytes()
}

/// Reads a frame header, refusing lengths above the limit and sealed frames whose body
/// is not exactly a length.
pub(crate) fn parse_header(header: [u8; HEADER_LEN]) -> Result<Header, CodecError> {
    let raw = u32::from_le_bytes(header);
    let sealed = raw & SEALED_FLAG != 0;
    let len = (raw & !SEALED_FLAG) as usize;
    check_len(len)?;
    if sealed && len != SEALED_BODY {
        return Err(CodecError::new(
            CodecErrorKind::Decode,
            format!("a sealed frame of {len} bytes, not {SEALED_BODY}"),
        ));
    }
    Ok(Header { len, sealed })
}

/// The length of the message in a sealed `memfd`, from its frame's body: at least 1
/// byte and at most [`MAX_MESSAGE_LEN`].
pub(crate) fn sealed_len(body: [u8; SEALED_BODY]) -> Result<usize, CodecError> {
    let len = usize::try_from(u64::from_le_bytes(body)).unwrap_or(usize::MAX);
    check_len(len)?;
    if len == 0 {
        return Err(CodecError::new(
            CodecErrorKind::Decode,
            "a sealed frame announcing an empty message",
        ));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn round_trip() {
        let value = (7u64, String::from("ada"), vec![1u8, 2, 3]);
        let encoded = encode(&value).unwrap();
        assert!(encoded.fds.is_empty());
        assert_eq!(
            decode::<(u64, String, Vec<u8>)>(&encoded.bytes, Vec::new()).unwrap(),
            value
        );
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = encode_record(&5u32).unwrap();
        bytes.push(0);
        let err = decode_record::<u32>(&bytes).unwrap_err();
        assert_eq!(err.kind(), CodecErrorKind::TrailingBytes);
    }

    #[test]
    fn truncated_value_is_an_error() {
        let bytes = encode_record(&String::from("hello world")).unwrap();
        let err = decode_record::<String>(&bytes[..5]).unwrap_err();
        assert_eq!(err.kind(), CodecErrorKind::Truncated);
    }

    #[test]
    fn forged_vec_length_does_not_allocate() {
        // A varint announcing u64::MAX elements, then nothing.
        let bytes = [253u8, 255, 255, 255, 255, 255, 255, 255, 255];
        let err = decode_record::<Vec<u64>>(&bytes).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                CodecErrorKind::Decode | CodecErrorKind::Truncated
            ),
            "{err}"
        );
    }

    #[test]
    fn oversized_header_is_refused() {
        let header = (u32::MAX).to_le_bytes();
        assert_eq!(
            parse_header(header).unwrap_err().kind(),
            CodecErrorKind::Oversized
        );
        let above = (MAX_MESSAGE_LEN as u32 + 1).to_le_bytes();
        assert_eq!(
            parse_header(above).unwrap_err().kind(),
            CodecErrorKind::Oversized
        );
    }

    #[test]
    fn sealed_headers_are_strict() {
        let h = parse_header(sealed_header()).unwrap();
        assert_eq!((h.len, h.sealed), (SEALED_BODY, true));
        let plain = parse_header(frame_header(SEALED_BODY).unwrap()).unwrap();
        assert!(!plain.sealed);
        // The flag with any other body length is refused.
        for len in [0u32, 7, 9, 1 << 20] {
            let e = parse_header(((1 << 31) | len).to_le_bytes()).unwrap_err();
            assert_eq!(e.kind(), CodecErrorKind::Decode, "{e}");
        }
        assert_eq!(sealed_len(5u64.to_le_bytes()).unwrap(), 5);
        assert_eq!(
            sealed_len((MAX_MESSAGE_LEN as u64 + 1).to_le_bytes())
                .unwrap_err()
                .kind(),
            CodecErrorKind::Oversized
        );
        assert_eq!(
            sealed_len(u64::MAX.to_le_bytes()).unwrap_err().kind(),
            CodecErrorKind::Oversized
        );
        assert_eq!(
            sealed_len(0u64.to_le_bytes()).unwrap_err().kind(),
            CodecErrorKind::Decode
        );
    }

    fn pipe_fd() -> OwnedFd {
        let (read, _write) = nix::unistd::pipe().unwrap();
        read
    }

    #[test]
    fn descriptors_travel_beside_the_bytes() {
        let a = PortableFd::new(pipe_fd());
        let b = PortableFd::new(pipe_fd());
        let encoded = encode(&(a.clone(), 5u8, vec![b.clone(), a.clone()])).unwrap();
        assert_eq!(encoded.fds.len(), 3);
        let (x, five, v): (PortableFd, u8, Vec<PortableFd>) =
            decode(&encoded.bytes, encoded.fds).unwrap();
        assert_eq!(five, 5);
        assert_eq!(v.len(), 2);
        // Fresh descriptors, not the numbers of the originals.
        assert_ne!(x.as_raw_fd(), a.as_raw_fd());
        assert_ne!(v[0].as_raw_fd(), b.as_raw_fd());
    }

    #[test]
    fn a_handle_outside_multiproc_is_refused() {
        let a = PortableFd::new(pipe_fd());
        let err = encode_record(&a).unwrap_err();
        assert!(err.to_string().contains("only cross"), "{err}");
        let encoded = encode(&a).unwrap();
        let err = decode_record::<PortableFd>(&encoded.bytes).unwrap_err();
        assert!(err.to_string().contains("did not come with it"), "{err}");
    }
}
