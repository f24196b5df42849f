//! missive's node against rust-libp2p 0.57 over TCP + libp2p-tls + yamux, both ways: PeerIds,
//! ping, identify, a libp2p-stream echo, a CBOR request-response exchange and the refusal of
//! protocols the other side does not speak. The libp2p peer speaks
//! only `/tls/1.0.0`, so a missive dialer with the default order has to fall back from `/noise`.

use std::collections::HashMap;
use std::time::Duration;

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::request_response::{self as lib_rr, ProtocolSupport as LibSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr as LibMultiaddr, StreamProtocol as LibProtocol, Swarm, identify, ping, tcp, tls,
    yamux,
};
use missive::p2p::{Keypair, Multiaddr, Node, NodeConfig, NodeEvent, PeerId, Protocol, Security};
use missive::protocols::identify as missive_identify;
use missive::request_response::{self as rr, ProtocolSupport, cbor};
use missive::stream::{OpenStreamError, StreamProtocol};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};

const ECHO: &str = "/echo/1.0.0";
const GREET: &str = "/greet/1";
const MISSING: &str = "/not-served/1.0.0";
const LIBP2P_AGENT: &str = "rust-libp2p-tls-interop/0.57";
const DEADLINE: Duration = Duration::from_secs(30);

#[derive(NetworkBehaviour)]
struct Behaviour {
    ping: ping::Behaviour,
    identify: identify::Behaviour,
    stream: libp2p_stream::Behaviour,
    greet: lib_rr::cbor::Behaviour<String, String>,
}

type Reply = oneshot::Sender<Result<String, String>>;

enum Command {
    Listen(oneshot::Sender<LibMultiaddr>),
    Dial(LibMultiaddr),
    Request(libp2p::PeerId, String, Reply),
}

/// A TLS-only rust-libp2p swarm on its own task. It echoes streams, answers `hello <name>` to
/// every request and reports its connections and pings.
struct Libp2pPeer {
    peer_id: libp2p::PeerId,
    control: libp2p_stream::Control,
    commands: mpsc::Sender<Command>,
    established: mpsc::Receiver<libp2p::PeerId>,
    pings: mpsc::Receiver<(libp2p::PeerId, bool)>,
    identified: mpsc::Receiver<(libp2p::PeerId, identify::Info)>,
}

