//! `/ipfs/id/1.0.0`: a peer asks, the other answers with one length-prefixed protobuf message
//! (its public key, protocol and agent versions, listen addresses and supported protocols) and
//! closes the stream. Every node serves it, so libp2p peers that identify on connect (as
//! rust-libp2p's `identify` behaviour does) learn what this node speaks.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use missive::p2p::{Keypair, Node, NodeConfig};
//!
//! use missive::protocols::identify;
//!
//! let a = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! let b = Node::new(Keypair::generate(), NodeConfig::default()).await?;
//! let peer = b.dial(a.listen("/ip4/127.0.0.1/tcp/0".parse()?).await?).await?;
//! let info = identify::request(&b.stream_control(), peer).await?;
//! assert_eq!(info.peer_id(), a.peer_id());
//! assert!(info.protocols.iter().any(|p| p.as_str() == "/ipfs/ping/1.0.0"));
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

use crate::p2p::identity::write_uvarint;
use crate::p2p::protobuf::{Value, next_field, put_bytes};
use crate::p2p::{DecodeKeyError, Multiaddr, PeerId, PublicKey};
use crate::stream::{Control, OpenStreamError, StreamProtocol};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/id/1.0.0");
/// The protocol version this node announces (the one libp2p implementations use).
pub const PROTOCOL_VERSION: &str = "ipfs/0.1.0";
/// The agent version this node announces.
pub const AGENT_VERSION: &str = concat!("missive/", env!("CARGO_PKG_VERSION"));
/// Largest identify message read or written (rust-libp2p's limit too).
pub const MAX_MESSAGE_SIZE: usize = 4096;
/// Most listen addresses and protocols written, so the message stays under the limit.
const MAX_LISTED: usize = 64;
/// How long a request may take, open to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer may take to write before the stream is dropped.
const SERVE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a peer says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Info {
    /// The peer's public key; its [`PeerId`] is checked against the connection's.
    pub public_key: PublicKey,
    /// The protocol family version, such as `ipfs/0.1.0`.
    pub protocol_version: String,
    /// The implementation, such as `rust-libp2p/0.57.0` or `missive/0.1.0`.
    pub agent_version: String,
    /// The addresses the peer listens on, as far as this node understands them.
    pub listen_addrs: Vec<Multiaddr>,
    /// Listen addresses left out because they hold components this node does not support
    /// (WebTransport, circuit relay, ...): counted, not silently dropped.
    pub unsupported_addrs: usize,
    /// The stream protocols the peer accepts.
    pub protocols: Vec<StreamProtocol>,
    /// The address the peer sees this node at, when it said and this node understands it.
    pub observed_addr: Option<Multiaddr>,
}

impl Info {
    /// The info a node with `public_key` announces.
    pub fn new(public_key: PublicKey) -> Self {
        Self {
            public_key,
            protocol_version: PROTOCOL_VERSION.to_owned(),
            agent_version: AGENT_VERSION.to_owned(),
            listen_addrs: Vec::new(),
            unsupported_addrs: 0,
            protocols: Vec::new(),
            observed_addr: None,
        }
    }

    /// Sets the listen addresses.
    pub fn with_listen_addrs(mut self, addrs: Vec<Multiaddr>) -> Self {
        self.listen_addrs = addrs;
        self
    }

    /// Sets the protocols.
    pub fn with_protocols(mut self, protocols: Vec<StreamProtocol>) -> Self {
        self.protocols = protocols;
        self
    }

    /// The peer id of [`Info::public_key`].
    pub fn peer_id(&self) -> PeerId {
        self.public_key.to_peer_id()
    }

