//! missive's node against rust-libp2p 0.57 over QUIC (`/udp/<port>/quic-v1`, libp2p-quic's
//! `quic::tokio::Transport`), both ways: PeerIds, ping, identify with the QUIC listen and
//! observed addresses, libp2p-stream echoes, a CBOR request-response exchange and refused
//! protocols. Two tests take the shape of rust-libp2p's `examples/stream`: a QUIC-only swarm
//! with nothing but `libp2p_stream::Behaviour`, echoing on `/echo` and sending 1000 random
//! bytes.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hasher as _};
use std::time::Duration;

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::request_response::{self as lib_rr, ProtocolSupport as LibSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr as LibMultiaddr, StreamProtocol as LibProtocol, Swarm, identify, noise, ping, tcp,
    yamux,
};
use missive::p2p::{Keypair, Multiaddr, Node, NodeConfig, NodeEvent, PeerId, Protocol};
use missive::protocols::identify as missive_identify;
use missive::request_response::{self as rr, ProtocolSupport};
use missive::stream::{OpenStreamError, StreamProtocol};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};

const ECHO: &str = "/echo/1.0.0";
/// The protocol of rust-libp2p's `examples/stream`.
const EXAMPLE_ECHO: &str = "/echo";
const GREET: &str = "/greet/cbor/1";
const MISSING: &str = "/missing/1.0.0";
const QUIC: &str = "/ip4/127.0.0.1/udp/0/quic-v1";
const TCP: &str = "/ip4/127.0.0.1/tcp/0";
const DEADLINE: Duration = Duration::from_secs(30);
/// The agent version the libp2p peer announces through identify.
const LIBP2P_AGENT: &str = "interop-quic-peer/1.0";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Greet {
    name: String,
    times: u32,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    ping: ping::Behaviour,
    identify: identify::Behaviour,
    stream: libp2p_stream::Behaviour,
    greet: lib_rr::cbor::Behaviour<Greet, Greet>,
}

type Reply<T> = oneshot::Sender<Result<T, String>>;

enum Command {
    Listen(LibMultiaddr, oneshot::Sender<LibMultiaddr>),
    Dial(LibMultiaddr),
    Request(libp2p::PeerId, Greet, Reply<Greet>),
    Disconnect(libp2p::PeerId),
}

/// A connection the libp2p peer established: the remote and its address.
type Established = (libp2p::PeerId, LibMultiaddr);

/// A rust-libp2p swarm with QUIC (and TCP + Noise, to announce a second address) on its own
/// task. It echoes libp2p-stream streams on [`ECHO`], answers every CBOR greeting and reports
/// its connections, pings and identify results.
struct Libp2pPeer {
    peer_id: libp2p::PeerId,
    control: libp2p_stream::Control,
    commands: mpsc::Sender<Command>,
    established: mpsc::Receiver<Established>,
    closed: mpsc::Receiver<libp2p::PeerId>,
    pings: mpsc::Receiver<(libp2p::PeerId, Result<Duration, String>)>,
    identified: mpsc::Receiver<(libp2p::PeerId, identify::Info)>,
}

fn behaviour(key: &libp2p::identity::Keypair) -> Behaviour {
    Behaviour {
        ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_millis(100))),
        identify: identify::Behaviour::new(
            identify::Config::new("ipfs/0.1.0".to_owned(), key.public())
                .with_agent_version(LIBP2P_AGENT.to_owned()),
        ),
        stream: libp2p_stream::Behaviour::new(),
        greet: lib_rr::cbor::Behaviour::new(
            [(LibProtocol::new(GREET), LibSupport::Full)],
            lib_rr::Config::default(),
        ),
    }
}

