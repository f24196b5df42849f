//! An echo protocol on raw streams, in the shape of rust-libp2p's `examples/stream`: one side
//! accepts `/echo` streams with `Control::accept` and writes back what it reads, the other opens
//! them with `Control::open_stream`, sends bytes, closes its write side and checks the echo.
//!
//! ```text
//! cargo run -p missive --example stream_echo                       # both sides on loopback
//! cargo run -p missive --example stream_echo -- /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…
//! ```
//!
//! Without an argument both nodes run on loopback and the program exits after a few rounds.
//! With a multiaddr ending in `/p2p/<peer id>` it dials that peer instead — rust-libp2p's own
//! `stream` example, for one, which prints such an address — and echoes with it a few times.
//!
//! What differs from libp2p-stream: `Control` comes from the node (`node.stream_control()`),
//! not from a behaviour in a swarm that someone must poll; `open_stream` dials a known address
//! itself; streams are tokio `AsyncRead + AsyncWrite` (libp2p-stream's are `futures` ones); and
//! dropping the `IncomingStreams` deregisters the protocol.

use std::time::Duration;

use futures_util::StreamExt;
use missive::p2p::{Keypair, Multiaddr, Node, NodeConfig, PeerId};
use missive::stream::{Control, OpenStreamError, Stream, StreamProtocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ECHO_PROTOCOL: StreamProtocol = StreamProtocol::new("/echo");

/// Rounds of echo per run.
const ROUNDS: usize = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args().nth(1).map(|a| a.parse()).transpose()?;
    run(address).await
}

/// With `address`, echoes with that peer; without, runs both sides on loopback.
pub(crate) async fn run(address: Option<Multiaddr>) -> Result<(), Box<dyn std::error::Error>> {
    tokio::time::timeout(Duration::from_secs(30), async {
        let node = Node::new(Keypair::generate(), NodeConfig::default()).await?;
        println!("local peer id: {}", node.peer_id());
        let control = node.stream_control();

        // Accept /echo streams from anyone, as the rust-libp2p example does on both sides.
        let mut incoming = control.accept(ECHO_PROTOCOL)?;
        let echoing = tokio::spawn(async move {
            while let Some((peer, stream)) = incoming.next().await {
                tokio::spawn(async move {
                    match echo(stream).await {
                        Ok(n) => println!("echoed {n} bytes to {peer}"),
                        Err(e) => eprintln!("echo with {peer} failed: {e}"),
                    }
                });
            }
        });

        let mut other_node = None;
        let peer = match address {
            Some(address) => {
                let Some(peer) = address.peer_id() else {
                    return Err("the address must end in /p2p/<peer id>".into());
                };
                let dialed = node.dial(address).await?;
                assert_eq!(dialed, peer);
                peer
            }
            None => {
                // The other side: a second node on loopback that only echoes.
                let other = Node::new(Keypair::generate(), NodeConfig::default()).await?;
                let mut theirs = other.stream_control().accept(ECHO_PROTOCOL)?;
                tokio::spawn(async move {
                    while let Some((_, stream)) = theirs.next().await {
                        tokio::spawn(echo(stream));
                    }
                });
                let addr = other.listen("/ip4/127.0.0.1/tcp/0".parse()?).await?;
                node.add_address(other.peer_id(), addr);
                let peer = other.peer_id();
                other_node = Some(other);
                peer
            }
        };

        for round in 0..ROUNDS {
            send_round(&control, peer, round).await?;
        }
        echoing.abort();
        node.shutdown().await;
        if let Some(other) = other_node {
            other.shutdown().await;
        }
        Ok(())
    })
    .await
    .map_err(|_| "the echo did not finish within 30 s")?
}

/// One stream: writes 1000 bytes, closes the write side, reads the echo and compares.
async fn send_round(
    control: &Control,
    peer: PeerId,
    round: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut stream = match control.open_stream(peer, ECHO_PROTOCOL).await {
        Ok(stream) => stream,
        Err(OpenStreamError::UnsupportedProtocol(_)) => {
            return Err(format!("{peer} does not speak {}", ECHO_PROTOCOL.as_str()).into());
        }
        Err(error) => return Err(error.into()),
    };
    let sent: Vec<u8> = (0..1000).map(|i| (i * 31 + round * 7) as u8).collect();
    stream.write_all(&sent).await?;
    stream.shutdown().await?;
    let mut received = Vec::with_capacity(sent.len());
    stream.read_to_end(&mut received).await?;
    if received != sent {
        return Err(format!("round {round}: the echo differs from what was sent").into());
    }
    println!("round {round}: {} bytes echoed by {peer}", received.len());
    Ok(())
}

/// Writes back everything read, until the other side closes its write side.
async fn echo(mut stream: Stream) -> std::io::Result<usize> {
    let mut total = 0;
    let mut buf = [0u8; 100];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            stream.shutdown().await?;
            return Ok(total);
        }
        stream.write_all(&buf[..n]).await?;
        total += n;
    }
}
