//! The `/noise` security upgrade: Noise XX with the libp2p handshake payload, and the framed,
//! encrypted byte stream that follows it.
//!
//! Handshake: `→ e`; `← e, ee, s, es` + payload; `→ s, se` + payload, where the payload is the
//! protobuf `NoiseHandshakePayload { 1: identity_key, 2: identity_sig, 4: extensions }` and the
//! signature covers `"noise-libp2p-static-key:"` ‖ the sender's X25519 static key. Every Noise
//! message travels as a 2-byte big-endian length followed by the message.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use missive::p2p::Keypair;
//! use missive::p2p::noise::NoiseConfig;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let (alice, bob) = (Keypair::generate(), Keypair::generate());
//! let (a, b) = missive::transport::memory::pair(64 * 1024);
//! let responder = NoiseConfig::new(&bob)?;
//! let answer = tokio::spawn(async move {
//!     let (mut stream, peer) = responder.handshake(b, false, None).await?;
//!     let mut buf = [0u8; 5];
//!     stream.read_exact(&mut buf).await?;
//!     Ok::<_, Box<dyn std::error::Error + Send + Sync>>((peer, buf))
//! });
//! let initiator = NoiseConfig::new(&alice)?;
//! let (mut stream, peer) = initiator.handshake(a, true, Some(bob.public().to_peer_id())).await?;
//! assert_eq!(peer, bob.public().to_peer_id());
//! stream.write_all(b"hello").await?;
//! stream.flush().await?;
//! let (seen, bytes) = answer.await?.map_err(|e| e.to_string())?;
//! assert_eq!((seen, &bytes), (alice.public().to_peer_id(), b"hello"));
//! # Ok(())
//! # }
//! ```

mod x25519;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf as _, BytesMut};
use ring::aead;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

use super::protobuf::{ProtobufError, Value, next_field, put_bytes};
use super::{Keypair, PeerId, PublicKey};

/// The Noise protocol name used by libp2p.
const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
/// Prefix of the signed message in the handshake payload.
const STATIC_KEY_DOMAIN: &[u8] = b"noise-libp2p-static-key:";
/// Largest Noise message (the length prefix is 16 bits).
pub const MAX_NOISE_MESSAGE: usize = 65_535;
/// AEAD tag length.
const TAG_LEN: usize = 16;
/// Largest plaintext per transport message.
const MAX_PLAINTEXT: usize = MAX_NOISE_MESSAGE - TAG_LEN;

/// Why the Noise handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NoiseError {
    /// The connection failed or closed during the handshake.
    #[error("i/o during the noise handshake: {0}")]
    Io(#[source] io::Error),
    /// The peer's handshake message did not decrypt or was malformed.
    #[error("peer sent an invalid noise handshake message: {0}")]
    InvalidMessage(String),
    /// The peer's handshake payload is not a valid protobuf payload.
    #[error("peer sent a malformed handshake payload: {0}")]
    InvalidPayload(&'static str),
    /// The peer's identity key is malformed or of a type or form this node does not support.
    #[error("peer's identity key was refused: {0}")]
    InvalidIdentityKey(#[source] super::DecodeKeyError),
    /// The peer's signature over its static key does not verify.
    #[error("peer's signature over its noise static key is invalid")]
    BadSignature,
    /// The peer is not the one that was dialed.
    #[error("peer id mismatch: expected {expected}, the remote is {actual}")]
    PeerIdMismatch {
        /// The PeerId that was dialed.
        expected: PeerId,
        /// The PeerId the remote proved.
        actual: PeerId,
    },
    /// A WebTransport server did not list a certificate hash the dialed address named.
    #[error("the WebTransport server's noise extensions lack the certificate hash {missing:02x?}")]
    CerthashMismatch {
        /// The multihash that was dialed but not listed.
        missing: Vec<u8>,
    },
    /// The local Noise state failed (not the peer's fault).
    #[error("local noise error: {0}")]
    Local(String),
}

/// The local static Noise key and the signed payload, prepared once per node.
///
/// A node uses it for every connection; it is public so that the libp2p Noise handshake can
/// secure any byte stream (for example an in-memory pipe in tests).
#[derive(Clone)]
pub struct NoiseConfig {
    static_private: Vec<u8>,
    /// The signed identity, kept to re-encode it with extensions (WebTransport's certhashes).
    identity: HandshakePayload,
    payload: Vec<u8>,
}

impl std::fmt::Debug for NoiseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseConfig").finish_non_exhaustive()
    }
}

impl NoiseConfig {
    /// Generates a static X25519 key and signs it with the identity key.
    pub fn new(identity: &Keypair) -> Result<Self, NoiseError> {
        let kp = builder()
            .generate_keypair()
            .map_err(|e| NoiseError::Local(e.to_string()))?;
        let mut signed = STATIC_KEY_DOMAIN.to_vec();
        signed.extend_from_slice(&kp.public);
        let sig = identity.sign(&signed);
        let identity = HandshakePayload {
            identity_key: identity.public().to_protobuf_encoding(),
            identity_sig: sig,
            ..HandshakePayload::default()
        };
        Ok(Self {
            static_private: kp.private,
            payload: encode_payload(&identity),
            identity,
        })
    }

