//! Node identity: key pairs, public keys of every libp2p key type, and key files.
//!
//! The encodings are libp2p's (the peer-id spec): a public key is the protobuf
//! `PublicKey { Type = 1, Data = 2 }` message, whose `Data` is the raw 32-byte key for Ed25519,
//! the 33-byte compressed SEC1 point for secp256k1, and the DER `SubjectPublicKeyInfo` for RSA
//! and ECDSA (P-256). Signatures are plain Ed25519, DER ECDSA over SHA-256 (secp256k1 and
//! P-256), and RSASSA-PKCS1-v1_5 with SHA-256. A [`PeerId`] is the multihash of the public
//! key's encoding.
//!
//! A node's own key is Ed25519 (the default) or secp256k1. A key file holds the protobuf
//! `PrivateKey` encoding that rust-libp2p's `Keypair::to_protobuf_encoding` writes, so keys
//! move between the two.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::{Signer as _, Verifier as _};
use k256::ecdsa::signature::{Signer as _, Verifier as _};

use super::der;
pub use super::peer_id::{ParsePeerIdError, PeerId};

/// Longest key file read: an Ed25519 file is 68 bytes (or 100 in the old form), secp256k1 36.
const MAX_KEY_FILE_LEN: u64 = 128;

/// The type of a libp2p identity key, with its protobuf `KeyType` number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum KeyType {
    /// RSA (`0`): verified (2048 to 8192 bits), not usable as a node's own key.
    Rsa,
    /// Ed25519 (`1`), the default.
    Ed25519,
    /// secp256k1 (`2`).
    Secp256k1,
    /// ECDSA over P-256 (`3`): verified, not usable as a node's own key.
    Ecdsa,
}

impl KeyType {
    /// The protobuf `KeyType` number.
    pub fn code(self) -> u64 {
        match self {
            Self::Rsa => 0,
            Self::Ed25519 => 1,
            Self::Secp256k1 => 2,
            Self::Ecdsa => 3,
        }
    }

    /// The key type of a protobuf `KeyType` number.
    pub fn from_code(code: u64) -> Option<Self> {
        match code {
            0 => Some(Self::Rsa),
            1 => Some(Self::Ed25519),
            2 => Some(Self::Secp256k1),
            3 => Some(Self::Ecdsa),
            _ => None,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rsa => "RSA",
            Self::Ed25519 => "Ed25519",
            Self::Secp256k1 => "secp256k1",
            Self::Ecdsa => "ECDSA",
        })
    }
}

/// A key pair: the identity of a node. Ed25519 ([`Keypair::generate`]) or secp256k1
/// ([`Keypair::generate_secp256k1`]).
///
/// `Debug` prints the [`PeerId`] only, never the secret.
#[derive(Clone)]
pub struct Keypair {
    secret: Secret,
}

#[derive(Clone)]
enum Secret {
    Ed25519(ed25519_dalek::SigningKey),
    Secp256k1(k256::ecdsa::SigningKey),
}

impl Keypair {
    /// Generates a new Ed25519 key pair from the operating system's random source.
    ///
    /// # Panics
    /// If the operating system has no random source to read from.
    pub fn generate() -> Self {
        Self::from_secret_bytes(random_bytes())
    }

    /// Generates a new secp256k1 key pair from the operating system's random source.
    ///
    /// # Panics
    /// If the operating system has no random source to read from.
    pub fn generate_secp256k1() -> Self {
        // A random 32-byte string is a valid scalar but with a probability of about 2^-128.
        for _ in 0..8 {
            if let Ok(key) = Self::secp256k1_from_secret_bytes(random_bytes()) {
                return key;
            }
        }
        unreachable!("eight random 32-byte strings were all outside the secp256k1 scalar range")
    }

    /// Builds an Ed25519 key pair from its 32-byte secret key (seed).
    pub fn from_secret_bytes(secret: [u8; 32]) -> Self {
        Self {
            secret: Secret::Ed25519(ed25519_dalek::SigningKey::from_bytes(&secret)),
        }
    }

