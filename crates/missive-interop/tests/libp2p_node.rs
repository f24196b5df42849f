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
    libp2p_peer_with(libp2p::identity::Keypair::generate_ed25519())
}

/// A rust-libp2p swarm with the identity `key`.
fn libp2p_peer_with(key: libp2p::identity::Keypair) -> Libp2pPeer {
    let mut swarm: Swarm<Behaviour> = libp2p::SwarmBuilder::with_existing_identity(key)
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
        let lib_identified = info;

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
        // missive told rust-libp2p the address it sees it at: the address it dialed.
        assert_eq!(
            lib_identified.observed_addr.to_string(),
            lib_addr.without_peer_id().to_string()
        );
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

/// The libp2p peer-id spec's private key vectors (protobuf `PrivateKey`), which rust-libp2p reads.
const ED25519_PRIVATE: &str = concat!(
    "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d",
    "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
);
const SECP256K1_PRIVATE: &str =
    "0802122053dadf1d5a164d6b4acdb15e24aa4c5b1d3461bdbd42abedb0a4404d56ced8fb";
const ECDSA_PRIVATE: &[&str] = &[
    "08031279307702010104203e5b1fe9712e6c314942a750bd67485de3c1efe85b1bfb520ae8f9ae3dfa4a4ca0",
    "0a06082a8648ce3d030107a14403420004de3d300fa36ae0e8f5d530899d83abab44abf3161f162a4bc901d8",
    "e6ecda020e8b6d5f8da30525e71d6851510c098e5c47c646a597fb4dcec034e9f77c409e62",
];
const RSA_PRIVATE: &[&str] = &[
    "080012ae123082092a0201000282020100e1beab071d08200bde24eef00d049449b07770ff9910257b2d7d5d",
    "da242ce8f0e2f12e1af4b32d9efd2c090f66b0f29986dbb645dae9880089704a94e5066d594162ae6ee8892e",
    "6ec70701db0a6c445c04778eb3de1293aa1a23c3825b85c6620a2bc3f82f9b0c309bc0ab3aeb1873282bebd3",
    "da03c33e76c21e9beb172fd44c9e43be32e2c99827033cf8d0f0c606f4579326c930eb4e854395ad94125654",
    "2c793902185153c474bed109d6ff5141ebf9cd256cf58893a37f83729f97e7cb435ec679d2e33901d27bb35a",
    "a0d7e20561da08885ef0abbf8e2fb48d6a5487047a9ecb1ad41fa7ed84f6e3e8ecd5d98b3982d2a901b44549",
    "91766da295ab78822add5612a2df83bcee814cf50973e80d7ef38111b1bd87da2ae92438a2c8cbcc70b31ee3",
    "19939a3b9c761dbc13b5c086d6b64bf7ae7dacc14622375d92a8ff9af7eb962162bbddebf90acb32adb5e4e4",
    "029f1c96019949ecfbfeffd7ac1e3fbcc6b6168c34be3d5a2e5999fcbb39bba7adbca78eab09b9bc39f7fa4b",
    "93411f4cc175e70c0a083e96bfaefb04a9580b4753c1738a6a760ae1afd851a1a4bdad231cf56e9284d83248",
    "3df215a46c1c21bdf0c6cfe951c18f1ee4078c79c13d63edb6e14feaeffabc90ad317e4875fe648101b08640",
    "97e998f0ca3025ef9638cd2b0caecd3770ab54a1d9c6ca959b0f5dcbc90caeefc4135baca6fd475224269bbe",
    "1b02030100010282020100a472ffa858efd8588ce59ee264b957452f3673acdf5631d7bfd5ba0ef59779c231",
    "b0bc838a8b14cae367b6d9ef572c03c7883b0a3c652f5c24c316b1ccfd979f13d0cd7da20c7d34d9ec32dfdc",
    "81ee7292167e706d705efde5b8f3edfcba41409e642f8897357df5d320d21c43b33600a7ae4e505db957c1af",
    "bc189d73f0b5d972d9aaaeeb232ca20eebd5de6fe7f29d01470354413cc9a0af1154b7af7c1029adcd67c74b",
    "4798afeb69e09f2cb387305e73a1b5f450202d54f0ef096fe1bde340219a1194d1ac9026e90b366cce0c59b2",
    "39d10e4888f52ca1780824d39ae01a6b9f4dd6059191a7f12b2a3d8db3c2868cd4e5a5862b8b625a4197d52c",
    "6ac77710116ebd3ced81c4d91ad5fdfbed68312ebce7eea45c1833ca3acf7da2052820eacf5c6b07d086dabe",
    "b893391c71417fd8a4b1829ae2cf60d1749d0e25da19530d889461c21da3492a8dc6ccac7de83ac1c2185262",
    "c7473c8cc42f547cc9864b02a8073b6aa54a037d8c0de3914784e6205e83d97918b944f11b877b12084c0dd1",
    "d36592f8a4f8b8da5bb404c3d2c079b22b6ceabfbcb637c0dbe0201f0909d533f8bf308ada47aee641a012a4",
    "94d31b54c974e58b87f140258258bb82f31692659db7aa07e17a5b2a0832c24e122d3a8babcc9ee74cbb07d3",
    "058bb85b15f6f6b2674aba9fd34367be9782d444335fbed31e3c4086c652597c27104938b47fa10282010100",
    "e9fdf843c1550070ca711cb8ff28411466198f0e212511c3186623890c0071bf6561219682fe7dbdfd81176e",
    "ba7c4faba21614a20721e0fcd63768e6d925688ecc90992059ac89256e0524de90bf3d8a052ce6a9f6adafa7",
    "12f3107a016e20c80255c9e37d8206d1bc327e06e66eb24288da866b55904fd8b59e6b2ab31bc5eab47e5970",
    "93c63fab7872102d57b4c589c66077f534a61f5f65127459a33c91f6db61fc431b1ae90be92b4149a3255291",
    "baf94304e3efb77b1107b5a3bda911359c40a53c347ff9100baf8f36dc5cd991066b5bdc28b39ed644f404af",
    "e9213f4d31c9d4e40f3a5f5e3c39bebeb244e84137544e1a1839c1c8aaebf0c78a7fad590282010100f6fa1f",
    "1e6b803742d5490b7441152f500970f46feb0b73a6e4baba2aaf3c0e245ed852fc31d86a8e46eb48e90fac40",
    "9989dfee45238f97e8f1f8e83a136488c1b04b8a7fb695f37b8616307ff8a8d63e8cfa0b4fb9b9167ffaebab",
    "f111aa5a4344afbabd002ae8961c38c02da76a9149abdde93eb389eb32595c29ba30d8283a7885218a5a9d33",
    "f7f01dbdf85f3aad016c071395491338ec318d39220e1c7bd69d3d6b520a13a30d745c102b827ad9984b0dd6",
    "aed73916ffa82a06c1c111e7047dcd2668f988a0570a71474992eecf416e068f029ec323d5d635fd24694fc9",
    "bf96973c255d26c772a95bf8b7f876547a5beabf86f06cd21b67994f944e7a5493028201010095b02fd30069",
    "e547426a8bea58e8a2816f33688dac6c6f6974415af8402244a22133baedf34ce499d7036f3f19b38eb00897",
    "c18949b0c5a25953c71aeeccfc8f6594173157cc854bd98f16dffe8f28ca13b77eb43a2730585c49fc3f608c",
    "d811bb54b03b84bddaa8ef910988567f783012266199667a546a18fd88271fbf63a45ae4fd4884706da8befb",
    "9117c0a4d73de5172f8640b1091ed8a4aea3ed4641463f5ff6a5e3401ad7d0c92811f87956d1fd5f9a1d15c7",
    "f3839a08698d9f35f9d966e5000f7cb2655d7b6c4adcd8a9d950ea5f61bb7c9a33c17508f9baa313eecfee4a",
    "e493249ebe05a5d7770bbd3551b2eeb752e3649e0636de08e3d672e66cb90282010100ad93e4c31072b063fc",
    "5ab5fe22afacece775c795d0efdf7c704cfc027bde0d626a7646fc905bb5a80117e3ca49059af14e0160089f",
    "9190065be9bfecf12c3b2145b211c8e89e42dd91c38e9aa23ca73697063564f6f6aa6590088a738722df0560",
    "04d18d7bccac62b3bafef6172fc2a4b071ea37f31eff7a076bcab7dd144e51a9da8754219352aef2c7347897",
    "1539fa41de4759285ea626fa3c72e7085be47d554d915bbb5149cb6ef835351f231043049cd941506a034bf2",
    "f8767f3e1e42ead92f91cb3d75549b57ef7d56ac39c2d80d67f6a2b4ca192974bfc5060e2dd1712179710021",
    "93dba12e7e4133ab201f07500a90495a38610279b13a48d54f0c99028201003e3a1ac0c2b67d54ed5c4bbe04",
    "a7db99103659d33a4f9d35809e1f60c282e5988dddc964527f3b05e6cc890eab3dcb571d66debf3a5527704c",
    "87264b3954d7265f4e8d2c637dd89b491b9cf23f264801f804b90454d65af0c4c830d1aef76f597ef61b26ca",
    "857ecce9cb78d4f6c2218c00d2975d46c2b013fbf59b750c3b92d8d3ed9e6d1fd0ef1ec091a5c286a3fe2dea",
    "d292f40f380065731e2079ebb9f2a7ef2c415ecbb488da98f3a12609ca1b6ec8c734032c8bd513292ff842c3",
    "75d4acd1b02dfb206b24cd815f8e2f9d4af8e7dea0370b19c1b23cc531d78b40e06e1119ee2e08f6f31c6e2e",
    "8444c568d13c5d451a291ae0c9f1d4f27d23b3a00d60ad",
];

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
        .collect()
}

