//! The `raw` entry of the rpc scenarios: plain tokio sockets carrying LEB128-length-prefixed
//! frames of the protobuf messages' sizes. Per connection the client writes whatever the
//! in-flight window allows in one write, and reads responses in another future of the same task;
//! the server writes back every complete frame of each read. Nothing is parsed beyond the length
//! prefix: this is the limit of the wire.
//!
//! What raw does per call, and the libraries do besides: the client copies one frame (prefix,
//! sequence number, body: about 70 bytes) into its batch, reads the length prefix of the answer
//! and compares its sequence number; the server reads the prefix and echoes the bytes as they
//! came. No message is encoded or decoded, no call is registered or completed, nothing wakes
//! anyone per call: a write or read system call carries a whole window (up to 1,024 frames). So
//! the raw ratio at 64 and 1,024 in flight is how far a library is from the wire, its protobuf
//! encoding and decoding (about 2,000 instructions per call with prost, both sides) included,
//! while the ratio to protosocket-rpc, driven by the same callers, compares libraries.

use std::io::IoSlice;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::BytesMut;
use missive::rpc::codec::{read_varint, write_varint};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::rpc::{Calls, Shape, in_task, server_limit};
use super::{SETUP_TIMEOUT, Stop, tokio_runtime, two_sides};
use crate::{RoundParams, Sample};

/// Bytes read at most per read call of small frames.
const READ_BUF: usize = 64 * 1024;

/// The frames of a round: a length prefix, then `len` bytes; 64-byte-body frames start with the
/// call's sequence number.
#[derive(Debug)]
struct Frame {
    /// The LEB128 length prefix.
    prefix: BytesMut,
    /// The bytes after the prefix (the sequence number is written over the first eight).
    content: Vec<u8>,
    /// Whether frames carry their sequence number (small frames) or are written as is (bulk).
    numbered: bool,
}

impl Frame {
    fn new(shape: Shape) -> Self {
        let len = shape.message_len();
        let mut prefix = BytesMut::new();
        write_varint(len as u64, &mut prefix);
        Self {
            prefix,
            content: vec![0xa5; len],
            numbered: shape.body <= super::PAYLOAD,
        }
    }

    fn len(&self) -> usize {
        self.content.len()
    }

    /// The read buffer: room for two frames, so that a frame always fits after compaction.
    fn read_buf(&self) -> Vec<u8> {
        vec![0u8; READ_BUF.max(2 * (self.prefix.len() + self.len()))]
    }

    /// Appends frame `seq` to `out`.
    fn encode(&self, seq: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(self.content.get(8..).unwrap_or_default());
    }

    /// Fails unless `got` (after the prefix) is frame `seq`.
    fn check(&self, seq: u64, got: &[u8]) -> anyhow::Result<()> {
        let intact = got.len() == self.len()
            && (!self.numbered || got.get(..8) == Some(&seq.to_le_bytes()[..]));
        if !intact {
            bail!("frame {seq} came back altered");
        }
        Ok(())
    }
}

/// The length of the complete frame at the front of `buf`, if there is one; fails on a frame of
/// another length than `expected`.
fn complete_frame(buf: &[u8], expected: usize) -> anyhow::Result<Option<(usize, usize)>> {
    let Some((len, prefix)) = read_varint(buf)? else {
        return Ok(None);
    };
    if len != expected as u64 {
        bail!("frame of {len} bytes, expected {expected}");
    }
    Ok((buf.len() >= prefix + expected).then_some((prefix, expected)))
}

pub(super) fn round(params: &RoundParams, shape: Shape) -> anyhow::Result<Sample> {
    let duration = params.duration;
    let limit = params.limit();
    let ((), calls) = two_sides(
        move |addr_tx| {
            tokio_runtime()?.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                addr_tx.send(listener.local_addr()?)?;
                let mut connections = Vec::with_capacity(shape.conns);
                for _ in 0..shape.conns {
                    let (tcp, _) = tokio::time::timeout(SETUP_TIMEOUT, listener.accept())
                        .await
                        .context("no client came")??;
                    tcp.set_nodelay(true)?;
                    connections.push(tokio::spawn(echo(tcp, Frame::new(shape))));
                }
                tokio::time::timeout(server_limit(duration), async {
                    for connection in connections {
                        connection.await??;
                    }
                    anyhow::Ok(())
                })
                .await
                .context("the connections did not end in time")?
            })
        },
        |addr| {
            tokio_runtime()?.block_on(async move {
                let mut streams = Vec::with_capacity(shape.conns);
                for _ in 0..shape.conns {
                    let tcp = tokio::time::timeout(SETUP_TIMEOUT, TcpStream::connect(addr))
                        .await
                        .context("connecting timed out")??;
                    tcp.set_nodelay(true)?;
                    streams.push(tcp);
                }
                let frame = Frame::new(shape);
                // One frame per connection first, as the other systems make one call first.
                let first = streams.iter_mut().map(|tcp| first_exchange(tcp, &frame));
                tokio::time::timeout(SETUP_TIMEOUT, futures_util::future::try_join_all(first))
                    .await
                    .context("the first frames did not come back in time")??;
                let start = Instant::now();
                // In a task of its own, as the other systems' callers (see `in_task`).
                let per_conn = in_task(async move {
                    let per_conn = futures_util::future::try_join_all(
                        streams.iter_mut().enumerate().map(|(conn, tcp)| {
                            let stop = limit.share(conn, shape.conns).start();
                            pipeline(tcp, &frame, shape.in_flight, stop)
                        }),
                    );
                    tokio::time::timeout(duration + super::GRACE, per_conn)
                        .await
                        .context("the frames in flight did not come back in time")?
                })
                .await?;
                let completed = per_conn.iter().map(|(n, _, _)| n).sum();
                let issued = per_conn.iter().map(|(_, n, _)| n).sum();
                let last = per_conn.iter().filter_map(|(_, _, t)| *t).max();
                anyhow::Ok(Calls {
                    completed,
                    issued,
                    elapsed: last.map_or(Duration::ZERO, |t| t.duration_since(start)),
                })
            })
        },
    )?;
    shape.sample(calls)
}