    /// Runs the handshake of a WebTransport session on its first stream and returns the
    /// remote's proven PeerId. Nothing is encrypted after it: the session's streams are
    /// secured by the QUIC connection, and the handshake binds them to the peers' identities.
    ///
    /// The responder (the server) sends `certhashes`, the multihashes of the certificates it
    /// may present, in the extensions of message 2. The initiator passes the hashes it dialed
    /// and refuses, before sending message 3, a responder whose list lacks any of them
    /// ([`NoiseError::CerthashMismatch`]): the server is not the one the address named.
    pub async fn handshake_webtransport<T>(
        &self,
        mut io: T,
        initiator: bool,
        expected: Option<PeerId>,
        certhashes: &[Vec<u8>],
    ) -> Result<PeerId, NoiseError>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let mut hs = self.state(initiator)?;
        let remote = if initiator {
            send_message(&mut io, &mut hs, &[]).await?;
            let remote = recv_message(&mut io, &mut hs).await?;
            let remote = decode_payload(&remote)?;
            if let Some(missing) = certhashes
                .iter()
                .find(|h| !remote.webtransport_certhashes.contains(h))
            {
                return Err(NoiseError::CerthashMismatch {
                    missing: missing.clone(),
                });
            }
            send_message(&mut io, &mut hs, &self.payload).await?;
            remote
        } else {
            let payload = encode_payload(&HandshakePayload {
                webtransport_certhashes: certhashes.to_vec(),
                ..self.identity.clone()
            });
            recv_message(&mut io, &mut hs).await?;
            send_message(&mut io, &mut hs, &payload).await?;
            decode_payload(&recv_message(&mut io, &mut hs).await?)?
        };
        let remote_static = hs
            .get_remote_static()
            .ok_or(NoiseError::InvalidPayload("no remote static key"))?;
        let peer = verify_decoded(&remote, remote_static)?;
        check_expected(expected, peer)?;
        if !hs.is_handshake_finished() {
            return Err(NoiseError::Local("handshake ended early".into()));
        }
        Ok(peer)
    }

    fn state(&self, initiator: bool) -> Result<snow::HandshakeState, NoiseError> {
        let builder = builder().local_private_key(&self.static_private);
        let builder = builder.map_err(|e| NoiseError::Local(e.to_string()))?;
        if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .map_err(|e| NoiseError::Local(e.to_string()))
    }

    /// Runs the handshake on `io` (as the initiator or the responder) and returns the
    /// encrypted stream and the remote's proven PeerId; with `expected`, a different remote is
    /// refused with [`NoiseError::PeerIdMismatch`].
    pub async fn handshake<T>(
        &self,
        mut io: T,
        initiator: bool,
        expected: Option<PeerId>,
    ) -> Result<(NoiseStream<T>, PeerId), NoiseError>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let mut hs = self.state(initiator)?;
        let remote_payload = if initiator {
            send_message(&mut io, &mut hs, &[]).await?;
            let remote = recv_message(&mut io, &mut hs).await?;
            send_message(&mut io, &mut hs, &self.payload).await?;
            remote
        } else {
            recv_message(&mut io, &mut hs).await?;
            send_message(&mut io, &mut hs, &self.payload).await?;
            recv_message(&mut io, &mut hs).await?
        };
        let remote_static = hs
            .get_remote_static()
            .ok_or(NoiseError::InvalidPayload("no remote static key"))?;
        let peer = verify_payload(&remote_payload, remote_static)?;
        check_expected(expected, peer)?;
        if !hs.is_handshake_finished() {
            return Err(NoiseError::Local("handshake ended early".into()));
        }
        // The initiator sends with the first key of the split, the responder with the second;
        // the handshake state (and its buffers) goes away here.
        let (first, second) = hs.dangerously_get_raw_split();
        drop(hs);
        let (send, recv) = if initiator {
            (first, second)
        } else {
            (second, first)
        };
        Ok((NoiseStream::new(io, send, recv), peer))
    }
}

/// A handshake builder whose cipher, hash and random numbers come from ring (the transport
/// phase's ChaCha20-Poly1305 with them), and X25519 from curve25519-dalek with its
/// precomputed base-point tables, or from aws-lc-rs with the `aws-lc` feature.
fn builder() -> snow::Builder<'static> {
    let params = NOISE_PARAMS
        .parse()
        .expect("the libp2p noise parameters are a valid pattern");
    let resolver = snow::resolvers::FallbackResolver::new(
        Box::new(x25519::Resolver),
        Box::new(snow::resolvers::RingResolver),
    );
    snow::Builder::with_resolver(params, Box::new(resolver))
}

/// Refuses a remote other than the one dialed.
fn check_expected(expected: Option<PeerId>, peer: PeerId) -> Result<(), NoiseError> {
    match expected {
        Some(expected) if expected != peer => Err(NoiseError::PeerIdMismatch {
            expected,
            actual: peer,
        }),
        _ => Ok(()),
    }
}

