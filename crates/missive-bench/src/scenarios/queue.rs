//! `queue` and `queue-tls`: one-way 64-byte datagrams over one connection.
//!
//! Every system carries the same bytes (`u32 size | u16 version | u16 tag | payload`). The sender
//! writes `burst` datagrams through the system's sink, flushes, and repeats until the round's time
//! is up, then closes. The receiver counts the datagrams that arrive intact and in order, from the
//! first arrival to the end of the stream. The `raw` entry writes the same bytes by hand: the limit
//! of this wire. Each library is driven through its own sending API as its users would: missive's
//! `Writer::feed_slice` (the payload copied from a borrowed slice into the write buffer, nothing
//! allocated per datagram), Framed's `Sink<Bytes>` (a `Bytes` per frame, as that sink takes),
//! connect's `ConnectDatagram`s.
//!
//! connect 0.2.4 hands everything queued since the last flush to one vectored write and forgets it,
//! whatever the write took: over TCP a full socket drops the batch (or cuts a frame, after which
//! the stream is garbage), and over TLS async-tls writes only the first buffer of a vectored write,
//! so one datagram per flush arrives. Its rate therefore counts what arrived, and its losses are
//! reported next to it. With a burst of 1 (a flush per datagram) connect loses nothing here, and
//! every system is bound by one write system call per datagram.

use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

use anyhow::{Context as _, anyhow};
use bytes::{BufMut as _, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt as _};
use missive::queue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, FramedRead, LengthDelimitedCodec};

use super::raw::{Wire, one_way_on};
use super::{
    Entry, GRACE, PAYLOAD, Received, SETUP_TIMEOUT, Scenario, free_port, payload, seq_of, tag,
    tokio_runtime, two_sides,
};
use crate::tls::{Certs, SERVER_NAME};
use crate::{RoundParams, Sample};

/// The metric of both scenarios.
const METRIC: &str = "datagrams_per_s";
/// Attempts at binding connect's listener to a port found free a moment before.
const BIND_ATTEMPTS: usize = 5;

pub(super) fn scenarios() -> Vec<Scenario> {
    let entry = |system, run| Entry {
        system,
        metric: METRIC,
        unit: "1/s",
        run,
    };
    vec![
        Scenario {
            name: "queue",
            entries: vec![
                entry("missive", missive_tcp),
                entry("framed", framed_tcp),
                entry("connect", connect_tcp),
                entry("raw", raw_tcp),
            ],
        },
        Scenario {
            name: "queue-tls",
            entries: vec![
                entry("missive", missive_tls),
                entry("framed", framed_tls),
                entry("connect", connect_tls),
                entry("raw", raw_tls),
            ],
        },
    ]
}

/// The certificate shared by every TLS round of the run.
fn certs() -> anyhow::Result<&'static Certs> {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    if let Some(certs) = CERTS.get() {
        return Ok(certs);
    }
    let certs = Certs::generate()?;
    Ok(CERTS.get_or_init(|| certs))
}

// ---------------------------------------------------------------------------------------------
// missive: the queue on tokio.

fn missive_tcp(params: &RoundParams) -> anyhow::Result<Sample> {
    missive_round(params, None)
}

fn missive_tls(params: &RoundParams) -> anyhow::Result<Sample> {
    missive_round(params, Some(certs()?))
}

fn missive_round(params: &RoundParams, certs: Option<&'static Certs>) -> anyhow::Result<Sample> {
    let params = params.clone();
    let duration = params.duration;
    let (received, sent) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let mut listener = match certs {
                    None => queue::Listener::bind_tcp("127.0.0.1:0").await?,
                    Some(certs) => {
                        queue::Listener::bind_tls("127.0.0.1:0", certs.server.clone()).await?
                    }
                };
                let addr = listener
                    .local_addr()?
                    .as_socket_addr()
                    .context("the listener has no socket address")?;
                addr_tx.send(addr)?;
                let mut conn = tokio::time::timeout(SETUP_TIMEOUT, listener.accept())
                    .await
                    .context("no client came")??;
                let mut received = Received::default();
                let counted = tokio::time::timeout(duration + GRACE, async {
                    while let Some(d) = conn.reader().next().await {
                        let d = d?;
                        let seq = seq_of(d.tag(), d.payload());
                        received.arrived(seq.filter(|_| d.version() == 1));
                    }
                    anyhow::Ok(())
                })
                .await;
                received.ended();
                counted.context("the stream did not end in time")??;
                Ok(received)
            })
        },
        |addr| {
            tokio_runtime()?.block_on(async move {
                let mut conn = match certs {
                    None => queue::Connection::tcp_client(addr).await?,
                    Some(certs) => {
                        queue::Connection::tls_client(addr, SERVER_NAME, certs.client.clone())
                            .await?
                    }
                };
                let writer = conn.writer();
                let stop = params.limit().start();
                let mut seq = 0u64;
                loop {
                    let burst = stop.burst(seq, params.burst);
                    if burst == 0 {
                        break;
                    }
                    for _ in 0..burst {
                        writer.feed_slice(tag(seq), &payload(seq)).await?;
                        seq += 1;
                    }
                    writer.flush().await?;
                }
                writer.close().await?;
                // Wait for the receiver to close, so that nothing unread is discarded; only the
                // end matters (a TLS peer may end without close_notify).
                tokio::time::timeout(GRACE, async {
                    while let Some(Ok(_)) = conn.reader().next().await {}
                })
                .await
                .context("the receiver did not close")?;
                anyhow::Ok(seq)
            })
        },
    )?;
    received.sample(sent)
}

