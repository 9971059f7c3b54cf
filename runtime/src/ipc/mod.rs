//! Channels between processes: the shared-memory rings, adaptive spinning, `wait`,
//! queues and connections. Uses [`os`](crate::os), [`wire`](crate::wire) and
//! [`process`](crate::process).

pub(crate) mod connection;
pub(crate) mod error;
pub(crate) mod queue;
pub(crate) mod ring;
pub(crate) mod scratch;
pub(crate) mod spin;
pub(crate) mod type_hash;
pub(crate) mod wait;
