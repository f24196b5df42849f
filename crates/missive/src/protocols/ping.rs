//! `/ipfs/ping/1.0.0`: the dialer writes 32 random bytes, the listener echoes them; this may
//! repeat on one stream.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use missive::p2p::{Keypair, Node, NodeConfig};
//!
//! use std::time::Duration;
//! use missive::protocols::ping;
//!
//! let a = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! let b = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! let peer = b.dial(a.listen("/ip4/127.0.0.1/tcp/0".parse()?).await?).await?;
//! let rtt = ping::ping(&b.stream_control(), peer, Duration::from_secs(5)).await?;
//! assert!(rtt < Duration::from_secs(5));
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

use crate::p2p::PeerId;
use crate::stream::{Control, OpenStreamError, StreamProtocol};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");
/// Bytes per ping.
pub const PING_SIZE: usize = 32;
/// An inbound ping stream with no ping for this long is closed (js-libp2p resets after 10 s).
const SERVE_IDLE: Duration = Duration::from_secs(30);

/// Why a ping failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PingError {
    /// The stream could not be opened (dial failure, unsupported protocol, ...).
    #[error("could not open a ping stream: {0}")]
    Open(#[source] OpenStreamError),
    /// The stream failed.
    #[error("ping stream failed: {0}")]
    Io(#[source] std::io::Error),
    /// The peer echoed different bytes.
    #[error("the peer answered with different bytes")]
    Mismatch,
    /// No answer within the ping timeout.
    #[error("ping timed out")]
    Timeout,
}

/// Opens a ping stream to `peer` and measures one round trip.
pub async fn ping(
    control: &Control,
    peer: PeerId,
    timeout: Duration,
) -> Result<Duration, PingError> {
    let work = async {
        let mut stream = control
            .open_stream(peer, PROTOCOL)
            .await
            .map_err(PingError::Open)?;
        let mut payload = [0u8; PING_SIZE];
        getrandom::fill(&mut payload)
            .map_err(|e| PingError::Io(std::io::Error::other(e.to_string())))?;
        let start = Instant::now();
        stream.write_all(&payload).await.map_err(PingError::Io)?;
        stream.flush().await.map_err(PingError::Io)?;
        let mut echo = [0u8; PING_SIZE];
        stream.read_exact(&mut echo).await.map_err(PingError::Io)?;
        let rtt = start.elapsed();
        let _ = stream.shutdown().await;
        if echo != payload {
            return Err(PingError::Mismatch);
        }
        Ok(rtt)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| PingError::Timeout)?
}

/// Serves ping on the node behind `control` until the node shuts down.
pub(crate) fn serve(control: &Control) {
    let served = control.serve_inline(PROTOCOL, |_peer, mut stream| async move {
        let mut buf = [0u8; PING_SIZE];
        loop {
            match tokio::time::timeout(SERVE_IDLE, stream.read_exact(&mut buf)).await {
                Ok(Ok(_)) => {}
                // The pinger closed its side (js-libp2p does after each ping): finish ours, so
                // the answer already written is delivered. A dropped stream resets, and on QUIC
                // a reset lets the peer discard the answer still in flight.
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    let _ = stream.shutdown().await;
                    return;
                }
                _ => return,
            }
            if stream.write_all(&buf).await.is_err() || stream.flush().await.is_err() {
                return;
            }
        }
    });
    if let Ok(registration) = served {
        registration.detach();
    }
}
