//! [`PeerId`]: the multihash of a public key's protobuf encoding, and its two text forms.

use std::fmt;
use std::str::FromStr;

use super::identity::{Keypair, PublicKey, read_uvarint};

/// Multihash code of the identity hash.
const MULTIHASH_IDENTITY: u64 = 0x00;
/// Multihash code of sha2-256.
const MULTIHASH_SHA2_256: u64 = 0x12;
/// Longest key encoding that is inlined in a PeerId with the identity multihash.
pub(crate) const MAX_INLINE_KEY_LEN: usize = 42;
/// Longest PeerId byte form: varint code, varint length, 42 bytes of digest.
const MAX_PEER_ID_LEN: usize = 2 + MAX_INLINE_KEY_LEN;
/// CID version 1 and the `libp2p-key` multicodec, the prefix of a PeerId's CID form.
const CID_PREFIX: [u8; 2] = [0x01, 0x72];
/// RFC 4648 base32, lower case: the default multibase of CIDs (prefix `b`).
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The identity of a peer: the multihash of its public key's protobuf encoding (the identity
/// multihash when that encoding is at most 42 bytes, as for Ed25519 and secp256k1 keys;
/// sha2-256 otherwise, as for RSA and ECDSA keys).
///
/// `Display` writes base58btc (`12D3KooW…`, `16Uiu2HA…`, `Qm…`), the form libp2p displays;
/// [`PeerId::to_cid_string`] writes the CID form (`bafz…`). `FromStr` reads both.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerId {
    bytes: [u8; MAX_PEER_ID_LEN],
    len: u8,
}

/// Hashes the multihash's last 16 bytes, which are key or digest bytes for every key type, and
/// its length: a third of the work of hashing all of it, for the maps the node and
/// request-response look PeerIds up in on every stream. Keyed hashers (std's) keep it safe from
/// chosen collisions.
impl std::hash::Hash for PeerId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let used = &self.bytes[..usize::from(self.len)];
        match used.len().checked_sub(16) {
            Some(start) => {
                let (a, b) = used[start..].split_at(8);
                state.write_u64(u64::from_le_bytes(a.try_into().expect("8 bytes")));
                state.write_u64(u64::from_le_bytes(b.try_into().expect("8 bytes")));
            }
            None => state.write(used),
        }
        state.write_u8(self.len);
    }
}

impl PeerId {
    /// The PeerId of a public key (the same as [`PublicKey::to_peer_id`]).
    pub fn from_public_key(key: &PublicKey) -> Self {
        Self::from_key_encoding(&key.to_protobuf_encoding())
    }

    /// The PeerId of a public key's protobuf encoding.
    pub(crate) fn from_key_encoding(encoded: &[u8]) -> Self {
        let mut bytes = [0u8; MAX_PEER_ID_LEN];
        let len = if encoded.len() <= MAX_INLINE_KEY_LEN {
            bytes[0] = MULTIHASH_IDENTITY as u8;
            bytes[1] = encoded.len() as u8;
            bytes[2..2 + encoded.len()].copy_from_slice(encoded);
            2 + encoded.len()
        } else {
            let digest = ring::digest::digest(&ring::digest::SHA256, encoded);
            bytes[0] = MULTIHASH_SHA2_256 as u8;
            bytes[1] = 32;
            bytes[2..34].copy_from_slice(digest.as_ref());
            34
        };
        Self {
            bytes,
            len: len as u8,
        }
    }

