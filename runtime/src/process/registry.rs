//! The registry of runnable entries: `#[worker]` and `#[process]` each submit one
//! [`Entry`] through `inventory`, and the child looks its entry up by key.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use serde::{Deserialize, Serialize};

use crate::process::error::RegistryError;
use crate::process::report;
use crate::process::worker::Worker;
use crate::wire::codec::{self, Encoded};
use crate::wire::frames::Frame;

/// One registered worker. Not public API; used by generated code.
#[doc(hidden)]
#[derive(Debug)]
pub struct Entry {
    key: &'static str,
    run: fn(Frame) -> Outcome,
    run_chunk: fn(Frame, Guard<'_>) -> Result<ChunkOutcome, String>,
    file: &'static str,
    line: u32,
}

impl Entry {
    /// The entry of worker `W`, declared at `file:line`.
    pub const fn new<W: Worker>(file: &'static str, line: u32) -> Entry {
        Entry {
            key: W::KEY,
            run: run_worker::<W>,
            run_chunk: run_chunk::<W>,
            file,
            line,
        }
    }

    /// Decodes the arguments, runs the worker and encodes what it returned.
    pub(crate) fn run(&self, args: Frame) -> Outcome {
        (self.run)(args)
    }

    /// Runs a whole chunk: decodes the encoded `Vec` of argument tuples at once,
    /// calls the worker on each under `guard` (so that a panic fails its own item
    /// only), and encodes the values of the items that succeeded as one `Vec`.
    /// `Err` if the arguments cannot be decoded or the values cannot be sent at all.
    pub(crate) fn run_chunk(&self, args: Frame, guard: Guard<'_>) -> Result<ChunkOutcome, String> {
        (self.run_chunk)(args, guard)
    }

    fn place(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

inventory::collect!(Entry);

/// How a worker that did not panic ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// It returned; the encoded value, as a whole report message
    /// (`report::encode_value`).
    Value(Encoded),
    /// It returned `Err`, or its arguments or result did not cross the boundary.
    Failed(String),
}

fn run_worker<W: Worker>(args: Frame) -> Outcome {
    let args = match codec::decode::<W::Args>(&args.bytes, args.fds) {
        Ok(args) => args,
        Err(e) => return Outcome::Failed(format!("cannot decode the arguments: {e}")),
    };
    match W::call(args) {
        Ok(value) => match report::encode_value(&value) {
            Ok(encoded) => Outcome::Value(encoded),
            Err(e) => Outcome::Failed(format!("cannot send the return value: {e}")),
        },
        Err(failure) => Outcome::Failed(failure.into_message()),
    }
}

/// Runs one call: `Err((message, location))` if it panicked. The pool's worker
/// provides it (it owns the panic hook that records the message).
pub(crate) type Guard<'a> =
    &'a mut dyn FnMut(&mut dyn FnMut()) -> Result<(), (String, Option<String>)>;

/// How one item of a chunk ended.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Status {
    /// It returned a value: the next one in the chunk's values.
    Value,
    /// It panicked.
    Panic {
        message: String,
        location: Option<String>,
    },
    /// It returned `Err`, or its value did not cross the boundary.
    Failed(String),
}

/// What a chunk gave: one status per item, and the values of the items whose status
/// is [`Status::Value`], in order, encoded as one `Vec`.
#[derive(Debug)]
pub(crate) struct ChunkOutcome {
    pub(crate) statuses: Vec<Status>,
    pub(crate) values: Encoded,
}

fn run_chunk<W: Worker>(args: Frame, guard: Guard<'_>) -> Result<ChunkOutcome, String> {
    let args = codec::decode::<Vec<W::Args>>(&args.bytes, args.fds)
        .map_err(|e| format!("cannot decode the arguments: {e}"))?;
    let mut statuses = Vec::with_capacity(args.len());
    let mut values = Vec::with_capacity(args.len());
    for args in args {
        let mut args = Some(args);
        let mut returned = None;
        let guarded = guard(&mut || {
            if let Some(args) = args.take() {
                returned = Some(W::call(args));
            }
        });
        statuses.push(match (guarded, returned) {
            (Err((message, location)), _) => Status::Panic { message, location },
            (Ok(()), Some(Ok(value))) => {
                values.push(value);
                Status::Value
            }
            (Ok(()), Some(Err(failure))) => Status::Failed(failure.into_message()),
            (Ok(()), None) => Status::Failed("the worker was not called".to_owned()),
        });
    }
    let values = match codec::encode(&values) {
        Ok(encoded) => encoded,
        Err(_) => {
            // Some value cannot be sent: fail those items alone and send the others.
            let mut kept = Vec::with_capacity(values.len());
            let mut values = values.into_iter();
            for status in statuses.iter_mut().filter(|s| matches!(s, Status::Value)) {
                let Some(value) = values.next() else { break };
                match codec::encode(&value) {
                    Ok(_) => kept.push(value),
                    Err(e) => {
                        *status = Status::Failed(format!("cannot send the return value: {e}"))
                    }
                }
            }
            codec::encode(&kept).map_err(|e| format!("cannot send the return values: {e}"))?
        }
    };
    Ok(ChunkOutcome { statuses, values })
}

/// Entries of the runtime's own workers (the pool's worker, the manager's server),
/// registered by constructors that run before every `inventory` one (so before the
/// child's dispatch, whatever the order of the runtime crate's own constructors).
static BUILTIN: Mutex<Vec<&'static Entry>> = Mutex::new(Vec::new());

/// Registers one of the runtime's own workers; called from an early constructor.
pub(crate) fn register_builtin(entry: &'static Entry) {
    BUILTIN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(entry);
}

/// Registers `$worker`, one of the runtime's own workers, with a constructor of its own
/// that has a priority (`.init_array.00200`), so that it runs before the child's
/// dispatch: the runtime crate's plain constructors (`inventory`'s among them) run in no
/// fixed order among themselves, and a release build put the dispatch first. Defines
/// `keep_registered()`, which the code that starts such a worker calls so that the
/// linker keeps the object file holding the constructor.
macro_rules! register_builtin_worker {
    ($worker:ty) => {
        static BUILTIN_ENTRY: $crate::process::registry::Entry =
            $crate::process::registry::Entry::new::<$worker>(file!(), line!());

        extern "C" fn register_builtin_entry() {
            $crate::process::registry::register_builtin(&BUILTIN_ENTRY);
        }

        #[used]
        #[unsafe(link_section = ".init_array.00200")]
        static REGISTER_BUILTIN_ENTRY: extern "C" fn() = register_builtin_entry;

        /// Names the constructor that registers this module's worker, so that a program
        /// that starts one links it.
        pub(crate) fn keep_registered() {
            std::hint::black_box(&REGISTER_BUILTIN_ENTRY);
        }
    };
}
pub(crate) use register_builtin_worker;

fn index() -> &'static HashMap<&'static str, Vec<&'static Entry>> {
    static INDEX: OnceLock<HashMap<&'static str, Vec<&'static Entry>>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut map: HashMap<&'static str, Vec<&'static Entry>> = HashMap::new();
        let builtin = BUILTIN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for entry in inventory::iter::<Entry>.into_iter().chain(builtin) {
            map.entry(entry.key).or_default().push(entry);
        }
        map
    })
}