    /// Builds a secp256k1 key pair from its 32-byte big-endian secret scalar.
    ///
    /// # Errors
    /// [`DecodeKeyError::Invalid`] when the scalar is zero or not below the group order.
    pub fn secp256k1_from_secret_bytes(secret: [u8; 32]) -> Result<Self, DecodeKeyError> {
        let key =
            k256::ecdsa::SigningKey::from_slice(&secret).map_err(|_| DecodeKeyError::Invalid)?;
        Ok(Self {
            secret: Secret::Secp256k1(key),
        })
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        match self.secret {
            Secret::Ed25519(_) => KeyType::Ed25519,
            Secret::Secp256k1(_) => KeyType::Secp256k1,
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        let key = match &self.secret {
            Secret::Ed25519(k) => Key::Ed25519(k.verifying_key()),
            Secret::Secp256k1(k) => Key::Secp256k1(*k.verifying_key()),
        };
        PublicKey { key }
    }

    /// The [`PeerId`] of this key pair.
    pub fn peer_id(&self) -> PeerId {
        self.public().to_peer_id()
    }

    /// Signs `msg` with the secret key: a 64-byte Ed25519 signature, or a DER ECDSA signature
    /// over SHA-256(`msg`) (low-S, at most 72 bytes) for secp256k1.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match &self.secret {
            Secret::Ed25519(k) => k.sign(msg).to_bytes().to_vec(),
            Secret::Secp256k1(k) => {
                let sig: k256::ecdsa::Signature = k.sign(msg);
                let fixed: [u8; 64] = sig.to_bytes().into();
                der::ecdsa_signature_to_der(&fixed)
            }
        }
    }

    /// The libp2p protobuf `PrivateKey` encoding: `08 01 12 40` ‖ secret ‖ public for Ed25519,
    /// `08 02 12 20` ‖ secret scalar for secp256k1 (as rust-libp2p writes them).
    pub fn to_protobuf_encoding(&self) -> Vec<u8> {
        match &self.secret {
            Secret::Ed25519(k) => encode_key_message(KeyType::Ed25519, &k.to_keypair_bytes()),
            Secret::Secp256k1(k) => encode_key_message(KeyType::Secp256k1, &k.to_bytes()),
        }
    }

    /// Decodes the libp2p protobuf `PrivateKey` encoding of an Ed25519 or secp256k1 key pair.
    ///
    /// Ed25519: the 64-byte form (secret ‖ public) is checked for consistency; the 32-byte form
    /// (secret only) and the old 96-byte form (secret ‖ public ‖ public) are accepted too.
    /// secp256k1: the 32-byte secret scalar.
    pub fn from_protobuf_encoding(bytes: &[u8]) -> Result<Self, DecodeKeyError> {
        let (key_type, data) = decode_key_message(bytes)?;
        match KeyType::from_code(key_type) {
            Some(KeyType::Ed25519) => match data.len() {
                64 | 96 => {
                    if data.len() == 96 && data[32..64] != data[64..] {
                        return Err(DecodeKeyError::Inconsistent);
                    }
                    let pair: [u8; 64] = data[..64].try_into().expect("checked length");
                    let secret = ed25519_dalek::SigningKey::from_keypair_bytes(&pair)
                        .map_err(|_| DecodeKeyError::Inconsistent)?;
                    Ok(Self {
                        secret: Secret::Ed25519(secret),
                    })
                }
                32 => Ok(Self::from_secret_bytes(
                    data.try_into().expect("checked length"),
                )),
                n => Err(DecodeKeyError::BadLength(n)),
            },
            Some(KeyType::Secp256k1) => {
                let secret: [u8; 32] = data
                    .try_into()
                    .map_err(|_| DecodeKeyError::BadLength(data.len()))?;
                Self::secp256k1_from_secret_bytes(secret)
            }
            _ => Err(DecodeKeyError::UnsupportedKeyType(key_type)),
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
        // Read a little more than the longest key file to detect a wrong file without reading
        // it all.
        let mut bytes = Vec::with_capacity(MAX_KEY_FILE_LEN as usize);
        file.take(MAX_KEY_FILE_LEN)
            .read_to_end(&mut bytes)
            .map_err(KeyFileError::Io)?;
        Self::from_protobuf_encoding(&bytes).map_err(KeyFileError::Decode)
    }

    /// Loads the key pair at `path`, or generates an Ed25519 one and saves it there when the
    /// file is missing.
    pub fn load_or_generate(path: impl AsRef<Path>) -> Result<Self, KeyFileError> {
        Self::load_or_generate_with(path, Self::generate)
    }

    /// Loads the key pair at `path` (whatever its type), or makes one with `generate` and
    /// saves it there when the file is missing.
    pub fn load_or_generate_with(
        path: impl AsRef<Path>,
        generate: impl FnOnce() -> Self,
    ) -> Result<Self, KeyFileError> {
        let path = path.as_ref();
        match Self::load(path) {
            Err(KeyFileError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = generate();
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
            .field("key_type", &self.key_type())
            .field("peer_id", &self.peer_id())
            .finish_non_exhaustive()
    }
}

/// A public identity key of any libp2p key type: Ed25519, secp256k1, ECDSA (P-256) or RSA.
///
/// Decoding checks the structure (and, for Ed25519 and secp256k1, that the point is valid);
/// an ECDSA point off the curve or an RSA modulus outside 2048 to 8192 bits makes every
/// [`PublicKey::verify`] fail.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: Key,
}

#[derive(Clone, PartialEq, Eq)]
enum Key {
    Ed25519(ed25519_dalek::VerifyingKey),
    Secp256k1(k256::ecdsa::VerifyingKey),
    /// The uncompressed SEC1 point.
    Ecdsa(Box<[u8; der::P256_POINT_LEN]>),
    /// The PKCS#1 `RSAPublicKey` DER.
    Rsa(Arc<[u8]>),
}

impl PublicKey {
    /// The key type.
    pub fn key_type(&self) -> KeyType {
        match self.key {
            Key::Ed25519(_) => KeyType::Ed25519,
            Key::Secp256k1(_) => KeyType::Secp256k1,
            Key::Ecdsa(_) => KeyType::Ecdsa,
            Key::Rsa(_) => KeyType::Rsa,
        }
    }

    /// The libp2p protobuf `PublicKey` encoding, `08 <type> 12 <length>` ‖ [`PublicKey::to_bytes`]
    /// (36 bytes for Ed25519, 37 for secp256k1, 95 for P-256).
    pub fn to_protobuf_encoding(&self) -> Vec<u8> {
        encode_key_message(self.key_type(), &self.to_bytes())
    }

    /// Decodes the libp2p protobuf `PublicKey` encoding of any of the four key types.
    ///
    /// secp256k1 keys are accepted compressed or uncompressed and written back compressed;
    /// RSA and ECDSA keys must be DER `SubjectPublicKeyInfo` (ECDSA: P-256, uncompressed point),
    /// as rust-libp2p and go-libp2p write them.
    pub fn from_protobuf_encoding(bytes: &[u8]) -> Result<Self, DecodeKeyError> {
        let (key_type, data) = decode_key_message(bytes)?;
        let key = match KeyType::from_code(key_type) {
            Some(KeyType::Ed25519) => {
                let raw: [u8; 32] = data
                    .try_into()
                    .map_err(|_| DecodeKeyError::BadLength(data.len()))?;
                Key::Ed25519(
                    ed25519_dalek::VerifyingKey::from_bytes(&raw)
                        .map_err(|_| DecodeKeyError::Invalid)?,
                )
            }
            Some(KeyType::Secp256k1) => {
                if data.len() != 33 && data.len() != 65 {
                    return Err(DecodeKeyError::BadLength(data.len()));
                }
                Key::Secp256k1(
                    k256::ecdsa::VerifyingKey::from_sec1_bytes(data)
                        .map_err(|_| DecodeKeyError::Invalid)?,
                )
            }
            Some(KeyType::Ecdsa) => Key::Ecdsa(Box::new(der::p256_point_from_spki(data)?)),
            Some(KeyType::Rsa) => Key::Rsa(der::rsa_pkcs1_from_spki(data)?.into()),
            None => return Err(DecodeKeyError::UnsupportedKeyType(key_type)),
        };
        Ok(Self { key })
    }

    /// The key's `Data` field: the raw 32-byte Ed25519 key, the 33-byte compressed secp256k1
    /// point, or the DER `SubjectPublicKeyInfo` of an ECDSA or RSA key.
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.key {
            Key::Ed25519(k) => k.to_bytes().to_vec(),
            Key::Secp256k1(k) => k.to_sec1_point(true).as_bytes().to_vec(),
            Key::Ecdsa(point) => der::p256_spki(point),
            Key::Rsa(pkcs1) => der::rsa_spki(pkcs1),
        }
    }

    /// Checks `signature` over `msg` under the libp2p rules of the key type; `false` for a
    /// malformed or wrong signature.
    ///
    /// Ed25519: 64 bytes (RFC 8032). secp256k1: DER ECDSA over SHA-256(`msg`), low-S only (as
    /// rust-libp2p). ECDSA P-256: DER over SHA-256(`msg`). RSA: PKCS#1 v1.5 with SHA-256.
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        use ring::signature::{
            ECDSA_P256_SHA256_ASN1, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
        };
        match &self.key {
            Key::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| k.verify(msg, &sig).is_ok()),
            Key::Secp256k1(k) => der::ecdsa_signature_to_fixed(signature)
                .and_then(|fixed| k256::ecdsa::Signature::from_slice(&fixed).ok())
                .is_some_and(|sig| k.verify(msg, &sig).is_ok()),
            Key::Ecdsa(point) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &point[..])
                .verify(msg, signature)
                .is_ok(),
            Key::Rsa(pkcs1) => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &pkcs1[..])
                .verify(msg, signature)
                .is_ok(),
        }
    }

    /// The [`PeerId`] of this key: the identity multihash of the encoding for Ed25519 and
    /// secp256k1, its sha2-256 multihash for ECDSA and RSA.
    pub fn to_peer_id(&self) -> PeerId {
        PeerId::from_key_encoding(&self.to_protobuf_encoding())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey")
            .field(&self.key_type())
            .field(&self.to_peer_id())
            .finish()
    }
}

