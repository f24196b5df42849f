//! UDP sockets for the node's QUIC endpoints, made with [`UdpSocketOptions`] through `socket2`.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use missive::transport::udp::{self, UdpSocketOptions};
//!
//! let options = UdpSocketOptions::default().with_recv_buffer_size(Some(1 << 20));
//! let socket = udp::bind_with("127.0.0.1:0".parse().expect("address"), &options)?;
//! assert_ne!(socket.local_addr()?.port(), 0);
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// The options of the node's UDP sockets (one per QUIC listen address, and one per address
/// family for dialing when nothing listens on it).
///
/// | option | default |
/// |---|---|
/// | `SO_REUSEADDR` | off (a second endpoint on a bound port would split its datagrams) |
/// | `SO_SNDBUF`, `SO_RCVBUF` | the system's (Linux: `net.core.wmem_default`/`rmem_default`, capped at `*_max`) |
/// | `IPV6_V6ONLY` | off on `[::]`: one wildcard IPv6 socket also carries IPv4 where the system allows |
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpSocketOptions {
    reuse_address: bool,
    send_buffer_size: Option<usize>,
    recv_buffer_size: Option<usize>,
}

impl UdpSocketOptions {
    /// `SO_REUSEADDR` (default off).
    pub fn with_reuse_address(mut self, reuse: bool) -> Self {
        self.reuse_address = reuse;
        self
    }

    /// `SO_SNDBUF` in bytes (default `None`: the system's; Linux doubles what it is given and
    /// caps it at `net.core.wmem_max`).
    pub fn with_send_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.send_buffer_size = bytes;
        self
    }

    /// `SO_RCVBUF` in bytes (default `None`: the system's; capped at `net.core.rmem_max`). A
    /// larger one lets a busy endpoint absorb bursts of datagrams instead of dropping them.
    pub fn with_recv_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.recv_buffer_size = bytes;
        self
    }

    /// Whether `SO_REUSEADDR` is set.
    pub fn reuse_address(&self) -> bool {
        self.reuse_address
    }

    /// The `SO_SNDBUF` asked for.
    pub fn send_buffer_size(&self) -> Option<usize> {
        self.send_buffer_size
    }

    /// The `SO_RCVBUF` asked for.
    pub fn recv_buffer_size(&self) -> Option<usize> {
        self.recv_buffer_size
    }
}

/// A non-blocking UDP socket bound to `addr` with `options`.
///
/// # Errors
/// When the socket cannot be made, an option cannot be set, or the address cannot be bound.
pub fn bind_with(addr: SocketAddr, options: &UdpSocketOptions) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // Dual-stack where the system allows it; an IPv6-only socket still works for IPv6.
        let _ = socket.set_only_v6(false);
    }
    socket.set_reuse_address(options.reuse_address)?;
    if let Some(bytes) = options.send_buffer_size {
        socket.set_send_buffer_size(bytes)?;
    }
    if let Some(bytes) = options.recv_buffer_size {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
