//! [`Pipe`] and [`Connection`]: Python's `multiprocessing.Pipe`, with a shared-memory
//! fast path beside a Unix socket.
//!
//! # Transport
//!
//! A pipe is a Unix stream socket pair plus a shared region holding one ring per
//! direction (64 KiB each; see `ring.rs`). A message without descriptors that fits in
//! half a ring is written into the ring: no system call, and a receiver that is
//! spinning sees it within a fraction of a microsecond. Everything else goes through
//! the socket as a frame (`transport.rs`): messages that carry handles (descriptors
//! travel only through a socket), large messages (the socket copies them at memory
//! speed and blocks the sender when full, which is the back-pressure a pipe has), and
//! messages sent while the ring is full. The socket also tells what shared memory
//! cannot: that the other end was closed in every process (end of file, `EPIPE`).
//!
//! Every message has a sequence number, counted in the sender's ring word (whether
//! the message went through the ring or the socket) and carried by the record or the
//! frame, so the receiver delivers messages in the order they were sent whichever way
//! each went.
//!
//! # Waking a receiver
//!
//! A receiver that finds nothing spins on the sender's ring word for a while (see
//! `spin.rs`), then counts itself in `sleepers`, clears `rung`, looks once more and
//! sleeps in `poll` on its socket. A sender that publishes into the ring and sees a
//! sleeper and `rung` clear sends a doorbell (an empty frame) on the socket and sets
//! `rung`. So a receiver that keeps up costs the sender nothing, and a sleeping one is
//! woken the way a plain socket would wake it.
//!
//! # Frames on the socket
//!
//! A frame is a 4-byte little-endian length and that many bytes: empty for a doorbell,
//! otherwise the message's 8-byte little-endian sequence number followed by the
//! message. The receiver reads a frame's header and then exactly its bytes, so frames
//! not yet received stay in the socket: a connection handed to another process loses
//! nothing.
//!
//! # Files
//!
//! The API is [`Pipe`] (`pipe.rs`) and [`Connection`] (`end.rs`); underneath, one end as
//! a process holds it (`inner.rs`) over the shared header (`layout.rs`), with sending
//! (`send.rs`), receiving (`recv.rs`) and the wake-ups, `poll` and `wait` support
//! (`wake.rs`) each in its own file.

mod end;
mod error;
mod inner;
mod layout;
mod pipe;
mod recv;
mod send;
mod wake;

pub use end::Connection;
pub use error::{RecvError, RecvIntoError, RecvTimeoutError, SendError};
pub use pipe::Pipe;
