//! Pipelined RPC over any byte stream, wire-compatible with protosocket-rpc.
//!
//! The model is protosocket-rpc's: ids and control codes are fields of the user's own messages
//! (the [`Message`] trait), and what the codec encodes is exactly what is on the wire.

mod calls;
pub mod client;
pub mod codec;
#[cfg(feature = "prost")]
pub mod echo;
mod io;
pub mod message;
#[cfg(feature = "msgpack")]
pub mod msgpack;
pub mod pool;
#[cfg(feature = "prost")]
pub mod prost;
mod rpcs;
pub mod server;

pub use client::{CallError, CallOptions, Client, ClientConfig, ClientConnection, InFlightPolicy};
pub use codec::{DecodeError, Decoder, EncodeError, Encoder};
pub use message::{ControlCode, Message, Status, StatusCode};
pub use server::{
    CallContext, Reply, RequestStream, Server, ServerConfig, ServerConnection, Service,
};