/// Why a key encoding was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeKeyError {
    /// The protobuf message, or the DER inside it, is malformed.
    #[error("malformed key encoding")]
    Malformed,
    /// The key type number is unknown, or (for a key pair) not one a node can sign with.
    #[error("unsupported key type {0}")]
    UnsupportedKeyType(u64),
    /// The key bytes have the wrong length.
    #[error("key data has a wrong length of {0} bytes")]
    BadLength(usize),
    /// The key bytes are not a valid key of their type.
    #[error("invalid key")]
    Invalid,
    /// A well-formed key of an algorithm, curve or form this crate does not support.
    #[error("unsupported key: {0}")]
    UnsupportedAlgorithm(&'static str),
    /// The public half of a key pair does not match its secret half.
    #[error("the public key does not match the secret key")]
    Inconsistent,
}

impl From<der::DerError> for DecodeKeyError {
    fn from(e: der::DerError) -> Self {
        match e {
            der::DerError::Malformed => Self::Malformed,
            der::DerError::Unsupported(what) => Self::UnsupportedAlgorithm(what),
        }
    }
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

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    bytes
}

/// Encodes a protobuf `{ 1: type, 2: data }` key message, deterministically.
fn encode_key_message(key_type: KeyType, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 6);
    out.extend_from_slice(&[0x08, key_type.code() as u8, 0x12]);
    write_uvarint(&mut out, data.len() as u64);
    out.extend_from_slice(data);
    out
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
    use super::test_vectors::*;
    use super::*;
    use proptest::prelude::*;

    /// Checks a fixed key vector: it decodes to `key_type`, re-encodes to the same bytes, has
    /// the PeerId `peer_id` in both text forms, verifies `signature` over [`SIGNED`] and refuses
    /// it over another message, and refuses a signature with one bit flipped.
    fn check_vector(encoded: &[u8], key_type: KeyType, peer_id: &str, signature: &[u8]) {
        let key = PublicKey::from_protobuf_encoding(encoded).expect("the vector decodes");
        assert_eq!(key.key_type(), key_type);
        assert_eq!(key.to_protobuf_encoding(), encoded);
        assert_eq!(key.to_peer_id().to_string(), peer_id);
        let parsed: PeerId = peer_id.parse().expect("the vector's peer id parses");
        assert_eq!(parsed, key.to_peer_id());
        assert_eq!(
            key.to_peer_id().to_cid_string().parse::<PeerId>(),
            Ok(parsed)
        );
        let signed = hex(SIGNED);
        assert!(key.verify(&signed, signature), "known-good signature");
        let mut other = signed.clone();
        other[30] ^= 1;
        assert!(!key.verify(&other, signature), "another message");
        for i in [signature.len() / 2, signature.len() - 1] {
            let mut tampered = signature.to_vec();
            tampered[i] ^= 0x01;
            assert!(!key.verify(&signed, &tampered), "tampered byte {i}");
        }
        assert!(!key.verify(&signed, &signature[..signature.len() - 1]));
        assert!(!key.verify(&signed, &[]));
    }

    #[test]
    fn ed25519_vector_decodes_verifies_and_matches_peer_id() {
        let encoded = hex(ED25519_PUBLIC);
        check_vector(
            &encoded,
            KeyType::Ed25519,
            "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq",
            &hex(ED25519_SIGNATURE),
        );
        let id: PeerId = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
            .parse()
            .expect("peer id");
        assert_eq!(
            id.to_cid_string(),
            "bafzaajaiaejcahwr5d5ofrfbis4l5d6uwr57hu5tjodrypfm6yaq6dsc2r2pzyt6"
        );
        assert_eq!(
            id.public_key().map(|k| k.to_protobuf_encoding()),
            Some(encoded)
        );
        // The spec's private key, signing the same message, gives the same signature.
        let private = hex(concat!(
            "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d",
            "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
        ));
        let pair = Keypair::from_protobuf_encoding(&private).expect("private vector");
        assert_eq!(pair.peer_id(), id);
        assert_eq!(pair.sign(&hex(SIGNED)), hex(ED25519_SIGNATURE));
        assert_eq!(pair.to_protobuf_encoding(), private);
    }

    #[test]
    fn secp256k1_vector_decodes_verifies_and_matches_peer_id() {
        let encoded = hex(SECP256K1_PUBLIC);
        check_vector(
            &encoded,
            KeyType::Secp256k1,
            "16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY",
            &hex(SECP256K1_SIGNATURE),
        );
        let key = PublicKey::from_protobuf_encoding(&encoded).expect("key");
        // rust-libp2p refuses high-S signatures (k256 verifies low-S only); so does this crate.
        assert!(!key.verify(&hex(SIGNED), &hex(SECP256K1_SIGNATURE_HIGH_S)));
        // The PeerId inlines the key.
        assert_eq!(key.to_peer_id().public_key(), Some(key.clone()));
        let private =
            hex("0802122053dadf1d5a164d6b4acdb15e24aa4c5b1d3461bdbd42abedb0a4404d56ced8fb");
        let pair = Keypair::from_protobuf_encoding(&private).expect("private vector");
        assert_eq!(pair.key_type(), KeyType::Secp256k1);
        assert_eq!(pair.public(), key);
        assert_eq!(pair.to_protobuf_encoding(), private);
        // The signature (RFC 6979, so the same each time) verifies under the vector's key.
        let sig = pair.sign(&hex(SIGNED));
        assert_eq!(sig, pair.sign(&hex(SIGNED)));
        assert!(key.verify(&hex(SIGNED), &sig));
    }

    #[test]
    fn ecdsa_vector_decodes_verifies_and_matches_peer_id() {
        let encoded = hex(ECDSA_PUBLIC);
        check_vector(
            &encoded,
            KeyType::Ecdsa,
            "QmVMT29id3TUASyfZZ6k9hmNyc2nYabCo4uMSpDw4zrgDk",
            &hex(ECDSA_SIGNATURE),
        );
        // A hashed PeerId carries no key, and an ECDSA key pair is not a node key.
        let id = PublicKey::from_protobuf_encoding(&encoded)
            .expect("key")
            .to_peer_id();
        assert_eq!(id.public_key(), None);
        assert_eq!(
            Keypair::from_protobuf_encoding(&hex("08031203010203")).err(),
            Some(DecodeKeyError::UnsupportedKeyType(3))
        );
    }

    #[test]
    fn rsa_vector_decodes_verifies_and_matches_peer_id() {
        check_vector(
            &hex(&RSA_PUBLIC.concat()),
            KeyType::Rsa,
            "QmaeANgBs1DTSxWSrPPtobgQuxW8XTfsS4ydbK4rCHzqxG",
            &hex(&RSA_SIGNATURE.concat()),
        );
    }

    #[test]
    fn unsupported_ecdsa_forms_are_refused_with_a_reason() {
        let encoded = hex(&RSA_PUBLIC.concat());
        // An RSA SPKI sent as an ECDSA key.
        let mut as_ecdsa = encoded.clone();
        as_ecdsa[1] = 3;
        assert_eq!(
            PublicKey::from_protobuf_encoding(&as_ecdsa),
            Err(DecodeKeyError::UnsupportedAlgorithm(
                "not an id-ecPublicKey key"
            ))
        );
        // A P-384 key (secp384r1, 1.3.132.0.34) with a dummy point.
        let mut p384 = hex("3076301006072a8648ce3d020106052b81040022036200");
        p384.extend_from_slice(&[4; 97]);
        let mut message = vec![0x08, 0x03, 0x12, p384.len() as u8];
        message.extend_from_slice(&p384);
        assert_eq!(
            PublicKey::from_protobuf_encoding(&message),
            Err(DecodeKeyError::UnsupportedAlgorithm(
                "an ECDSA curve other than P-256"
            ))
        );
        assert_eq!(
            PublicKey::from_protobuf_encoding(&hex("08091200")),
            Err(DecodeKeyError::UnsupportedKeyType(9))
        );
    }

    #[test]
    fn old_ed25519_key_files_still_load() {
        let seed = [7u8; 32];
        let pair = Keypair::from_secret_bytes(seed);
        let public = pair.public().to_bytes();
        // The 32-byte (seed only) and 96-byte (seed, public, public) forms.
        let short = encode_key_message(KeyType::Ed25519, &seed);
        let long = encode_key_message(KeyType::Ed25519, &[&seed[..], &public, &public].concat());
        for old in [short, long] {
            let loaded = Keypair::from_protobuf_encoding(&old).expect("old form");
            assert_eq!(loaded.peer_id(), pair.peer_id());
        }
        let mut other = public.clone();
        other[0] ^= 1;
        let bad = encode_key_message(KeyType::Ed25519, &[&seed[..], &public, &other].concat());
        assert_eq!(
            Keypair::from_protobuf_encoding(&bad).err(),
            Some(DecodeKeyError::Inconsistent)
        );
    }

    #[test]
    fn key_file_round_trips_and_keeps_peer_id() {
        let dir = std::env::temp_dir().join(format!("missive-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("node.key");
        let _ = std::fs::remove_file(&path);
        let generated = Keypair::load_or_generate(&path).expect("generate");
        assert_eq!(generated.key_type(), KeyType::Ed25519);
        let loaded = Keypair::load(&path).expect("load");
        assert_eq!(generated.peer_id(), loaded.peer_id());
        let again = Keypair::load_or_generate(&path).expect("load existing");
        assert_eq!(again.peer_id(), generated.peer_id());
        // A secp256k1 key file; an existing file keeps its type whatever `generate` makes.
        let secp = dir.join("secp.key");
        let _ = std::fs::remove_file(&secp);
        let made = Keypair::load_or_generate_with(&secp, Keypair::generate_secp256k1)
            .expect("generate secp256k1");
        assert_eq!(made.key_type(), KeyType::Secp256k1);
        let loaded = Keypair::load_or_generate(&secp).expect("load secp256k1");
        assert_eq!(
            (loaded.key_type(), loaded.peer_id()),
            (KeyType::Secp256k1, made.peer_id())
        );
        assert!(made.peer_id().to_string().starts_with("16Uiu2HA"));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn key_file_with_garbage_is_refused() {
        assert!(Keypair::from_protobuf_encoding(b"\x08\x01\x12\x05abc").is_err());
        assert_eq!(
            Keypair::from_protobuf_encoding(b"\x08\x00\x12\x01a").err(),
            Some(DecodeKeyError::UnsupportedKeyType(0))
        );
        // The secp256k1 scalar must be non-zero and below the group order.
        assert_eq!(
            Keypair::from_protobuf_encoding(&encode_key_message(KeyType::Secp256k1, &[0; 32]))
                .err(),
            Some(DecodeKeyError::Invalid)
        );
        assert_eq!(
            Keypair::from_protobuf_encoding(&encode_key_message(KeyType::Secp256k1, &[0xff; 32]))
                .err(),
            Some(DecodeKeyError::Invalid)
        );
    }

    #[test]
    fn signature_verifies_only_for_signed_message() {
        for key in [Keypair::generate(), Keypair::generate_secp256k1()] {
            let sig = key.sign(b"hello");
            assert!(key.public().verify(b"hello", &sig));
            assert!(!key.public().verify(b"hellO", &sig));
            assert!(!key.public().verify(b"hello", &sig[..sig.len() - 1]));
            let other = Keypair::generate_secp256k1();
            assert!(!other.public().verify(b"hello", &sig));
        }
    }

    proptest! {
        #[test]
        fn keypair_protobuf_round_trips(seed in any::<[u8; 32]>(), secp in any::<bool>()) {
            let key = if secp {
                match Keypair::secp256k1_from_secret_bytes(seed) {
                    Ok(k) => k,
                    Err(_) => return Ok(()),
                }
            } else {
                Keypair::from_secret_bytes(seed)
            };
            let decoded = Keypair::from_protobuf_encoding(&key.to_protobuf_encoding()).expect("decode");
            prop_assert_eq!(decoded.peer_id(), key.peer_id());
            let public = PublicKey::from_protobuf_encoding(&key.public().to_protobuf_encoding()).expect("decode");
            prop_assert_eq!(&public, &key.public());
            prop_assert_eq!(public.to_peer_id().public_key(), Some(public));
        }

        #[test]
        fn uncompressed_secp256k1_keys_are_written_back_compressed(seed in any::<[u8; 32]>()) {
            let Ok(pair) = Keypair::secp256k1_from_secret_bytes(seed) else { return Ok(()) };
            let Key::Secp256k1(vk) = pair.public().key else { unreachable!("a secp256k1 key") };
            let uncompressed = encode_key_message(KeyType::Secp256k1, vk.to_sec1_point(false).as_bytes());
            let key = PublicKey::from_protobuf_encoding(&uncompressed).expect("decode");
            prop_assert_eq!(key.to_peer_id(), pair.peer_id());
        }

        #[test]
        fn key_decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..700)) {
            if let Ok(key) = PublicKey::from_protobuf_encoding(&data) {
                // Whatever decodes re-encodes to a key that decodes to itself.
                let again = PublicKey::from_protobuf_encoding(&key.to_protobuf_encoding()).expect("re-decode");
                prop_assert_eq!(&again, &key);
                let _ = key.verify(&data, &data);
            }
            let _ = Keypair::from_protobuf_encoding(&data);
        }

        #[test]
        fn typed_key_decoders_never_panic(key_type in 0u8..5, data in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut message = vec![0x08, key_type, 0x12];
            write_uvarint(&mut message, data.len() as u64);
            message.extend_from_slice(&data);
            let _ = PublicKey::from_protobuf_encoding(&message);
            let _ = Keypair::from_protobuf_encoding(&message);
        }
    }
}