/// The one entry registered under `key`.
pub(crate) fn lookup(key: &str) -> Result<&'static Entry, RegistryError> {
    match index().get(key).map(Vec::as_slice) {
        None | Some([]) => Err(RegistryError::Unknown(key.to_owned())),
        Some([entry]) => Ok(entry),
        Some(many) => {
            let mut places: Vec<String> = many.iter().map(|e| e.place()).collect();
            places.sort();
            Err(RegistryError::Duplicate(key.to_owned(), places))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{self, AssertUnwindSafe};

    use super::*;
    use crate::process::worker::Failure;

    /// Panics at 3, fails at 5, squares the rest.
    struct Picky;

    impl Worker for Picky {
        type Args = (u64,);
        type Output = u64;
        const KEY: &'static str = "registry::tests::picky";

        fn call((x,): (u64,)) -> Result<u64, Failure> {
            match x {
                3 => panic!("bad 3"),
                5 => Err(Failure::new("bad 5")),
                x => Ok(x * x),
            }
        }
    }

    fn guard(call: &mut dyn FnMut()) -> Result<(), (String, Option<String>)> {
        panic::catch_unwind(AssertUnwindSafe(call)).map_err(|payload| {
            let message = payload
                .downcast_ref::<&str>()
                .map_or_else(String::new, |s| (*s).to_owned());
            (message, None)
        })
    }

    #[test]
    fn a_chunk_runs_every_item_and_fails_only_the_bad_ones() {
        let entry = Entry::new::<Picky>(file!(), line!());
        let args: Vec<(u64,)> = (0..8).map(|x| (x,)).collect();
        let encoded = codec::encode(&args).unwrap();
        let frame = Frame {
            bytes: encoded.bytes.into(),
            fds: encoded.fds,
        };
        let out = entry.run_chunk(frame, &mut guard).unwrap();
        assert_eq!(out.statuses.len(), 8);
        assert!(matches!(&out.statuses[3], Status::Panic { message, .. } if message == "bad 3"));
        assert!(matches!(&out.statuses[5], Status::Failed(m) if m.contains("bad 5")));
        let ok: Vec<usize> = (0..8)
            .filter(|&i| matches!(out.statuses[i], Status::Value))
            .collect();
        assert_eq!(ok, [0, 1, 2, 4, 6, 7]);
        let values: Vec<u64> = codec::decode(&out.values.bytes, out.values.fds).unwrap();
        assert_eq!(values, [0, 1, 4, 16, 36, 49]);
    }

    #[test]
    fn a_chunk_whose_arguments_cannot_be_read_fails_as_a_whole() {
        let entry = Entry::new::<Picky>(file!(), line!());
        let frame = Frame {
            bytes: vec![0xff; 3].into(),
            fds: Vec::new(),
        };
        let e = entry.run_chunk(frame, &mut guard).unwrap_err();
        assert!(e.starts_with("cannot decode the arguments"), "{e}");
    }
}
