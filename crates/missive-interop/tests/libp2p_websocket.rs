//! missive's node against rust-libp2p 0.57's WebSocket transport (libp2p-websocket over its TCP
//! transport, with Noise and yamux, as `SwarmBuilder::with_websocket` builds it without DNS), both
//! ways over `/ip4/127.0.0.1/tcp/<port>/ws`: PeerIds, ping,
//! identify with the ws listen and observed addresses, libp2p-stream echoes (10 B to 1 MiB, past
//! the WebSocket frame size) and a JSON request-response exchange; and `wss` both ways (each
//! side's listener with a self-signed certificate the other trusts, dialed by `/tls/sni/localhost/ws`).

use std::collections::HashMap;
use std::time::Duration;

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Transport as _;
use libp2p::core::upgrade::Version;
use libp2p::request_response::{self as lib_rr, ProtocolSupport as LibSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr as LibMultiaddr, StreamProtocol as LibProtocol, Swarm, identify, noise, ping, yamux,
};
use libp2p_websocket as websocket;
use missive::p2p::{Keypair, Multiaddr, Node, NodeConfig, NodeEvent, PeerId, Protocol};
use missive::protocols::identify as missive_identify;
use missive::request_response::{self as rr, ProtocolSupport};
use missive::stream::StreamProtocol;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};

const ECHO: &str = "/echo/1.0.0";
const GREET: &str = "/greet/json/1";
const WS: &str = "/ip4/127.0.0.1/tcp/0/ws";
const DEADLINE: Duration = Duration::from_secs(30);
const LIBP2P_AGENT: &str = "interop-websocket-peer/1.0";
/// Echo sizes: one tiny, one a few frames, one past the 1 MiB message limit in total.
const SIZES: [usize; 4] = [10, 1024, 100 * 1024, 1024 * 1024];

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
    greet: lib_rr::json::Behaviour<Greet, Greet>,
}

type Reply<T> = oneshot::Sender<Result<T, String>>;

enum Command {
    Listen(LibMultiaddr, oneshot::Sender<LibMultiaddr>),
    Dial(LibMultiaddr),
    Request(libp2p::PeerId, Greet, Reply<Greet>),
}

/// A rust-libp2p swarm whose only transport is WebSocket (over TCP, with Noise and yamux), on
/// its own task: it echoes libp2p-stream streams on [`ECHO`], answers every JSON greeting and
/// reports its connections, pings and identify results.
struct Libp2pPeer {
    peer_id: libp2p::PeerId,
    control: libp2p_stream::Control,
    commands: mpsc::Sender<Command>,
    established: mpsc::Receiver<(libp2p::PeerId, LibMultiaddr)>,
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
        greet: lib_rr::json::Behaviour::new(
            [(LibProtocol::new(GREET), LibSupport::Full)],
            lib_rr::Config::default(),
        ),
    }
}

/// A swarm with rust-libp2p's WebSocket transport only (plain `ws` listen and dial).
fn websocket_swarm() -> Swarm<Behaviour> {
    swarm_over(None)
}

/// A swarm that dials `wss` trusting `cert_der`.
fn wss_client_swarm(cert_der: Vec<u8>) -> Swarm<Behaviour> {
    let mut tls = websocket::tls::Config::builder();
    tls.add_trust(&websocket::tls::Certificate::new(cert_der))
        .expect("trust");
    swarm_over(Some(tls.finish()))
}

/// A swarm that listens on `wss` with a self-signed certificate for `localhost`.
fn wss_swarm(cert_der: Vec<u8>, key_der: Vec<u8>) -> Swarm<Behaviour> {
    let tls = websocket::tls::Config::new(
        websocket::tls::PrivateKey::new(key_der),
        vec![websocket::tls::Certificate::new(cert_der)],
    )
    .expect("tls config");
    swarm_over(Some(tls))
}

