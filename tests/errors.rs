//! The shape of every public error type, from the outside: each is `Debug`,
//! `Display`, `std::error::Error`, `Send + Sync + 'static` (checked at compile time);
//! a wrapping error never shows the same cause twice when its `source()` chain is
//! printed level by level, as `anyhow` and `eyre` do; and a typed cause (an
//! `IndexError`'s index and length) survives conversion into `multiproc::Error`.
//!
//! The errors are made by real operations where one can make them cheaply: a child
//! that panics, a value that refuses to encode, garbage written into a pipe by another
//! process, a closed queue, an index out of range, a lock released unheld.

use std::error::Error as StdError;
use std::io::Write;
use std::os::fd::AsFd;

use multiproc::{
    Array, Barrier, BrokenBarrierError, ChannelError, ChildError, CodecError, CodecErrorKind,
    Condition, Connection, Corruption, Error, Failure, GetError, GetTimeoutError, IndexError,
    JoinableQueue, Lock, NotifyError, Pipe, PoisonError, ProcessError, PutError, PutTimeoutError,
    Queue, RecvError, RecvIntoError, RecvTimeoutError, RegistryError, ReleaseError, SendError,
    SyncError, TaskDoneError, TryGetError, TryLockError, TryPutError, WaitError,
};
use serde::{Deserialize, Serialize, Serializer};

/// A payload without `Debug`: the errors that hold one must not need it.
#[derive(Serialize, Deserialize)]
struct NotDebug;

// Compile-time: every public error type has the traits a caller relies on.
const _: () = {
    const fn is_error<E: StdError + std::fmt::Debug + std::fmt::Display + Send + Sync + 'static>() {
    }
    is_error::<Error>();
    is_error::<ProcessError>();
    is_error::<ChildError>();
    is_error::<RegistryError>();
    is_error::<CodecError>();
    is_error::<ChannelError>();
    is_error::<Corruption>();
    is_error::<SyncError>();
    is_error::<PoisonError<NotDebug>>();
    is_error::<TryLockError<NotDebug>>();
    is_error::<ReleaseError>();
    is_error::<WaitError<NotDebug>>();
    is_error::<NotifyError>();
    is_error::<BrokenBarrierError>();
    is_error::<IndexError>();
    is_error::<PutError<NotDebug>>();
    is_error::<TryPutError<NotDebug>>();
    is_error::<PutTimeoutError<NotDebug>>();
    is_error::<GetError>();
    is_error::<TryGetError>();
    is_error::<GetTimeoutError>();
    is_error::<TaskDoneError>();
    is_error::<SendError<NotDebug>>();
    is_error::<RecvError>();
    is_error::<RecvTimeoutError>();
    is_error::<RecvIntoError>();
    is_error::<Failure>();
    is_error::<multiproc::TaskError>();
    is_error::<multiproc::PoolError>();
    is_error::<multiproc::ManagerError>();
    is_error::<multiproc::SharedMemoryError>();
};

/// Each level of `e`'s source chain, printed.
fn chain(e: &(dyn StdError + 'static)) -> Vec<String> {
    let mut levels = Vec::new();
    let mut next = Some(e);
    while let Some(level) = next {
        levels.push(level.to_string());
        next = level.source();
    }
    levels
}

/// Printing `e` and each of its sources, as a reporter does, shows no message twice:
/// no level's text holds the text of a level below it.
#[track_caller]
fn assert_each_cause_once(e: &(dyn StdError + 'static)) {
    let levels = chain(e);
    for (i, upper) in levels.iter().enumerate() {
        assert!(!upper.is_empty(), "an empty message in {levels:?}");
        for lower in &levels[i + 1..] {
            assert!(
                !upper.contains(lower.as_str()),
                "{lower:?} is printed twice in the chain {levels:?}"
            );
        }
    }
}

/// Both the error and the umbrella `Error` it converts into.
#[track_caller]
fn assert_once_and_wide<E: StdError + 'static + Into<Error>>(e: E) {
    assert_each_cause_once(&e);
    let wide: Error = e.into();
    assert_each_cause_once(&wide);
}

/// Refuses to be encoded.
#[derive(Deserialize)]
struct Refuses;

impl Serialize for Refuses {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

#[multiproc::worker]
fn panics() -> u32 {
    panic!("the worker gave up")
}

#[multiproc::worker]
fn write_raw(conn: Connection<u32>, bytes: Vec<u8>) {
    let fd = conn.as_fd().try_clone_to_owned().unwrap();
    let mut sock = std::os::unix::net::UnixStream::from(fd);
    sock.set_nonblocking(false).unwrap();
    sock.write_all(&bytes).unwrap();
}

#[test]
fn a_failed_child_prints_its_cause_once() {
    let e = panics::spawn().unwrap().join_value().unwrap_err();
    assert!(matches!(e, Error::Child(_)), "{e:?}");
    assert!(e.to_string().contains("the worker gave up"), "{e}");
    assert_each_cause_once(&e);
}

#[test]
fn process_misuse_and_registry_errors_print_once() {
    let p = panics::process();
    let e = p.join().unwrap_err();
    assert!(
        matches!(e, Error::Process(ProcessError::NotStarted(_))),
        "{e:?}"
    );
    assert_each_cause_once(&e);
    assert_once_and_wide(RegistryError::Unknown("errors::nowhere".into()));
}

#[test]
fn an_io_error_prints_once() {
    let e: Error = std::fs::File::open("/nonexistent/multiproc-errors")
        .unwrap_err()
        .into();
    assert!(matches!(e, Error::Io(_)), "{e:?}");
    assert_each_cause_once(&e);
    // An io::Error wrapping a cause of its own is transparent in std; it stays so.
    let e: Error = std::io::Error::other(CodecErrorLike).into();
    assert_each_cause_once(&e);
}

/// An error with a source of its own, to see a real chain pass through `Error::Io`.
#[derive(Debug)]
struct CodecErrorLike;

impl std::fmt::Display for CodecErrorLike {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the outer cause")
    }
}

impl StdError for CodecErrorLike {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&NotifyError)
    }
}

