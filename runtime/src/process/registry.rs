//! The registry of runnable entries: `#[worker]` and `#[process]` each submit one
//! [`Entry`] through `inventory`, and the child looks its entry up by key.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::process::error::RegistryError;
use crate::process::worker::Worker;
use crate::wire::codec::{self, Encoded};
use crate::wire::frames::Frame;

/// One registered worker. Not public API; used by generated code.
#[doc(hidden)]
#[derive(Debug)]
pub struct Entry {
    key: &'static str,
    run: fn(Frame) -> Outcome,
    file: &'static str,
    line: u32,
}

impl Entry {
    /// The entry of worker `W`, declared at `file:line`.
    pub const fn new<W: Worker>(file: &'static str, line: u32) -> Entry {
        Entry {
            key: W::KEY,
            run: run_worker::<W>,
            file,
            line,
        }
    }

    /// Decodes the arguments, runs the worker and encodes what it returned.
    pub(crate) fn run(&self, args: Frame) -> Outcome {
        (self.run)(args)
    }

    fn place(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

inventory::collect!(Entry);

/// How a worker that did not panic ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// It returned; the encoded value.
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
        Ok(value) => match codec::encode(&value) {
            Ok(encoded) => Outcome::Value(encoded),
            Err(e) => Outcome::Failed(format!("cannot send the return value: {e}")),
        },
        Err(failure) => Outcome::Failed(failure.into_message()),
    }
}

/// Entries of the runtime's own workers (the pool's), registered by a constructor that
/// runs before every `inventory` one (so before the child's dispatch, whatever the
/// order of the runtime crate's own constructors).
static BUILTIN: Mutex<Vec<&'static Entry>> = Mutex::new(Vec::new());

/// Registers one of the runtime's own workers; called from an early constructor.
pub(crate) fn register_builtin(entry: &'static Entry) {
    BUILTIN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(entry);
}

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
