//! Connection upgrade: TCP → multistream-select `/noise` → Noise XX → multistream-select
//! `/yamux/1.0.0` → yamux.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt as _};

use super::connection::Muxed;
use super::negotiate::Version;
use super::negotiated::{NegotiateError, Negotiated, dialer_select, listener_select};
use super::noise::{NoiseConfig, NoiseError, NoiseStream};
use super::stream_ends::{EndWatch, StreamEnds};
use super::{NodeConfig, PeerId};

/// The security protocol.
pub(crate) const NOISE: &str = "/noise";
/// The stream multiplexer.
pub(crate) const YAMUX: &str = "/yamux/1.0.0";

/// The yamux connection over the secured bytes.
pub(crate) type MuxConnection =
    yamux::Connection<Compat<EndWatch<Negotiated<NoiseStream<Negotiated<TcpStream>>>>>>;

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// The peer did not agree to `/noise` or `/yamux/1.0.0`, or broke multistream-select.
    #[error("connection negotiation failed: {0}")]
    Negotiation(#[source] NegotiateError),
    /// The Noise handshake failed (bad signature, wrong peer, broken message, i/o).
    #[error("noise handshake failed: {0}")]
    Noise(#[source] NoiseError),
    /// The connection was not secured and multiplexed within the setup deadline.
    #[error("connection setup did not finish within the deadline")]
    Timeout,
    /// The libp2p-tls handshake failed, or the peer's certificate was refused.
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] super::tls::TlsError),
    /// The QUIC connection could not be made (its handshake failed, or it was refused).
    #[error("QUIC connection failed: {0}")]
    Quic(#[source] std::io::Error),
}

/// Which side opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// This node dialed.
    Dialer,
    /// The remote dialed this node.
    Listener,
}

/// Secures and multiplexes `tcp` (the caller applies the setup deadline).
pub(crate) async fn upgrade(
    tcp: TcpStream,
    noise: &NoiseConfig,
    config: &NodeConfig,
    endpoint: Endpoint,
    expected: Option<PeerId>,
) -> Result<(Muxed, PeerId), UpgradeError> {
    let _ = tcp.set_nodelay(true);
    let dialer = endpoint == Endpoint::Dialer;
    let secured = if dialer {
        dialer_select(tcp, [NOISE], Version::V1Lazy).await
    } else {
        listener_select(tcp, |p| p == NOISE).await
    }
    .map_err(UpgradeError::Negotiation)?
    .1;
    let (encrypted, peer) = noise
        .handshake(secured, dialer, expected)
        .await
        .map_err(UpgradeError::Noise)?;
    let muxable = if dialer {
        dialer_select(encrypted, [YAMUX], Version::V1Lazy).await
    } else {
        listener_select(encrypted, |p| p == YAMUX).await
    }
    .map_err(UpgradeError::Negotiation)?
    .1;
    let mode = if dialer {
        yamux::Mode::Client
    } else {
        yamux::Mode::Server
    };
    // yamux flushes after every frame; gather the frames of one poll into one flush.
    let ends = Arc::new(StreamEnds::default());
    let conn = yamux::Connection::new(
        EndWatch::new(muxable.flush_on_yield(), ends.clone()).compat(),
        yamux_config(config),
        mode,
    );
    Ok((
        Muxed::Yamux {
            conn: Box::new(conn),
            ends,
        },
        peer,
    ))
}

/// Yamux settings: the stream cap sits above the node's own per-connection limit, so that the
/// node refuses an extra stream (reset) before yamux would end the whole connection for it.
fn yamux_config(config: &NodeConfig) -> yamux::Config {
    const STREAM_WINDOW: usize = 256 * 1024;
    let max_streams = config.max_streams_per_connection.saturating_add(256);
    let window = (1usize << 30).max(max_streams.saturating_mul(STREAM_WINDOW));
    let mut c = yamux::Config::default();
    c.set_max_connection_receive_window(Some(window));
    c.set_max_num_streams(max_streams);
    c
}
