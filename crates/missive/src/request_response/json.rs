//! JSON messages (with `serde_json`): byte for byte what rust-libp2p's `request_response::json`
//! writes.
//!
//! ```
//! use missive::request_response::{Format, json::Json};
//!
//! let bytes = Json::encode(&serde_json::json!({"file": "a.txt"}))?;
//! assert_eq!(bytes, br#"{"file":"a.txt"}"#);
//! let back: serde_json::Value = Json::decode(&bytes)?;
//! assert_eq!(back["file"], "a.txt");
//! // As a request-response codec: `Behaviour<json::Codec<Request, Response>>`.
//! # Ok::<_, std::io::Error>(())
//! ```

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::serde_codec::{Format, SerdeCodec};

/// The JSON format.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Format for Json {
    fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
        serde_json::to_vec(value).map_err(io::Error::other)
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
        serde_json::from_slice(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// A request-response codec for serde types in JSON.
pub type Codec<Req, Resp, P = String> = SerdeCodec<Json, Req, Resp, P>;