// ---------------------------------------------------------------------------------------------
// raw: the same bytes written by hand, the limit of this wire.

fn raw_tcp(params: &RoundParams) -> anyhow::Result<Sample> {
    one_way_on(params, Wire::Queue, None)
}

fn raw_tls(params: &RoundParams) -> anyhow::Result<Sample> {
    one_way_on(params, Wire::Queue, Some(certs()?))
}

// ---------------------------------------------------------------------------------------------
// framed: tokio-util's Framed with the default LengthDelimitedCodec (4-byte big-endian length).

fn framed_tcp(params: &RoundParams) -> anyhow::Result<Sample> {
    framed_round(params, None)
}

fn framed_tls(params: &RoundParams) -> anyhow::Result<Sample> {
    framed_round(params, Some(certs()?))
}

fn framed_round(params: &RoundParams, certs: Option<&'static Certs>) -> anyhow::Result<Sample> {
    let params = params.clone();
    let duration = params.duration;
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
                let result = match certs {
                    None => {
                        tokio::time::timeout(duration + GRACE, framed_receive(tcp, &mut received))
                            .await
                    }
                    Some(certs) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(certs.server.clone());
                        let tls = tokio::time::timeout(SETUP_TIMEOUT, acceptor.accept(tcp))
                            .await
                            .context("TLS handshake timed out")??;
                        tokio::time::timeout(duration + GRACE, framed_receive(tls, &mut received))
                            .await
                    }
                };
                received.ended();
                result.context("the stream did not end in time")??;
                Ok(received)
            })
        },
        |addr| {
            tokio_runtime()?.block_on(async move {
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                match certs {
                    None => framed_send(tcp, &params).await,
                    Some(certs) => {
                        let connector = tokio_rustls::TlsConnector::from(certs.client.clone());
                        let name = rustls_pki_types::ServerName::try_from(SERVER_NAME)?;
                        let tls = connector.connect(name, tcp).await?;
                        framed_send(tls, &params).await
                    }
                }
            })
        },
    )?;
    received.sample(sent)
}

async fn framed_send<S>(io: S, params: &RoundParams) -> anyhow::Result<u64>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut sink = Framed::new(io, LengthDelimitedCodec::new());
    let stop = params.limit().start();
    let mut seq = 0u64;
    loop {
        let burst = stop.burst(seq, params.burst);
        if burst == 0 {
            break;
        }
        for _ in 0..burst {
            let mut frame = BytesMut::with_capacity(4 + PAYLOAD);
            frame.put_u16(1);
            frame.put_u16(tag(seq));
            frame.put_slice(&payload(seq));
            sink.feed(frame.freeze()).await?;
            seq += 1;
        }
        SinkExt::<Bytes>::flush(&mut sink).await?;
    }
    SinkExt::<Bytes>::close(&mut sink).await?;
    drain(sink.into_inner()).await?;
    Ok(seq)
}

/// Reads until the peer closes, so that closing never discards unread bytes (which would make the
/// kernel reset the connection and the receiver lose the tail).
async fn drain<S: AsyncRead + Unpin>(mut io: S) -> anyhow::Result<()> {
    let mut sink = tokio::io::sink();
    // Only the end matters here; TLS peers may end without close_notify.
    let _ended = tokio::time::timeout(GRACE, tokio::io::copy(&mut io, &mut sink))
        .await
        .context("the receiver did not close")?;
    Ok(())
}

async fn framed_receive<S>(io: S, received: &mut Received) -> anyhow::Result<()>
where
    S: AsyncRead + Unpin,
{
    let mut frames = FramedRead::new(io, LengthDelimitedCodec::new());
    while let Some(frame) = frames.next().await {
        let frame = frame?;
        received.arrived(queue_body_seq(&frame));
    }
    Ok(())
}

/// The sequence number of a queue frame body (`version | tag | payload`), if well formed.
fn queue_body_seq(body: &[u8]) -> Option<u64> {
    let version = u16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    let tag_seen = u16::from_be_bytes(body.get(2..4)?.try_into().ok()?);
    if version != 1 {
        return None;
    }
    seq_of(tag_seen, body.get(4..)?)
}

// ---------------------------------------------------------------------------------------------
// connect 0.2.4: async-std, rustls 0.19 through async-tls.

fn connect_tcp(params: &RoundParams) -> anyhow::Result<Sample> {
    connect_round(params, None)
}

fn connect_tls(params: &RoundParams) -> anyhow::Result<Sample> {
    connect_round(params, Some(certs()?))
}

