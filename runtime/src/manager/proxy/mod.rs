//! Proxies: typed handles on the objects a manager's server holds.
//!
//! A proxy is an address, a key and an object id; each call is one request/response
//! round trip on a connection that the calling process keeps open to the server (see
//! `transport`). Proxies are `Serialize`: they cross as worker arguments, inside queues
//! and inside other proxies' values, and connect from wherever they land.
//!
//! Values cross as their encodings, and the server compares encodings where it must
//! compare values (`ListProxy::contains`, the keys of a `DictProxy`): two values are
//! the same when their encodings are, which is `==` for the usual key types (integers,
//! strings, tuples and structs of them). It differs from `==` for floats (`0.0` and
//! `-0.0` differ, a `NaN` equals the same `NaN`) and for values whose encoding depends
//! on an iteration order (a `HashMap` inside a key).

mod collections;
mod primitives;

pub use self::collections::{DictProxy, ListProxy, QueueProxy, ValueProxy};
pub use self::primitives::{
    BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, EventProxy, LockProxy, ProxyGuard,
    RLockProxy, SemaphoreProxy,
};

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::manager::error::{ManagerError, ManagerErrorKind};
use crate::manager::protocol::{Bytes, Kind, Op, Owner, Reply, Request, TypeTag};
use crate::manager::transport::{self, Endpoint};
use crate::wire::codec;

/// The untyped part of every proxy: where the object lives and which it is.
/// Not public API; used by generated code.
#[doc(hidden)]
#[derive(Clone)]
pub struct ProxyCore {
    endpoint: Arc<Endpoint>,
    id: u64,
    tag: TypeTag,
}

impl fmt::Debug for ProxyCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("address", &self.endpoint.address)
            .field("id", &self.id)
            .field("kind", &self.tag.kind)
            .field("type", &self.tag.ty)
            .finish()
    }
}

/// What a proxy is on the wire.
#[derive(Serialize, Deserialize)]
struct Token {
    endpoint: Endpoint,
    id: u64,
    tag: TypeTag,
}

impl Serialize for ProxyCore {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        Token {
            endpoint: (*self.endpoint).clone(),
            id: self.id,
            tag: self.tag.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ProxyCore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let token = Token::deserialize(deserializer)?;
        Ok(ProxyCore {
            endpoint: Arc::new(token.endpoint),
            id: token.id,
            tag: token.tag,
        })
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes> {
    Ok(codec::encode_record(value)?)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    Ok(codec::decode_record(bytes)?)
}

fn owner() -> Owner {
    Owner {
        process: transport::process_token(),
        thread: u64::from(crate::os::identity::current_tid()),
    }
}

impl ProxyCore {
    pub(crate) fn new(endpoint: Arc<Endpoint>, id: u64, tag: TypeTag) -> Self {
        ProxyCore { endpoint, id, tag }
    }

    fn op(&self, op: Op) -> Result<Reply> {
        transport::call(
            &self.endpoint,
            &Request::Call {
                id: self.id,
                kind: self.tag.kind,
                op,
            },
        )
    }

    /// Calls method number `method` of a `#[managed]` object with `args`.
    /// Not public API; used by generated code.
    pub fn call_method<A: Serialize, R: DeserializeOwned>(
        &self,
        method: u32,
        args: &A,
    ) -> Result<R> {
        let reply = self.op(Op::Method(method, encode(args)?))?;
        decode(&reply.value()?)
    }

    /// The core, checked to be a `tag`, for a proxy being decoded.
    fn expect<E: serde::de::Error>(self, tag: TypeTag) -> std::result::Result<Self, E> {
        if self.tag == tag {
            Ok(self)
        } else {
            Err(E::custom(ManagerError::new(
                ManagerErrorKind::WrongType,
                format!(
                    "a proxy of a {:?} of `{}` cannot be decoded as a proxy of a {:?} of `{}`",
                    self.tag.kind, self.tag.ty, tag.kind, tag.ty
                ),
            )))
        }
    }

    /// A core checked against `M`'s key, for a `#[managed]` proxy being decoded.
    /// Not public API; used by generated code.
    pub fn deserialize_managed<'de, D: Deserializer<'de>>(
        deserializer: D,
        key: &str,
    ) -> std::result::Result<Self, D::Error> {
        ProxyCore::deserialize(deserializer)?.expect(TypeTag {
            kind: Kind::Custom,
            ty: key.to_owned(),
        })
    }
}

fn tag_of<T: ?Sized>(kind: Kind) -> TypeTag {
    TypeTag {
        kind,
        ty: std::any::type_name::<T>().to_owned(),
    }
}

/// The common items of a typed proxy: its tag, `Clone`, `Debug`, serde.
macro_rules! proxy_common {
    ($name:ident < $($t:ident),* >, $kind:expr, $ty:ty) => {
        impl<$($t),*> $name<$($t),*> {
            pub(crate) fn tag() -> TypeTag {
                tag_of::<$ty>($kind)
            }

            pub(crate) fn from_core(core: ProxyCore) -> Self {
                $name { core, _types: PhantomData }
            }
        }

        impl<$($t),*> Clone for $name<$($t),*> {
            fn clone(&self) -> Self {
                $name { core: self.core.clone(), _types: PhantomData }
            }
        }

        impl<$($t),*> fmt::Debug for $name<$($t),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.core.fmt(f)
            }
        }

        impl<$($t),*> Serialize for $name<$($t),*> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.core.serialize(s)
            }
        }

        impl<'de, $($t),*> Deserialize<'de> for $name<$($t),*> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let core = ProxyCore::deserialize(d)?.expect::<D::Error>(Self::tag())?;
                Ok(Self::from_core(core))
            }
        }
    };
    ($name:ident, $kind:expr) => {
        impl $name {
            pub(crate) fn tag() -> TypeTag {
                tag_of::<()>($kind)
            }

            pub(crate) fn from_core(core: ProxyCore) -> Self {
                $name { core }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.core.fmt(f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.core.serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let core = ProxyCore::deserialize(d)?.expect::<D::Error>(Self::tag())?;
                Ok(Self::from_core(core))
            }
        }
    };
}

// In scope for the typed proxies of the submodules, which expand it.
use proxy_common;