/// Checks the payload's signature over `remote_static` and returns the sender's PeerId.
fn verify_payload(payload: &[u8], remote_static: &[u8]) -> Result<PeerId, NoiseError> {
    verify_decoded(&decode_payload(payload)?, remote_static)
}

fn verify_decoded(p: &HandshakePayload, remote_static: &[u8]) -> Result<PeerId, NoiseError> {
    let key = PublicKey::from_protobuf_encoding(&p.identity_key)
        .map_err(NoiseError::InvalidIdentityKey)?;
    let mut signed = STATIC_KEY_DOMAIN.to_vec();
    signed.extend_from_slice(remote_static);
    if !key.verify(&signed, &p.identity_sig) {
        return Err(NoiseError::BadSignature);
    }
    Ok(key.to_peer_id())
}

/// Most bytes a handshake message adds to its payload: an ephemeral key, an encrypted static
/// key and the payload's tag.
const HANDSHAKE_OVERHEAD: usize = 32 + (32 + TAG_LEN) + TAG_LEN;

/// Writes the next handshake message, carrying `payload`, as one length-prefixed frame.
async fn send_message<T: AsyncWrite + Unpin>(
    io: &mut T,
    hs: &mut snow::HandshakeState,
    payload: &[u8],
) -> Result<(), NoiseError> {
    let mut frame = vec![0u8; 2 + payload.len() + HANDSHAKE_OVERHEAD];
    let n = hs
        .write_message(payload, &mut frame[2..])
        .map_err(|e| NoiseError::Local(e.to_string()))?;
    let len = u16::try_from(n).map_err(|_| NoiseError::Local("frame too long".into()))?;
    frame[..2].copy_from_slice(&len.to_be_bytes());
    frame.truncate(2 + n);
    io.write_all(&frame).await.map_err(NoiseError::Io)?;
    io.flush().await.map_err(NoiseError::Io)
}

/// Reads the next handshake message (its length is at most 65,535 by the 16-bit prefix) and
/// returns the payload it carries.
async fn recv_message<T: AsyncRead + Unpin>(
    io: &mut T,
    hs: &mut snow::HandshakeState,
) -> Result<Vec<u8>, NoiseError> {
    let mut len = [0u8; 2];
    io.read_exact(&mut len).await.map_err(NoiseError::Io)?;
    let len = usize::from(u16::from_be_bytes(len));
    let mut msg = vec![0u8; len];
    io.read_exact(&mut msg).await.map_err(NoiseError::Io)?;
    let mut payload = vec![0u8; len];
    let n = hs
        .read_message(&msg, &mut payload)
        .map_err(|e| NoiseError::InvalidMessage(e.to_string()))?;
    payload.truncate(n);
    Ok(payload)
}

/// The decoded handshake payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakePayload {
    /// Protobuf-encoded public identity key.
    pub identity_key: Vec<u8>,
    /// Signature over `"noise-libp2p-static-key:"` ‖ static key.
    pub identity_sig: Vec<u8>,
    /// Multihashes of the certificates a WebTransport server may present (extensions field
    /// 4.1); empty when absent.
    pub webtransport_certhashes: Vec<Vec<u8>>,
    /// Muxers announced in the extensions (field 4.2); empty when absent.
    pub stream_muxers: Vec<String>,
}

/// Most stream muxers accepted in the extensions.
const MAX_MUXERS: usize = 16;
/// Most certificate hashes accepted in the extensions (a server sends up to three).
const MAX_CERTHASHES: usize = 16;
/// Longest certificate hash accepted (a SHA-512 multihash is 66 bytes).
const MAX_CERTHASH_LEN: usize = 128;

/// Encodes a handshake payload as protobuf.
pub fn encode_payload(p: &HandshakePayload) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.identity_key.len() + p.identity_sig.len() + 8);
    put_bytes(&mut out, 1, &p.identity_key);
    put_bytes(&mut out, 2, &p.identity_sig);
    if !p.stream_muxers.is_empty() || !p.webtransport_certhashes.is_empty() {
        let mut ext = Vec::new();
        for h in &p.webtransport_certhashes {
            put_bytes(&mut ext, 1, h);
        }
        for m in &p.stream_muxers {
            put_bytes(&mut ext, 2, m.as_bytes());
        }
        put_bytes(&mut out, 4, &ext);
    }
    out
}

fn invalid(e: ProtobufError) -> NoiseError {
    NoiseError::InvalidPayload(e.describe())
}