fn libp2p_peer() -> Libp2pPeer {
    let mut swarm: Swarm<Behaviour> = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            tls::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| Behaviour {
            ping: ping::Behaviour::new(
                ping::Config::new().with_interval(Duration::from_millis(100)),
            ),
            identify: identify::Behaviour::new(
                identify::Config::new("ipfs/0.1.0".to_owned(), key.public())
                    .with_agent_version(LIBP2P_AGENT.to_owned()),
            ),
            stream: libp2p_stream::Behaviour::new(),
            greet: lib_rr::cbor::Behaviour::new(
                [(LibProtocol::new(GREET), LibSupport::Full)],
                lib_rr::Config::default(),
            ),
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let peer_id = *swarm.local_peer_id();
    let control = swarm.behaviour().stream.new_control();
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Command>(8);
    let (est_tx, established) = mpsc::channel(16);
    let (ping_tx, pings) = mpsc::channel(64);
    let (identified_tx, identified) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut listen: Option<oneshot::Sender<LibMultiaddr>> = None;
        let mut waiting: HashMap<lib_rr::OutboundRequestId, Reply> = HashMap::new();
        loop {
            tokio::select! {
                cmd = cmd_rx.recv() => match cmd {
                    Some(Command::Listen(tx)) => {
                        swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr")).expect("listen");
                        listen = Some(tx);
                    }
                    Some(Command::Dial(a)) => { let _ = swarm.dial(a); }
                    Some(Command::Request(peer, req, reply)) => {
                        let id = swarm.behaviour_mut().greet.send_request(&peer, req);
                        waiting.insert(id, reply);
                    }
                    None => return,
                },
                ev = swarm.select_next_some() => match ev {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        if let Some(tx) = listen.take() { let _ = tx.send(address); }
                    }
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                        let _ = est_tx.try_send(peer_id);
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => {
                        let _ = ping_tx.try_send((e.peer, e.result.is_ok()));
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                        let _ = identified_tx.try_send((peer_id, info));
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Greet(e)) => match e {
                        lib_rr::Event::Message { message: lib_rr::Message::Request { request, channel, .. }, .. } => {
                            let _ = swarm.behaviour_mut().greet.send_response(channel, format!("hello {request}"));
                        }
                        lib_rr::Event::Message { message: lib_rr::Message::Response { request_id, response }, .. } => {
                            if let Some(tx) = waiting.remove(&request_id) { let _ = tx.send(Ok(response)); }
                        }
                        lib_rr::Event::OutboundFailure { request_id, error, .. } => {
                            if let Some(tx) = waiting.remove(&request_id) { let _ = tx.send(Err(error.to_string())); }
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
        pings,
        identified,
    }
}

impl Libp2pPeer {
    async fn listen(&self) -> Multiaddr {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Listen(tx))
            .await
            .expect("swarm alive");
        let lib_addr = rx.await.expect("listen address");
        format!("{lib_addr}/p2p/{}", self.peer_id)
            .parse()
            .expect("same text form")
    }

    async fn command(&self, c: Command) {
        self.commands.send(c).await.expect("swarm alive");
    }

    async fn request(&self, peer: libp2p::PeerId, name: &str) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Request(peer, name.to_owned(), tx))
            .await;
        rx.await.expect("swarm alive")
    }

    /// Waits for a successful ping with `peer`.
    async fn pinged(&mut self, peer: libp2p::PeerId) {
        loop {
            let (from, ok) = self.pings.recv().await.expect("ping events");
            if from == peer && ok {
                return;
            }
        }
    }

    /// Waits for what `peer` said of itself in identify.
    async fn identified(&mut self, peer: libp2p::PeerId) -> identify::Info {
        loop {
            let (from, info) = self.identified.recv().await.expect("identify events");
            if from == peer {
                return info;
            }
        }
    }

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

/// A missive node that echoes streams and answers `hello <name>` on `/greet/1`, and its
/// request-response handle.
async fn missive_node(config: NodeConfig) -> (Node, rr::Behaviour<cbor::Codec<String, String>>) {
    let node = Node::new(Keypair::generate(), config).await.expect("node");
    let mut incoming = node
        .stream_control()
        .accept(StreamProtocol::new(ECHO))
        .expect("register");
    tokio::spawn(async move {
        while let Some((_, mut s)) = incoming.next().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if s.read_to_end(&mut buf).await.is_ok() {
                    let _ = s.write_all(&buf).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    let greet = rr::Behaviour::<cbor::Codec<String, String>>::new(
        &node,
        [(GREET.to_owned(), ProtocolSupport::Full)],
        rr::Config::default(),
    )
    .expect("rr");
    let server = greet.clone();
    server
        .serve(|_, name: String| async move { format!("hello {name}") })
        .expect("serve");
    (node, greet)
}

fn lib_peer_id(p: &PeerId) -> libp2p::PeerId {
    p.to_string().parse().expect("libp2p parses our PeerId")
}

#[tokio::test]
async fn tls_missive_dials_libp2p_with_matching_peer_ids_ping_echo_and_request() {
    tokio::time::timeout(DEADLINE, async {
        let mut lib = libp2p_peer();
        lib.serve_echo();
        let addr = lib.listen().await;
        // The default order proposes /noise first; the libp2p peer refuses it.
        let (node, greet) = missive_node(NodeConfig::default()).await;
        let peer = node
            .dial(addr)
            .await
            .expect("missive dials libp2p over tls");
        assert_eq!(peer.to_string(), lib.peer_id.to_string());
        assert_eq!(
            lib.established.recv().await,
            Some(lib_peer_id(&node.peer_id()))
        );

        node.ping(peer).await.expect("missive pings libp2p");
        lib.pinged(lib_peer_id(&node.peer_id())).await;

        let mut s = node
            .stream_control()
            .open_stream(peer, StreamProtocol::new(ECHO))
            .await
            .expect("open");
        let msg: Vec<u8> = (0..200_000).map(|i| (i % 253) as u8).collect();
        s.write_all(&msg).await.expect("write");
        s.shutdown().await.expect("fin");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, msg);

        let answer = greet.request(peer, "missive".to_owned()).await;
        assert_eq!(answer.expect("libp2p answers"), "hello missive");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn tls_libp2p_dials_missive_with_matching_peer_ids_ping_echo_and_request() {
    tokio::time::timeout(DEADLINE, async {
        let (node, _greet) =
            missive_node(NodeConfig::default().with_security(&[Security::Tls])).await;
        let mut node_events = node.events();
        let addr = node
            .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .await
            .expect("listen");
        let mut lib = libp2p_peer();
        let target = addr.with(Protocol::P2p(node.peer_id()));
        lib.command(Command::Dial(
            target.to_string().parse().expect("libp2p parses it"),
        ))
        .await;
        let missive_id = lib_peer_id(&node.peer_id());
        assert_eq!(lib.established.recv().await, Some(missive_id));
        let remote = loop {
            if let Some(NodeEvent::ConnectionEstablished { peer, .. }) = node_events.next().await {
                break peer;
            }
        };
        assert_eq!(remote.to_string(), lib.peer_id.to_string());

        lib.pinged(missive_id).await;
        node.ping(remote).await.expect("missive pings back");

        let mut s = lib
            .control
            .clone()
            .open_stream(missive_id, LibProtocol::new(ECHO))
            .await
            .expect("libp2p opens a stream to missive");
        let msg = vec![7u8; 150_000];
        s.write_all(&msg).await.expect("write");
        s.close().await.expect("fin");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, msg);

        let answer = lib.request(missive_id, "libp2p").await;
        assert_eq!(answer.expect("missive answers"), "hello libp2p");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn tls_identify_works_both_ways_with_the_addresses_each_side_saw() {
    tokio::time::timeout(DEADLINE, async {
        let mut lib = libp2p_peer();
        lib.serve_echo();
        let lib_addr = lib.listen().await;
        let (node, _greet) =
            missive_node(NodeConfig::default().with_security(&[Security::Tls])).await;
        let node_addr = node
            .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .await
            .expect("listen");
        let me = lib_peer_id(&node.peer_id());
        let peer = node.dial(lib_addr.clone()).await.expect("dial over tls");

        // rust-libp2p identifies missive on connect.
        let info = lib.identified(me).await;
        assert_eq!(info.agent_version, missive_identify::AGENT_VERSION);
        assert_eq!(info.public_key.to_peer_id(), me);
        let announced: Vec<String> = info.listen_addrs.iter().map(|a| a.to_string()).collect();
        assert_eq!(announced, vec![node_addr.to_string()]);
        let names: Vec<String> = info.protocols.iter().map(|p| p.to_string()).collect();
        for p in [ECHO, GREET, "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"] {
            assert!(names.iter().any(|n| n == p), "{names:?}");
        }
        // missive told rust-libp2p the address it reached it at.
        let text = lib_addr.to_string();
        let without_peer: Multiaddr = text
            .split("/p2p/")
            .next()
            .expect("a listen address")
            .parse()
            .expect("an address");
        assert_eq!(info.observed_addr.to_string(), without_peer.to_string());

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
            info.listen_addrs.contains(&without_peer),
            "{:?}",
            info.listen_addrs
        );
        // rust-libp2p saw missive's dialing socket: loopback, some TCP port.
        let observed = info.observed_addr.expect("libp2p reports what it saw");
        assert!(
            observed.to_string().starts_with("/ip4/127.0.0.1/tcp/"),
            "{observed}"
        );
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn tls_unsupported_protocols_are_refused_both_ways_and_the_connection_stays() {
    tokio::time::timeout(DEADLINE, async {
        let lib = libp2p_peer();
        lib.serve_echo();
        let lib_addr = lib.listen().await;
        let (node, _greet) = missive_node(NodeConfig::default()).await;
        let peer = node.dial(lib_addr).await.expect("dial");

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

        // A request-response protocol rust-libp2p does not serve.
        let unknown = rr::Behaviour::<cbor::Codec<String, String>>::new(
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

        // The connection outlives the refusals.
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
    })
    .await
    .expect("in time");
}