    /// The protobuf message (without its length prefix). At most 64 addresses and
    /// protocols are written; a message over [`MAX_MESSAGE_SIZE`] drops protocols from the end.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        put_bytes(&mut out, 5, self.protocol_version.as_bytes());
        put_bytes(&mut out, 6, self.agent_version.as_bytes());
        put_bytes(&mut out, 1, &self.public_key.to_protobuf_encoding());
        for a in self.listen_addrs.iter().take(MAX_LISTED) {
            put_bytes(&mut out, 2, &a.to_bytes());
        }
        if let Some(a) = &self.observed_addr {
            put_bytes(&mut out, 4, &a.to_bytes());
        }
        for p in self.protocols.iter().take(MAX_LISTED) {
            let before = out.len();
            put_bytes(&mut out, 3, p.as_str().as_bytes());
            if out.len() > MAX_MESSAGE_SIZE {
                out.truncate(before);
                break;
            }
        }
        out
    }

    /// Reads an identify message. Unknown fields (such as a signed peer record) are skipped;
    /// addresses this node cannot represent are counted in [`Info::unsupported_addrs`];
    /// protocol names that are not valid are left out.
    ///
    /// # Errors
    /// The message is over the size limit, malformed, or lacks a valid public key.
    pub fn decode(mut bytes: &[u8]) -> Result<Self, IdentifyError> {
        if bytes.len() > MAX_MESSAGE_SIZE {
            return Err(IdentifyError::TooLarge {
                len: bytes.len() as u64,
            });
        }
        let mut public_key = None;
        let mut protocol_version = String::new();
        let mut agent_version = String::new();
        let mut listen_addrs = Vec::new();
        let mut unsupported_addrs = 0;
        let mut protocols = Vec::new();
        let mut observed_addr = None;
        while !bytes.is_empty() {
            let (field, value, rest) =
                next_field(bytes).map_err(|e| IdentifyError::Malformed(e.describe()))?;
            bytes = rest;
            let Value::Bytes(v) = value else {
                if matches!(field, 1..=6) {
                    return Err(IdentifyError::Malformed(
                        "a known field with a wrong wire type",
                    ));
                }
                continue;
            };
            match field {
                1 => {
                    public_key = Some(
                        PublicKey::from_protobuf_encoding(v).map_err(IdentifyError::PublicKey)?,
                    );
                }
                2 => match Multiaddr::from_bytes(v) {
                    Ok(a) => listen_addrs.push(a),
                    Err(_) => unsupported_addrs += 1,
                },
                3 => {
                    if let Ok(name) = std::str::from_utf8(v)
                        && let Ok(p) = StreamProtocol::try_from_owned(name.to_owned())
                    {
                        protocols.push(p);
                    }
                }
                4 => observed_addr = Multiaddr::from_bytes(v).ok(),
                5 => protocol_version = utf8(v, "protocol version")?,
                6 => agent_version = utf8(v, "agent version")?,
                _ => {}
            }
        }
        Ok(Info {
            public_key: public_key.ok_or(IdentifyError::Malformed("no public key"))?,
            protocol_version,
            agent_version,
            listen_addrs,
            unsupported_addrs,
            protocols,
            observed_addr,
        })
    }
}

fn utf8(v: &[u8], what: &'static str) -> Result<String, IdentifyError> {
    std::str::from_utf8(v)
        .map(str::to_owned)
        .map_err(|_| IdentifyError::Malformed(what))
}

