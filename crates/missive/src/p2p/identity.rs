//! Node identity: Ed25519 keys, [`PeerId`] and key files.
//!
//! The encodings are libp2p's: a public key is the protobuf `PublicKey { Type = 1, Data = 2 }`
//! message, a [`PeerId`] is the multihash of that encoding (the identity multihash when it is at
//! most 42 bytes, as it is for Ed25519) and its text form is base58btc (`12D3KooW…`). A key file
//! holds the protobuf `PrivateKey` encoding that rust-libp2p's `Keypair::to_protobuf_encoding`
//! writes, so keys move between the two.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::{Signer as _, Verifier as _};

/// Protobuf key type number of Ed25519 keys.
const KEY_TYPE_ED25519: u64 = 1;
/// Multihash code of the identity hash.
const MULTIHASH_IDENTITY: u64 = 0x00;
/// Multihash code of sha2-256.
const MULTIHASH_SHA2_256: u64 = 0x12;
/// Longest key encoding that is inlined in a PeerId with the identity multihash.
const MAX_INLINE_KEY_LEN: usize = 42;
/// Longest PeerId byte form: varint code, varint length, 42 bytes of digest.
const MAX_PEER_ID_LEN: usize = 2 + MAX_INLINE_KEY_LEN;

/// An Ed25519 key pair: the identity of a node.
///
/// `Debug` prints the [`PeerId`] only, never the secret.
#[derive(Clone)]
pub struct Keypair {
    secret: ed25519_dalek::SigningKey,
}

impl Keypair {
    /// Generates a new key pair from the operating system's random source.
    ///
    /// # Panics
    /// If the operating system has no random source to read from.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system provides random bytes");
        Self::from_secret_bytes(seed)
    }

    /// Builds the key pair from a 32-byte Ed25519 secret key (seed).
    pub fn from_secret_bytes(secret: [u8; 32]) -> Self {
        Self {
            secret: ed25519_dalek::SigningKey::from_bytes(&secret),
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.secret.verifying_key(),
        }
    }

    /// The [`PeerId`] of this key pair.
    pub fn peer_id(&self) -> PeerId {
        self.public().to_peer_id()
    }

    /// Signs `msg` with the secret key.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.secret.sign(msg).to_bytes()
    }

    /// The libp2p protobuf `PrivateKey` encoding (`08 01 12 40` ‖ secret ‖ public).
    pub fn to_protobuf_encoding(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(68);
        out.extend_from_slice(&[0x08, 0x01, 0x12, 0x40]);
        out.extend_from_slice(&self.secret.to_keypair_bytes());
        out
    }

    /// Decodes the libp2p protobuf `PrivateKey` encoding of an Ed25519 key pair.
    ///
    /// The 64-byte form (secret ‖ public) is checked for consistency; the 32-byte form
    /// (secret only) is accepted too.
    pub fn from_protobuf_encoding(bytes: &[u8]) -> Result<Self, DecodeKeyError> {
        let (key_type, data) = decode_key_message(bytes)?;
        if key_type != KEY_TYPE_ED25519 {
            return Err(DecodeKeyError::UnsupportedKeyType(key_type));
        }
        match data.len() {
            64 => {
                let mut pair = [0u8; 64];
                pair.copy_from_slice(data);
                let secret = ed25519_dalek::SigningKey::from_keypair_bytes(&pair)
                    .map_err(|_| DecodeKeyError::Inconsistent)?;
                Ok(Self { secret })
            }
            32 => {
                let mut seed = [0u8; 32];
                seed.copy_from_slice(data);
                Ok(Self::from_secret_bytes(seed))
            }
            n => Err(DecodeKeyError::BadLength(n)),
        }
    }

    /// Writes the key pair to `path` in its protobuf encoding (owner-only permissions on Unix).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), KeyFileError> {
        let path = path.as_ref();
        let bytes = self.to_protobuf_encoding();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(KeyFileError::Io)?;
        std::io::Write::write_all(&mut file, &bytes).map_err(KeyFileError::Io)?;
        file.sync_all().map_err(KeyFileError::Io)
    }

    /// Reads a key pair written by [`Keypair::save`] (or by rust-libp2p's protobuf encoding).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, KeyFileError> {
        use std::io::Read as _;
        let file = std::fs::File::open(path.as_ref()).map_err(KeyFileError::Io)?;
        // A key file is 68 bytes; read a little more to detect a wrong file without reading it all.
        let mut bytes = Vec::with_capacity(128);
        file.take(128)
            .read_to_end(&mut bytes)
            .map_err(KeyFileError::Io)?;
        Self::from_protobuf_encoding(&bytes).map_err(KeyFileError::Decode)
    }

    /// Loads the key pair at `path`, or generates one and saves it there when the file is missing.
    pub fn load_or_generate(path: impl AsRef<Path>) -> Result<Self, KeyFileError> {
        let path = path.as_ref();
        match Self::load(path) {
            Err(KeyFileError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                key.save(path)?;
                Ok(key)
            }
            other => other,
        }
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("peer_id", &self.peer_id())
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    key: ed25519_dalek::VerifyingKey,
}

