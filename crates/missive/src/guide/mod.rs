//! Migration guides: moving to missive from the systems it replaces.
//!
//! Each page maps the other system's names to ours, lists every behaviour that differs (so
//! nothing changes silently when you switch), and ends with a program before and after. The
//! "after" programs are compiled and run as tests, so they stay true.
//!
//! | you use | read | missive layer | stays wire-compatible with it |
//! |---|---|---|---|
//! | connect 0.2.4 | [`from_connect`] | [`queue`](crate::queue) (and [`compat::connect`](crate::compat::connect) for connect's exact shapes) | yes, TCP and TLS |
//! | protosocket-rpc 2.0 | `from_protosocket_rpc` (feature `prost`) | [`rpc`](crate::rpc) | yes, with the prost and messagepack codecs |
//! | libp2p-request-response 0.29 / 0.30 (and the old `Throttled`) | [`from_libp2p_request_response`] | [`request_response`](crate::request_response) | yes, cbor and json codecs, both negotiation versions |
//! | libp2p-stream 0.5 | [`from_libp2p_stream`] | [`stream`](crate::stream) on the [`p2p`](crate::p2p) node | yes, TCP + Noise + Yamux |
//!
//! Each page is compiled with the feature of its layer (`queue`, `rpc` + `prost`, `cbor`,
//! `p2p`); docs.rs shows them all.

#[cfg(all(feature = "queue", feature = "tls"))]
pub mod from_connect;

#[cfg(all(feature = "rpc", feature = "prost", feature = "tcp"))]
pub mod from_protosocket_rpc;

#[cfg(feature = "cbor")]
pub mod from_libp2p_request_response;

#[cfg(feature = "p2p")]
pub mod from_libp2p_stream;
