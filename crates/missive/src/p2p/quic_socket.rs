//! The UDP socket under a quinn endpoint: bound with the node's [`UdpSocketOptions`], and with
//! the metrics feature wrapped so that every datagram's bytes are counted.
//!
//! [`UdpSocketOptions`]: crate::transport::udp::UdpSocketOptions

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use super::NodeConfig;

/// A quinn endpoint on a new socket bound to `addr`, serving `server` when given.
pub(crate) fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
    config: &NodeConfig,
) -> io::Result<quinn::Endpoint> {
    let socket = crate::transport::udp::bind_with(addr, &config.udp_socket)?;
    let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
    let socket = runtime.wrap_udp_socket(socket)?;
    #[cfg(feature = "metrics")]
    let socket: Arc<dyn quinn::AsyncUdpSocket> = Arc::new(counted::Counted {
        inner: socket,
        tally: config.metrics.inner.wire_tally("quic"),
    });
    quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        server,
        socket,
        runtime,
    )
}

#[cfg(feature = "metrics")]
mod counted {
    use std::io::{self, IoSliceMut};
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use quinn::udp::{RecvMeta, Transmit};
    use quinn::{AsyncUdpSocket, UdpPoller};

    use crate::metrics::node::WireTally;

    /// A socket that counts the bytes of the datagrams it sends and receives.
    #[derive(Debug)]
    pub(super) struct Counted {
        pub(super) inner: Arc<dyn AsyncUdpSocket>,
        pub(super) tally: WireTally,
    }

    impl AsyncUdpSocket for Counted {
        fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
            self.inner.clone().create_io_poller()
        }

        fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
            self.inner.try_send(transmit)?;
            self.tally.written(transmit.contents.len());
            Ok(())
        }

        fn poll_recv(
            &self,
            cx: &mut Context<'_>,
            bufs: &mut [IoSliceMut<'_>],
            meta: &mut [RecvMeta],
        ) -> Poll<io::Result<usize>> {
            let received = self.inner.poll_recv(cx, bufs, meta);
            if let Poll::Ready(Ok(n)) = received {
                self.tally
                    .read(meta.iter().take(n).map(|m| m.len).sum::<usize>());
            }
            received
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            self.inner.local_addr()
        }

        fn max_transmit_segments(&self) -> usize {
            self.inner.max_transmit_segments()
        }

        fn max_receive_segments(&self) -> usize {
            self.inner.max_receive_segments()
        }

        fn may_fragment(&self) -> bool {
            self.inner.may_fragment()
        }
    }
}
