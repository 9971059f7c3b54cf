//! All encoding lives here, so that the codec can be swapped in one place.
//!
//! Values are encoded with bincode 2 (its serde support, standard configuration).
//! Messages on a stream are framed as a 4-byte little-endian length followed by that
//! many bytes. Nothing here trusts its input: every decode is bounded by
//! [`MAX_MESSAGE_LEN`], a length above it is refused before anything is allocated, a
//! frame is read into memory only as fast as its bytes really arrive, and a value must
//! use every byte of its message.

use std::io::{self, Read};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{CodecError, CodecErrorKind};

/// The largest message multiproc encodes or accepts: 1 GiB.
///
/// Arguments, return values and every other message crossing a process boundary must
/// fit; a larger one is refused with a [`CodecError`](crate::CodecError) of kind
/// [`Oversized`](crate::CodecErrorKind::Oversized) on the sending side, and a frame that
/// declares a larger length is refused on the receiving side.
pub const MAX_MESSAGE_LEN: usize = 1 << 30;

/// Bytes in a frame header.
pub(crate) const HEADER_LEN: usize = 4;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE_LEN>()
}

/// Encodes `value` into a new buffer.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut buf = Vec::new();
    encode_into(value, &mut buf)?;
    Ok(buf)
}

/// Appends the encoding of `value` to `buf`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let start = buf.len();
    bincode::serde::encode_into_std_write(value, buf, config())
        .map_err(|e| CodecError::new(CodecErrorKind::Encode, e.to_string()))?;
    check_len(buf.len() - start)
}

/// Decodes a `T` that must use every byte of `bytes`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    check_len(bytes.len())?;
    let (value, used) =
        bincode::serde::decode_from_slice::<T, _>(bytes, config()).map_err(|e| match e {
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

/// Reads a frame's length from its header, refusing lengths above the limit.
pub(crate) fn parse_header(header: [u8; HEADER_LEN]) -> Result<usize, CodecError> {
    let len = u32::from_le_bytes(header) as usize;
    check_len(len)?;
    Ok(len)
}

/// Reads one whole frame from a blocking reader.
///
/// Returns `Ok(None)` on a clean end of stream before the first header byte. The
/// payload buffer grows only as bytes arrive, so a forged length costs no memory.
pub(crate) fn read_frame(reader: &mut impl Read) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match reader.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(truncated(got, HEADER_LEN).into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = parse_header(header)?;
    let mut payload = Vec::new();
    let read = reader
        .take(len as u64)
        .read_to_end(&mut payload)
        .map_err(FrameError::Io)?;
    if read < len {
        return Err(truncated(HEADER_LEN + read, HEADER_LEN + len).into());
    }
    Ok(Some(payload))
}

fn truncated(got: usize, want: usize) -> CodecError {
    CodecError::new(
        CodecErrorKind::Truncated,
        format!("the stream ended after {got} of {want} bytes of a frame"),
    )
}

/// Collects frames from bytes that arrive in pieces (from a non-blocking descriptor).
#[derive(Debug, Default)]
pub(crate) struct FrameBuffer {
    buf: Vec<u8>,
}

impl FrameBuffer {
    /// Room to read into: the caller reads into the returned slice, then calls
    /// [`filled`](Self::filled) with the count.
    pub(crate) fn spare(&mut self, want: usize) -> &mut [u8] {
        let len = self.buf.len();
        self.buf.resize(len + want, 0);
        &mut self.buf[len..]
    }

    /// Keeps `n` of the bytes last handed out by [`spare`](Self::spare).
    pub(crate) fn filled(&mut self, spare: usize, n: usize) {
        let len = self.buf.len() - spare + n;
        self.buf.truncate(len);
    }

    /// How many bytes to read next: the rest of the frame in progress, at least a page
    /// and at most 16 MiB (so a forged length cannot make the buffer balloon).
    pub(crate) fn want(&self) -> usize {
        let needed = match self.buf.first_chunk::<HEADER_LEN>() {
            Some(header) => {
                (u32::from_le_bytes(*header) as usize + HEADER_LEN).saturating_sub(self.buf.len())
            }
            None => 0,
        };
        needed.clamp(4096, 16 << 20)
    }

    /// Takes the next whole frame out of the buffer, if one has arrived.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Vec<u8>>, CodecError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = parse_header(*header)?;
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let rest = self.buf.split_off(HEADER_LEN + len);
        let mut frame = std::mem::replace(&mut self.buf, rest);
        frame.drain(..HEADER_LEN);
        Ok(Some(frame))
    }

    /// Bytes of an unfinished frame still held (non-zero at end of stream means the
    /// last frame was cut short).
    pub(crate) fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// A frame that could not be read: the stream failed or its bytes were bad.
#[derive(Debug)]
pub(crate) enum FrameError {
    Io(io::Error),
    Codec(CodecError),
}

impl From<CodecError> for FrameError {
    fn from(e: CodecError) -> Self {
        FrameError::Codec(e)
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(e) => e.fmt(f),
            FrameError::Codec(e) => e.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let value = (7u64, String::from("ada"), vec![1u8, 2, 3]);
        let bytes = encode(&value).unwrap();
        assert_eq!(decode::<(u64, String, Vec<u8>)>(&bytes).unwrap(), value);
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = encode(&5u32).unwrap();
        bytes.push(0);
        let err = decode::<u32>(&bytes).unwrap_err();
        assert_eq!(err.kind(), CodecErrorKind::TrailingBytes);
    }

    #[test]
    fn truncated_value_is_an_error() {
        let bytes = encode(&String::from("hello world")).unwrap();
        let err = decode::<String>(&bytes[..5]).unwrap_err();
        assert_eq!(err.kind(), CodecErrorKind::Truncated);
    }

    #[test]
    fn forged_vec_length_does_not_allocate() {
        // A varint announcing u64::MAX elements, then nothing.
        let bytes = [253u8, 255, 255, 255, 255, 255, 255, 255, 255];
        let err = decode::<Vec<u64>>(&bytes).unwrap_err();
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
        let mut reader = &header[..];
        match read_frame(&mut reader) {
            Err(FrameError::Codec(e)) => assert_eq!(e.kind(), CodecErrorKind::Oversized),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn frames_split_anywhere() {
        let mut stream = Vec::new();
        for msg in [&b"one"[..], b"", b"three"] {
            stream.extend_from_slice(&frame_header(msg.len()).unwrap());
            stream.extend_from_slice(msg);
        }
        for cut in 0..stream.len() {
            let mut fb = FrameBuffer::default();
            let mut frames = Vec::new();
            for piece in [&stream[..cut], &stream[cut..]] {
                let spare = fb.spare(piece.len());
                spare.copy_from_slice(piece);
                fb.filled(piece.len(), piece.len());
                while let Some(f) = fb.next_frame().unwrap() {
                    frames.push(f);
                }
            }
            assert_eq!(frames, vec![b"one".to_vec(), vec![], b"three".to_vec()]);
            assert_eq!(fb.pending(), 0);
        }
    }

    #[test]
    fn truncated_frame_on_blocking_reader() {
        let mut stream = frame_header(10).unwrap().to_vec();
        stream.extend_from_slice(b"short");
        let mut reader = &stream[..];
        match read_frame(&mut reader) {
            Err(FrameError::Codec(e)) => assert_eq!(e.kind(), CodecErrorKind::Truncated),
            other => panic!("unexpected {other:?}"),
        }
        let mut empty = &[][..];
        assert!(read_frame(&mut empty).unwrap().is_none());
    }
}