/// Decodes a handshake payload; unknown fields are skipped.
pub fn decode_payload(mut buf: &[u8]) -> Result<HandshakePayload, NoiseError> {
    let mut p = HandshakePayload::default();
    while !buf.is_empty() {
        let (field, value, rest) = next_field(buf).map_err(invalid)?;
        buf = rest;
        match (field, value) {
            (1, Value::Bytes(b)) => p.identity_key = b.to_vec(),
            (2, Value::Bytes(b)) => p.identity_sig = b.to_vec(),
            (4, Value::Bytes(mut ext)) => {
                while !ext.is_empty() {
                    let (f, v, rest) = next_field(ext).map_err(invalid)?;
                    ext = rest;
                    if let (1, Value::Bytes(h)) = (f, v) {
                        if p.webtransport_certhashes.len() >= MAX_CERTHASHES
                            || h.len() > MAX_CERTHASH_LEN
                        {
                            return Err(NoiseError::InvalidPayload(
                                "too many or too long certificate hashes",
                            ));
                        }
                        p.webtransport_certhashes.push(h.to_vec());
                    } else if let (2, Value::Bytes(m)) = (f, v) {
                        if p.stream_muxers.len() >= MAX_MUXERS {
                            return Err(NoiseError::InvalidPayload("too many stream muxers"));
                        }
                        let m = std::str::from_utf8(m)
                            .map_err(|_| NoiseError::InvalidPayload("muxer name is not UTF-8"))?;
                        p.stream_muxers.push(m.to_owned());
                    }
                }
            }
            (1 | 2 | 4, _) => {
                return Err(NoiseError::InvalidPayload(
                    "known field with a wrong wire type",
                ));
            }
            _ => {}
        }
    }
    if p.identity_key.is_empty() || p.identity_sig.is_empty() {
        return Err(NoiseError::InvalidPayload(
            "missing identity key or signature",
        ));
    }
    Ok(p)
}

/// Buffers that drained streams gave back, kept per thread for the next stream that needs one:
/// a busy stream that drains and refills many times a second does not return its buffers to
/// the allocator each time (which unmaps and faults pages back in), and an idle stream holds
/// none. At most [`POOL_BUFFERS`] buffers of at most [`POOL_MAX_CAPACITY`] bytes per thread.
mod pool {
    use std::cell::RefCell;

    use bytes::BytesMut;

    /// Buffers kept per thread, for each direction.
    pub(super) const POOL_BUFFERS: usize = 4;
    /// Largest buffer kept: two whole frames.
    pub(super) const POOL_MAX_CAPACITY: usize = 2 * (2 + super::MAX_NOISE_MESSAGE) + 1024;

