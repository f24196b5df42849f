//! `raw`: the physical limit. Plain tokio sockets carrying 4-byte big-endian length-prefixed
//! 64-byte frames with buffered writes, one way (frames per second) and as an echo with one frame
//! in flight (round trips per second).

use std::time::Instant;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{
    Entry, GRACE, Limit, PAYLOAD, Received, SETUP_TIMEOUT, Scenario, payload, seq_of, tag,
    tokio_runtime, two_sides,
};
use crate::tls::{Certs, SERVER_NAME};
use crate::{RoundParams, Sample};

/// Bytes of one echo frame on the wire.
const FRAME: usize = 4 + PAYLOAD;
/// Size of the receive buffer.
const READ_BUF: usize = 64 * 1024;

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![Scenario {
        name: "raw",
        entries: vec![
            Entry {
                system: "raw",
                metric: "frames_per_s",
                unit: "1/s",
                run: one_way,
            },
            Entry {
                system: "raw",
                metric: "round_trips_per_s",
                unit: "1/s",
                run: echo,
            },
        ],
    }]
}

/// One-way: the client writes frames in bursts, the server counts them.
fn one_way(params: &RoundParams) -> anyhow::Result<Sample> {
    one_way_on(params, Wire::Plain, None)
}

/// How the frames of a one-way round look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    /// Length prefix and the payload.
    Plain,
    /// The queue wire: length prefix, version 1, tag, payload.
    Queue,
}

impl Wire {
    /// Bytes between the length prefix and the payload.
    fn header(self) -> usize {
        match self {
            Wire::Plain => 0,
            Wire::Queue => 4,
        }
    }

    /// Bytes of one frame on the wire.
    fn frame(self) -> usize {
        4 + self.header() + PAYLOAD
    }

    /// Appends frame `seq` to `buf`.
    fn encode(self, seq: u64, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&((self.header() + PAYLOAD) as u32).to_be_bytes());
        if self == Wire::Queue {
            buf.extend_from_slice(&1u16.to_be_bytes());
            buf.extend_from_slice(&tag(seq).to_be_bytes());
        }
        buf.extend_from_slice(&payload(seq));
    }

    /// The sequence number of a frame body (after the length prefix), if well formed.
    fn decode(self, body: &[u8]) -> Option<u64> {
        match self {
            Wire::Plain => body
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes),
            Wire::Queue => {
                let tag_seen = u16::from_be_bytes(body.get(2..4)?.try_into().ok()?);
                seq_of(tag_seen, body.get(4..)?)
            }
        }
    }
}

/// One-way over plain tokio sockets (over TLS with `certs`), on the given wire.
pub(super) fn one_way_on(
    params: &RoundParams,
    wire: Wire,
    certs: Option<&'static Certs>,
) -> anyhow::Result<Sample> {
    let duration = params.duration;
    let limit = params.limit();
    let burst = params.burst;
    let (received, sent) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                addr_tx.send(listener.local_addr()?)?;
                let (tcp, _) = tokio::time::timeout(SETUP_TIMEOUT, listener.accept())
                    .await
                    .context("no client came")??;
                tcp.set_nodelay(true)?;
                let mut received = Received::default();
                let counted = match certs {
                    None => {
                        tokio::time::timeout(
                            duration + GRACE,
                            receive_frames(tcp, wire, &mut received),
                        )
                        .await
                    }
                    Some(certs) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(certs.server.clone());
                        let tls = tokio::time::timeout(SETUP_TIMEOUT, acceptor.accept(tcp))
                            .await
                            .context("TLS handshake timed out")??;
                        tokio::time::timeout(
                            duration + GRACE,
                            receive_frames(tls, wire, &mut received),
                        )
                        .await
                    }
                };
                received.ended();
                counted.context("the stream did not end in time")??;
                Ok(received)
            })
        },
        |addr| {
            tokio_runtime()?.block_on(async move {
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                match certs {
                    None => send_frames(tcp, wire, limit, burst).await,
                    Some(certs) => {
                        let connector = tokio_rustls::TlsConnector::from(certs.client.clone());
                        let name = rustls_pki_types::ServerName::try_from(SERVER_NAME)?;
                        let tls = connector.connect(name, tcp).await?;
                        send_frames(tls, wire, limit, burst).await
                    }
                }
            })
        },
    )?;
    received.sample(sent)
}