/// Sends frame 0 and waits until it has come back.
async fn first_exchange(tcp: &mut TcpStream, frame: &Frame) -> anyhow::Result<()> {
    let mut out = Vec::new();
    frame.encode(0, &mut out);
    tcp.write_all(&out).await?;
    let mut back = vec![0u8; out.len()];
    tcp.read_exact(&mut back).await?;
    let (prefix, len) = complete_frame(&back, frame.len())?.context("a short first frame")?;
    frame.check(0, &back[prefix..prefix + len])
}

/// Keeps `in_flight` frames in flight on `tcp` until `stop` says stop, then shuts the write side
/// down and reads the rest. Returns the frames that came back before the deadline, the frames
/// sent, and when the last counted one came back.
async fn pipeline(
    tcp: &mut TcpStream,
    frame: &Frame,
    in_flight: usize,
    stop: Stop,
) -> anyhow::Result<(u64, u64, Option<Instant>)> {
    let deadline = stop.deadline;
    let (mut rd, mut wr) = tcp.split();
    let window = Semaphore::new(in_flight);
    let sent = AtomicU64::new(0);
    let writer = async {
        let mut out = Vec::new();
        let mut seq = 0u64;
        while stop.allows(seq) {
            window.acquire().await?.forget();
            let most = stop.remaining(seq);
            let mut n = 1;
            while n < most
                && let Ok(permit) = window.try_acquire()
            {
                permit.forget();
                n += 1;
            }
            if frame.numbered {
                out.clear();
                for _ in 0..n {
                    frame.encode(seq, &mut out);
                    seq += 1;
                }
                wr.write_all(&out).await?;
            } else {
                for _ in 0..n {
                    write_two(&mut wr, &frame.prefix, &frame.content).await?;
                    seq += 1;
                }
            }
            sent.store(seq, Relaxed);
        }
        wr.shutdown().await?;
        anyhow::Ok(())
    };
    let reader = async {
        let mut buf = frame.read_buf();
        let mut filled = 0usize;
        let mut received = 0u64;
        let mut counted = 0u64;
        let mut last = None;
        loop {
            let n = rd.read(&mut buf[filled..]).await?;
            if n == 0 {
                if filled != 0 {
                    bail!("the stream ended inside a frame");
                }
                break;
            }
            filled += n;
            let now = Instant::now();
            let mut at = 0usize;
            let mut back = 0usize;
            while let Some((prefix, len)) = complete_frame(&buf[at..filled], frame.len())? {
                frame.check(received, &buf[at + prefix..at + prefix + len])?;
                received += 1;
                back += 1;
                at += prefix + len;
            }
            if at > 0 {
                buf.copy_within(at..filled, 0);
                filled -= at;
            }
            if back > 0 {
                if now < deadline {
                    counted += back as u64;
                    last = Some(now);
                }
                window.add_permits(back);
            }
        }
        anyhow::Ok((received, counted, last))
    };
    let ((), (received, counted, last)) = tokio::try_join!(writer, reader)?;
    let sent = sent.load(Relaxed);
    if received != sent {
        bail!("{sent} frames sent, {received} came back");
    }
    Ok((counted, received, last))
}

/// Writes `head` then `tail` with vectored writes, without copying them together.
async fn write_two<W: AsyncWrite + Unpin>(
    wr: &mut W,
    head: &[u8],
    tail: &[u8],
) -> anyhow::Result<()> {
    let mut written = 0usize;
    let total = head.len() + tail.len();
    while written < total {
        let bufs = if written < head.len() {
            [IoSlice::new(&head[written..]), IoSlice::new(tail)]
        } else {
            [
                IoSlice::new(&tail[written - head.len()..]),
                IoSlice::new(&[]),
            ]
        };
        let n = wr.write_vectored(&bufs).await?;
        if n == 0 {
            bail!("the socket accepted no bytes");
        }
        written += n;
    }
    Ok(())
}

/// Writes back every complete frame it reads, until the end of the stream.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    frame: Frame,
) -> anyhow::Result<()> {
    let mut buf = frame.read_buf();
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
        let mut complete = 0usize;
        while let Some((prefix, len)) = complete_frame(&buf[complete..filled], frame.len())? {
            complete += prefix + len;
        }
        if complete > 0 {
            stream.write_all(&buf[..complete]).await?;
            buf.copy_within(complete..filled, 0);
            filled -= complete;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_frame_waits_for_the_whole_frame_and_refuses_other_lengths() -> anyhow::Result<()> {
        let frame = Frame::new(Shape {
            conns: 1,
            in_flight: 1,
            body: super::super::PAYLOAD,
        });
        let mut wire = Vec::new();
        frame.encode(3, &mut wire);
        let whole = complete_frame(&wire, frame.len())?;
        assert_eq!(whole, Some((frame.prefix.len(), frame.len())));
        assert_eq!(complete_frame(&wire[..wire.len() - 1], frame.len())?, None);
        assert!(complete_frame(&wire, frame.len() + 1).is_err());
        frame.check(3, &wire[frame.prefix.len()..])?;
        assert!(frame.check(4, &wire[frame.prefix.len()..]).is_err());
        Ok(())
    }
}
