//! `/perf/1.0.0`: the client writes a big-endian u64 N (bytes it wants back), uploads any
//! amount and closes its write side; the server reads to the end, sends N bytes and closes.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use missive::p2p::{Keypair, Node, NodeConfig};
//!
//! use missive::protocols::perf;
//!
//! let server = Node::new(Keypair::generate(), NodeConfig::default().with_perf(true)).await?;
//! let client = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! let peer = client.dial(server.listen("/ip4/127.0.0.1/tcp/0".parse()?).await?).await?;
//! let result = perf::run(&client.stream_control(), peer, 64 * 1024, 64 * 1024).await?;
//! assert_eq!((result.uploaded, result.downloaded), (65536, 65536));
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

use crate::p2p::PeerId;
use crate::stream::{Control, OpenStreamError, StreamProtocol};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/perf/1.0.0");
const CHUNK: usize = 64 * 1024;

/// What one perf run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PerfResult {
    /// Bytes sent.
    pub uploaded: u64,
    /// Bytes received.
    pub downloaded: u64,
    /// Time from opening the stream to the end of the download.
    pub elapsed: Duration,
}

/// Why a perf run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PerfError {
    /// The stream could not be opened.
    #[error("could not open a perf stream: {0}")]
    Open(#[source] OpenStreamError),
    /// The stream failed.
    #[error("perf stream failed: {0}")]
    Io(#[source] std::io::Error),
    /// The server sent a different number of bytes than asked.
    #[error("asked for {expected} bytes, received {received}")]
    ShortDownload {
        /// Bytes asked for.
        expected: u64,
        /// Bytes received.
        received: u64,
    },
}

/// Uploads `upload` bytes to `peer` and downloads `download` bytes back.
pub async fn run(
    control: &Control,
    peer: PeerId,
    upload: u64,
    download: u64,
) -> Result<PerfResult, PerfError> {
    let start = Instant::now();
    let mut s = control
        .open_stream(peer, PROTOCOL)
        .await
        .map_err(PerfError::Open)?;
    s.write_all(&download.to_be_bytes())
        .await
        .map_err(PerfError::Io)?;
    let zeros = vec![0u8; CHUNK];
    let mut left = upload;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&zeros[..n]).await.map_err(PerfError::Io)?;
        left -= n as u64;
    }
    s.shutdown().await.map_err(PerfError::Io)?;
    let received = drain(&mut s).await.map_err(PerfError::Io)?;
    if received != download {
        return Err(PerfError::ShortDownload {
            expected: download,
            received,
        });
    }
    Ok(PerfResult {
        uploaded: upload,
        downloaded: received,
        elapsed: start.elapsed(),
    })
}

async fn drain(s: &mut crate::stream::Stream) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// Serves perf on the node behind `control` until the node shuts down.
pub(crate) fn serve(control: &Control) {
    let served = control.serve_inline(PROTOCOL, |_peer, mut s| async move {
        let mut n = [0u8; 8];
        if s.read_exact(&mut n).await.is_err() || drain(&mut s).await.is_err() {
            return;
        }
        let mut left = u64::from_be_bytes(n);
        let zeros = vec![0u8; CHUNK];
        while left > 0 {
            let k = left.min(CHUNK as u64) as usize;
            if s.write_all(&zeros[..k]).await.is_err() {
                return;
            }
            left -= k as u64;
        }
        let _ = s.shutdown().await;
    });
    if let Ok(registration) = served {
        registration.detach();
    }
}
