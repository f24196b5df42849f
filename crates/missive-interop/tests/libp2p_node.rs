//! missive's node against rust-libp2p 0.57 (TCP + Noise + Yamux) and libp2p-stream, both ways.

use std::time::Duration;

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr as LibMultiaddr, StreamProtocol as LibProtocol, Swarm, identify, noise, ping, tcp,
    yamux,
};
use missive::p2p::{Keypair, Multiaddr, Node, NodeConfig, NodeEvent, PeerId};
use missive::stream::{OpenStreamError, StreamProtocol};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};

const ECHO: &str = "/echo/1.0.0";
const DEADLINE: Duration = Duration::from_secs(30);

#[derive(NetworkBehaviour)]
struct Behaviour {
    ping: ping::Behaviour,
    identify: identify::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// The agent version the libp2p peer announces through identify.
const LIBP2P_AGENT: &str = "interop-peer/1.0";

enum Command {
    Listen(oneshot::Sender<LibMultiaddr>),
    Dial(LibMultiaddr),
}

/// A rust-libp2p swarm driven by its own task.
struct Libp2pPeer {
    peer_id: String,
    control: libp2p_stream::Control,
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<String>,
    pings: mpsc::Receiver<(String, Result<Duration, String>)>,
    identified: mpsc::Receiver<(String, identify::Info)>,
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
        .with_behaviour(|key| Behaviour {
            ping: ping::Behaviour::new(
                ping::Config::new().with_interval(Duration::from_millis(100)),
            ),
            identify: identify::Behaviour::new(
                identify::Config::new("ipfs/0.1.0".to_owned(), key.public())
                    .with_agent_version(LIBP2P_AGENT.to_owned()),
            ),
            stream: libp2p_stream::Behaviour::new(),
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let peer_id = swarm.local_peer_id().to_string();
    let control = swarm.behaviour().stream.new_control();
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Command>(8);
    let (ev_tx, ev_rx) = mpsc::channel(64);
    let (ping_tx, ping_rx) = mpsc::channel(64);
    let (identified_tx, identified_rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut pending_listen: Option<oneshot::Sender<LibMultiaddr>> = None;
        loop {
            tokio::select! {
                cmd = cmd_rx.recv() => match cmd {
                    Some(Command::Listen(tx)) => {
                        swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr")).expect("listen");
                        pending_listen = Some(tx);
                    }
                    Some(Command::Dial(a)) => { let _ = swarm.dial(a); }
                    None => return,
                },
                ev = swarm.select_next_some() => match ev {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        if let Some(tx) = pending_listen.take() { let _ = tx.send(address); }
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => {
                        let _ = ping_tx.try_send((e.peer.to_string(), e.result.map_err(|f| f.to_string())));
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                        let _ = identified_tx.try_send((peer_id.to_string(), info));
                    }
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                        let _ = ev_tx.try_send(format!("established {peer_id}"));
                    }
                    SwarmEvent::OutgoingConnectionError { error, .. } => {
                        let _ = ev_tx.try_send(format!("dial error {error}"));
                    }
                    _ => {}
                },
            }
        }
    });
    Libp2pPeer {
        peer_id,
        control,
        commands: cmd_tx,
        events: ev_rx,
        pings: ping_rx,
        identified: identified_rx,
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

    async fn dial(&self, addr: &Multiaddr) {
        let a: LibMultiaddr = addr
            .to_string()
            .parse()
            .expect("libp2p parses our text form");
        self.commands
            .send(Command::Dial(a))
            .await
            .expect("swarm alive");
    }

    async fn next_event(&mut self) -> String {
        self.events.recv().await.expect("swarm alive")
    }

    /// Serves echo with libp2p-stream: read to end, write back, close.
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

async fn missive_node() -> Node {
    Node::new(Keypair::generate(), NodeConfig::default())
        .await
        .expect("node")
}

fn serve_missive_echo(n: &Node) {
    let mut incoming = n
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
}

fn lib_peer_id(p: &PeerId) -> libp2p::PeerId {
    p.to_string()
        .parse()
        .expect("libp2p parses our PeerId text")
}

#[tokio::test]
async fn libp2p_missive_dials_libp2p_with_matching_peer_ids_ping_and_echo() {
    tokio::time::timeout(DEADLINE, async {
        let mut lib = libp2p_peer();
        lib.serve_echo();
        let addr = lib.listen().await;
        let node = missive_node().await;
        let peer = node.dial(addr).await.expect("missive dials libp2p");
        assert_eq!(peer.to_string(), lib.peer_id);
        assert_eq!(
            lib.next_event().await,
            format!("established {}", node.peer_id())
        );

        node.ping(peer).await.expect("missive pings libp2p");
        loop {
            let (from, r) = lib.pings.recv().await.expect("ping events");
            if from == node.peer_id().to_string() && r.is_ok() {
                break;
            }
        }

        let mut s = node
            .stream_control()
            .open_stream(peer, StreamProtocol::new(ECHO))
            .await
            .expect("open");
        let msg = vec![9u8; 100_000];
        s.write_all(&msg).await.expect("write");
        s.shutdown().await.expect("fin");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, msg);

        let err = node
            .stream_control()
            .open_stream(peer, StreamProtocol::new("/missing/1.0.0"))
            .await
            .expect_err("libp2p refuses an unknown protocol");
        assert!(
            matches!(err, OpenStreamError::UnsupportedProtocol(_)),
            "{err}"
        );
        // The connection is still usable.
        node.ping(peer).await.expect("ping after refusal");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn libp2p_dials_missive_lazily_with_matching_peer_ids_ping_and_echo() {
    tokio::time::timeout(DEADLINE, async {
        // rust-libp2p's TCP upgrade proposes /noise and /yamux/1.0.0 with V1Lazy.
        let node = missive_node().await;
        serve_missive_echo(&node);
        let mut node_events = node.events();
        let addr = node
            .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .await
            .expect("listen");
        let mut lib = libp2p_peer();
        lib.dial(
            &addr
                .clone()
                .with(missive::p2p::Protocol::P2p(node.peer_id())),
        )
        .await;
        assert_eq!(
            lib.next_event().await,
            format!("established {}", node.peer_id())
        );
        let remote = loop {
            if let Some(NodeEvent::ConnectionEstablished { peer, .. }) = node_events.next().await {
                break peer;
            }
        };
        assert_eq!(remote.to_string(), lib.peer_id);

        loop {
            let (from, r) = lib.pings.recv().await.expect("ping events");
            if from == node.peer_id().to_string() {
                r.expect("libp2p pings missive");
                break;
            }
        }
        node.ping(remote)
            .await
            .expect("missive pings back over the same connection");

        let mut control = lib.control.clone();
        let mut s = control
            .open_stream(lib_peer_id(&node.peer_id()), LibProtocol::new(ECHO))
            .await
            .expect("libp2p opens a stream to missive");
        s.write_all(b"hello from libp2p").await.expect("write");
        s.close().await.expect("fin");
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"hello from libp2p");

        let err = control
            .open_stream(
                lib_peer_id(&node.peer_id()),
                LibProtocol::new("/missing/1.0.0"),
            )
            .await
            .expect_err("missive refuses an unknown protocol");
        assert!(
            matches!(err, libp2p_stream::OpenStreamError::UnsupportedProtocol(_)),
            "{err}"
        );
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn libp2p_peer_id_text_form_matches() {
    let key = Keypair::generate();
    let lib_key = libp2p::identity::Keypair::from_protobuf_encoding(&key.to_protobuf_encoding())
        .expect("libp2p reads our key encoding");
    assert_eq!(
        lib_key.public().to_peer_id().to_string(),
        key.peer_id().to_string()
    );
    let back = Keypair::from_protobuf_encoding(&lib_key.to_protobuf_encoding().expect("encode"))
        .expect("we read libp2p's key encoding");
    assert_eq!(back.peer_id(), key.peer_id());
}

#[tokio::test]
async fn libp2p_multistream_lazy_dialer_data_reaches_missive_listener() {
    use missive::p2p::negotiate::{ListenerProgress, ListenerSelect};
    use tokio_util::compat::TokioAsyncReadCompatExt as _;
    tokio::time::timeout(DEADLINE, async {
        let (a, mut b) = tokio::io::duplex(4096);
        let dialer = async move {
            let (p, mut io) = multistream_select::dialer_select_proto(
                a.compat(),
                ["/echo/1.0.0"],
                multistream_select::Version::V1Lazy,
            )
            .await
            .expect("lazy select returns at once");
            assert_eq!(p, "/echo/1.0.0");
            io.write_all(b"first data").await.expect("write");
            io.flush().await.expect("flush");
            let mut buf = [0u8; 5];
            io.read_exact(&mut buf).await.expect("answer confirmed");
            buf
        };
        let listener = async move {
            let mut l = ListenerSelect::new();
            let mut chunk = [0u8; 256];
            let mut got = Vec::new();
            for _ in 0..16 {
                match l.poll().expect("valid") {
                    ListenerProgress::Proposed(p) => {
                        assert_eq!(p, "/echo/1.0.0");
                        let (_, rest) = l.accept().expect("pending");
                        got.extend_from_slice(&rest);
                        break;
                    }
                    ListenerProgress::NeedInput => {
                        if let Some(out) = l.take_transmit() {
                            b.write_all(&out).await.expect("write");
                        }
                        let n = b.read(&mut chunk).await.expect("read");
                        l.input(&chunk[..n]);
                    }
                    _ => unreachable!("listener progress"),
                }
            }
            b.write_all(&l.take_transmit().expect("echo"))
                .await
                .expect("write");
            while got.len() < b"first data".len() {
                let n = b.read(&mut chunk).await.expect("read");
                assert!(n > 0);
                got.extend_from_slice(&chunk[..n]);
            }
            b.write_all(b"reply").await.expect("reply");
            (got, b)
        };
        let (reply, (got, _keep)) = tokio::join!(dialer, listener);
        assert_eq!(got, b"first data");
        assert_eq!(&reply, b"reply");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn libp2p_identify_works_both_ways_between_missive_and_libp2p() {
    use missive::protocols::identify as missive_identify;
    tokio::time::timeout(DEADLINE, async {
        let mut lib = libp2p_peer();
        lib.serve_echo();
        let lib_addr = lib.listen().await;
        let node = missive_node().await;
        serve_missive_echo(&node);
        let node_addr = node
            .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .await
            .expect("listen");
        let peer = node.dial(lib_addr.clone()).await.expect("dial");

        // rust-libp2p identifies missive on connect and accepts what missive answers.
        let (from, info) = lib.identified.recv().await.expect("identify event");
        assert_eq!(from, node.peer_id().to_string());
        assert_eq!(info.agent_version, missive_identify::AGENT_VERSION);
        assert_eq!(info.protocol_version, missive_identify::PROTOCOL_VERSION);
        assert_eq!(info.public_key.to_peer_id(), lib_peer_id(&node.peer_id()));
        let protocols: Vec<String> = info.protocols.iter().map(ToString::to_string).collect();
        for expected in [ECHO, "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"] {
            assert!(protocols.iter().any(|p| p == expected), "{protocols:?}");
        }
        let announced: Vec<String> = info.listen_addrs.iter().map(ToString::to_string).collect();
        assert_eq!(announced, vec![node_addr.to_string()]);

        // missive identifies rust-libp2p.
        let info = missive_identify::request(&node.stream_control(), peer)
            .await
            .expect("missive identifies libp2p");
        assert_eq!(info.peer_id(), peer);
        assert_eq!(info.agent_version, LIBP2P_AGENT);
        assert_eq!(info.protocol_version, "ipfs/0.1.0");
        let names: Vec<&str> = info.protocols.iter().map(|p| p.as_str()).collect();
        for expected in [ECHO, "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"] {
            assert!(names.contains(&expected), "{names:?}");
        }
        assert_eq!(info.listen_addrs, vec![lib_addr.without_peer_id()]);
        // rust-libp2p reports the address it sees missive's connection come from.
        let observed = info.observed_addr.expect("observed address");
        assert!(
            observed.to_string().starts_with("/ip4/127.0.0.1/tcp/"),
            "{observed}"
        );
    })
    .await
    .expect("in time");
}