    thread_local! {
        static READ: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
        static WRITE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty input buffer.
    pub(super) fn take_read() -> BytesMut {
        READ.try_with(|free| free.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Gives a drained input buffer back.
    pub(super) fn give_read(mut buf: BytesMut) {
        if buf.capacity() == 0 || buf.capacity() > POOL_MAX_CAPACITY {
            return;
        }
        buf.clear();
        let _ = READ.try_with(|free| {
            let mut free = free.borrow_mut();
            if free.len() < POOL_BUFFERS {
                free.push(buf);
            }
        });
    }

    /// An empty output buffer.
    pub(super) fn take_write() -> Vec<u8> {
        WRITE
            .try_with(|free| free.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Gives a sent output buffer back.
    pub(super) fn give_write(mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > POOL_MAX_CAPACITY {
            return;
        }
        buf.clear();
        let _ = WRITE.try_with(|free| {
            let mut free = free.borrow_mut();
            if free.len() < POOL_BUFFERS {
                free.push(buf);
            }
        });
    }
}

/// Bytes asked of the socket per read when no frame length says more.
const READ_CHUNK: usize = 8 * 1024;

/// One direction's ChaCha20-Poly1305 key and its next nonce (Noise: 32 zero bits, then the
/// 64-bit counter in little-endian order; the all-ones counter is never used).
struct Direction {
    key: [u8; 32],
    nonce: u64,
}

impl Direction {
    fn new(key: [u8; 32]) -> Self {
        Self { key, nonce: 0 }
    }

    /// The key and the nonce for the next message.
    fn next(&mut self) -> io::Result<(aead::LessSafeKey, aead::Nonce)> {
        if self.nonce == u64::MAX {
            return Err(io::Error::other("noise nonces exhausted"));
        }
        let mut nonce = [0u8; aead::NONCE_LEN];
        nonce[4..].copy_from_slice(&self.nonce.to_le_bytes());
        self.nonce += 1;
        let key = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &self.key)
            .map_err(|_| io::Error::other("noise cipher key rejected"))?;
        Ok((
            aead::LessSafeKey::new(key),
            aead::Nonce::assume_unique_for_key(nonce),
        ))
    }
}

/// A byte stream encrypted with the Noise transport keys, framed as libp2p does.
///
/// Writes are gathered into frames of up to 65,519 plaintext bytes; a flush seals and sends the
/// current frame. Reads decrypt one frame at a time, in place. Buffers exist only while data
/// is in them: an idle stream holds none.
pub struct NoiseStream<T> {
    io: T,
    send: Direction,
    recv: Direction,
    /// Input. `rbuf[ppos..pend]` is decrypted and unread; `rbuf[cursor..]` is still encrypted.
    rbuf: BytesMut,
    ppos: usize,
    pend: usize,
    cursor: usize,
    /// The frame being gathered: two bytes for its length, then the plaintext.
    open: Vec<u8>,
    /// A sealed frame on its way out: `sealed[spos..]` is unsent.
    sealed: Vec<u8>,
    spos: usize,
    /// Plaintext length of the last sealed frame: the room a new frame starts with, so that a
    /// steady stream of large frames does not grow each one from nothing.
    last_frame: usize,
}

impl<T> std::fmt::Debug for NoiseStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseStream").finish_non_exhaustive()
    }
}

impl<T> NoiseStream<T> {
    fn new(io: T, send: [u8; 32], recv: [u8; 32]) -> Self {
        Self {
            io,
            send: Direction::new(send),
            recv: Direction::new(recv),
            rbuf: BytesMut::new(),
            ppos: 0,
            pend: 0,
            cursor: 0,
            open: Vec::new(),
            sealed: Vec::new(),
            spos: 0,
            last_frame: 0,
        }
    }

    /// The length of the frame whose prefix starts the encrypted input, once it has arrived.
    fn next_frame_len(&self) -> Option<usize> {
        let avail = self.rbuf.get(self.cursor..)?;
        let prefix = avail.get(..2)?;
        Some(usize::from(u16::from_be_bytes([prefix[0], prefix[1]])))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> NoiseStream<T> {
    /// Decrypts the next complete frame of the input in place; `false` when none is complete.
    fn decrypt_next(&mut self) -> io::Result<bool> {
        let Some(len) = self.next_frame_len() else {
            return Ok(false);
        };
        if len < TAG_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "peer sent a noise frame shorter than its tag",
            ));
        }
        let start = self.cursor + 2;
        let Some(frame) = self.rbuf.get_mut(start..start + len) else {
            return Ok(false);
        };
        let (key, nonce) = self.recv.next()?;
        let plain = key
            .open_in_place(nonce, aead::Aad::empty(), frame)
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "peer sent a noise frame that does not decrypt",
                )
            })?
            .len();
        self.ppos = start;
        self.pend = start + plain;
        self.cursor = start + len;
        Ok(true)
    }

    /// Reads more input, with room for the whole frame whose length is known. The buffer is
    /// released when the socket has nothing and nothing is buffered.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let have = self.rbuf.len() - self.cursor;
        let need = self.next_frame_len().map_or(2, |len| 2 + len);
        let room = need.saturating_sub(have).max(READ_CHUNK);
        if self.rbuf.capacity() == 0 {
            self.rbuf = pool::take_read();
        }
        self.rbuf.reserve(room);
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
            Poll::Pending => {
                if self.rbuf.is_empty() {
                    pool::give_read(std::mem::take(&mut self.rbuf));
                }
                Poll::Pending
            }
            ready => ready,
        }
    }

    /// Seals the gathered frame in place and makes it the one on its way out (the previous one
    /// must be sent already).
    fn seal_open(&mut self) -> io::Result<()> {
        debug_assert!(self.spos >= self.sealed.len());
        let plain = self.open.len() - 2;
        let len =
            u16::try_from(plain + TAG_LEN).map_err(|_| io::Error::other("noise frame too long"))?;
        let (key, nonce) = self.send.next()?;
        let tag = key
            .seal_in_place_separate_tag(nonce, aead::Aad::empty(), &mut self.open[2..])
            .map_err(|_| io::Error::other("noise encryption failed"))?;
        self.open.extend_from_slice(tag.as_ref());
        self.open[..2].copy_from_slice(&len.to_be_bytes());
        std::mem::swap(&mut self.open, &mut self.sealed);
        self.open.clear();
        self.spos = 0;
        Ok(())
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.spos < self.sealed.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.sealed[self.spos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.spos += n;
        }
        self.sealed.clear();
        self.spos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for NoiseStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ppos < this.pend {
                let n = buf.remaining().min(this.pend - this.ppos);
                buf.put_slice(&this.rbuf[this.ppos..this.ppos + n]);
                this.ppos += n;
                return Poll::Ready(Ok(()));
            }
            if this.cursor > 0 {
                this.rbuf.advance(this.cursor);
                (this.ppos, this.pend, this.cursor) = (0, 0, 0);
            }
            if this.decrypt_next()? {
                continue;
            }
            let n = ready!(this.poll_fill(cx))?;
            if n == 0 {
                if !this.rbuf.is_empty() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed in the middle of a noise frame",
                    )));
                }
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for NoiseStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if this.open.is_empty() {
                let room = 2 + buf.len().max(this.last_frame).min(MAX_PLAINTEXT) + TAG_LEN;
                if this.open.capacity() == 0 {
                    this.open = pool::take_write();
                }
                this.open.reserve(room);
                this.open.extend_from_slice(&[0, 0]);
            }
            let gathered = this.open.len() - 2;
            if gathered < MAX_PLAINTEXT {
                let n = buf.len().min(MAX_PLAINTEXT - gathered);
                this.open.extend_from_slice(&buf[..n]);
                return Poll::Ready(Ok(n));
            }
            ready!(this.poll_drain(cx))?;
            this.seal_open()?;
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if this.open.len() > 2 {
            this.seal_open()?;
            ready!(this.poll_drain(cx))?;
        }
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        // Everything is out: an idle stream keeps no write buffer.
        pool::give_write(std::mem::take(&mut this.sealed));
        if this.open.len() <= 2 {
            pool::give_write(std::mem::take(&mut this.open));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_deadline::within;
    use proptest::prelude::*;

    async fn pair(
        a: &Keypair,
        b: &Keypair,
        expected: Option<PeerId>,
    ) -> (
        Result<(NoiseStream<tokio::io::DuplexStream>, PeerId), NoiseError>,
        Result<(NoiseStream<tokio::io::DuplexStream>, PeerId), NoiseError>,
    ) {
        let (x, y) = tokio::io::duplex(1 << 20);
        let ca = NoiseConfig::new(a).expect("config");
        let cb = NoiseConfig::new(b).expect("config");
        tokio::join!(
            ca.handshake(x, true, expected),
            cb.handshake(y, false, None)
        )
    }

    #[tokio::test]
    async fn handshake_proves_both_peer_ids_and_carries_data() {
        within(async {
            let (a, b) = (Keypair::generate(), Keypair::generate());
            let (ra, rb) = pair(&a, &b, Some(b.peer_id())).await;
            let (mut sa, pa) = ra.expect("initiator");
            let (mut sb, pb) = rb.expect("responder");
            assert_eq!((pa, pb), (b.peer_id(), a.peer_id()));
            let big = vec![7u8; 200_000];
            let writer = async {
                sa.write_all(&big).await.expect("write");
                sa.shutdown().await.expect("shutdown");
            };
            let mut got = Vec::new();
            let reader = sb.read_to_end(&mut got);
            let (_, r) = tokio::join!(writer, reader);
            r.expect("read");
            assert_eq!(got, big);
        })
        .await;
    }

    #[tokio::test]
    async fn stream_ending_mid_frame_is_an_error_distinct_from_clean_close() {
        within(async {
            let (a, b) = (Keypair::generate(), Keypair::generate());
            let (x, mut y) = tokio::io::duplex(1 << 16);
            let (ca, cb) = (
                NoiseConfig::new(&a).expect("config"),
                NoiseConfig::new(&b).expect("config"),
            );
            // Relay the handshake by hand so that the raw responder side stays reachable.
            let (inner_b, mut relay) = tokio::io::duplex(1 << 16);
            let pump = async {
                let mut buf = [0u8; 4096];
                // Handshake: msg1 from x to b, msg2 back, msg3 to b.
                for to_b in [true, false, true] {
                    let (src, dst): (&mut tokio::io::DuplexStream, &mut tokio::io::DuplexStream) =
                        if to_b {
                            (&mut y, &mut relay)
                        } else {
                            (&mut relay, &mut y)
                        };
                    let len = src.read_u16().await.expect("len");
                    let body = &mut buf[..usize::from(len)];
                    src.read_exact(body).await.expect("body");
                    dst.write_u16(len).await.expect("len");
                    dst.write_all(body).await.expect("body");
                }
                // Then half a frame, and the end of the stream.
                relay
                    .write_all(&[0x00, 0x40, 1, 2, 3])
                    .await
                    .expect("partial");
                drop(relay);
                y
            };
            let (ra, rb, _y) = tokio::join!(
                ca.handshake(x, true, None),
                cb.handshake(inner_b, false, None),
                pump
            );
            ra.expect("initiator");
            let (mut sb, _) = rb.expect("responder");
            let err = sb.read(&mut [0u8; 8]).await.expect_err("truncated frame");
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        })
        .await;
    }

    #[tokio::test]
    async fn drained_stream_holds_no_buffers() {
        within(async {
            let (a, b) = (Keypair::generate(), Keypair::generate());
            let (ra, rb) = pair(&a, &b, None).await;
            let (mut sa, mut sb) = (ra.expect("initiator").0, rb.expect("responder").0);
            for size in [1usize, 100, 70_000] {
                let data = vec![3u8; size];
                sa.write_all(&data).await.expect("write");
                sa.flush().await.expect("flush");
                assert_eq!((sa.open.capacity(), sa.sealed.capacity()), (0, 0));
                let mut got = vec![0u8; size];
                sb.read_exact(&mut got).await.expect("read");
                assert_eq!(got, data);
                // Nothing more has arrived: the read is pending and the input buffer is gone.
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut one = [0u8; 1];
                let mut rb = ReadBuf::new(&mut one);
                assert!(Pin::new(&mut sb).poll_read(&mut cx, &mut rb).is_pending());
                assert_eq!(sb.rbuf.capacity(), 0);
            }
        })
        .await;
    }

    #[test]
    fn buffer_pool_keeps_a_bounded_number_of_bounded_buffers() {
        use pool::{POOL_BUFFERS, POOL_MAX_CAPACITY};
        for _ in 0..POOL_BUFFERS * 2 {
            pool::give_write(Vec::with_capacity(1024));
            pool::give_read(BytesMut::with_capacity(1024));
        }
        let mut taken: Vec<Vec<u8>> = (0..POOL_BUFFERS * 2).map(|_| pool::take_write()).collect();
        assert_eq!(
            taken.iter().filter(|b| b.capacity() > 0).count(),
            POOL_BUFFERS
        );
        let read: Vec<BytesMut> = (0..POOL_BUFFERS * 2).map(|_| pool::take_read()).collect();
        assert_eq!(
            read.iter().filter(|b| b.capacity() > 0).count(),
            POOL_BUFFERS
        );
        pool::give_write(Vec::with_capacity(POOL_MAX_CAPACITY + 1));
        taken.push(pool::take_write());
        assert_eq!(taken.last().map(Vec::capacity), Some(0));
    }

    #[tokio::test]
    async fn tampered_frame_is_refused_as_invalid_data() {
        within(async {
            let (a, b) = (Keypair::generate(), Keypair::generate());
            let (x, y) = tokio::io::duplex(1 << 16);
            let (ca, cb) = (
                NoiseConfig::new(&a).expect("config"),
                NoiseConfig::new(&b).expect("config"),
            );
            let (ra, rb) = tokio::join!(ca.handshake(x, true, None), cb.handshake(y, false, None));
            let (mut sa, mut sb) = (ra.expect("initiator").0, rb.expect("responder").0);
            // Seal a frame by hand, flip one ciphertext bit, and send it raw.
            sa.write_all(b"hello").await.expect("write");
            sa.seal_open().expect("seal");
            let mut frame = std::mem::take(&mut sa.sealed);
            frame[3] ^= 1;
            sa.io.write_all(&frame).await.expect("raw write");
            let err = sb.read(&mut [0u8; 8]).await.expect_err("tampered frame");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        })
        .await;
    }

    #[tokio::test]
    async fn frames_split_across_small_reads_arrive_whole_and_in_order() {
        within(async {
            let (a, b) = (Keypair::generate(), Keypair::generate());
            let (ra, rb) = pair(&a, &b, None).await;
            let (mut sa, mut sb) = (ra.expect("initiator").0, rb.expect("responder").0);
            let mut sent = Vec::new();
            for i in 0..50u8 {
                let chunk = vec![i; usize::from(i) * 37 + 1];
                sa.write_all(&chunk).await.expect("write");
                if i % 3 == 0 {
                    sa.flush().await.expect("flush");
                }
                sent.extend_from_slice(&chunk);
            }
            sa.shutdown().await.expect("shutdown");
            let mut got = Vec::new();
            let mut small = [0u8; 7];
            for _ in 0..sent.len() + 1 {
                let n = sb.read(&mut small).await.expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&small[..n]);
            }
            assert_eq!(got, sent);
        })
        .await;
    }

    #[tokio::test]
    async fn handshake_refuses_unexpected_peer_id() {
        within(async {
            let (a, b) = (Keypair::generate(), Keypair::generate());
            let other = PeerId::random();
            let (ra, _) = pair(&a, &b, Some(other)).await;
            match ra {
                Err(NoiseError::PeerIdMismatch { expected, actual }) => {
                    assert_eq!((expected, actual), (other, b.peer_id()));
                }
                other => panic!("expected a mismatch, got {other:?}"),
            }
        })
        .await;
    }

    /// Runs the WebTransport handshake between a client expecting `dialed` and a server
    /// announcing `announced`.
    async fn webtransport_pair(
        dialed: Vec<Vec<u8>>,
        announced: Vec<Vec<u8>>,
    ) -> (Result<PeerId, NoiseError>, Result<PeerId, NoiseError>) {
        let (client, server) = (Keypair::generate(), Keypair::generate());
        let (a, b) = crate::transport::memory::pair(64 * 1024);
        let responder = NoiseConfig::new(&server).expect("config");
        let serve = tokio::spawn(async move {
            responder
                .handshake_webtransport(b, false, None, &announced)
                .await
        });
        let initiator = NoiseConfig::new(&client).expect("config");
        let dialed_result = initiator
            .handshake_webtransport(a, true, Some(server.peer_id()), &dialed)
            .await;
        let served = serve.await.expect("join");
        if let Ok(peer) = &served {
            assert_eq!(*peer, client.peer_id());
        }
        (dialed_result, served)
    }

    #[tokio::test]
    async fn webtransport_handshake_carries_the_certhashes_and_checks_the_dialed_ones() {
        within(async {
            let (h1, h2, h3) = (
                vec![0x12, 0x20, 1],
                vec![0x12, 0x20, 2],
                vec![0x12, 0x20, 3],
            );
            // Every dialed hash listed (a subset of what is announced): both sides connect.
            let (c, s) = webtransport_pair(
                vec![h1.clone(), h2.clone()],
                vec![h3.clone(), h1.clone(), h2.clone()],
            )
            .await;
            assert!(c.is_ok() && s.is_ok(), "{c:?} {s:?}");
            // A dialed hash missing: the client refuses before message 3, so the server fails too.
            let (c, s) = webtransport_pair(vec![h1.clone(), h3.clone()], vec![h1, h2]).await;
            match c {
                Err(NoiseError::CerthashMismatch { missing }) => assert_eq!(missing, h3),
                other => panic!("expected a certhash mismatch, got {other:?}"),
            }
            assert!(s.is_err());
        })
        .await;
    }

    #[test]
    fn certhash_extensions_are_bounded() {
        let key = Keypair::generate();
        let mut p = HandshakePayload {
            identity_key: key.public().to_protobuf_encoding(),
            identity_sig: vec![1; 64],
            webtransport_certhashes: vec![vec![0x12, 0x20]; MAX_CERTHASHES],
            ..HandshakePayload::default()
        };
        assert_eq!(decode_payload(&encode_payload(&p)).expect("decode"), p);
        p.webtransport_certhashes.push(vec![0x12, 0x20]);
        assert!(matches!(
            decode_payload(&encode_payload(&p)),
            Err(NoiseError::InvalidPayload(_))
        ));
        p.webtransport_certhashes = vec![vec![0; MAX_CERTHASH_LEN + 1]];
        assert!(matches!(
            decode_payload(&encode_payload(&p)),
            Err(NoiseError::InvalidPayload(_))
        ));
    }

    #[test]
    fn payload_with_wrong_signature_is_refused() {
        let key = Keypair::generate();
        let payload = encode_payload(&HandshakePayload {
            identity_key: key.public().to_protobuf_encoding(),
            identity_sig: key.sign(b"something else"),
            ..HandshakePayload::default()
        });
        assert!(matches!(
            verify_payload(&payload, &[1u8; 32]),
            Err(NoiseError::BadSignature)
        ));
    }

    #[test]
    fn payloads_signed_by_every_key_type_are_accepted() {
        use crate::p2p::identity::test_vectors::*;
        // The vectors' signatures cover the static-key prefix and the key 00 01 .. 1f.
        let remote_static: Vec<u8> = (0..32).collect();
        assert_eq!(hex(SIGNED), [STATIC_KEY_DOMAIN, &remote_static].concat());
        for (key, sig, peer) in [
            (
                ED25519_PUBLIC.to_owned(),
                ED25519_SIGNATURE.to_owned(),
                "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq",
            ),
            (
                SECP256K1_PUBLIC.to_owned(),
                SECP256K1_SIGNATURE.to_owned(),
                "16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY",
            ),
            (
                ECDSA_PUBLIC.to_owned(),
                ECDSA_SIGNATURE.to_owned(),
                "QmVMT29id3TUASyfZZ6k9hmNyc2nYabCo4uMSpDw4zrgDk",
            ),
            (
                RSA_PUBLIC.concat(),
                RSA_SIGNATURE.concat(),
                "QmaeANgBs1DTSxWSrPPtobgQuxW8XTfsS4ydbK4rCHzqxG",
            ),
        ] {
            let mut payload = HandshakePayload {
                identity_key: hex(&key),
                identity_sig: hex(&sig),
                ..HandshakePayload::default()
            };
            let got = verify_payload(&encode_payload(&payload), &remote_static).expect(peer);
            assert_eq!(got.to_string(), peer);
            // Another static key, or a signature with a bit flipped, is refused.
            assert!(matches!(
                verify_payload(&encode_payload(&payload), &[1u8; 32]),
                Err(NoiseError::BadSignature)
            ));
            let last = payload.identity_sig.len() - 1;
            payload.identity_sig[last] ^= 1;
            assert!(matches!(
                verify_payload(&encode_payload(&payload), &remote_static),
                Err(NoiseError::BadSignature)
            ));
        }
    }

    #[tokio::test]
    async fn handshake_between_secp256k1_and_ed25519_nodes_proves_both_peer_ids() {
        within(async {
            let (a, b) = (Keypair::generate_secp256k1(), Keypair::generate());
            for (x, y) in [(&a, &b), (&b, &a), (&a, &a)] {
                let (rx, ry) = pair(x, y, Some(y.peer_id())).await;
                let (mut sx, px) = rx.expect("initiator");
                let (mut sy, py) = ry.expect("responder");
                assert_eq!((px, py), (y.peer_id(), x.peer_id()));
                sx.write_all(b"hi").await.expect("write");
                sx.flush().await.expect("flush");
                let mut buf = [0u8; 2];
                sy.read_exact(&mut buf).await.expect("read");
                assert_eq!(&buf, b"hi");
            }
        })
        .await;
    }

    proptest! {
        #[test]
        fn payload_round_trips(
            identity_key in proptest::collection::vec(any::<u8>(), 1..64),
            identity_sig in proptest::collection::vec(any::<u8>(), 1..80),
            stream_muxers in proptest::collection::vec("/[a-z0-9/.]{1,20}", 0..4),
            webtransport_certhashes in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..40), 0..4),
        ) {
            let p = HandshakePayload {
                identity_key, identity_sig, webtransport_certhashes, stream_muxers,
            };
            prop_assert_eq!(decode_payload(&encode_payload(&p)).expect("decode"), p);
        }

        #[test]
        fn payload_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_payload(&data);
        }
    }
}