#[tokio::test]
async fn libp2p_keys_of_every_type_give_the_same_peer_ids_and_signatures_verify_both_ways() {
    use missive::p2p::{KeyType, PublicKey};
    let vectors = [
        (ED25519_PRIVATE.to_owned(), KeyType::Ed25519),
        (SECP256K1_PRIVATE.to_owned(), KeyType::Secp256k1),
        (ECDSA_PRIVATE.concat(), KeyType::Ecdsa),
        (RSA_PRIVATE.concat(), KeyType::Rsa),
    ];
    for (private, key_type) in vectors {
        let lib_key = libp2p::identity::Keypair::from_protobuf_encoding(&hex(&private))
            .expect("rust-libp2p reads the spec's private key");
        let encoded = lib_key.public().encode_protobuf();
        let ours = PublicKey::from_protobuf_encoding(&encoded).expect("missive decodes the key");
        assert_eq!(ours.key_type(), key_type);
        assert_eq!(ours.to_protobuf_encoding(), encoded, "{key_type}");
        assert_eq!(
            ours.to_peer_id().to_string(),
            lib_key.public().to_peer_id().to_string(),
            "{key_type}"
        );
        let parsed: libp2p::PeerId = ours.to_peer_id().to_string().parse().expect("parse");
        assert_eq!(parsed.to_bytes(), ours.to_peer_id().to_bytes());
        for msg in [&b""[..], b"libp2p", &[7u8; 5000]] {
            let sig = lib_key.sign(msg).expect("rust-libp2p signs");
            assert!(
                ours.verify(msg, &sig),
                "{key_type}: rust-libp2p's signature"
            );
            let mut tampered = sig.clone();
            tampered[sig.len() / 2] ^= 0x10;
            assert!(
                !ours.verify(msg, &tampered),
                "{key_type}: tampered signature"
            );
        }
    }
    // missive's own key types: rust-libp2p verifies their signatures and reads their key files.
    for key in [Keypair::generate(), Keypair::generate_secp256k1()] {
        let lib_public =
            libp2p::identity::PublicKey::try_decode_protobuf(&key.public().to_protobuf_encoding())
                .expect("rust-libp2p decodes missive's public key");
        assert_eq!(
            lib_public.to_peer_id().to_string(),
            key.peer_id().to_string()
        );
        let sig = key.sign(b"signed by missive");
        assert!(lib_public.verify(b"signed by missive", &sig));
        let lib_key =
            libp2p::identity::Keypair::from_protobuf_encoding(&key.to_protobuf_encoding())
                .expect("rust-libp2p reads missive's key file");
        assert_eq!(
            lib_key.public().to_peer_id().to_string(),
            key.peer_id().to_string()
        );
        let back =
            Keypair::from_protobuf_encoding(&lib_key.to_protobuf_encoding().expect("encode"))
                .expect("missive reads rust-libp2p's key file");
        assert_eq!(back.peer_id(), key.peer_id());
    }
}

