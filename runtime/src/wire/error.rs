//! The wire's error: a value that could not be encoded, or bytes that could not be
//! decoded.

use std::fmt;

/// A value that could not be encoded, or bytes that could not be decoded.
///
/// Decoding never trusts its input: a truncated, oversized or garbled message gives
/// this error, never a panic or an allocation sized by a forged length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError {
    kind: CodecErrorKind,
    detail: String,
}

/// What went wrong in a [`CodecError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecErrorKind {
    /// A value could not be encoded.
    Encode,
    /// Bytes did not decode as the expected type.
    Decode,
    /// A message declared a length above the limit.
    Oversized,
    /// The stream ended in the middle of a message.
    Truncated,
    /// A message had bytes left over after the value.
    TrailingBytes,
}

impl CodecError {
    pub(crate) fn new(kind: CodecErrorKind, detail: impl Into<String>) -> Self {
        CodecError {
            kind,
            detail: detail.into(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> CodecErrorKind {
        self.kind
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            CodecErrorKind::Encode => "cannot encode value",
            CodecErrorKind::Decode => "cannot decode message",
            CodecErrorKind::Oversized => "message too large",
            CodecErrorKind::Truncated => "truncated message",
            CodecErrorKind::TrailingBytes => "garbled message",
        };
        write!(f, "{what}: {}", self.detail)
    }
}

impl std::error::Error for CodecError {}