    /// Parses the byte form (a multihash: identity with at most 42 bytes, or sha2-256).
    pub fn from_bytes(data: &[u8]) -> Result<Self, ParsePeerIdError> {
        let (code, rest) = read_uvarint(data).ok_or(ParsePeerIdError::Malformed)?;
        let (len, digest) = read_uvarint(rest).ok_or(ParsePeerIdError::Malformed)?;
        let valid_len = match code {
            MULTIHASH_IDENTITY => len <= MAX_INLINE_KEY_LEN as u64,
            MULTIHASH_SHA2_256 => len == 32,
            other => return Err(ParsePeerIdError::UnsupportedHash(other)),
        };
        // Both varints are one byte when minimal: a longer header is a non-canonical form that
        // would not read back from the text forms.
        if !valid_len || digest.len() as u64 != len || data.len() != 2 + digest.len() {
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

    /// The public key inlined in this PeerId: `Some` when it uses the identity multihash over a
    /// key this crate decodes (Ed25519, secp256k1); `None` for hashed ids (RSA, ECDSA).
    pub fn public_key(&self) -> Option<PublicKey> {
        let b = self.as_bytes();
        if b.first() != Some(&(MULTIHASH_IDENTITY as u8)) {
            return None;
        }
        PublicKey::from_protobuf_encoding(b.get(2..)?).ok()
    }

    /// The CID text form: multibase base32 (`b`) of CIDv1 with the `libp2p-key` codec, such as
    /// `bafzaajaiaejca…` for an Ed25519 key and `bafzbei…` for a hashed one.
    pub fn to_cid_string(&self) -> String {
        let mut cid = Vec::with_capacity(2 + self.as_bytes().len());
        cid.extend_from_slice(&CID_PREFIX);
        cid.extend_from_slice(self.as_bytes());
        let mut out = String::with_capacity(1 + (cid.len() * 8).div_ceil(5));
        out.push('b');
        base32_encode(&cid, &mut out);
        out
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

    /// Reads the legacy form (bare base58btc, starting `1` or `Qm`) or the CID form
    /// (multibase `b`, base32; or `z`, base58btc) whose codec must be `libp2p-key`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Base32 grows the bytes by 8/5 and base58 by about 1.37: anything longer than twice
        // the longest byte form cannot be a PeerId.
        if s.len() > 2 * (MAX_PEER_ID_LEN + CID_PREFIX.len()) {
            return Err(ParsePeerIdError::Malformed);
        }
        if s.starts_with('1') || s.starts_with("Qm") {
            let bytes = bs58::decode(s)
                .into_vec()
                .map_err(|_| ParsePeerIdError::Base58)?;
            return Self::from_bytes(&bytes);
        }
        let mut chars = s.chars();
        let cid = match chars.next() {
            Some('b') => base32_decode(chars.as_str()).ok_or(ParsePeerIdError::Base32)?,
            Some('z') => bs58::decode(chars.as_str())
                .into_vec()
                .map_err(|_| ParsePeerIdError::Base58)?,
            Some(other) => return Err(ParsePeerIdError::UnsupportedMultibase(other)),
            None => return Err(ParsePeerIdError::Malformed),
        };
        let multihash = cid
            .strip_prefix(&CID_PREFIX[..])
            .ok_or(ParsePeerIdError::NotLibp2pKeyCid)?;
        Self::from_bytes(multihash)
    }
}

/// Why a PeerId could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParsePeerIdError {
    /// The text is not base58btc.
    #[error("peer id is not valid base58")]
    Base58,
    /// The text of a CID is not base32.
    #[error("peer id CID is not valid base32")]
    Base32,
    /// The text is neither bare base58btc nor a CID in a multibase this crate reads (`b`, `z`).
    #[error("peer id text starts with {0:?}: neither base58btc nor a supported multibase")]
    UnsupportedMultibase(char),
    /// The CID is not version 1 with the `libp2p-key` codec.
    #[error("peer id CID is not a CIDv1 with the libp2p-key codec")]
    NotLibp2pKeyCid,
    /// The bytes are not a well-formed multihash of an accepted length.
    #[error("peer id is not a well-formed multihash")]
    Malformed,
    /// The multihash uses a hash other than identity or sha2-256.
    #[error("peer id uses unsupported multihash code {0:#x}")]
    UnsupportedHash(u64),
}

fn base32_encode(bytes: &[u8], out: &mut String) {
    let mut acc: u16 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u16::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[usize::from((acc >> bits) & 31)]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(BASE32[usize::from((acc << (5 - bits)) & 31)]));
    }
}