/// missive with `missive_key` dials rust-libp2p with `lib_key`, then another rust-libp2p peer
/// with `lib_key` dials missive: both see the other's PeerId, ping works, and identify checks
/// each side's key of whatever type.
async fn dial_both_ways_and_ping(missive_key: Keypair, lib_key: libp2p::identity::Keypair) {
    use missive::protocols::identify as missive_identify;
    let lib_id = lib_key.public().to_peer_id().to_string();
    let missive_id = missive_key.peer_id();

    let mut lib = libp2p_peer_with(lib_key.clone());
    let addr = lib.listen().await;
    let node = Node::new(missive_key.clone(), NodeConfig::default())
        .await
        .expect("node");
    let peer = node.dial(addr).await.expect("missive dials libp2p");
    assert_eq!(peer.to_string(), lib_id);
    assert_eq!(lib.next_event().await, format!("established {missive_id}"));
    node.ping(peer).await.expect("missive pings libp2p");
    let (from, info) = lib.identified.recv().await.expect("identify event");
    assert_eq!(from, missive_id.to_string());
    assert_eq!(
        info.public_key.to_peer_id().to_string(),
        missive_id.to_string()
    );
    let info = missive_identify::request(&node.stream_control(), peer)
        .await
        .expect("missive identifies libp2p");
    assert_eq!(info.peer_id(), peer);
    node.shutdown().await;

    let node = Node::new(missive_key, NodeConfig::default())
        .await
        .expect("node");
    let mut node_events = node.events();
    let addr = node
        .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .await
        .expect("listen");
    let mut lib = libp2p_peer_with(lib_key);
    lib.dial(&addr.with(missive::p2p::Protocol::P2p(missive_id)))
        .await;
    assert_eq!(lib.next_event().await, format!("established {missive_id}"));
    let remote = loop {
        if let Some(NodeEvent::ConnectionEstablished { peer, .. }) = node_events.next().await {
            break peer;
        }
    };
    assert_eq!(remote.to_string(), lib_id);
    loop {
        let (from, r) = lib.pings.recv().await.expect("ping events");
        if from == missive_id.to_string() {
            r.expect("libp2p pings missive");
            break;
        }
    }
    node.ping(remote).await.expect("missive pings libp2p back");
    node.shutdown().await;
}

