//! missive: typed message protocols between programs and peers.
//!
//! # Which layer do I want?
//!
//! | you want | use | feature | it replaces |
//! |---|---|---|---|
//! | an ordered, lossless channel of tagged messages between two programs, over TCP, TLS or a Unix socket | [`queue`] | `queue` (default) | connect ([guide](guide::from_connect)) |
//! | calls with answers, server streaming and cancellation, pipelined on one connection, in your own encoding | [`rpc`] | `rpc` (default; + `prost` or `msgpack`) | protosocket-rpc (guide: `guide::from_protosocket_rpc`, with `prost`) |
//! | request/response between peers on the libp2p network, with CBOR or JSON | [`request_response`] | `cbor` / `json` (default) | libp2p-request-response ([guide](guide::from_libp2p_request_response)) |
//! | raw byte streams of your own protocol between libp2p peers | [`stream`] on the [`p2p`] node | `p2p` (default) | libp2p-stream ([guide](guide::from_libp2p_stream)) |
//! | a byte stream to run `queue` or `rpc` over | [`transport`] | `tcp`, `tls`, `unix` | — |
//! | OpenMetrics counters, gauges and histograms of every layer | `metrics` | `metrics` | libp2p-metrics |
//! | tower middleware around the rpc client, rpc services and request-response | `rpc::TowerService`, `impl tower::Service` | `tower` | — |
//!
//! Between two programs you control, `queue` (messages) or `rpc` (calls) over TCP or TLS is
//! the short path. Among peers identified by keys, or to talk to libp2p nodes, use the node with
//! `request_response` or `stream`. `rpc` and `queue` also run over a node stream. The
//! [`guide`] pages map each replaced system's names to ours, and `examples/` holds a complete
//! program per layer (`queue_echo`, `rpc_service`, `file_sharing`, `stream_echo`).
//!
//! # The layers
//!
//! One crate, several ways to talk, one set of transports:
//!
//! - [`queue`]: an ordered, lossless queue of tagged [`queue::Datagram`]s over one connection, on the
//!   wire of the `connect` crate.
//! - `rpc`: pipelined RPC in the style of protosocket-rpc — message ids and control codes inside
//!   your own messages, cancellation, streaming in both directions, any encoding.
//! - `request_response`: libp2p-style request-response protocols on the node — a cloneable
//!   handle with `request(peer, req).await`, libp2p's event interface and CBOR/JSON codecs that
//!   write what rust-libp2p writes.
//! - [`p2p`]: a peer-to-peer node on the libp2p wire (TCP + Noise or libp2p-tls + Yamux, and
//!   QUIC, with multistream-select) with Ed25519 or secp256k1 identities (peers of every libp2p
//!   key type are verified), and [`stream`], raw stream protocols on it in the style of
//!   libp2p-stream (`Control::accept`, `Control::open_stream`).
//! - [`transport`]: the byte streams everything runs on — TCP, Unix sockets, TLS (rustls) and an
//!   in-memory pipe for tests.
//!
//! Every layer is built the same way: the wire logic is a plain struct that takes bytes and returns
//! frames (tested and fuzzed without sockets), and thin async types drive it over any
//! [`tokio::io::AsyncRead`] + [`tokio::io::AsyncWrite`]. Every buffer, frame and queue has a limit with
//! a default and a setter; exceeding one is a typed error or backpressure, never a silent drop.
//!
//! ```
//! use futures_util::StreamExt;
//! use missive::queue::{Connection, Datagram, QueueConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Any byte stream will do; here, an in-memory pipe.
//! let (a, b) = missive::transport::memory::pair(64 * 1024);
//! let mut left = Connection::new(a, QueueConfig::default());
//! let mut right = Connection::new(b, QueueConfig::default());
//!
//! left.writer().send(Datagram::new(7, "hello")).await?;
//! let datagram = right.reader().next().await.ok_or("closed")??;
//! assert_eq!(datagram.tag(), 7);
//! assert_eq!(datagram.payload(), "hello");
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod transport;

#[cfg(test)]
mod test_deadline;

#[cfg(feature = "queue")]
pub mod queue;

#[cfg(feature = "request-response")]
pub mod request_response;

#[cfg(feature = "p2p")]
pub mod p2p;
#[cfg(feature = "p2p")]
pub mod protocols;
#[cfg(feature = "p2p")]
pub mod stream;

#[cfg(feature = "rpc")]
pub mod rpc;

#[cfg(all(feature = "queue", feature = "tcp"))]
pub mod compat;

pub mod guide;

#[cfg(feature = "metrics")]
pub mod metrics;
