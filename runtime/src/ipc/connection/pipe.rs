//! [`Pipe`]: makes the two connected ends.

use std::fmt;
use std::marker::PhantomData;

use super::end::Connection;
use super::inner::Inner;
use crate::error::Result;

/// Makes a pair of connected [`Connection`]s: Python's `multiprocessing.Pipe`.
///
/// ```
/// use multiproc::{Connection, Pipe};
///
/// #[multiproc::worker]
/// fn shout(conn: Connection<String>) -> multiproc::Result<()> {
///     while let Ok(line) = conn.recv() {
///         conn.send(line.to_uppercase())?;
///     }
///     Ok(()) // the parent closed its end: end of file
/// }
///
/// fn main() -> multiproc::Result<()> {
///     let (ours, theirs) = Pipe::new()?;
///     let child = shout::spawn(theirs)?; // our copy of the child's end is gone now
///     ours.send("hello".to_owned())?;
///     assert_eq!(ours.recv()?, "HELLO");
///     drop(ours);
///     assert_eq!(child.join()?, 0);
///     Ok(())
/// }
/// ```
pub struct Pipe<T> {
    _never: std::convert::Infallible,
    _item: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for Pipe<T> {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self._never {}
    }
}

impl<T> Pipe<T> {
    /// Two connected ends that both send and receive (Python's `Pipe()`).
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> Result<(Connection<T>, Connection<T>)> {
        let (a, b) = Inner::pair(true, std::any::type_name::<T>())?;
        Ok((Connection::from_inner(a), Connection::from_inner(b)))
    }

    /// A one-way pipe (Python's `Pipe(duplex=False)`): `(reader, writer)`, in Python's
    /// order. The reader only receives, the writer only sends.
    pub fn one_way() -> Result<(Connection<T>, Connection<T>)> {
        let (writer, reader) = Inner::pair(false, std::any::type_name::<T>())?;
        Ok((
            Connection::from_inner(reader),
            Connection::from_inner(writer),
        ))
    }
}