/// Decodes unpadded lower-case base32; `None` on any other character or on leftover bits
/// that are not zero (so that every byte string has exactly one text form).
fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut acc: u16 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = BASE32.iter().position(|&a| a == c)? as u16;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (bits < 5 && acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn peer_ids_of_every_key_type_are_told_apart_by_their_hash() {
        use std::collections::HashSet;
        use std::hash::BuildHasher as _;
        let state = std::collections::hash_map::RandomState::new();
        let mut seen = HashSet::new();
        for _ in 0..200 {
            for keypair in [
                crate::p2p::Keypair::generate(),
                crate::p2p::Keypair::generate_secp256k1(),
            ] {
                let id = keypair.public().to_peer_id();
                assert_eq!(state.hash_one(id), state.hash_one(id));
                assert!(seen.insert(state.hash_one(id)), "a collision among 400 ids");
            }
        }
        // sha2-256 PeerIds (RSA, ECDSA keys) are hashed by their digest's end.
        let legacy: PeerId = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
            .parse()
            .expect("base58");
        assert!(seen.insert(state.hash_one(legacy)));
    }

    #[test]
    fn the_spec_examples_are_the_same_peer_in_both_forms() {
        let legacy: PeerId = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
            .parse()
            .expect("base58");
        let cid: PeerId = "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"
            .parse()
            .expect("cid");
        assert_eq!(legacy, cid);
        assert_eq!(
            cid.to_cid_string(),
            "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"
        );
        assert_eq!(
            legacy.to_string(),
            "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
        );
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
        assert_eq!(
            "kabc".parse::<PeerId>(),
            Err(ParsePeerIdError::UnsupportedMultibase('k'))
        );
        // A CID with the dag-pb codec (0x70) is not a PeerId.
        let mut text = String::from("b");
        base32_encode(&[0x01, 0x70, 0x00, 0x01, 0x00], &mut text);
        assert_eq!(
            text.parse::<PeerId>(),
            Err(ParsePeerIdError::NotLibp2pKeyCid)
        );
        assert_eq!("bafz1".parse::<PeerId>(), Err(ParsePeerIdError::Base32));
    }

    #[test]
    fn non_minimal_multihash_headers_are_refused() {
        let id = Keypair::from_secret_bytes([1; 32]).peer_id();
        let mut padded = vec![0x80, 0x00];
        padded.extend_from_slice(&id.as_bytes()[1..]);
        assert_eq!(
            PeerId::from_bytes(&padded),
            Err(ParsePeerIdError::Malformed)
        );
    }

    proptest! {
        #[test]
        fn base32_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut text = String::new();
            base32_encode(&bytes, &mut text);
            prop_assert_eq!(base32_decode(&text), Some(bytes));
        }

        #[test]
        fn both_text_forms_round_trip(seed in any::<[u8; 32]>(), hashed in any::<bool>()) {
            let id = if hashed {
                PeerId::from_key_encoding(&[seed.as_slice(), seed.as_slice()].concat())
            } else {
                Keypair::from_secret_bytes(seed).peer_id()
            };
            prop_assert_eq!(id.to_string().parse::<PeerId>().expect("base58"), id);
            prop_assert_eq!(id.to_cid_string().parse::<PeerId>().expect("cid"), id);
            prop_assert_eq!(PeerId::from_bytes(id.as_bytes()).expect("bytes"), id);
        }

        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64), text in "\\PC{0,100}") {
            if let Ok(id) = PeerId::from_bytes(&data) {
                prop_assert_eq!(id.to_string().parse::<PeerId>(), Ok(id));
                prop_assert_eq!(id.to_cid_string().parse::<PeerId>(), Ok(id));
            }
            let _ = text.parse::<PeerId>();
        }

        #[test]
        fn any_accepted_byte_form_round_trips_through_text(header in 0usize..2, len in 0usize..43, fill in any::<u8>()) {
            let mut data = if header == 0 { vec![0x00, len as u8] } else { vec![0x12, 32] };
            data.resize(data[1] as usize + 2, fill);
            let id = PeerId::from_bytes(&data).expect("valid multihash");
            prop_assert_eq!(id.to_string().parse::<PeerId>(), Ok(id));
            prop_assert_eq!(id.to_cid_string().parse::<PeerId>(), Ok(id));
        }
    }
}