#[tokio::test]
async fn libp2p_and_a_secp256k1_missive_node_dial_each_other_and_ping() {
    tokio::time::timeout(DEADLINE, async {
        let key = Keypair::generate_secp256k1();
        assert!(key.peer_id().to_string().starts_with("16Uiu2HA"));
        dial_both_ways_and_ping(key.clone(), libp2p::identity::Keypair::generate_ed25519()).await;
        dial_both_ways_and_ping(key, libp2p::identity::Keypair::generate_secp256k1()).await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn libp2p_peer_with_an_ecdsa_key_and_missive_dial_each_other_and_ping() {
    tokio::time::timeout(DEADLINE, async {
        dial_both_ways_and_ping(
            Keypair::generate(),
            libp2p::identity::Keypair::generate_ecdsa(),
        )
        .await;
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn libp2p_peer_with_an_rsa_key_and_missive_dial_each_other_and_ping() {
    tokio::time::timeout(DEADLINE, async {
        let rsa = libp2p::identity::Keypair::from_protobuf_encoding(&hex(&RSA_PRIVATE.concat()))
            .expect("the spec's RSA key");
        assert!(rsa.public().to_peer_id().to_string().starts_with("Qm"));
        dial_both_ways_and_ping(Keypair::generate_secp256k1(), rsa).await;
    })
    .await
    .expect("in time");
}