/// Fixed key vectors of every type (the keys are the libp2p peer-id spec's), with signatures
/// over [`test_vectors::SIGNED`] made by an independent implementation from the spec's
/// private keys.
#[cfg(test)]
pub(crate) mod test_vectors {
    /// Decodes test hex.
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
            .collect()
    }

    pub(crate) const ED25519_PUBLIC: &str =
        "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e";
    pub(crate) const SECP256K1_PUBLIC: &str =
        "08021221037777e994e452c21604f91de093ce415f5432f701dd8cd1a7a6fea0e630bfca99";
    pub(crate) const ECDSA_PUBLIC: &str = concat!(
        "0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004de3d300fa36ae0e8f5d530",
        "899d83abab44abf3161f162a4bc901d8e6ecda020e8b6d5f8da30525e71d6851510c098e5c47c646a597",
        "fb4dcec034e9f77c409e62"
    );
    /// The message the test signatures cover: the Noise static-key prefix and the bytes 0..32.
    pub(crate) const SIGNED: &str = "6e6f6973652d6c69627032702d7374617469632d6b65793a000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    /// The peer-id spec's 4096-bit RSA public key.
    pub(crate) const RSA_PUBLIC: &[&str] = &[
        "080012a60430820222300d06092a864886f70d01010105000382020f003082020a0282020100e1beab071d08",
        "200bde24eef00d049449b07770ff9910257b2d7d5dda242ce8f0e2f12e1af4b32d9efd2c090f66b0f29986db",
        "b645dae9880089704a94e5066d594162ae6ee8892e6ec70701db0a6c445c04778eb3de1293aa1a23c3825b85",
        "c6620a2bc3f82f9b0c309bc0ab3aeb1873282bebd3da03c33e76c21e9beb172fd44c9e43be32e2c99827033c",
        "f8d0f0c606f4579326c930eb4e854395ad941256542c793902185153c474bed109d6ff5141ebf9cd256cf588",
        "93a37f83729f97e7cb435ec679d2e33901d27bb35aa0d7e20561da08885ef0abbf8e2fb48d6a5487047a9ecb",
        "1ad41fa7ed84f6e3e8ecd5d98b3982d2a901b4454991766da295ab78822add5612a2df83bcee814cf50973e8",
        "0d7ef38111b1bd87da2ae92438a2c8cbcc70b31ee319939a3b9c761dbc13b5c086d6b64bf7ae7dacc1462237",
        "5d92a8ff9af7eb962162bbddebf90acb32adb5e4e4029f1c96019949ecfbfeffd7ac1e3fbcc6b6168c34be3d",
        "5a2e5999fcbb39bba7adbca78eab09b9bc39f7fa4b93411f4cc175e70c0a083e96bfaefb04a9580b4753c173",
        "8a6a760ae1afd851a1a4bdad231cf56e9284d832483df215a46c1c21bdf0c6cfe951c18f1ee4078c79c13d63",
        "edb6e14feaeffabc90ad317e4875fe648101b0864097e998f0ca3025ef9638cd2b0caecd3770ab54a1d9c6ca",
        "959b0f5dcbc90caeefc4135baca6fd475224269bbe1b0203010001",
    ];
    /// A signature over [`SIGNED`] by the spec's RSA private key (PKCS#1 v1.5, SHA-256).
    pub(crate) const RSA_SIGNATURE: &[&str] = &[
        "25c4826d3ea66e8a9fd3983bed70c99324172f25a33f6630da8dbf4f7e1653b2e0e6f9e7495d70ff02e1c16d",
        "93c9ede97a511c9b3e905cdc19906aa33cc212668fb0649b6d3ab61ebe390eef0bc7b5b940c67d137ed07af1",
        "beeb42d533bd0468bfbdadfd30201f7372eb93173d19ad316fcaa7b655a9c9c4405b66917ee78bdbca48aed0",
        "7159e628d7a7db56f1a07d309e048fcad3a34b5f7da5d1c516e236479eac05cbac9d3b8f0e482d340c99bd91",
        "9e2998cc56b7e9a1916e34d04fe09348b25a5fe809dc94835f635bf3416dc2e1b0592564a5e4bce3174d3d30",
        "e8bf8cea3b28bf31fcaf47f3c154f08f7d0b9508c94cec31d9a430d445f592b94ee3b931c78a4cee536222ce",
        "d66ac0b8c1812b1c00b77c17bdacf13d6b58f89a1223880629c6f26424e260c0ba0317bea95db3dcb070cfbb",
        "61096edc1b937c8910d7f5cd5bdc45ea04132623c1d322a0755590cf87308a92f40c9f2851f2fcefe2e5bc10",
        "d954beeab98178b42d529c162eaa95feca720fb0beb24d897979512ffc9c90048fa64d8c048c65bc0713dc1f",
        "0921b63563d95625c2e64ea82058faeb01e453463c73f69210523545aea006b04a31ec6a5f653c03ec92606b",
        "82748ba8c0b7d6505ff137cfc4621678f631ad065586e65ffaea8aee81dce10c7547b42e7efdc2815746b132",
        "9dab051e194776464886106d255dca96a887a5b3b958fb9db6f3f794",
    ];
    pub(crate) const ED25519_SIGNATURE: &str = "6748f6f4c32e36aa2ef8df283a99a76275a9358b224844c53ced6ae4789262d00a86a6fe47a578ae243faa2a3ed9f4fd22d1bc38527f4797548e568ca43f500c";
    pub(crate) const SECP256K1_SIGNATURE: &str = "3044022071f460e4a86b02e7ed6d5cbf759bc5d9323f1deac6eb7a075e4097eeabf9141302201d0a4adb06b747b52683f2b5d48917f690338acd0c0dc6bbaa29670312095969";
    /// The same signature with s replaced by n - s.
    pub(crate) const SECP256K1_SIGNATURE_HIGH_S: &str = "3045022071f460e4a86b02e7ed6d5cbf759bc5d9323f1deac6eb7a075e4097eeabf91413022100e2f5b524f948b84ad97c0d4a2b76e8082a7b5219a33ad98015a8f789be2ce7d8";
    pub(crate) const ECDSA_SIGNATURE: &str = "3045022100cd720adfb4cc1c7c305a52b6c6b60385605bde9aef3511c1227d1fe06ce6a32e022020de13e09f055b8c55cd2be8c231af5e03a021d4e9f9576c79c340c3ac4afdec";
}
