//! What crosses between processes: the codec (the one place that encodes), frames
//! over stream sockets with descriptors attached, and the descriptor courier.
//! Uses only [`os`](crate::os).

pub(crate) mod auth;
mod bounded;
mod bulk;
pub(crate) mod codec;
pub(crate) mod courier;
mod encoder;
pub(crate) mod error;
pub(crate) mod frames;
pub(crate) mod pages;
pub(crate) mod payload;
mod portable;
pub(crate) mod sink;
pub(crate) mod small;
