//! Your own types behind a proxy: what `#[multiproc::managed]` implements and
//! registers, and how the server finds a type by its key.
//!
//! The macro implements [`Managed`] for the type (a method table: index → decode the
//! arguments, call, encode the result) and submits a [`ManagedEntry`] through
//! `inventory`, so that the server process, which is the same program, can construct
//! the object from its encoding and dispatch calls to it.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::manager::error::{ManagerError, ManagerErrorKind};
use crate::manager::proxy::ProxyCore;
use crate::wire::codec;

/// A type served by a manager, with a generated proxy: implemented by
/// `#[multiproc::managed]` on the type's `impl` block, not by hand.
///
/// The value crosses to the server once, at [`Manager::create`](crate::Manager::create);
/// from then on it lives in the server process, and each call of a proxy method runs
/// the method there, one call at a time.
pub trait Managed: Serialize + DeserializeOwned + Send + 'static {
    /// The key the type is registered under (its module path and name).
    const KEY: &'static str;
    /// The generated proxy type (`CounterProxy` for `Counter`).
    type Proxy;

    /// Wraps a proxy core in the proxy type. Not public API.
    #[doc(hidden)]
    fn wrap(core: ProxyCore) -> Self::Proxy;

    /// Runs method number `method` with its encoded arguments; the encoded result.
    /// Not public API.
    #[doc(hidden)]
    fn dispatch(&mut self, method: u32, args: &[u8]) -> Result<Vec<u8>, ManagerError>;
}

/// An object on the server, whatever its type. Not public API.
pub(crate) trait Dispatch: Send {
    fn dispatch(&mut self, method: u32, args: &[u8]) -> Result<Vec<u8>, ManagerError>;
}

impl<M: Managed> Dispatch for M {
    fn dispatch(&mut self, method: u32, args: &[u8]) -> Result<Vec<u8>, ManagerError> {
        Managed::dispatch(self, method, args)
    }
}

/// The registration of a `#[managed]` type. Not public API; used by generated code.
#[doc(hidden)]
#[derive(Debug)]
pub struct ManagedEntry {
    key: &'static str,
    construct: Construct,
}

/// Builds an object from its encoding.
type Construct = fn(&[u8]) -> Result<Box<dyn Dispatch>, ManagerError>;

impl ManagedEntry {
    /// The entry of `M`.
    pub const fn new<M: Managed>() -> ManagedEntry {
        ManagedEntry {
            key: M::KEY,
            construct: construct_as::<M>,
        }
    }
}

inventory::collect!(ManagedEntry);

fn construct_as<M: Managed>(bytes: &[u8]) -> Result<Box<dyn Dispatch>, ManagerError> {
    let value: M = codec::decode_record(bytes).map_err(|e| {
        ManagerError::new(
            ManagerErrorKind::Method,
            format!("cannot decode the `{}`: {e}", M::KEY),
        )
    })?;
    Ok(Box::new(value))
}

/// Builds the object of the type registered under `key` from its encoding.
pub(crate) fn construct(key: &str, bytes: &[u8]) -> Result<Box<dyn Dispatch>, ManagerError> {
    static INDEX: OnceLock<HashMap<&'static str, &'static ManagedEntry>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        inventory::iter::<ManagedEntry>
            .into_iter()
            .map(|e| (e.key, e))
            .collect()
    });
    let entry = index.get(key).ok_or_else(|| {
        ManagerError::new(
            ManagerErrorKind::UnknownObject,
            format!("no #[managed] type `{key}` in the server's program"),
        )
    })?;
    (entry.construct)(bytes)
}

/// Decodes a method's arguments. Not public API; used by generated code.
#[doc(hidden)]
pub fn decode_args<A: DeserializeOwned>(bytes: &[u8]) -> Result<A, ManagerError> {
    codec::decode_record(bytes).map_err(|e| {
        ManagerError::new(
            ManagerErrorKind::Method,
            format!("cannot decode the arguments: {e}"),
        )
    })
}

/// Encodes a method's result. Not public API; used by generated code.
#[doc(hidden)]
pub fn encode_result<R: Serialize>(value: &R) -> Result<Vec<u8>, ManagerError> {
    codec::encode_record(value).map_err(|e| {
        ManagerError::new(
            ManagerErrorKind::Method,
            format!("cannot encode the result: {e}"),
        )
    })
}

/// The error for a method index the type does not have. Not public API.
#[doc(hidden)]
pub fn unknown_method(key: &str, method: u32) -> ManagerError {
    ManagerError::new(
        ManagerErrorKind::Method,
        format!("`{key}` has no method number {method}"),
    )
}