fn swarm_over(tls: Option<websocket::tls::Config>) -> Swarm<Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            let mut ws = websocket::Config::new(libp2p::tcp::tokio::Transport::new(
                libp2p::tcp::Config::default(),
            ));
            if let Some(tls) = tls {
                ws.set_tls_config(tls);
            }
            ws.upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(key).expect("noise"))
                .multiplex(yamux::Config::default())
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        })
        .expect("transport")
        .with_behaviour(behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

fn run(mut swarm: Swarm<Behaviour>) -> Libp2pPeer {
    let peer_id = *swarm.local_peer_id();
    let control = swarm.behaviour().stream.new_control();
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Command>(8);
    let (est_tx, established) = mpsc::channel(16);
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
                    None => return,
                },
                ev = swarm.select_next_some() => match ev {
                    SwarmEvent::NewListenAddr { listener_id, address } => {
                        if let Some(tx) = listening.remove(&listener_id) { let _ = tx.send(address); }
                    }
                    SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                        let _ = est_tx.try_send((peer_id, endpoint.get_remote_address().clone()));
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
    let peer = Libp2pPeer {
        peer_id,
        control,
        commands: cmd_tx,
        established,
        pings,
        identified,
    };
    peer.serve_echo();
    peer
}

impl Libp2pPeer {
    async fn listen_on(&self, addr: &str) -> Multiaddr {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Listen(addr.parse().expect("addr"), tx))
            .await;
        let lib_addr = rx.await.expect("listen address");
        lib_addr.to_string().parse().expect("same text form")
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

    async fn pinged(&mut self, peer: libp2p::PeerId) {
        loop {
            let (from, r) = self.pings.recv().await.expect("ping events");
            if from == peer {
                r.expect("rust-libp2p pings missive");
                return;
            }
        }
    }

    async fn identified(&mut self, peer: libp2p::PeerId) -> identify::Info {
        loop {
            let (from, info) = self.identified.recv().await.expect("identify events");
            if from == peer {
                return info;
            }
        }
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

    /// Opens an [`ECHO`] stream to `peer`, sends `msg`, returns what came back.
    async fn echo(&self, peer: libp2p::PeerId, msg: &[u8]) -> Vec<u8> {
        let s = self
            .control
            .clone()
            .open_stream(peer, LibProtocol::new(ECHO))
            .await
            .expect("rust-libp2p opens a stream to missive");
        let (mut r, mut w) = s.split();
        let write = async {
            w.write_all(msg).await.expect("write");
            w.close().await.expect("close");
        };
        let mut back = Vec::new();
        let read = r.read_to_end(&mut back);
        let ((), read) = tokio::join!(write, read);
        read.expect("read");
        back
    }
}

type Greeter = rr::Behaviour<rr::json::Codec<Greet, Greet>>;

/// A missive node listening on ws that echoes [`ECHO`] and answers JSON greetings.
async fn missive_node(config: NodeConfig) -> (Node, Multiaddr, Greeter) {
    let node = Node::new(Keypair::generate(), config).await.expect("node");
    let ws = node
        .listen(WS.parse().expect("addr"))
        .await
        .expect("listen on ws");
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
    (node, ws, greet)
}

fn lib_peer_id(p: &PeerId) -> libp2p::PeerId {
    p.to_string().parse().expect("libp2p parses our PeerId")
}

fn lib_addr(a: &Multiaddr) -> LibMultiaddr {
    a.to_string().parse().expect("libp2p parses our address")
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// missive opens an [`ECHO`] stream to `peer` and checks what comes back.
async fn missive_echo(node: &Node, peer: PeerId, msg: &[u8]) {
    let mut s = node
        .stream_control()
        .open_stream(peer, StreamProtocol::new(ECHO))
        .await
        .expect("missive opens a stream to rust-libp2p");
    let (mut r, mut w) = tokio::io::split(&mut s);
    let write = async {
        w.write_all(msg).await.expect("write");
        w.shutdown().await.expect("shutdown");
    };
    let mut back = Vec::new();
    let read = r.read_to_end(&mut back);
    let ((), read) = tokio::join!(write, read);
    read.expect("read");
    assert!(back == msg, "echo of {} bytes differs", msg.len());
}

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

fn is_ws(a: &str) -> bool {
    a.starts_with("/ip4/127.0.0.1/tcp/") && a.ends_with("/ws")
}

#[tokio::test]
async fn websocket_missive_dials_rust_libp2p_ping_identify_echo_and_json_request_response() {
    tokio::time::timeout(DEADLINE, async {
        let mut lib = run(websocket_swarm());
        let lib_ws = lib.listen_on(WS).await;
        assert!(is_ws(&lib_ws.to_string()), "{lib_ws}");
        let (node, node_ws, greet) = missive_node(NodeConfig::default()).await;
        let me = lib_peer_id(&node.peer_id());

        let peer = node
            .dial(lib_ws.clone().with(Protocol::P2p(lib.missive_peer())))
            .await
            .expect("missive dials rust-libp2p over ws");
        assert_eq!(peer, lib.missive_peer());
        let (from, seen_at) = lib.established.recv().await.expect("established");
        assert_eq!(from, me);
        assert!(is_ws(&seen_at.to_string()), "{seen_at}");

        node.ping(peer).await.expect("missive pings rust-libp2p");
        lib.pinged(me).await;

        let info = lib.identified(me).await;
        assert_eq!(info.agent_version, missive_identify::AGENT_VERSION);
        let announced: Vec<String> = info.listen_addrs.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            announced,
            vec![node_ws.to_string()],
            "the ws listen address"
        );
        assert_eq!(info.observed_addr.to_string(), lib_ws.to_string());

        let info = missive_identify::request(&node.stream_control(), peer)
            .await
            .expect("missive identifies rust-libp2p");
        assert_eq!(info.agent_version, LIBP2P_AGENT);
        assert_eq!(info.listen_addrs, vec![lib_ws.clone()]);

        for len in SIZES {
            missive_echo(&node, peer, &pattern(len)).await;
        }
        let answer = greet
            .request(
                peer,
                Greet {
                    name: "missive".into(),
                    times: 1,
                },
            )
            .await
            .expect("rust-libp2p answers");
        assert_eq!(
            answer,
            Greet {
                name: "libp2p greets missive".into(),
                times: 2
            }
        );
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn websocket_rust_libp2p_dials_missive_ping_identify_echo_and_json_request_response() {
    tokio::time::timeout(DEADLINE, async {
        let mut lib = run(websocket_swarm());
        let (node, node_ws, _greet) = missive_node(NodeConfig::default()).await;
        let mut events = node.events();
        let me = lib_peer_id(&node.peer_id());
        lib.command(Command::Dial(lib_addr(
            &node_ws.clone().with(Protocol::P2p(node.peer_id())),
        )))
        .await;
        let (peer, seen_at) = established(&mut events).await;
        assert_eq!(peer, lib.missive_peer());
        assert!(is_ws(&seen_at.to_string()), "{seen_at}");
        let (from, _) = lib.established.recv().await.expect("established");
        assert_eq!(from, me);

        lib.pinged(me).await;
        node.ping(peer).await.expect("missive pings back");
        let info = lib.identified(me).await;
        assert_eq!(info.public_key.to_peer_id(), me);
        assert_eq!(
            info.listen_addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
            vec![node_ws.to_string()]
        );

        for len in SIZES {
            let msg = pattern(len);
            assert!(
                lib.echo(me, &msg).await == msg,
                "echo of {len} bytes differs"
            );
        }
        let answer = lib
            .request(
                me,
                Greet {
                    name: "libp2p".into(),
                    times: 21,
                },
            )
            .await
            .expect("missive answers");
        assert_eq!(
            answer,
            Greet {
                name: "missive greets libp2p".into(),
                times: 42
            }
        );
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn websocket_missive_dials_a_rust_libp2p_wss_listener() {
    tokio::time::timeout(DEADLINE, async {
        let cert =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        let cert_der = cert.cert.der().to_vec();
        let key_der = cert.signing_key.serialize_der();
        let lib = run(wss_swarm(cert_der.clone(), key_der));
        let lib_wss = lib.listen_on("/ip4/127.0.0.1/tcp/0/tls/ws").await;
        let roots = vec![rustls_pki_types::CertificateDer::from(cert_der)];
        let config = NodeConfig::default().with_websocket_tls_client(
            missive::transport::tls::client_config(roots).expect("client config"),
        );
        let (node, _, _) = missive_node(config).await;
        // The certificate names `localhost`: dial the IP with that name as SNI.
        let port = lib_wss
            .iter()
            .find_map(|p| match p {
                Protocol::Tcp(p) => Some(*p),
                _ => None,
            })
            .expect("port");
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/tls/sni/localhost/ws")
            .parse()
            .expect("addr");
        let peer = node.dial(addr).await.expect("missive dials wss");
        assert_eq!(peer, lib.missive_peer());
        node.ping(peer).await.expect("ping over wss");
        for len in SIZES {
            missive_echo(&node, peer, &pattern(len)).await;
        }
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn websocket_rust_libp2p_dials_a_missive_wss_listener() {
    tokio::time::timeout(DEADLINE, async {
        let cert = missive::transport::tls::SelfSigned::generate(&["localhost"]).expect("cert");
        let config =
            NodeConfig::default().with_websocket_tls_server(cert.server_config().expect("config"));
        let (node, _, _greet) = missive_node(config).await;
        let wss = node
            .listen("/ip4/127.0.0.1/tcp/0/tls/ws".parse().expect("addr"))
            .await
            .expect("listen on wss");
        let port = wss
            .iter()
            .find_map(|p| match p {
                Protocol::Tcp(p) => Some(*p),
                _ => None,
            })
            .expect("port");
        let cert_der = cert.cert.to_vec();
        let mut lib = run(wss_client_swarm(cert_der));
        let me = lib_peer_id(&node.peer_id());
        let mut events = node.events();
        // rust-libp2p takes the TLS name from /sni (the certificate names `localhost`).
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/tls/sni/localhost/ws")
            .parse()
            .expect("addr");
        lib.command(Command::Dial(lib_addr(
            &addr.with(Protocol::P2p(node.peer_id())),
        )))
        .await;
        let (peer, _) = established(&mut events).await;
        assert_eq!(peer, lib.missive_peer());
        lib.pinged(me).await;
        for len in SIZES {
            let msg = pattern(len);
            assert!(
                lib.echo(me, &msg).await == msg,
                "echo of {len} bytes differs"
            );
        }
        let answer = lib
            .request(
                me,
                Greet {
                    name: "wss".into(),
                    times: 1,
                },
            )
            .await
            .expect("missive answers over wss");
        assert_eq!(answer.times, 2);
    })
    .await
    .expect("in time");
}
