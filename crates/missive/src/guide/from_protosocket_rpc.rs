//! From protosocket-rpc 2.0 to [`rpc`](crate::rpc).
//!
//! The model is the same: ids and control codes are fields of your own messages, what the codec
//! writes is what is on the wire, and rpcs are pipelined on one connection. The wire is the
//! same too: with [`ProstCodec`](crate::rpc::prost::ProstCodec) (protosocket-prost framing) or
//! `msgpack::MessagePackCodec` (protosocket-messagepack, feature `msgpack`), a
//! missive client calls a protosocket-rpc server and the other way round, including streaming
//! and cancellation.
//!
//! # Names
//!
//! | protosocket-rpc 2.0 | missive |
//! |---|---|
//! | `Message` (`message_id`, `control_code`, `set_message_id`, `cancelled`, `ended`) | [`rpc::Message`](crate::rpc::Message): the same five, plus optional `failed` / `status` to carry a [`Status`](crate::rpc::Status) |
//! | `ProtosocketControlCode::{Normal, Cancel, End}` | [`ControlCode::{Normal, Cancel, End}`](crate::rpc::ControlCode) (same wire values) |
//! | `client::connect::<Codec, _>(addr, &Configuration::new(TcpStreamConnector))` → `(RpcClient, Connection)`, spawn the connection | [`Client::connect_tcp(addr, codec, ClientConfig)`](crate::rpc::Client::connect_tcp) (spawns it), or [`Client::new(io, codec, config)`](crate::rpc::Client::new) → `(Client, ClientConnection)` over any byte stream |
//! | `WebpkiTlsStreamConnector` | [`Client::connect_tls`](crate::rpc::Client::connect_tls) with an `Arc<rustls::ClientConfig>` |
//! | `RpcClient::send_unary(req)?.await?` | [`client.call(req).await?`](crate::rpc::Client::call), [`call_with(req, CallOptions)`](crate::rpc::Client::call_with) |
//! | `RpcClient::send_streaming(req)?` → `StreamingCompletion` | [`client.server_stream(req).await?`](crate::rpc::Client::server_stream) → [`ResponseStream`](crate::rpc::client::ResponseStream) of `Result`s |
//! | — | [`client_stream`](crate::rpc::Client::client_stream), [`bidi_stream`](crate::rpc::Client::bidi_stream) (and their `_with` forms) |
//! | `RpcClient::is_alive()` | [`Client::is_alive`](crate::rpc::Client::is_alive) |
//! | `ConnectionPool::new(connector, n)`, `get_connection_for_key` | [`pool::Pool::new(n, connect)`](crate::rpc::pool::Pool::new), [`Pool::client(key)`](crate::rpc::pool::Pool::client) |
//! | `ConnectionService::new_rpc(msg) -> RpcKind` | [`Service::call(request, &mut CallContext) -> Reply`](crate::rpc::Service::call) |
//! | `RpcKind::{Unary, Streaming, Cancelled}` | [`Reply::{Unary, Stream, Reject(Status)}`](crate::rpc::Reply) |
//! | `UnaryFutureType: Future<Output = Response>`, `StreamType: Stream<Item = Response>` | `Unary: Future<Output = Result<Response, Status>>`, `Stream: Stream<Item = Result<Response, Status>>` (no `Unpin` needed) |
//! | `SocketService` (codec + service per connection), `SocketRpcServer::new(..)` | [`Server::serve_tcp(listener, \|peer\| (codec, service))`](crate::rpc::Server::serve_tcp), or [`Server::connection(io, codec, service)`](crate::rpc::Server::connection) per byte stream |
//! | `Error::{IoFailure, CancelledRemotely, ConnectionIsClosed}` | [`CallError::{ConnectionClosed, Cancelled, Failed(Status)}`](crate::rpc::CallError), plus `DeadlineExceeded`, `TooManyInFlight`, `DuplicateId`, `Encode`, `UnexpectedEnd` |
//! | `Configuration::max_buffer_length` | the codec's [`with_max_message_size`](crate::rpc::prost::ProstCodec::with_max_message_size) (4 MiB default, both sides) |
//! | `Configuration::max_queued_outbound_messages` | [`ClientConfig::with_max_in_flight`](crate::rpc::ClientConfig::with_max_in_flight) (4,096) and [`with_send_budget`](crate::rpc::ClientConfig::with_send_budget) |
//! | `Configuration::tcp_keepalive_duration` | [`ServerConfig::with_tcp_keepalive`](crate::rpc::ServerConfig::with_tcp_keepalive) (30 s on accepted connections by default) |
//!
//! # What behaves differently
//!
//! - **The library picks the ids.** protosocket-rpc sends the id you put in the request, and two
//!   calls with one id collide. missive sets a fresh id on every call (the request's own id is
//!   overwritten); [`CallOptions::with_caller_id(true)`](crate::rpc::CallOptions::with_caller_id)
//!   keeps yours, and an id already in flight then fails with
//!   [`CallError::DuplicateId`](crate::rpc::CallError::DuplicateId).
//! - **Default deadlines.** Unary and client-streaming calls fail with
//!   [`DeadlineExceeded`](crate::rpc::CallError::DeadlineExceeded) after 10 s, and are cancelled on
//!   the server ([`ClientConfig::with_deadline`](crate::rpc::ClientConfig::with_deadline), or per call with
//!   [`CallOptions::with_deadline`](crate::rpc::CallOptions::with_deadline)). Server-streaming and
//!   bidirectional calls have no deadline unless their options give one. protosocket-rpc has none.
//! - **Connect and handshake deadlines**: 10 s each on clients and the pool.
//! - **Failures carry a status.** A handler returns `Err(Status)`, rejects with one, or panics;
//!   the caller gets [`CallError::Failed(status)`](crate::rpc::CallError::Failed) when the response
//!   type carries a status, [`Cancelled`](crate::rpc::CallError::Cancelled) when it does not (as
//!   a protosocket-rpc peer sees it). A panic fails that rpc only.
//! - **Bounded in flight.** 4,096 calls per client connection: further calls wait
//!   ([`InFlightPolicy::Wait`](crate::rpc::InFlightPolicy::Wait)) or fail fast; a server runs at most
//!   4,096 rpcs per connection and refuses more with a status, keeping the connection.
//! - **Cancellation** is the same on the wire (Cancel with the rpc's id) and the same to the
//!   caller: dropping a call's future or stream cancels it. missive also cancels at a deadline.
//! - **Shutdown.** [`Server::shutdown`](crate::rpc::Server::shutdown) stops new rpcs, lets running
//!   ones finish for 10 s, then fails them with `Unavailable`.
//! - **No `Send + Unpin + 'static + Debug` bound on messages**; a `!Send` service runs on a
//!   `LocalSet` with [`Server::serve_tcp_local`](crate::rpc::Server::serve_tcp_local).
//! - **Client and bidirectional streaming** exist ([`CallContext::requests`](crate::rpc::CallContext::requests)
//!   on the server); protosocket-rpc peers cannot use them.
//!
//! # Before and after
//!
//! A unary call and a server stream, with protosocket-rpc:
//!
//! ```text
//! let configuration = protosocket_rpc::client::Configuration::new(TcpStreamConnector);
//! let (client, connection) =
//!     protosocket_rpc::client::connect::<ProstClientConnectionBindings<Request, Response>, _>(
//!         address, &configuration,
//!     ).await?;
//! tokio::spawn(connection);
//!
//! let mut request = Request { request_id: 1, code: 0, body: "hello".into(), stream_count: 0 };
//! let response = client.send_unary(request)?.await?;
//!
//! let request = Request { request_id: 2, code: 0, body: "hi".into(), stream_count: 3 };
//! let mut stream = client.send_streaming(request)?;
//! while let Some(item) = stream.next().await {
//!     let item = item?;
//! }
//! ```
//!
//! With missive, with the ready-made echo messages (the ids are left at 0: the library sets
//! them):
//!
//! ```
//! use futures_util::StreamExt;
//! use missive::rpc::echo::{self, EchoService, Request};
//! use missive::rpc::{Client, ClientConfig, Server};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let address = listener.local_addr()?;
//! let server = Server::default();
//! tokio::spawn({
//!     let server = server.clone();
//!     async move {
//!         server
//!             .serve_tcp(listener, |_peer| (echo::ServerCodec::default(), EchoService))
//!             .await
//!     }
//! });
//!
//! let client = Client::connect_tcp(address, echo::ClientCodec::default(), ClientConfig::default())
//!     .await?;
//! let response = client.call(Request::unary("hello")).await?;
//! assert_eq!(&response.body[..], b"hello");
//!
//! let mut stream = client.server_stream(Request::stream("hi", 3)).await?;
//! let mut items = 0;
//! while let Some(item) = stream.next().await {
//!     let _item = item?;
//!     items += 1;
//! }
//! assert_eq!(items, 3);
//! drop(client);
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Your own prost messages: see the `rpc_service` example, which implements
//! [`Message`](crate::rpc::Message) for them, with a status.
