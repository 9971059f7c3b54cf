//! The [`Report`] a child sends its parent when its worker ends, and how the parent
//! reads it back: one frame on the bootstrap channel whose first byte is the kind.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use crate::wire::codec::{self, Encoded};
use crate::wire::error::{CodecError, CodecErrorKind};
use crate::wire::frames::{self, Frame};

/// What a child tells its parent when its worker ends. Sent as one frame whose first
/// byte is the kind.
#[derive(Debug)]
pub(crate) enum Report {
    /// The worker returned this encoded value (a frame of its bytes and descriptors:
    /// received, they may be a sealed payload, read where it is mapped).
    Value(Frame),
    /// The worker returned a value, encoded by the child as the whole report message
    /// (its kind byte first, see [`encode_value`]): what the child sends.
    Returned(Encoded),
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

/// Encodes a worker's return value as the whole message of a [`Report::Returned`]: a
/// large one straight into a sealed `memfd` (`codec::encode_message`).
pub(crate) fn encode_value<T: serde::Serialize + ?Sized>(value: &T) -> Result<Encoded, CodecError> {
    codec::encode_message(&[REPORT_VALUE], value)
}
const REPORT_FAILED: u8 = 2;

impl Report {
    /// What the child prints on its stderr about this end; `None` for a value.
    pub(crate) fn stderr_text(&self) -> Option<String> {
        match self {
            Report::Value(_) | Report::Returned(_) => None,
            Report::Panic { text, .. } => Some(text.clone()),
            Report::Failed(message) => Some(format!("Error: {message}")),
        }
    }

    /// Sends the report to the parent over `channel`.
    pub(crate) fn send(&self, channel: &UnixStream) -> crate::error::Result<()> {
        let sock = channel.as_fd();
        match self {
            Report::Value(value) => {
                frames::send_frame(sock, &[&[REPORT_VALUE], &value.bytes], &value.fds)?
            }
            Report::Returned(message) => frames::send_encoded(sock, message)?,
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
        let kind = frame.bytes[0];
        // Skipped, not removed: the value after it may be 64 MiB.
        frame.bytes.advance(1);
        match kind {
            REPORT_VALUE => Ok(Report::Value(frame)),
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