/// Writes frames in bursts of `burst` until `limit` says stop, then shuts the stream down;
/// returns how many it wrote.
async fn send_frames<S: AsyncWrite + Unpin>(
    mut io: S,
    wire: Wire,
    limit: Limit,
    burst: usize,
) -> anyhow::Result<u64> {
    let stop = limit.start();
    let mut buf = Vec::with_capacity(burst * wire.frame());
    let mut seq = 0u64;
    loop {
        let burst = stop.burst(seq, burst);
        if burst == 0 {
            break;
        }
        buf.clear();
        for _ in 0..burst {
            wire.encode(seq, &mut buf);
            seq += 1;
        }
        io.write_all(&buf).await?;
        io.flush().await?;
    }
    io.shutdown().await?;
    Ok(seq)
}

/// Reads frames until the end of the stream, counting them into `received`.
async fn receive_frames<S: AsyncRead + Unpin>(
    mut stream: S,
    wire: Wire,
    received: &mut Received,
) -> anyhow::Result<()> {
    let frame = wire.frame();
    let mut buf = vec![0u8; READ_BUF];
    let mut filled = 0usize;
    loop {
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            if filled != 0 {
                bail!("the stream ended inside a frame");
            }
            return Ok(());
        }
        filled += n;
        let mut at = 0usize;
        while filled - at >= 4 {
            let len = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
            if len as usize != frame - 4 {
                bail!("frame of {len} bytes, expected {}", frame - 4);
            }
            if filled - at < frame {
                break;
            }
            received.arrived(wire.decode(&buf[at + 4..at + frame]));
            at += frame;
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
    }
}

/// Echo with one frame in flight: the client writes a frame and waits for it to come back.
fn echo(params: &RoundParams) -> anyhow::Result<Sample> {
    let duration = params.duration;
    let limit = params.limit();
    let ((), (round_trips, elapsed)) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                addr_tx.send(listener.local_addr()?)?;
                let (stream, _) = tokio::time::timeout(SETUP_TIMEOUT, listener.accept())
                    .await
                    .context("no client came")??;
                stream.set_nodelay(true)?;
                tokio::time::timeout(duration + GRACE, echo_frames(stream))
                    .await
                    .context("the stream did not end in time")?
            })
        },
        |addr| {
            tokio_runtime()?.block_on(async move {
                let mut stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let start = Instant::now();
                let stop = limit.start();
                let mut frame = [0u8; FRAME];
                let mut back = [0u8; FRAME];
                let mut seq = 0u64;
                while stop.allows(seq) {
                    frame[..4].copy_from_slice(&(PAYLOAD as u32).to_be_bytes());
                    frame[4..].copy_from_slice(&payload(seq));
                    stream.write_all(&frame).await?;
                    stream.read_exact(&mut back).await?;
                    if back != frame {
                        bail!("round trip {seq} came back altered");
                    }
                    seq += 1;
                }
                let elapsed = start.elapsed();
                stream.shutdown().await?;
                anyhow::Ok((seq, elapsed))
            })
        },
    )?;
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 || round_trips == 0 {
        bail!("no round trip completed");
    }
    Ok(Sample {
        value: round_trips as f64 / secs,
        sent: Some(round_trips),
        delivered: None,
    })
}

/// Writes back every complete frame it reads, until the end of the stream.
async fn echo_frames(mut stream: TcpStream) -> anyhow::Result<()> {
    let mut buf = vec![0u8; READ_BUF];
    let mut filled = 0usize;
    loop {
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let mut complete = 0usize;
        while filled - complete >= 4 {
            let at = complete;
            let len = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
            if len as usize != PAYLOAD {
                bail!("frame of {len} bytes, expected {PAYLOAD}");
            }
            if filled - at < FRAME {
                break;
            }
            complete += FRAME;
        }
        stream.write_all(&buf[..complete]).await?;
        buf.copy_within(complete..filled, 0);
        filled -= complete;
    }
}