#[test]
fn a_value_that_cannot_be_encoded_prints_once_through_queue_and_pipe() {
    let q: Queue<Refuses> = Queue::new().unwrap();
    let e = q.put(Refuses).unwrap_err();
    assert!(
        matches!(&e, PutError::Failed(_, Error::Codec(c)) if c.kind() == CodecErrorKind::Encode),
        "{e:?}"
    );
    assert!(e.to_string().contains("refuses to be encoded"), "{e}");
    assert_once_and_wide(e);

    let (a, _b) = Pipe::<Refuses>::new().unwrap();
    let e = a.send(Refuses).unwrap_err();
    assert!(e.to_string().contains("refuses to be encoded"), "{e}");
    assert_once_and_wide(e);
}

#[test]
fn queue_states_print_once() {
    let q: Queue<u32> = Queue::new().unwrap();
    assert_once_and_wide(q.try_get().unwrap_err());
    q.close();
    let e = q.put(1).unwrap_err();
    assert!(e.is_closed());
    assert_once_and_wide(e);
    let jq: JoinableQueue<u32> = JoinableQueue::new().unwrap();
    assert_once_and_wide(jq.task_done().unwrap_err());
    // The wrapping variants, with each kind of wide error inside.
    for inner in [
        Error::from(ChannelError::Timeout),
        Error::from(std::io::Error::other(CodecErrorLike)),
    ] {
        assert_once_and_wide(GetError::Failed(inner));
    }
    assert_once_and_wide(TryGetError::Failed(ChannelError::ReadOnly.into()));
    assert_once_and_wide(GetTimeoutError::Failed(ChannelError::WriteOnly.into()));
    assert_once_and_wide(TryPutError::Failed(NotDebug, ChannelError::Full.into()));
    assert_once_and_wide(PutTimeoutError::Failed(
        NotDebug,
        ChannelError::Closed.into(),
    ));
}

#[test]
fn garbage_in_a_pipe_prints_once_then_the_broken_stream_too() {
    let (ours, theirs) = Pipe::<u32>::new().unwrap();
    let child = write_raw::spawn(theirs, vec![50, 0, 0, 0, 1, 2, 3]).unwrap();
    assert_eq!(child.join().unwrap(), 0);
    let e = ours.recv().unwrap_err();
    assert!(
        matches!(&e, RecvError::Failed(Error::Codec(c)) if c.kind() == CodecErrorKind::Truncated),
        "{e:?}"
    );
    assert_once_and_wide(e);
    let e = ours.recv().unwrap_err();
    match &e {
        RecvError::Failed(Error::Channel(c)) => {
            assert!(c.is_broken() && !c.is_corrupt() && !c.is_misuse(), "{c:?}")
        }
        other => panic!("{other:?}"),
    }
    assert_once_and_wide(e);
    assert_once_and_wide(RecvTimeoutError::Failed(ChannelError::WriteOnly.into()));
    assert_once_and_wide(RecvIntoError::Failed(ChannelError::WriteOnly.into()));
    assert_once_and_wide(RecvIntoError::BufferTooShort(vec![1, 2, 3]));
}

#[test]
fn sync_errors_print_once_and_keep_their_type() {
    // An index out of range: its index and length survive into `Error`.
    let array = Array::from_slice(&[1u32, 2, 3]).unwrap();
    let e = array.get(7).unwrap_err();
    assert_once_and_wide(e);
    let wide: Error = e.into();
    match &wide {
        Error::Sync(SyncError::Index(e)) => assert_eq!((e.index(), e.len()), (7, 3)),
        other => panic!("{other:?}"),
    }
    let Error::Sync(sync) = &wide else {
        unreachable!()
    };
    assert_eq!(sync.index_error(), Some(&e));
    assert_eq!(wide.to_string(), e.to_string());

    let lock = Lock::new().unwrap();
    let e = lock.release().unwrap_err();
    assert_once_and_wide(e);
    assert!(matches!(Error::from(e), Error::Sync(SyncError::Release(r)) if r.is_too_many()));

    let condition = Condition::new().unwrap();
    let e = condition.notify().unwrap_err();
    assert_once_and_wide(e);
    let e = condition.wait().unwrap_err();
    assert!(e.is_not_owned());
    let wide = Error::from(e);
    assert!(
        matches!(&wide, Error::Sync(s) if s.is_not_owned()),
        "{wide:?}"
    );
    assert_each_cause_once(&wide);

    let barrier = Barrier::new(2).unwrap();
    barrier.abort();
    assert_once_and_wide(barrier.wait().unwrap_err());
    let e = Barrier::new(0).unwrap_err();
    assert!(
        matches!(e, Error::Sync(SyncError::InvalidArgument(_))),
        "{e:?}"
    );
    assert_each_cause_once(&e);

    let e = PoisonError::new(NotDebug);
    assert_once_and_wide(e);
    let wide = Error::from(PoisonError::new(NotDebug));
    assert!(
        matches!(&wide, Error::Sync(s) if s.is_poisoned()),
        "{wide:?}"
    );
}