fn libp2p_peer() -> Libp2pPeer {
    let mut swarm: Swarm<Behaviour> = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_quic()
        .with_behaviour(behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let peer_id = *swarm.local_peer_id();
    let control = swarm.behaviour().stream.new_control();
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Command>(8);
    let (est_tx, established) = mpsc::channel(16);
    let (closed_tx, closed) = mpsc::channel(16);
    let (ping_tx, pings) = mpsc::channel(256);
    let (id_tx, identified) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut listening: HashMap<libp2p::core::transport::ListenerId, oneshot::Sender<_>> =
            HashMap::new();
        let mut waiting: HashMap<lib_rr::OutboundRequestId, Reply<Greet>> = HashMap::new();
        loop {
            tokio::select! {
                cmd = cmd_rx.recv() => match cmd {
                    Some(Command::Listen(addr, tx)) => {
                        let id = swarm.listen_on(addr).expect("listen");
                        listening.insert(id, tx);
                    }
                    Some(Command::Dial(a)) => {
                        if let Err(e) = swarm.dial(a) { eprintln!("rust-libp2p dial failed: {e}"); }
                    }
                    Some(Command::Request(peer, req, reply)) => {
                        let id = swarm.behaviour_mut().greet.send_request(&peer, req);
                        waiting.insert(id, reply);
                    }
                    Some(Command::Disconnect(peer)) => { let _ = swarm.disconnect_peer_id(peer); }
                    None => return,
                },
                ev = swarm.select_next_some() => match ev {
                    SwarmEvent::NewListenAddr { listener_id, address } => {
                        if let Some(tx) = listening.remove(&listener_id) { let _ = tx.send(address); }
                    }
                    SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                        let _ = est_tx.try_send((peer_id, endpoint.get_remote_address().clone()));
                    }
                    SwarmEvent::ConnectionClosed { peer_id, .. } => {
                        let _ = closed_tx.try_send(peer_id);
                    }
                    SwarmEvent::OutgoingConnectionError { error, .. } => {
                        eprintln!("rust-libp2p dial failed: {error}");
                    }
                    SwarmEvent::IncomingConnectionError { error, .. } => {
                        eprintln!("rust-libp2p inbound connection failed: {error}");
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => {
                        let _ = ping_tx.try_send((e.peer, e.result.map_err(|f| f.to_string())));
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                        let _ = id_tx.try_send((peer_id, info));
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Greet(e)) => match e {
                        lib_rr::Event::Message { message: lib_rr::Message::Request { request, channel, .. }, .. } => {
                            let reply = Greet { name: format!("libp2p greets {}", request.name), times: request.times + 1 };
                            let _ = swarm.behaviour_mut().greet.send_response(channel, reply);
                        }
                        lib_rr::Event::Message { message: lib_rr::Message::Response { request_id, response }, .. } => {
                            if let Some(tx) = waiting.remove(&request_id) { let _ = tx.send(Ok(response)); }
                        }
                        lib_rr::Event::OutboundFailure { request_id, error, .. } => {
                            if let Some(tx) = waiting.remove(&request_id) { let _ = tx.send(Err(format!("{error:?}"))); }
                        }
                        _ => {}
                    },
                    _ => {}
                },
            }
        }
    });
    Libp2pPeer {
        peer_id,
        control,
        commands: cmd_tx,
        established,
        closed,
        pings,
        identified,
    }
}

impl Libp2pPeer {
    /// Listens on `addr`; returns the bound address (without `/p2p`) in missive's type.
    async fn listen_on(&self, addr: &str) -> Multiaddr {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Listen(addr.parse().expect("addr"), tx))
            .await;
        let lib_addr = rx.await.expect("listen address");
        lib_addr.to_string().parse().expect("same text form")
    }

    async fn dial(&self, addr: &Multiaddr) {
        self.command(Command::Dial(lib_addr(addr))).await;
    }

    async fn command(&self, c: Command) {
        self.commands.send(c).await.expect("swarm alive");
    }

    async fn request(&self, peer: libp2p::PeerId, greet: Greet) -> Result<Greet, String> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Request(peer, greet, tx)).await;
        rx.await.expect("swarm answers")
    }

    fn missive_peer(&self) -> PeerId {
        self.peer_id.to_string().parse().expect("same PeerId text")
    }

    /// Waits for a successful ping with `peer`.
    async fn pinged(&mut self, peer: libp2p::PeerId) {
        loop {
            let (from, r) = self.pings.recv().await.expect("ping events");
            if from == peer {
                r.expect("rust-libp2p pings missive");
                return;
            }
        }
    }

    /// Waits for identify's answer from `peer`.
    async fn identified(&mut self, peer: libp2p::PeerId) -> identify::Info {
        loop {
            let (from, info) = self.identified.recv().await.expect("identify events");
            if from == peer {
                return info;
            }
        }
    }

    /// Serves [`EXAMPLE_ECHO`] as the example does: write back what arrives as it arrives.
    fn serve_streaming_echo(&self) {
        let incoming = self
            .control
            .clone()
            .accept(LibProtocol::new(EXAMPLE_ECHO))
            .expect("register");
        tokio::spawn(serve_example_echo(incoming));
    }

    /// Serves [`ECHO`] with libp2p-stream: read to the end, write back, close.
    fn serve_echo(&self) {
        let mut incoming = self
            .control
            .clone()
            .accept(LibProtocol::new(ECHO))
            .expect("register");
        tokio::spawn(async move {
            while let Some((_, mut s)) = incoming.next().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    if s.read_to_end(&mut buf).await.is_ok() {
                        let _ = s.write_all(&buf).await;
                        let _ = s.close().await;
                    }
                });
            }
        });
    }
}