fn connect_round(params: &RoundParams, certs: Option<&'static Certs>) -> anyhow::Result<Sample> {
    let params = params.clone();
    let duration = params.duration;
    let (received, sent) = two_sides(
        move |addr_tx| {
            let mut received = Received::default();
            // connect's reader panics on some malformed size fields; what was counted before
            // still counts, and the panic is reported as a failed round.
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                async_std::task::block_on(connect_serve(addr_tx, certs, duration, &mut received))
            }));
            received.ended();
            match outcome {
                Ok(result) => result.map(|()| received),
                Err(_) => Err(anyhow!(
                    "connect's reader panicked after {} datagrams",
                    received.delivered
                )),
            }
        },
        |addr| async_std::task::block_on(connect_send(addr, certs, &params)),
    )?;
    received.sample(sent)
}

async fn connect_serve(
    addr_tx: std::sync::mpsc::SyncSender<SocketAddr>,
    certs: Option<&'static Certs>,
    duration: std::time::Duration,
    received: &mut Received,
) -> anyhow::Result<()> {
    // connect's listeners do not report their address: bind to a port that was free a moment ago.
    let mut attempt = 0;
    let (addr, mut conn) = loop {
        attempt += 1;
        let addr = free_port()?;
        let bound = match certs {
            None => connect::tcp::TcpListener::bind(addr.to_string())
                .await
                .map(ConnectListener::Tcp),
            Some(certs) => connect::tls::TlsListener::bind(
                addr.to_string(),
                connect::tls::async_tls::TlsAcceptor::from(certs.server019.clone()),
            )
            .await
            .map(ConnectListener::Tls),
        };
        match bound {
            Ok(listener) => break (addr, listener),
            Err(e) if attempt >= BIND_ATTEMPTS => return Err(e.context("binding connect")),
            Err(_) => {}
        }
    };
    addr_tx.send(addr)?;
    let conn = async_std::future::timeout(SETUP_TIMEOUT, conn.next())
        .await
        .context("no client came")?
        .context("connect's listener ended")?;
    let (mut reader, _writer) = conn.split();
    let counted = async_std::future::timeout(duration + GRACE, async {
        while let Some(d) = reader.next().await {
            let seq = d.data().and_then(|data| seq_of(d.recipient(), data));
            received.arrived(seq.filter(|_| d.version() == 1));
        }
    })
    .await;
    counted.map_err(|_| anyhow!("the stream did not end in time"))
}

async fn connect_send(
    addr: SocketAddr,
    certs: Option<&'static Certs>,
    params: &RoundParams,
) -> anyhow::Result<u64> {
    let mut conn = match certs {
        None => connect::Connection::tcp_client(addr.to_string()).await?,
        Some(certs) => {
            let connector = connect::tls::async_tls::TlsConnector::from(certs.client019.clone());
            connect::Connection::tls_client(addr.to_string(), SERVER_NAME, connector).await?
        }
    };
    let writer = conn.writer();
    let stop = params.limit().start();
    let mut seq = 0u64;
    loop {
        let burst = stop.burst(seq, params.burst);
        if burst == 0 {
            break;
        }
        for _ in 0..burst {
            let d = connect::ConnectDatagram::new(tag(seq), payload(seq).to_vec())
                .map_err(|e| anyhow!("connect refused a datagram: {e}"))?;
            writer.feed(d).await.map_err(connect_error)?;
            seq += 1;
        }
        writer.flush().await.map_err(connect_error)?;
    }
    writer.close().await.map_err(connect_error)?;
    // connect's close does not end the receiver's stream; dropping the connection does. The
    // receiver sends nothing (no TLS tickets either), so nothing unread is discarded.
    drop(conn);
    Ok(seq)
}

fn connect_error(e: connect::ConnectionWriteError) -> anyhow::Error {
    match e {
        connect::ConnectionWriteError::IoError(e) => anyhow::Error::new(e),
        connect::ConnectionWriteError::ConnectionClosed => {
            anyhow::Error::new(io::Error::from(io::ErrorKind::NotConnected))
        }
    }
}

/// connect's two listener types, both streams of connections.
enum ConnectListener {
    Tcp(connect::tcp::TcpListener),
    Tls(connect::tls::TlsListener),
}

impl ConnectListener {
    async fn next(&mut self) -> Option<connect::Connection> {
        match self {
            ConnectListener::Tcp(l) => l.next().await,
            ConnectListener::Tls(l) => l.next().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_body_with_wrong_version_is_rejected() {
        let mut body = vec![0, 2, 0, 7];
        body.extend_from_slice(&payload(7));
        assert_eq!(queue_body_seq(&body), None);
        body[1] = 1;
        assert_eq!(queue_body_seq(&body), Some(7));
    }

    #[test]
    fn every_system_delivers_in_a_short_round() -> anyhow::Result<()> {
        let params = RoundParams {
            duration: std::time::Duration::from_millis(30),
            burst: 1,
            quick: true,
            messages: None,
        };
        for scenario in scenarios() {
            for entry in &scenario.entries {
                let sample = (entry.run)(&params)
                    .with_context(|| format!("{} / {}", scenario.name, entry.system))?;
                assert!(sample.value > 0.0, "{} / {}", scenario.name, entry.system);
            }
        }
        Ok(())
    }
}
