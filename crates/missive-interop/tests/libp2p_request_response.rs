//! missive's request-response against rust-libp2p 0.57 `request_response` (cbor, json and a
//! one-way codec), both ways, with the libp2p side negotiating with V1 and V1Lazy.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use futures::StreamExt as _;
use libp2p::core::upgrade::Version as LibVersion;
use libp2p::request_response::{self as lib_rr, ProtocolSupport as LibSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr as LibMultiaddr, StreamProtocol as LibProtocol, Swarm, noise, tcp, yamux};
use missive::p2p::negotiate::Version;
use missive::p2p::{Keypair, Multiaddr, Node, NodeConfig, PeerId};
use missive::request_response::{
    Behaviour, Codec, Config, MessageKind, OutboundFailure, ProtocolSupport, cbor, json,
    read_to_end_limited,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

const DEADLINE: Duration = Duration::from_secs(30);
const CBOR: &str = "/greet/cbor/1";
const JSON: &str = "/greet/json/1";
const LIB_IN: &str = "/lib-in/1";
const LIB_OUT: &str = "/lib-out/1";
const NOTE: &str = "/note/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Greet {
    name: String,
    times: u32,
}

#[derive(NetworkBehaviour)]
struct Rr {
    cbor: lib_rr::cbor::Behaviour<Greet, Greet>,
    json: lib_rr::json::Behaviour<serde_json::Value, serde_json::Value>,
    dirs: lib_rr::cbor::Behaviour<String, String>,
    note: lib_rr::Behaviour<LibNote>,
}

type Reply<T> = oneshot::Sender<Result<T, String>>;

enum Command {
    Listen(oneshot::Sender<LibMultiaddr>),
    Cbor(libp2p::PeerId, LibMultiaddr, Greet, Reply<Greet>),
    Json(
        libp2p::PeerId,
        LibMultiaddr,
        serde_json::Value,
        Reply<serde_json::Value>,
    ),
    Dirs(libp2p::PeerId, LibMultiaddr, String, Reply<String>),
    Note(libp2p::PeerId, LibMultiaddr, Vec<u8>, Reply<()>),
}

/// A rust-libp2p swarm driven by its own task. It answers every request it gets and reports
/// the one-way notes it receives.
struct Libp2pPeer {
    peer_id: libp2p::PeerId,
    commands: mpsc::Sender<Command>,
    notes: mpsc::Receiver<Vec<u8>>,
}

