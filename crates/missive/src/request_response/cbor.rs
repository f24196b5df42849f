//! CBOR messages (with `cbor4ii`, structs as maps): byte for byte what rust-libp2p's
//! `request_response::cbor` writes.
//!
//! ```
//! use missive::request_response::{Format, cbor::Cbor};
//!
//! let bytes = Cbor::encode(&("hello", 7u8))?;
//! let back: (String, u8) = Cbor::decode(&bytes)?;
//! assert_eq!(back, ("hello".to_owned(), 7));
//! // As a request-response codec: `Behaviour<cbor::Codec<Request, Response>>`.
//! # Ok::<_, std::io::Error>(())
//! ```

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::serde_codec::{Format, SerdeCodec};

/// The CBOR format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cbor;

impl Format for Cbor {
    fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
        // Room for a small message up front: growing from empty costs several reallocations.
        cbor4ii::serde::to_vec(Vec::with_capacity(256), value).map_err(io::Error::other)
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
        cbor4ii::serde::from_slice(bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }
}

/// A request-response codec for serde types in CBOR.
pub type Codec<Req, Resp, P = String> = SerdeCodec<Cbor, Req, Resp, P>;