impl PublicKey {
    /// The libp2p protobuf `PublicKey` encoding: `08 01 12 20` ‖ 32-byte key.
    pub fn to_protobuf_encoding(&self) -> [u8; 36] {
        let mut out = [0u8; 36];
        out[..4].copy_from_slice(&[0x08, 0x01, 0x12, 0x20]);
        out[4..].copy_from_slice(self.key.as_bytes());
        out
    }

    /// Decodes the libp2p protobuf `PublicKey` encoding; only Ed25519 keys are supported.
    pub fn from_protobuf_encoding(bytes: &[u8]) -> Result<Self, DecodeKeyError> {
        let (key_type, data) = decode_key_message(bytes)?;
        if key_type != KEY_TYPE_ED25519 {
            return Err(DecodeKeyError::UnsupportedKeyType(key_type));
        }
        let raw: [u8; 32] = data
            .try_into()
            .map_err(|_| DecodeKeyError::BadLength(data.len()))?;
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|_| DecodeKeyError::Invalid)?;
        Ok(Self { key })
    }

    /// The raw 32-byte Ed25519 key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Checks `signature` over `msg`; `false` for a malformed or wrong signature.
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify(msg, &sig).is_ok()
    }

    /// The [`PeerId`] of this key.
    pub fn to_peer_id(&self) -> PeerId {
        let encoded = self.to_protobuf_encoding();
        let mut bytes = [0u8; MAX_PEER_ID_LEN];
        bytes[0] = MULTIHASH_IDENTITY as u8;
        bytes[1] = encoded.len() as u8;
        bytes[2..2 + encoded.len()].copy_from_slice(&encoded);
        PeerId {
            bytes,
            len: (2 + encoded.len()) as u8,
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey")
            .field(&self.to_peer_id())
            .finish()
    }
}

/// The identity of a peer: the multihash of its public key.
///
/// Its text form (`Display`, `FromStr`) is base58btc, as in libp2p.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId {
    bytes: [u8; MAX_PEER_ID_LEN],
    len: u8,
}

impl PeerId {
    /// Parses the byte form (a multihash: identity with at most 42 bytes, or sha2-256).
    pub fn from_bytes(data: &[u8]) -> Result<Self, ParsePeerIdError> {
        let (code, rest) = read_uvarint(data).ok_or(ParsePeerIdError::Malformed)?;
        let (len, digest) = read_uvarint(rest).ok_or(ParsePeerIdError::Malformed)?;
        let valid_len = match code {
            MULTIHASH_IDENTITY => len <= MAX_INLINE_KEY_LEN as u64,
            MULTIHASH_SHA2_256 => len == 32,
            other => return Err(ParsePeerIdError::UnsupportedHash(other)),
        };
        if !valid_len || digest.len() as u64 != len {
            return Err(ParsePeerIdError::Malformed);
        }
        let total = data.len();
        if total > MAX_PEER_ID_LEN {
            return Err(ParsePeerIdError::Malformed);
        }
        let mut bytes = [0u8; MAX_PEER_ID_LEN];
        bytes[..total].copy_from_slice(data);
        Ok(Self {
            bytes,
            len: total as u8,
        })
    }

    /// The byte form (a multihash).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The byte form as an owned vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    /// The public key inlined in this PeerId, if it uses the identity multihash over an Ed25519 key.
    pub fn public_key(&self) -> Option<PublicKey> {
        let b = self.as_bytes();
        if b.first() != Some(&(MULTIHASH_IDENTITY as u8)) {
            return None;
        }
        PublicKey::from_protobuf_encoding(b.get(2..)?).ok()
    }

    /// A PeerId of a freshly generated key; for tests and examples.
    pub fn random() -> Self {
        Keypair::generate().peer_id()
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.as_bytes()).into_string())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

impl FromStr for PeerId {
    type Err = ParsePeerIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Base58 grows the text by about 1.37: anything longer cannot be a PeerId.
        if s.len() > 2 * MAX_PEER_ID_LEN {
            return Err(ParsePeerIdError::Malformed);
        }
        let bytes = bs58::decode(s)
            .into_vec()
            .map_err(|_| ParsePeerIdError::Base58)?;
        Self::from_bytes(&bytes)
    }
}

/// Why a key encoding was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeKeyError {
    /// The protobuf message is malformed.
    #[error("malformed key encoding")]
    Malformed,
    /// The key type is not Ed25519.
    #[error("unsupported key type {0} (only Ed25519 is supported)")]
    UnsupportedKeyType(u64),
    /// The key bytes have the wrong length.
    #[error("key data has a wrong length of {0} bytes")]
    BadLength(usize),
    /// The key bytes are not a valid Ed25519 key.
    #[error("invalid Ed25519 key")]
    Invalid,
    /// The public half of a key pair does not match its secret half.
    #[error("the public key does not match the secret key")]
    Inconsistent,
}

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file system refused.
    #[error("key file i/o: {0}")]
    Io(#[source] std::io::Error),
    /// The file does not hold a valid key pair.
    #[error("key file content: {0}")]
    Decode(#[source] DecodeKeyError),
}

/// Why a PeerId could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParsePeerIdError {
    /// The text is not base58btc.
    #[error("peer id is not valid base58")]
    Base58,
    /// The bytes are not a well-formed multihash of an accepted length.
    #[error("peer id is not a well-formed multihash")]
    Malformed,
    /// The multihash uses a hash other than identity or sha2-256.
    #[error("peer id uses unsupported multihash code {0:#x}")]
    UnsupportedHash(u64),
}

