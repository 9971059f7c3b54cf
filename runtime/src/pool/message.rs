//! What crosses between the pool and its workers.
//!
//! Tasks go to one worker at a time as a [`Packet`]: a batch encoded by the pool with
//! the codec (so that handles inside task arguments travel as descriptors beside it).
//! Results come back as [`FromWorker`] values on the pool's one result queue.

use std::fmt;
use std::os::fd::OwnedFd;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::os::fd::PortableFd;
pub(crate) use crate::process::registry::Status;
use crate::wire::codec::Encoded;

/// Bytes that serialize as one run (a length and a copy), not element by element.
#[derive(Default, Clone, PartialEq, Eq)]
pub(crate) struct Bytes(pub(crate) Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({})", self.0.len())
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> Visitor<'de> for BytesVisitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Bytes(out))
            }
        }
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

/// One encoded value with the handles inside it: a task's arguments or a result.
#[derive(Debug, Serialize, Deserialize, Default)]
pub(crate) struct Item {
    pub(crate) bytes: Bytes,
    pub(crate) fds: Vec<PortableFd>,
}

impl Item {
    pub(crate) fn from_encoded(encoded: Encoded) -> Item {
        Item {
            bytes: Bytes(encoded.bytes),
            fds: encoded.fds.into_iter().map(PortableFd::new).collect(),
        }
    }

    /// The bytes and a fresh descriptor for each handle (the item stays usable).
    pub(crate) fn to_parts(&self) -> std::io::Result<(&[u8], Vec<OwnedFd>)> {
        let fds = self
            .fds
            .iter()
            .map(PortableFd::try_clone_owned)
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok((&self.bytes.0, fds))
    }
}

/// A message on a worker's task queue: a [`ToWorker`] encoded by the pool.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Packet {
    pub(crate) bytes: Bytes,
    pub(crate) fds: Vec<PortableFd>,
}

/// Tasks for one worker, as the worker decodes them.
#[derive(Debug, Deserialize)]
pub(crate) enum ToWorker {
    /// Worker keys introduced by this batch (index, registry key), then the tasks.
    Batch {
        keys: Vec<(u32, String)>,
        tasks: Vec<TaskMsg>,
    },
}

/// [`ToWorker`] as the pool encodes it, borrowing the tasks it keeps.
#[derive(Serialize)]
pub(crate) enum ToWorkerRef<'a> {
    Batch {
        keys: Vec<(u32, &'a str)>,
        tasks: Vec<TaskRef<'a>>,
    },
}

/// One task: a worker key and its pieces, each an encoded `Vec` of argument tuples
/// (one piece for a chunk of `map`; one per item for `imap`, which encodes its input
/// item by item).
#[derive(Debug, Deserialize)]
pub(crate) struct TaskMsg {
    pub(crate) id: u64,
    pub(crate) key: u32,
    pub(crate) items: Vec<Item>,
}

/// [`TaskMsg`] as the pool encodes it.
#[derive(Serialize)]
pub(crate) struct TaskRef<'a> {
    pub(crate) id: u64,
    pub(crate) key: u32,
    pub(crate) items: &'a [Item],
}

/// What a worker sends to the pool.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// Results of finished tasks, in the order the worker ran them.
    Results { slot: u32, results: Vec<TaskResult> },
    /// The initializer failed; the worker exits.
    InitFailed { slot: u32, message: String },
}

/// The outcome of one task.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TaskResult {
    pub(crate) id: u64,
    /// How long the task ran, for the pool's estimate of task length.
    pub(crate) nanos: u64,
    /// One per piece of the task's arguments, in order.
    pub(crate) pieces: Vec<PieceResult>,
}

/// The outcome of one piece of a task (an encoded run of argument tuples).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PieceResult {
    /// Each item's status, and the values of those that returned one, as one value.
    Done { statuses: Vec<Status>, values: Item },
    /// Every item of the piece ended so (its arguments could not be read, ...).
    All(Status),
}
