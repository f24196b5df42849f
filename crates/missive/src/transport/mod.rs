//! Byte-stream transports: TCP, Unix domain sockets, TLS over TCP and an in-memory pipe for tests;
//! and the UDP sockets the node's QUIC runs on.
//!
//! Every protocol layer of missive that runs over a plain byte stream (`queue`, `rpc`) accepts any
//! [`tokio::io::AsyncRead`] + [`tokio::io::AsyncWrite`]; this module holds the ready-made ones and the
//! [`Address`] that names an endpoint of any of them.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use missive::transport::{Address, tcp};
//!
//! let listener = tcp::bind("127.0.0.1:0").await?;
//! let addr = Address::from(listener.local_addr()?);
//! let client = tcp::connect(addr.as_socket_addr().expect("a TCP address")).await?;
//! let server = tcp::accept(&listener).await?;
//! assert_eq!(client.peer_addr()?, server.local_addr()?);
//! assert!(addr.to_string().starts_with("127.0.0.1:"));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How long the ready-made clients (queue, rpc) wait for a TCP or Unix connection to be made, by
/// default: 10 s, as rust-libp2p and hyper.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The TCP keepalive the queue and rpc servers set on the connections they accept, by default:
/// probes after 30 s without traffic (the interval and count of probes are the system's), so a
/// peer that vanished without a FIN or RST is noticed.
pub const DEFAULT_TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// Runs `connecting` under `timeout`; past it, an error of kind [`std::io::ErrorKind::TimedOut`].
#[cfg(any(feature = "tcp", all(feature = "unix", unix)))]
pub(crate) async fn within<T>(
    timeout: Duration,
    connecting: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    match tokio::time::timeout(timeout, connecting).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("connect did not complete within {timeout:?}"),
        )),
    }
}

/// How long a new inbound connection may stay silent before its handshake's first bytes, by
/// default (see [`pending`]).
#[cfg_attr(
    not(any(
        feature = "p2p",
        all(feature = "tls", any(feature = "queue", feature = "rpc"))
    )),
    allow(dead_code)
)]
pub(crate) const DEFAULT_FIRST_BYTES_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(3);

#[cfg(any(feature = "tls", feature = "p2p"))]
pub(crate) mod certificate;
pub mod memory;
#[cfg(any(
    feature = "p2p",
    all(feature = "tls", any(feature = "queue", feature = "rpc"))
))]
pub(crate) mod pending;
#[cfg(any(feature = "tls", feature = "p2p"))]
pub use certificate::CertificateError;
#[cfg(feature = "p2p")]
pub(crate) use certificate::Extension;
#[cfg(any(feature = "tls", feature = "p2p"))]
pub(crate) use certificate::{CertificateParams, EcdsaKey};
#[cfg(feature = "tcp")]
pub mod tcp;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "p2p")]
pub mod udp;
#[cfg(all(feature = "unix", unix))]
pub mod unix;

/// One endpoint of a byte-stream connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// A TCP endpoint (also used for TLS over TCP).
    Tcp(SocketAddr),
    /// A Unix domain socket; `None` for an unnamed socket (the usual client side).
    Unix(Option<PathBuf>),
    /// An in-memory pipe, which has no address.
    Memory,
}

impl Address {
    /// The socket address, when this is a TCP endpoint.
    pub fn as_socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Address::Tcp(addr) => Some(*addr),
            _ => None,
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Address::Tcp(addr)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => write!(f, "{addr}"),
            Address::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            Address::Unix(None) => f.write_str("unix:(unnamed)"),
            Address::Memory => f.write_str("memory"),
        }
    }
}