/// A missive node listening on QUIC and TCP that echoes [`ECHO`] and [`EXAMPLE_ECHO`] streams
/// and answers CBOR greetings. Returns the node, its QUIC address and its TCP address.
async fn missive_node() -> (Node, Multiaddr, Multiaddr) {
    let (node, quic, tcp, _) = missive_node_with_greeter().await;
    (node, quic, tcp)
}

type Greeter = rr::Behaviour<rr::cbor::Codec<Greet, Greet>>;

/// [`missive_node`] and its request-response handle for [`GREET`].
async fn missive_node_with_greeter() -> (Node, Multiaddr, Multiaddr, Greeter) {
    let node = Node::new(Keypair::generate(), NodeConfig::default())
        .await
        .expect("node");
    let quic = node
        .listen(QUIC.parse().expect("addr"))
        .await
        .expect("listen on quic");
    let tcp = node
        .listen(TCP.parse().expect("addr"))
        .await
        .expect("listen on tcp");
    let mut echo = node
        .stream_control()
        .accept(StreamProtocol::new(ECHO))
        .expect("register");
    tokio::spawn(async move {
        while let Some((_, mut s)) = echo.next().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if s.read_to_end(&mut buf).await.is_ok() {
                    let _ = s.write_all(&buf).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    // The example's echo: write back what arrives as it arrives, until the end.
    let mut example = node
        .stream_control()
        .accept(StreamProtocol::new(EXAMPLE_ECHO))
        .expect("register");
    tokio::spawn(async move {
        while let Some((_, mut s)) = example.next().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 100];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    let greet = Greeter::new(
        &node,
        [(GREET.to_owned(), ProtocolSupport::Full)],
        rr::Config::default(),
    )
    .expect("rr");
    greet
        .serve(|_, g: Greet| async move {
            Greet {
                name: format!("missive greets {}", g.name),
                times: g.times * 2,
            }
        })
        .expect("serve");
    (node, quic, tcp, greet)
}

fn lib_peer_id(p: &PeerId) -> libp2p::PeerId {
    p.to_string().parse().expect("libp2p parses our PeerId")
}

fn lib_addr(a: &Multiaddr) -> LibMultiaddr {
    a.to_string().parse().expect("libp2p parses our address")
}

fn is_quic(a: &Multiaddr) -> bool {
    a.to_string().starts_with("/ip4/127.0.0.1/udp/") && a.to_string().ends_with("/quic-v1")
}

/// 1000 random bytes, as the example sends.
fn random_bytes() -> Vec<u8> {
    let mut seed = std::collections::hash_map::RandomState::new().build_hasher();
    seed.write_u64(0x006d_6973_7369_7665);
    let mut x = seed.finish() | 1;
    (0..1000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Waits for the node's next established connection.
async fn established(events: &mut missive::p2p::Events) -> (PeerId, Multiaddr) {
    loop {
        if let Some(NodeEvent::ConnectionEstablished {
            peer, remote_addr, ..
        }) = events.next().await
        {
            return (peer, remote_addr);
        }
    }
}

#[tokio::test]
async fn quic_missive_dials_libp2p_with_matching_peer_ids_ping_and_identify() {
    tokio::time::timeout(DEADLINE, async {
        let mut lib = libp2p_peer();
        lib.serve_echo();
        let lib_quic = lib.listen_on(QUIC).await;
        let lib_tcp = lib.listen_on(TCP).await;
        assert!(is_quic(&lib_quic), "{lib_quic}");
        let (node, node_quic, node_tcp) = missive_node().await;
        let me = lib_peer_id(&node.peer_id());

        let peer = node
            .dial(lib_quic.clone().with(Protocol::P2p(lib.missive_peer())))
            .await
            .expect("missive dials libp2p over quic");
        assert_eq!(peer, lib.missive_peer());
        let (from, seen_at) = lib.established.recv().await.expect("established");
        assert_eq!(from, me);
        // missive dials from the UDP socket it listens on.
        assert_eq!(seen_at.to_string(), node_quic.to_string());

        node.ping(peer).await.expect("missive pings libp2p");
        lib.pinged(me).await;

        // rust-libp2p identifies missive on connect.
        let info = lib.identified(me).await;
        assert_eq!(info.agent_version, missive_identify::AGENT_VERSION);
        assert_eq!(info.public_key.to_peer_id(), me);
        let mut announced: Vec<String> = info.listen_addrs.iter().map(|a| a.to_string()).collect();
        announced.sort();
        let mut expected = vec![node_quic.to_string(), node_tcp.to_string()];
        expected.sort();
        assert_eq!(announced, expected);
        // missive saw rust-libp2p at the address it dialed.
        assert_eq!(info.observed_addr.to_string(), lib_quic.to_string());

        // missive identifies rust-libp2p.
        let info = missive_identify::request(&node.stream_control(), peer)
            .await
            .expect("missive identifies libp2p");
        assert_eq!(info.peer_id(), peer);
        assert_eq!(info.agent_version, LIBP2P_AGENT);
        let names: Vec<&str> = info.protocols.iter().map(|p| p.as_str()).collect();
        for p in [ECHO, GREET, "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"] {
            assert!(names.contains(&p), "{names:?}");
        }
        assert!(
            info.listen_addrs.contains(&lib_quic),
            "{:?}",
            info.listen_addrs
        );
        assert!(
            info.listen_addrs.contains(&lib_tcp),
            "{:?}",
            info.listen_addrs
        );
        assert_eq!(info.observed_addr, Some(node_quic));
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_libp2p_dials_missive_with_matching_peer_ids_ping_and_identify() {
    tokio::time::timeout(DEADLINE, async {
        let (node, node_quic, node_tcp) = missive_node().await;
        let mut events = node.events();
        let mut lib = libp2p_peer();
        let lib_quic = lib.listen_on(QUIC).await;
        let me = lib_peer_id(&node.peer_id());

        lib.dial(&node_quic.clone().with(Protocol::P2p(node.peer_id())))
            .await;
        let (from, seen_at) = lib.established.recv().await.expect("established");
        assert_eq!(from, me);
        let dialed = node_quic.clone().with(Protocol::P2p(node.peer_id()));
        assert_eq!(seen_at.to_string(), dialed.to_string());
        let (remote, remote_addr) = established(&mut events).await;
        assert_eq!(remote, lib.missive_peer());
        // rust-libp2p also dials from the socket it listens on.
        assert_eq!(remote_addr, lib_quic);

        lib.pinged(me).await;
        node.ping(remote)
            .await
            .expect("missive pings back over the same connection");

        let info = lib.identified(me).await;
        assert_eq!(info.public_key.to_peer_id(), me);
        let announced: Vec<String> = info.listen_addrs.iter().map(|a| a.to_string()).collect();
        assert!(announced.contains(&node_quic.to_string()), "{announced:?}");
        assert!(announced.contains(&node_tcp.to_string()), "{announced:?}");
        assert_eq!(info.observed_addr.to_string(), lib_quic.to_string());

        let info = missive_identify::request(&node.stream_control(), remote)
            .await
            .expect("missive identifies libp2p");
        assert_eq!(info.peer_id(), remote);
        assert_eq!(info.listen_addrs, vec![lib_quic]);
        // rust-libp2p tells missive the address it dialed.
        assert_eq!(info.observed_addr, Some(node_quic));
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_stream_echo_with_libp2p_stream_both_ways() {
    tokio::time::timeout(DEADLINE, async {
        let lib = libp2p_peer();
        lib.serve_echo();
        let lib_quic = lib.listen_on(QUIC).await;
        let (node, node_quic, _) = missive_node().await;

        // missive opens, rust-libp2p echoes.
        let peer = node
            .dial(lib_quic.with(Protocol::P2p(lib.missive_peer())))
            .await
            .expect("dial");
        let msg: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut s = node
            .stream_control()
            .open_stream(peer, StreamProtocol::new(ECHO))
            .await
            .expect("open");
        s.write_all(&msg).await.expect("write");
        s.shutdown().await.expect("fin");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read");
        assert!(back == msg, "missive's echo through libp2p differs");

        // rust-libp2p opens, missive echoes, on the same connection.
        let me = lib_peer_id(&node.peer_id());
        let mut control = lib.control.clone();
        let msg: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        let mut s = control
            .open_stream(me, LibProtocol::new(ECHO))
            .await
            .expect("libp2p opens a stream to missive");
        s.write_all(&msg).await.expect("write");
        s.close().await.expect("fin");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read");
        assert!(back == msg, "libp2p's echo through missive differs");
        assert!(node.listen_addrs().contains(&node_quic));
    })
    .await
    .expect("in time");
}

/// The peer of rust-libp2p's `examples/stream`: a QUIC-only swarm whose only behaviour is
/// libp2p-stream, echoing `/echo` as it reads. With an address (the example's argument) it
/// dials it and sends one echo of 1000 random bytes, with its write side closed, and reports
/// whether the echo came back the same.
struct ExamplePeer {
    peer_id: libp2p::PeerId,
    listen_addr: Multiaddr,
    sent: Option<oneshot::Receiver<Result<(), String>>>,
}

async fn example_peer(dial: Option<Multiaddr>) -> ExamplePeer {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(10)))
        .build();
    swarm
        .listen_on(QUIC.parse().expect("addr"))
        .expect("listen");
    let peer_id = *swarm.local_peer_id();
    let incoming = swarm
        .behaviour()
        .new_control()
        .accept(LibProtocol::new(EXAMPLE_ECHO))
        .expect("register");
    tokio::spawn(serve_example_echo(incoming));
    let sent = match dial {
        Some(address) => {
            let Some(missive::p2p::Protocol::P2p(peer)) = address.iter().last().cloned() else {
                panic!("the address does not end in /p2p");
            };
            swarm.dial(lib_addr(&address)).expect("dial");
            let (tx, rx) = oneshot::channel();
            tokio::spawn(connection_handler(
                lib_peer_id(&peer),
                swarm.behaviour().new_control(),
                tx,
            ));
            Some(rx)
        }
        None => None,
    };
    let (addr_tx, addr_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut addr_tx = Some(addr_tx);
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => {
                    if let Some(tx) = addr_tx.take() {
                        let _ = tx.send(address);
                    }
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    eprintln!("example dial failed: {error}");
                }
                _ => {}
            }
        }
    });
    let listen_addr = addr_rx.await.expect("listen address");
    ExamplePeer {
        peer_id,
        listen_addr: listen_addr.to_string().parse().expect("same text form"),
        sent,
    }
}

/// The example's `echo` on every inbound stream: write back what arrives, until the end.
async fn serve_example_echo(mut incoming: libp2p_stream::IncomingStreams) {
    while let Some((_, mut stream)) = incoming.next().await {
        tokio::spawn(async move {
            let mut buf = [0u8; 100];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = stream.close().await;
        });
    }
}

/// The example's connection handler: until the peer takes an echo stream, try again.
async fn connection_handler(
    peer: libp2p::PeerId,
    mut control: libp2p_stream::Control,
    done: oneshot::Sender<Result<(), String>>,
) {
    let mut last = String::from("no attempt");
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stream = match control
            .open_stream(peer, LibProtocol::new(EXAMPLE_ECHO))
            .await
        {
            Ok(stream) => stream,
            Err(e @ libp2p_stream::OpenStreamError::UnsupportedProtocol(_)) => {
                let _ = done.send(Err(e.to_string()));
                return;
            }
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let _ = done.send(send(stream).await.map_err(|e| e.to_string()));
        return;
    }
    let _ = done.send(Err(last));
}

/// The example's `send`: 1000 random bytes, the write side closed, the echo compared.
async fn send(mut stream: libp2p::Stream) -> std::io::Result<()> {
    let bytes = random_bytes();
    stream.write_all(&bytes).await?;
    stream.close().await?;
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await?;
    if back != bytes {
        return Err(std::io::Error::other("incorrect echo"));
    }
    Ok(())
}

#[tokio::test]
async fn quic_example_stream_peer_dials_missive_and_echoes_1000_random_bytes() {
    tokio::time::timeout(DEADLINE, async {
        let (node, node_quic, _) = missive_node().await;
        let mut events = node.events();
        // As `cargo run --bin stream -- <missive's address>`.
        let mut example = example_peer(Some(node_quic.with(Protocol::P2p(node.peer_id())))).await;
        let (remote, _) = established(&mut events).await;
        assert_eq!(remote.to_string(), example.peer_id.to_string());
        example
            .sent
            .take()
            .expect("a dialing example")
            .await
            .expect("the handler reports")
            .expect("missive echoes the example's bytes");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_missive_dials_the_example_stream_peer_and_echoes_1000_random_bytes() {
    tokio::time::timeout(DEADLINE, async {
        // As `cargo run --bin stream`, which prints its listen address.
        let example = example_peer(None).await;
        assert!(is_quic(&example.listen_addr), "{}", example.listen_addr);
        let node = Node::new(Keypair::generate(), NodeConfig::default())
            .await
            .expect("node");
        let peer = node
            .dial(example.listen_addr.clone().with(Protocol::P2p(
                example.peer_id.to_string().parse().expect("id"),
            )))
            .await
            .expect("missive dials the example");
        assert_eq!(peer.to_string(), example.peer_id.to_string());
        let bytes = random_bytes();
        let mut s = node
            .stream_control()
            .open_stream(peer, StreamProtocol::new(EXAMPLE_ECHO))
            .await
            .expect("open /echo");
        s.write_all(&bytes).await.expect("write");
        s.shutdown().await.expect("close the write side");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read the echo");
        assert_eq!(back, bytes);
        // The example peer does not speak ping; the connection stays usable for streams.
        let err = node
            .stream_control()
            .open_stream(peer, StreamProtocol::new(ECHO))
            .await
            .expect_err("the example speaks only /echo");
        assert!(
            matches!(err, OpenStreamError::UnsupportedProtocol(_)),
            "{err}"
        );
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_request_response_cbor_both_ways() {
    tokio::time::timeout(DEADLINE, async {
        let lib = libp2p_peer();
        let lib_quic = lib.listen_on(QUIC).await;
        let (node, node_quic, _, client) = missive_node_with_greeter().await;
        let resp = client
            .request_with_addresses(
                lib.missive_peer(),
                Greet {
                    name: "ada".into(),
                    times: 1,
                },
                std::slice::from_ref(&lib_quic),
            )
            .await
            .expect("libp2p answers missive over quic");
        assert_eq!(
            resp,
            Greet {
                name: "libp2p greets ada".into(),
                times: 2
            }
        );

        // A second libp2p peer dials missive for its request.
        let other = libp2p_peer();
        let me = lib_peer_id(&node.peer_id());
        other
            .dial(&node_quic.with(Protocol::P2p(node.peer_id())))
            .await;
        let resp = other
            .request(
                me,
                Greet {
                    name: "bob".into(),
                    times: 3,
                },
            )
            .await
            .expect("missive answers libp2p over quic");
        assert_eq!(
            resp,
            Greet {
                name: "missive greets bob".into(),
                times: 6
            }
        );
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_unsupported_protocols_are_refused_both_ways() {
    tokio::time::timeout(DEADLINE, async {
        let lib = libp2p_peer();
        lib.serve_echo();
        let lib_quic = lib.listen_on(QUIC).await;
        let (node, _, _) = missive_node().await;
        let peer = node
            .dial(lib_quic.with(Protocol::P2p(lib.missive_peer())))
            .await
            .expect("dial");

        let err = node
            .stream_control()
            .open_stream(peer, StreamProtocol::new(MISSING))
            .await
            .expect_err("libp2p refuses an unknown protocol");
        assert!(
            matches!(err, OpenStreamError::UnsupportedProtocol(_)),
            "{err}"
        );

        let me = lib_peer_id(&node.peer_id());
        let err = lib
            .control
            .clone()
            .open_stream(me, LibProtocol::new(MISSING))
            .await
            .expect_err("missive refuses an unknown protocol");
        assert!(
            matches!(err, libp2p_stream::OpenStreamError::UnsupportedProtocol(_)),
            "{err}"
        );

        // The connection outlives both refusals.
        node.ping(peer).await.expect("ping after the refusals");
        let mut s = node
            .stream_control()
            .open_stream(peer, StreamProtocol::new(ECHO))
            .await
            .expect("open");
        s.write_all(b"still here").await.expect("write");
        s.shutdown().await.expect("fin");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"still here");

        // The same for request-response: a protocol rust-libp2p does not serve ...
        let unknown = rr::Behaviour::<rr::cbor::Codec<String, String>>::new(
            &node,
            [("/unknown/1".to_owned(), ProtocolSupport::Full)],
            rr::Config::default(),
        )
        .expect("rr");
        let err = unknown
            .request(peer, "x".into())
            .await
            .expect_err("libp2p refuses");
        assert!(
            matches!(err, rr::OutboundFailure::UnsupportedProtocols),
            "{err:?}"
        );
        // ... and a request of rust-libp2p's that a node without that protocol refuses.
        let bare = Node::new(Keypair::generate(), NodeConfig::default())
            .await
            .expect("node");
        let bare_quic = bare
            .listen(QUIC.parse().expect("addr"))
            .await
            .expect("listen");
        lib.dial(&bare_quic.with(Protocol::P2p(bare.peer_id())))
            .await;
        let err = lib
            .request(
                lib_peer_id(&bare.peer_id()),
                Greet {
                    name: "x".into(),
                    times: 0,
                },
            )
            .await
            .expect_err("missive refuses");
        assert!(err.contains("UnsupportedProtocols"), "{err}");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_many_concurrent_streams_both_ways_on_one_connection() {
    // The 12 MB echo takes seconds in a debug build, nearly all of it in rust-libp2p (its own
    // QUIC echo of the same size, libp2p to libp2p, is twice as slow as this one).
    tokio::time::timeout(DEADLINE * 2, async {
        let mut lib = libp2p_peer();
        lib.serve_echo();
        lib.serve_streaming_echo();
        let lib_quic = lib.listen_on(QUIC).await;
        let (node, _, _) = missive_node().await;
        let peer = node
            .dial(lib_quic.with(Protocol::P2p(lib.missive_peer())))
            .await
            .expect("dial");
        let me = lib_peer_id(&node.peer_id());
        // missive's dial is done before rust-libp2p has the connection; wait for it there.
        assert_eq!(lib.established.recv().await.map(|(p, _)| p), Some(me));
        // libp2p-stream hands inbound streams over a channel without a buffer and drops the
        // ones that find it full, so missive opens its streams one after another, each
        // confirmed by its first echoed byte, and then uses them all at once.
        let mut held = Vec::new();
        for _ in 0..24u32 {
            let mut s = node
                .stream_control()
                .open_stream(peer, StreamProtocol::new(EXAMPLE_ECHO))
                .await
                .expect("open");
            s.write_all(b"i").await.expect("write");
            let mut one = [0u8; 1];
            s.read_exact(&mut one).await.expect("first echoed byte");
            held.push(s);
        }
        let mut tasks = Vec::new();
        for (i, s) in (0u32..).zip(held) {
            tasks.push(tokio::spawn(async move {
                let msg: Vec<u8> = (0..40_000 + i).map(|j| (j * 7 + i) as u8).collect();
                let (mut r, mut w) = tokio::io::split(s);
                let (wrote, back) = tokio::join!(
                    async {
                        w.write_all(&msg).await?;
                        w.shutdown().await
                    },
                    async {
                        let mut back = Vec::new();
                        r.read_to_end(&mut back).await.map(|_| back)
                    }
                );
                wrote.expect("write");
                assert!(back.expect("read") == msg, "missive stream {i} differs");
            }));
        }
        for i in 0..24u32 {
            let mut control = lib.control.clone();
            tasks.push(tokio::spawn(async move {
                let msg: Vec<u8> = (0..30_000 + i).map(|j| (j * 11 + i) as u8).collect();
                let mut s = control
                    .open_stream(me, LibProtocol::new(ECHO))
                    .await
                    .expect("open");
                s.write_all(&msg).await.expect("write");
                s.close().await.expect("fin");
                let mut back = Vec::new();
                s.read_to_end(&mut back).await.expect("read");
                assert!(back == msg, "libp2p stream {i} differs");
            }));
        }
        for t in tasks {
            t.await.expect("stream task");
        }
        // A transfer past both sides' stream windows (10 MB) is paced, not lost.
        let big: Vec<u8> = (0..12_000_000u32).map(|i| (i % 249) as u8).collect();
        let mut s = node
            .stream_control()
            .open_stream(peer, StreamProtocol::new(ECHO))
            .await
            .expect("open");
        let (mut r, mut w) = tokio::io::split(&mut s);
        let (wrote, back) = tokio::join!(
            async {
                w.write_all(&big).await?;
                w.shutdown().await
            },
            async {
                let mut back = Vec::new();
                r.read_to_end(&mut back).await.map(|_| back)
            }
        );
        wrote.expect("write");
        assert!(back.expect("read") == big, "the large echo differs");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn quic_a_reset_stream_and_closed_connections_are_seen_on_the_other_side() {
    tokio::time::timeout(DEADLINE, async {
        let mut lib = libp2p_peer();
        let lib_quic = lib.listen_on(QUIC).await;
        let mut incoming = lib
            .control
            .clone()
            .accept(LibProtocol::new(ECHO))
            .expect("register");
        let (node, _, _) = missive_node().await;
        let mut events = node.events();
        let target = lib_quic.with(Protocol::P2p(lib.missive_peer()));
        let peer = node.dial(target.clone()).await.expect("dial");
        let me = lib_peer_id(&node.peer_id());
        assert_eq!(lib.established.recv().await.map(|(p, _)| p), Some(me));

        // A stream missive drops before finishing it is an error to rust-libp2p, not an end.
        let mut s = node
            .stream_control()
            .open_stream(peer, StreamProtocol::new(ECHO))
            .await
            .expect("open");
        s.write_all(b"half of a message").await.expect("write");
        s.flush().await.expect("flush");
        let (_, mut theirs) = incoming.next().await.expect("inbound");
        let mut first = [0u8; 4];
        theirs.read_exact(&mut first).await.expect("first bytes");
        drop(s);
        let mut rest = Vec::new();
        let end = theirs.read_to_end(&mut rest).await;
        assert!(
            end.is_err(),
            "read {} more bytes, then a clean end",
            rest.len()
        );

        // missive closes the connection: rust-libp2p sees it close.
        node.close_peer(&peer);
        assert_eq!(lib.closed.recv().await, Some(me));
        // It dials again, and now rust-libp2p closes: missive sees a remote close.
        let again = node.dial(target).await.expect("dial again");
        assert_eq!(again, peer);
        // Its dial is done before rust-libp2p has the connection; wait for it there.
        assert_eq!(lib.established.recv().await.map(|(p, _)| p), Some(me));
        lib.command(Command::Disconnect(me)).await;
        let cause = loop {
            if let Some(NodeEvent::ConnectionClosed { peer: p, cause, .. }) = events.next().await
                && p == peer
                && !matches!(cause, missive::p2p::CloseCause::LocalClose)
            {
                break cause;
            }
        };
        assert!(
            matches!(cause, missive::p2p::CloseCause::RemoteClosed),
            "{cause:?}"
        );
        assert!(!node.is_connected(&peer));
    })
    .await
    .expect("in time");
}