/// Why identifying a peer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentifyError {
    /// The stream could not be opened (dial failure, unsupported protocol, ...).
    #[error("could not open an identify stream: {0}")]
    Open(#[source] OpenStreamError),
    /// The stream failed or ended before the whole message.
    #[error("identify stream failed: {0}")]
    Io(#[source] std::io::Error),
    /// The peer announced a message over [`MAX_MESSAGE_SIZE`].
    #[error("the identify message of {len} bytes is over the {MAX_MESSAGE_SIZE}-byte limit")]
    TooLarge {
        /// The announced length.
        len: u64,
    },
    /// The message is not a valid identify message.
    #[error("malformed identify message: {0}")]
    Malformed(&'static str),
    /// The public key is malformed or of an unsupported type.
    #[error("identify public key refused: {0}")]
    PublicKey(#[source] DecodeKeyError),
    /// The key belongs to a different peer than the one on the connection.
    #[error("the identify key is {got}'s, not {expected}'s")]
    PeerMismatch {
        /// The peer asked.
        expected: PeerId,
        /// The peer the key belongs to.
        got: PeerId,
    },
    /// No answer within 10 s.
    #[error("identify timed out")]
    Timeout,
}

/// Asks `peer` (dialing a known address when there is no connection) what it says about itself,
/// and checks that its key is the connection's.
///
/// # Errors
/// See [`IdentifyError`].
pub async fn request(control: &Control, peer: PeerId) -> Result<Info, IdentifyError> {
    let work = async {
        let mut stream = control
            .open_stream(peer, PROTOCOL)
            .await
            .map_err(IdentifyError::Open)?;
        let len = read_length(&mut stream).await?;
        let mut message = vec![0u8; len];
        stream
            .read_exact(&mut message)
            .await
            .map_err(IdentifyError::Io)?;
        let info = Info::decode(&message)?;
        if info.peer_id() != peer {
            return Err(IdentifyError::PeerMismatch {
                expected: peer,
                got: info.peer_id(),
            });
        }
        Ok(info)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .map_err(|_| IdentifyError::Timeout)?
}

/// Reads a varint length prefix and checks it against the limit before anything is allocated.
async fn read_length<R: AsyncRead + Unpin>(r: &mut R) -> Result<usize, IdentifyError> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let b = r.read_u8().await.map_err(IdentifyError::Io)?;
        len |= u64::from(b & 0x7f) << (7 * i);
        if len > MAX_MESSAGE_SIZE as u64 {
            return Err(IdentifyError::TooLarge { len });
        }
        if b & 0x80 == 0 {
            return usize::try_from(len).map_err(|_| IdentifyError::TooLarge { len });
        }
    }
    Err(IdentifyError::Malformed(
        "length prefix longer than 10 bytes",
    ))
}

/// Answers identify on the node behind `control` until the node shuts down. Each answer lists
/// the node's listen addresses and registered protocols at the time it is asked, and the
/// address the asking peer is seen at (the connection's remote address).
pub(crate) fn serve(control: &Control, public_key: PublicKey) {
    // Weak: the node's own routes must not keep the node alive.
    let node = Arc::downgrade(control.shared());
    let served = control.serve_inline(PROTOCOL, move |_peer, mut stream| {
        let info = node.upgrade().map(|shared| {
            let mut info = Info::new(public_key.clone())
                .with_listen_addrs(shared.listen_addrs())
                .with_protocols(shared.protocols());
            info.observed_addr = Some(stream.remote_addr().without_peer_id());
            info
        });
        async move {
            let Some(info) = info else {
                return; // the node is shutting down
            };
            let message = info.encode();
            let mut framed = Vec::with_capacity(message.len() + 2);
            write_uvarint(&mut framed, message.len() as u64);
            framed.extend_from_slice(&message);
            let answer = async {
                stream.write_all(&framed).await?;
                stream.shutdown().await
            };
            if let Err(e) = tokio::time::timeout(SERVE_TIMEOUT, answer).await {
                tracing::debug!(error = %e, "identify answer not written in time");
            }
        }
    });
    if let Ok(registration) = served {
        registration.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::Keypair;
    use proptest::prelude::*;

    fn sample() -> Info {
        let mut info = Info::new(Keypair::from_secret_bytes([3; 32]).public())
            .with_listen_addrs(vec![
                "/ip4/127.0.0.1/tcp/4001".parse().expect("addr"),
                "/ip6/::1/tcp/4001".parse().expect("addr"),
            ])
            .with_protocols(vec![PROTOCOL, crate::protocols::ping::PROTOCOL]);
        info.observed_addr = Some("/ip4/10.0.0.1/tcp/5000".parse().expect("addr"));
        info
    }

    #[test]
    fn encode_then_decode_gives_the_same_info() {
        let info = sample();
        assert_eq!(Info::decode(&info.encode()).expect("decode"), info);
    }

    #[test]
    fn keys_of_every_type_round_trip_through_identify() {
        for key in [
            Keypair::from_secret_bytes([3; 32]).public(),
            Keypair::secp256k1_from_secret_bytes([3; 32])
                .expect("valid scalar")
                .public(),
        ] {
            let mut info = sample();
            info.public_key = key.clone();
            let got = Info::decode(&info.encode()).expect("decode");
            assert_eq!(got.peer_id(), key.to_peer_id());
            assert_eq!(got.public_key, key);
        }
    }

    #[test]
    fn unsupported_addresses_are_counted_and_unknown_fields_skipped() {
        let info = sample();
        let mut msg = info.encode();
        put_bytes(&mut msg, 2, &[0xa2, 0x02]); // /p2p-circuit
        put_bytes(&mut msg, 8, b"a signed peer record");
        let got = Info::decode(&msg).expect("decode");
        assert_eq!(got.unsupported_addrs, 1);
        assert_eq!(got.listen_addrs, info.listen_addrs);
    }

    #[test]
    fn a_message_without_a_key_or_with_a_bad_one_is_refused() {
        let mut msg = Vec::new();
        put_bytes(&mut msg, 6, b"agent");
        assert!(matches!(
            Info::decode(&msg),
            Err(IdentifyError::Malformed("no public key"))
        ));
        put_bytes(&mut msg, 1, &[0x08, 0x07, 0x12, 0x01, 0x00]);
        assert!(matches!(
            Info::decode(&msg),
            Err(IdentifyError::PublicKey(
                DecodeKeyError::UnsupportedKeyType(7)
            ))
        ));
    }

    #[test]
    fn an_oversized_message_is_refused_before_parsing() {
        assert!(matches!(
            Info::decode(&vec![0u8; MAX_MESSAGE_SIZE + 1]),
            Err(IdentifyError::TooLarge { .. })
        ));
    }

    #[test]
    fn encoding_stays_under_the_limit_with_many_protocols() {
        let protocols = (0..200)
            .map(|i| {
                StreamProtocol::try_from_owned(format!("/{}/{i}", "p".repeat(100))).expect("name")
            })
            .collect();
        let info = sample().with_protocols(protocols);
        let msg = info.encode();
        assert!(msg.len() <= MAX_MESSAGE_SIZE, "{}", msg.len());
        assert!(!Info::decode(&msg).expect("decode").protocols.is_empty());
    }

    #[tokio::test]
    async fn a_length_prefix_over_the_limit_is_refused_before_reading_the_body() {
        let mut prefix = Vec::new();
        write_uvarint(&mut prefix, 1 << 40);
        assert!(matches!(
            read_length(&mut &prefix[..]).await,
            Err(IdentifyError::TooLarge { .. })
        ));
        let mut ok = Vec::new();
        write_uvarint(&mut ok, 300);
        assert_eq!(read_length(&mut &ok[..]).await.expect("length"), 300);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Info::decode(&bytes);
        }

        #[test]
        fn round_trips_any_agent_and_addresses(agent in "\\PC{0,40}", ports in proptest::collection::vec(any::<u16>(), 0..8)) {
            let mut info = sample();
            info.agent_version = agent;
            info.listen_addrs = ports.iter().map(|p| Multiaddr::from_socket_addr(([127, 0, 0, 1], *p).into())).collect();
            prop_assert_eq!(Info::decode(&info.encode()).expect("decode"), info);
        }
    }
}
