//! Request-response protocols in the style of libp2p-request-response: each request travels on a
//! stream of its own, and a [`Codec`] says how requests and responses look on it.
//!
//! This module holds the codec layer: the [`Codec`] trait, the size limits every message is held to
//! ([`MessageTooLarge`]), and ready codecs for serde types in [`cbor`] and [`json`] that write exactly
//! what rust-libp2p's codecs write.

#[cfg(feature = "cbor")]
pub mod cbor;
mod codec;
#[cfg(feature = "json")]
pub mod json;
mod serde_codec;

pub use codec::{Codec, MessageKind, MessageTooLarge, read_to_end_limited};
pub use serde_codec::{DEFAULT_REQUEST_LIMIT, DEFAULT_RESPONSE_LIMIT, Format, SerdeCodec};