fn libp2p_peer(version: LibVersion) -> Libp2pPeer {
    let cfg = lib_rr::Config::default();
    let mut swarm: Swarm<Rr> = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| Rr {
            cbor: lib_rr::cbor::Behaviour::new(
                [(LibProtocol::new(CBOR), LibSupport::Full)],
                cfg.clone(),
            ),
            json: lib_rr::json::Behaviour::new(
                [(LibProtocol::new(JSON), LibSupport::Full)],
                cfg.clone(),
            ),
            dirs: lib_rr::cbor::Behaviour::new(
                [
                    (LibProtocol::new(LIB_IN), LibSupport::Inbound),
                    (LibProtocol::new(LIB_OUT), LibSupport::Outbound),
                ],
                cfg.clone(),
            ),
            note: lib_rr::Behaviour::new([(LibProtocol::new(NOTE), LibSupport::Full)], cfg),
        })
        .expect("behaviour")
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(60))
                .with_substream_upgrade_protocol_override(version)
        })
        .build();
    let peer_id = *swarm.local_peer_id();
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Command>(8);
    let (note_tx, notes) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut listen: Option<oneshot::Sender<LibMultiaddr>> = None;
        let mut cbor_wait: HashMap<lib_rr::OutboundRequestId, Reply<Greet>> = HashMap::new();
        let mut json_wait: HashMap<lib_rr::OutboundRequestId, Reply<serde_json::Value>> =
            HashMap::new();
        let mut dirs_wait: HashMap<lib_rr::OutboundRequestId, Reply<String>> = HashMap::new();
        let mut note_wait: HashMap<lib_rr::OutboundRequestId, Reply<()>> = HashMap::new();
        loop {
            tokio::select! {
                cmd = cmd_rx.recv() => match cmd {
                    Some(Command::Listen(tx)) => {
                        swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr")).expect("listen");
                        listen = Some(tx);
                    }
                    Some(Command::Cbor(p, a, r, tx)) => {
                        let id = swarm.behaviour_mut().cbor.send_request_with_addresses(&p, r, vec![a]);
                        cbor_wait.insert(id, tx);
                    }
                    Some(Command::Json(p, a, r, tx)) => {
                        let id = swarm.behaviour_mut().json.send_request_with_addresses(&p, r, vec![a]);
                        json_wait.insert(id, tx);
                    }
                    Some(Command::Dirs(p, a, r, tx)) => {
                        let id = swarm.behaviour_mut().dirs.send_request_with_addresses(&p, r, vec![a]);
                        dirs_wait.insert(id, tx);
                    }
                    Some(Command::Note(p, a, r, tx)) => {
                        let id = swarm.behaviour_mut().note.send_request_with_addresses(&p, r, vec![a]);
                        note_wait.insert(id, tx);
                    }
                    None => return,
                },
                ev = swarm.select_next_some() => match ev {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        if let Some(tx) = listen.take() { let _ = tx.send(address); }
                    }
                    // Shown with a failing test: a DialFailure alone does not say why.
                    SwarmEvent::OutgoingConnectionError { error, .. } => {
                        eprintln!("rust-libp2p dial failed: {error}");
                    }
                    SwarmEvent::Behaviour(RrEvent::Cbor(e)) => match e {
                        lib_rr::Event::Message { message: lib_rr::Message::Request { request, channel, .. }, .. } => {
                            let reply = Greet { name: format!("libp2p greets {}", request.name), times: request.times + 1 };
                            let _ = swarm.behaviour_mut().cbor.send_response(channel, reply);
                        }
                        lib_rr::Event::Message { message: lib_rr::Message::Response { request_id, response }, .. } => {
                            if let Some(tx) = cbor_wait.remove(&request_id) { let _ = tx.send(Ok(response)); }
                        }
                        lib_rr::Event::OutboundFailure { request_id, error, .. } => {
                            if let Some(tx) = cbor_wait.remove(&request_id) { let _ = tx.send(Err(format!("{error:?}"))); }
                        }
                        _ => {}
                    },
                    SwarmEvent::Behaviour(RrEvent::Json(e)) => match e {
                        lib_rr::Event::Message { message: lib_rr::Message::Request { request, channel, .. }, .. } => {
                            let _ = swarm.behaviour_mut().json.send_response(channel, serde_json::json!({ "libp2p": request }));
                        }
                        lib_rr::Event::Message { message: lib_rr::Message::Response { request_id, response }, .. } => {
                            if let Some(tx) = json_wait.remove(&request_id) { let _ = tx.send(Ok(response)); }
                        }
                        lib_rr::Event::OutboundFailure { request_id, error, .. } => {
                            if let Some(tx) = json_wait.remove(&request_id) { let _ = tx.send(Err(format!("{error:?}"))); }
                        }
                        _ => {}
                    },
                    SwarmEvent::Behaviour(RrEvent::Dirs(e)) => match e {
                        lib_rr::Event::Message { message: lib_rr::Message::Request { request, channel, .. }, .. } => {
                            let _ = swarm.behaviour_mut().dirs.send_response(channel, format!("libp2p {request}"));
                        }
                        lib_rr::Event::Message { message: lib_rr::Message::Response { request_id, response }, .. } => {
                            if let Some(tx) = dirs_wait.remove(&request_id) { let _ = tx.send(Ok(response)); }
                        }
                        lib_rr::Event::OutboundFailure { request_id, error, .. } => {
                            if let Some(tx) = dirs_wait.remove(&request_id) { let _ = tx.send(Err(format!("{error:?}"))); }
                        }
                        _ => {}
                    },
                    SwarmEvent::Behaviour(RrEvent::Note(e)) => match e {
                        lib_rr::Event::Message { message: lib_rr::Message::Request { request, channel, .. }, .. } => {
                            let _ = note_tx.try_send(request);
                            drop(channel); // one-way: nothing to answer
                        }
                        lib_rr::Event::Message { message: lib_rr::Message::Response { request_id, .. }, .. } => {
                            if let Some(tx) = note_wait.remove(&request_id) { let _ = tx.send(Ok(())); }
                        }
                        lib_rr::Event::OutboundFailure { request_id, error, .. } => {
                            if let Some(tx) = note_wait.remove(&request_id) { let _ = tx.send(Err(format!("{error:?}"))); }
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
        commands: cmd_tx,
        notes,
    }
}

impl Libp2pPeer {
    /// Listens on loopback; returns the address with `/p2p/<peer>`, in missive's type.
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

    fn missive_peer(&self) -> PeerId {
        self.peer_id.to_string().parse().expect("same PeerId text")
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.expect("swarm alive");
        rx.await.expect("swarm answers")
    }
}

fn lib_peer(p: &PeerId) -> libp2p::PeerId {
    p.to_string().parse().expect("libp2p parses our PeerId")
}

fn lib_addr(a: &Multiaddr) -> LibMultiaddr {
    a.to_string().parse().expect("libp2p parses our address")
}

async fn missive_node() -> (Node, Multiaddr) {
    let node = Node::new(Keypair::generate(), NodeConfig::default())
        .await
        .expect("node");
    let addr = node
        .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .await
        .expect("listen");
    (node, addr)
}

fn full(name: &str) -> [(String, ProtocolSupport); 1] {
    [(name.to_owned(), ProtocolSupport::Full)]
}

async fn cbor_both_ways(lib_version: LibVersion, our_version: Version) {
    let lib = libp2p_peer(lib_version);
    let lib_at = lib.listen().await;
    let (node, addr) = missive_node().await;
    let rr = Behaviour::<cbor::Codec<Greet, Greet>>::new(
        &node,
        full(CBOR),
        Config::default().with_version(our_version),
    )
    .expect("rr");
    rr.serve(|_, g: Greet| async move {
        Greet {
            name: format!("missive greets {}", g.name),
            times: g.times * 2,
        }
    })
    .expect("serve");

    let resp = rr
        .request_with_addresses(
            lib.missive_peer(),
            Greet {
                name: "ada".into(),
                times: 1,
            },
            &[lib_at],
        )
        .await
        .expect("libp2p answers missive");
    assert_eq!(
        resp,
        Greet {
            name: "libp2p greets ada".into(),
            times: 2
        }
    );

    let me = lib_peer(&node.peer_id());
    let resp = lib
        .call(|tx| {
            Command::Cbor(
                me,
                lib_addr(&addr),
                Greet {
                    name: "bob".into(),
                    times: 3,
                },
                tx,
            )
        })
        .await
        .expect("missive answers libp2p");
    assert_eq!(
        resp,
        Greet {
            name: "missive greets bob".into(),
            times: 6
        }
    );
}

async fn json_both_ways(lib_version: LibVersion, our_version: Version) {
    let lib = libp2p_peer(lib_version);
    let (node, addr) = missive_node().await;
    // libp2p dials first this time.
    let rr = Behaviour::<json::Codec<serde_json::Value, serde_json::Value>>::new(
        &node,
        full(JSON),
        Config::default().with_version(our_version),
    )
    .expect("rr");
    rr.serve(|_, v| async move { serde_json::json!({ "missive": v }) })
        .expect("serve");
    let me = lib_peer(&node.peer_id());
    let resp = lib
        .call(|tx| Command::Json(me, lib_addr(&addr), serde_json::json!([1, "two"]), tx))
        .await
        .expect("missive answers libp2p");
    assert_eq!(resp, serde_json::json!({ "missive": [1, "two"] }));
    // rust-libp2p listens only now: once it listens, its TCP dials bind to its listen port
    // (port reuse), and such a dial can fail with "address in use" when the same address pair
    // was used a moment before.
    let lib_at = lib.listen().await;
    let resp = rr
        .request_with_addresses(
            lib.missive_peer(),
            serde_json::json!({"q": true}),
            &[lib_at],
        )
        .await
        .expect("libp2p answers missive");
    assert_eq!(resp, serde_json::json!({ "libp2p": { "q": true } }));
}

#[tokio::test]
async fn libp2p_rr_cbor_both_ways_with_v1() {
    tokio::time::timeout(DEADLINE, cbor_both_ways(LibVersion::V1, Version::V1))
        .await
        .expect("in time");
}

#[tokio::test]
async fn libp2p_rr_cbor_both_ways_with_v1_lazy() {
    tokio::time::timeout(
        DEADLINE,
        cbor_both_ways(LibVersion::V1Lazy, Version::V1Lazy),
    )
    .await
    .expect("in time");
}

#[tokio::test]
async fn libp2p_rr_json_both_ways_with_v1() {
    tokio::time::timeout(DEADLINE, json_both_ways(LibVersion::V1, Version::V1))
        .await
        .expect("in time");
}

#[tokio::test]
async fn libp2p_rr_json_both_ways_with_v1_lazy() {
    tokio::time::timeout(
        DEADLINE,
        json_both_ways(LibVersion::V1Lazy, Version::V1Lazy),
    )
    .await
    .expect("in time");
}

async fn unsupported_both_ways(lib_version: LibVersion, our_version: Version) {
    let lib = libp2p_peer(lib_version);
    let lib_at = lib.listen().await;
    let (node, addr) = missive_node().await;
    // missive proposes a protocol libp2p does not know.
    let rr = Behaviour::<cbor::Codec<String, String>>::new(
        &node,
        full("/unknown/1"),
        Config::default().with_version(our_version),
    )
    .expect("rr");
    let err = rr
        .request_with_addresses(lib.missive_peer(), "x".into(), &[lib_at])
        .await
        .expect_err("libp2p refuses");
    assert!(
        matches!(err, OutboundFailure::UnsupportedProtocols),
        "{err:?}"
    );
    // libp2p proposes CBOR, which this node does not serve.
    let me = lib_peer(&node.peer_id());
    let err = lib
        .call(|tx| {
            Command::Cbor(
                me,
                lib_addr(&addr),
                Greet {
                    name: "x".into(),
                    times: 0,
                },
                tx,
            )
        })
        .await
        .expect_err("missive refuses");
    match lib_version {
        LibVersion::V1Lazy => {
            // rust-libp2p sends its data before the answer and reports the `na` it then
            // reads as a failed i/o, not as UnsupportedProtocols.
            assert!(err.contains("Io(") && err.contains("Failed"), "{err}");
        }
        _ => assert!(err.contains("UnsupportedProtocols"), "{err}"),
    }
}

#[tokio::test]
async fn libp2p_rr_unsupported_protocols_both_ways_with_v1() {
    tokio::time::timeout(DEADLINE, unsupported_both_ways(LibVersion::V1, Version::V1))
        .await
        .expect("in time");
}

#[tokio::test]
async fn libp2p_rr_unsupported_protocols_both_ways_with_v1_lazy() {
    tokio::time::timeout(
        DEADLINE,
        unsupported_both_ways(LibVersion::V1Lazy, Version::V1Lazy),
    )
    .await
    .expect("in time");
}

#[tokio::test]
async fn libp2p_rr_inbound_only_and_outbound_only_protocols() {
    tokio::time::timeout(DEADLINE, async {
        let lib = libp2p_peer(LibVersion::V1);
        let lib_at = lib.listen().await;
        let (node, addr) = missive_node().await;
        let me = lib_peer(&node.peer_id());
        type Strings = cbor::Codec<String, String>;

        // libp2p accepts LIB_IN only inbound, and sends LIB_OUT only outbound.
        let to_lib_in = Behaviour::<Strings>::new(
            &node,
            [(LIB_IN.to_owned(), ProtocolSupport::Outbound)],
            Config::default(),
        )
        .expect("rr");
        let resp = to_lib_in
            .request_with_addresses(
                lib.missive_peer(),
                "hi".into(),
                std::slice::from_ref(&lib_at),
            )
            .await
            .expect("libp2p serves its inbound protocol");
        assert_eq!(resp, "libp2p hi");
        let to_lib_out = Behaviour::<Strings>::new(
            &node,
            [(LIB_OUT.to_owned(), ProtocolSupport::Outbound)],
            Config::default(),
        )
        .expect("rr");
        let err = to_lib_out
            .request(lib.missive_peer(), "hi".into())
            .await
            .expect_err("libp2p does not accept its outbound-only protocol");
        assert!(
            matches!(err, OutboundFailure::UnsupportedProtocols),
            "{err:?}"
        );

        // missive's side: LIB_OUT supported only outbound is not advertised to libp2p...
        let err = lib
            .call(|tx| Command::Dirs(me, lib_addr(&addr), "x".into(), tx))
            .await
            .expect_err("not advertised");
        assert!(err.contains("UnsupportedProtocols"), "{err}");
        // ... and once supported inbound, it is served.
        drop(to_lib_out);
        let from_lib = Behaviour::<Strings>::new(
            &node,
            [(LIB_OUT.to_owned(), ProtocolSupport::Inbound)],
            Config::default(),
        )
        .expect("rr");
        from_lib
            .serve(|_, r| async move { format!("missive {r}") })
            .expect("serve");
        let resp = lib
            .call(|tx| Command::Dirs(me, lib_addr(&addr), "yo".into(), tx))
            .await
            .expect("served");
        assert_eq!(resp, "missive yo");
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn libp2p_rr_one_way_protocol_both_ways() {
    tokio::time::timeout(DEADLINE, async {
        let mut lib = libp2p_peer(LibVersion::V1);
        let lib_at = lib.listen().await;
        let (node, addr) = missive_node().await;
        let rr = Behaviour::<Note>::new(&node, full(NOTE), Config::default()).expect("rr");
        let mut events = rr.events().expect("events");

        rr.request_with_addresses(lib.missive_peer(), b"to libp2p".to_vec(), &[lib_at])
            .await
            .expect("written");
        assert_eq!(lib.notes.recv().await.expect("note"), b"to libp2p");

        let me = lib_peer(&node.peer_id());
        lib.call(|tx| Command::Note(me, lib_addr(&addr), b"to missive".to_vec(), tx))
            .await
            .expect("libp2p's one-way request completes");
        loop {
            match events.next().await.expect("events") {
                missive::request_response::Event::Message {
                    message:
                        missive::request_response::Message::Request {
                            request, channel, ..
                        },
                    ..
                } => {
                    assert_eq!(request, b"to missive");
                    drop(channel); // one-way: nothing to answer
                    break;
                }
                _ => continue,
            }
        }
    })
    .await
    .expect("in time");
}

/// missive's one-way codec: bytes to the end of the stream, `()` back.
#[derive(Debug, Clone, Default)]
struct Note;

impl Codec for Note {
    type Protocol = String;
    type Request = Vec<u8>;
    type Response = ();

    async fn read_request<T>(&mut self, _: &String, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: tokio::io::AsyncRead + Unpin + Send,
    {
        read_to_end_limited(io, 4096, MessageKind::Request).await
    }

    async fn read_response<T>(&mut self, _: &String, _: &mut T) -> io::Result<()>
    where
        T: tokio::io::AsyncRead + Unpin + Send,
    {
        Ok(())
    }

    async fn write_request<T>(&mut self, _: &String, io: &mut T, r: Vec<u8>) -> io::Result<()>
    where
        T: tokio::io::AsyncWrite + Unpin + Send,
    {
        tokio::io::AsyncWriteExt::write_all(io, &r).await
    }

    async fn write_response<T>(&mut self, _: &String, _: &mut T, (): ()) -> io::Result<()>
    where
        T: tokio::io::AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

/// libp2p's one-way codec, the same wire.
#[derive(Debug, Clone, Default)]
struct LibNote;

impl lib_rr::Codec for LibNote {
    type Protocol = LibProtocol;
    type Request = Vec<u8>;
    type Response = ();

    async fn read_request<T>(&mut self, _: &LibProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut buf = Vec::new();
        futures::AsyncReadExt::read_to_end(&mut futures::AsyncReadExt::take(io, 4096), &mut buf)
            .await?;
        Ok(buf)
    }

    async fn read_response<T>(&mut self, _: &LibProtocol, _: &mut T) -> io::Result<()>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        Ok(())
    }

    async fn write_request<T>(&mut self, _: &LibProtocol, io: &mut T, r: Vec<u8>) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        futures::AsyncWriteExt::write_all(io, &r).await
    }

    async fn write_response<T>(&mut self, _: &LibProtocol, _: &mut T, (): ()) -> io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}
