//! The exact shapes of systems missive replaces, on top of missive's own layers, so that code
//! written for them compiles with only its `use` lines changed.
//!
//! These are a bridge, not a second API: each type wraps a missive type, gives it back
//! (`into_inner`), and keeps every error reachable. New code should use the layers directly;
//! the [`guide`](crate::guide) pages say what differs.
//!
//! ```no_run
//! use missive::compat::connect::{ConnectDatagram, Connection, SinkExt, StreamExt};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let mut conn = Connection::tcp_client("127.0.0.1:7000").await?;
//! conn.writer().send(ConnectDatagram::with_tag(1, b"hi".to_vec())?).await?;
//! while let Some(datagram) = conn.reader().next().await {
//!     println!("{}: {:?}", datagram.recipient(), datagram.data());
//! }
//! // connect's reader just ends; here the reason is kept.
//! if let Some(error) = conn.reader().take_error() {
//!     eprintln!("the connection failed: {error}");
//! }
//! # Ok(())
//! # }
//! ```

pub mod connect;
