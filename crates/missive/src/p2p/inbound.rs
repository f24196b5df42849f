//! Inbound connections: the accept loop, and each handshake under its deadlines and the
//! admission rules of [`crate::transport::pending`].

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::connection::Muxed;
use super::events::{IncomingError, NodeEvent};
use super::node::Shared;
use super::upgrade::{Endpoint, UpgradeError, Wire, upgrade};
use super::{Multiaddr, PeerId};
use crate::transport::pending::{PendingSlot, first_bytes};

/// What a listener speaks before the libp2p upgrade.
#[derive(Debug, Clone)]
pub(crate) enum Transport {
    Tcp,
    #[cfg(feature = "websocket")]
    WebSocket(Arc<super::websocket::Listening>),
}

/// Accepts connections on `listener` until the node shuts down, each handshake in a task of
/// its own.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    local: Multiaddr,
    transport: Transport,
) {
    loop {
        let accepted = tokio::select! {
            _ = shared.cancelled() => return,
            r = listener.accept() => r,
        };
        let (tcp, remote) = match accepted {
            Ok(x) => x,
            Err(e) if is_transient_accept_error(&e) => {
                // Out of file descriptors and the like: wait a little, keep serving.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(e) => {
                shared.emit(NodeEvent::ListenerError {
                    address: local,
                    error: Arc::new(e),
                });
                return;
            }
        };
        let slot = shared.pending().admit(remote.ip());
        let remote_addr = match &transport {
            Transport::Tcp => Multiaddr::from_socket_addr(remote),
            #[cfg(feature = "websocket")]
            Transport::WebSocket(ws) => ws.target.address_of(remote),
        };
        #[cfg(feature = "metrics")]
        let pending = shared.config.metrics.inner.inbound_handshake();
        let setup = handshake(shared.clone(), tcp, transport.clone(), remote_addr, slot);
        let task = tokio::spawn(async move {
            setup.await;
            #[cfg(feature = "metrics")]
            drop(pending);
        });
        shared.track_task(task);
    }
}

/// Secures one inbound connection within its deadlines (a WebSocket's HTTP upgrade and TLS
/// included) and hands it to the node.
async fn handshake(
    shared: Arc<Shared>,
    tcp: TcpStream,
    transport: Transport,
    remote_addr: Multiaddr,
    slot: PendingSlot,
) {
    let config = &shared.config;
    let deadline = Instant::now() + config.connection_setup_timeout;
    let evicted = slot.evicted();
    let setup = async {
        let silence = config
            .first_bytes_timeout
            .min(config.connection_setup_timeout);
        if !first_bytes(&tcp, silence, &slot).await {
            return Err(IncomingError::FirstBytesTimeout);
        }
        let secure = async {
            let wire = match transport {
                Transport::Tcp => Wire::from(tcp),
                #[cfg(feature = "websocket")]
                Transport::WebSocket(ws) => super::websocket::accept(tcp, ws.tls.as_ref())
                    .await
                    .map(Wire::websocket)
                    .map_err(UpgradeError::WebSocket)?,
            };
            upgrade(
                wire,
                &shared.security,
                config,
                Endpoint::Listener,
                None,
                None,
            )
            .await
        };
        match tokio::time::timeout_at(deadline, secure).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => Err(IncomingError::Upgrade(e)),
            Err(_) => Err(IncomingError::Upgrade(UpgradeError::Timeout)),
        }
    };
    let result = tokio::select! {
        _ = shared.cancelled() => return,
        () = evicted.cancelled() => Err(IncomingError::TooManyPendingHandshakes),
        r = setup => r,
    };
    drop(slot);
    shared.inbound_done(result, remote_addr).await;
}

impl Shared {
    /// Hands a secured inbound connection to the node, or reports why there is none.
    pub(crate) async fn inbound_done(
        self: &Arc<Self>,
        result: Result<(Muxed, PeerId), IncomingError>,
        remote_addr: Multiaddr,
    ) {
        match result {
            Ok((muxed, peer)) => {
                self.establish(
                    muxed,
                    peer,
                    Endpoint::Listener,
                    remote_addr,
                    false,
                    Vec::new(),
                )
                .await;
            }
            Err(error) => {
                tracing::debug!(%remote_addr, %error, "inbound connection failed");
                self.emit(NodeEvent::IncomingConnectionError {
                    remote_addr,
                    error: Arc::new(error),
                });
            }
        }
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::OutOfMemory
    ) || e.raw_os_error().is_some()
}