/// Decodes a protobuf `{ 1: varint type, 2: bytes data }` message (public or private key).
fn decode_key_message(mut bytes: &[u8]) -> Result<(u64, &[u8]), DecodeKeyError> {
    let mut key_type = None;
    let mut data = None;
    while !bytes.is_empty() {
        let (tag, rest) = read_uvarint(bytes).ok_or(DecodeKeyError::Malformed)?;
        bytes = rest;
        match (tag >> 3, tag & 7) {
            (1, 0) => {
                let (v, rest) = read_uvarint(bytes).ok_or(DecodeKeyError::Malformed)?;
                key_type = Some(v);
                bytes = rest;
            }
            (2, 2) => {
                let (len, rest) = read_uvarint(bytes).ok_or(DecodeKeyError::Malformed)?;
                let len = usize::try_from(len).map_err(|_| DecodeKeyError::Malformed)?;
                if len > rest.len() {
                    return Err(DecodeKeyError::Malformed);
                }
                data = Some(&rest[..len]);
                bytes = &rest[len..];
            }
            _ => return Err(DecodeKeyError::Malformed),
        }
    }
    match (key_type, data) {
        (Some(t), Some(d)) => Ok((t, d)),
        _ => Err(DecodeKeyError::Malformed),
    }
}

/// Reads an unsigned LEB128 varint of at most 9 bytes (63 bits); `None` when truncated or longer.
pub(crate) fn read_uvarint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    for (i, b) in bytes.iter().enumerate().take(9) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// Appends `value` as an unsigned LEB128 varint.
pub(crate) fn write_uvarint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
            .collect()
    }

    #[test]
    fn peer_id_of_known_key_matches_libp2p_vector() {
        let key = PublicKey::from_protobuf_encoding(&hex(
            "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e",
        ))
        .expect("valid key");
        assert_eq!(
            key.to_peer_id().to_string(),
            "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
        );
        let parsed: PeerId = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
            .parse()
            .expect("valid peer id");
        assert_eq!(parsed, key.to_peer_id());
        assert_eq!(parsed.public_key(), Some(key));
    }

    #[test]
    fn key_file_round_trips_and_keeps_peer_id() {
        let dir = std::env::temp_dir().join(format!("missive-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("node.key");
        let _ = std::fs::remove_file(&path);
        let generated = Keypair::load_or_generate(&path).expect("generate");
        let loaded = Keypair::load(&path).expect("load");
        assert_eq!(generated.peer_id(), loaded.peer_id());
        let again = Keypair::load_or_generate(&path).expect("load existing");
        assert_eq!(again.peer_id(), generated.peer_id());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn key_file_with_garbage_is_refused() {
        assert!(Keypair::from_protobuf_encoding(b"\x08\x01\x12\x05abc").is_err());
        assert_eq!(
            Keypair::from_protobuf_encoding(b"\x08\x00\x12\x01a").err(),
            Some(DecodeKeyError::UnsupportedKeyType(0))
        );
    }

    #[test]
    fn signature_verifies_only_for_signed_message() {
        let key = Keypair::generate();
        let sig = key.sign(b"hello");
        assert!(key.public().verify(b"hello", &sig));
        assert!(!key.public().verify(b"hellO", &sig));
        assert!(!key.public().verify(b"hello", &sig[..63]));
    }

    #[test]
    fn peer_id_refuses_malformed_text() {
        assert!("".parse::<PeerId>().is_err());
        assert!("0OIl".parse::<PeerId>().is_err());
        assert!(
            "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3p"
                .parse::<PeerId>()
                .is_err()
        );
    }

    proptest! {
        #[test]
        fn keypair_protobuf_round_trips(seed in any::<[u8; 32]>()) {
            let key = Keypair::from_secret_bytes(seed);
            let decoded = Keypair::from_protobuf_encoding(&key.to_protobuf_encoding()).expect("decode");
            prop_assert_eq!(decoded.peer_id(), key.peer_id());
            let public = PublicKey::from_protobuf_encoding(&key.public().to_protobuf_encoding()).expect("decode");
            prop_assert_eq!(public, key.public());
        }

        #[test]
        fn peer_id_text_and_bytes_round_trip(seed in any::<[u8; 32]>()) {
            let id = Keypair::from_secret_bytes(seed).peer_id();
            prop_assert_eq!(id.to_string().parse::<PeerId>().expect("parse"), id);
            prop_assert_eq!(PeerId::from_bytes(id.as_bytes()).expect("bytes"), id);
        }

        #[test]
        fn peer_id_parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = PeerId::from_bytes(&data);
            let _ = PublicKey::from_protobuf_encoding(&data);
        }
    }
}
