//! Just enough DER for identity keys: the `SubjectPublicKeyInfo` forms of RSA and ECDSA P-256
//! public keys, and ECDSA signatures (`SEQUENCE { r INTEGER, s INTEGER }`).
//!
//! Reading is strict DER (definite, minimal lengths; minimal positive integers), so a key that
//! decodes is written back byte for byte as rust-libp2p writes it, and PeerIds (hashes of that
//! encoding) agree.

/// The DER contents of the rsaEncryption OID, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// The DER contents of the id-ecPublicKey OID, 1.2.840.10045.2.1.
const EC_PUBLIC_KEY_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// The DER contents of the prime256v1 (P-256) curve OID, 1.2.840.10045.3.1.7.
const P256_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;

/// Length of an uncompressed SEC1 P-256 point (`04` ‖ x ‖ y).
pub(crate) const P256_POINT_LEN: usize = 65;

/// Why a DER structure was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DerError {
    /// Not well-formed DER, or not the expected structure.
    Malformed,
    /// Well-formed, but an algorithm, curve or point form that is not supported.
    Unsupported(&'static str),
}

/// The PKCS#1 `RSAPublicKey` inside an RSA `SubjectPublicKeyInfo`.
pub(crate) fn rsa_pkcs1_from_spki(spki: &[u8]) -> Result<&[u8], DerError> {
    let (algorithm, key) = split_spki(spki)?;
    let (oid, params) = read_tlv(algorithm, OID)?;
    if oid != RSA_ENCRYPTION_OID {
        return Err(DerError::Unsupported("not an rsaEncryption key"));
    }
    if params != [NULL, 0x00] {
        return Err(DerError::Malformed);
    }
    if key.is_empty() {
        return Err(DerError::Malformed);
    }
    Ok(key)
}

/// The `SubjectPublicKeyInfo` of a PKCS#1 `RSAPublicKey`.
pub(crate) fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    let mut algorithm = Vec::with_capacity(13);
    write_tlv(&mut algorithm, OID, RSA_ENCRYPTION_OID);
    write_tlv(&mut algorithm, NULL, &[]);
    spki(&algorithm, pkcs1)
}

/// The uncompressed SEC1 point inside a P-256 `SubjectPublicKeyInfo`. Its validity on the
/// curve is checked when a signature is verified.
pub(crate) fn p256_point_from_spki(spki: &[u8]) -> Result<[u8; P256_POINT_LEN], DerError> {
    let (algorithm, key) = split_spki(spki)?;
    let (oid, params) = read_tlv(algorithm, OID)?;
    if oid != EC_PUBLIC_KEY_OID {
        return Err(DerError::Unsupported("not an id-ecPublicKey key"));
    }
    let (curve, rest) = read_tlv(params, OID)?;
    if !rest.is_empty() {
        return Err(DerError::Malformed);
    }
    if curve != P256_OID {
        return Err(DerError::Unsupported("an ECDSA curve other than P-256"));
    }
    match key.first() {
        Some(0x04) => key.try_into().map_err(|_| DerError::Malformed),
        Some(0x02 | 0x03) => Err(DerError::Unsupported("a compressed ECDSA point")),
        _ => Err(DerError::Malformed),
    }
}

/// The `SubjectPublicKeyInfo` of an uncompressed SEC1 P-256 point.
pub(crate) fn p256_spki(point: &[u8; P256_POINT_LEN]) -> Vec<u8> {
    let mut algorithm = Vec::with_capacity(19);
    write_tlv(&mut algorithm, OID, EC_PUBLIC_KEY_OID);
    write_tlv(&mut algorithm, OID, P256_OID);
    spki(&algorithm, point)
}

/// The fixed form (`r` ‖ `s`, 32 bytes each, big-endian) of a DER ECDSA signature over a
/// 256-bit curve. Zero or out-of-range scalars are left for the verifier to refuse.
pub(crate) fn ecdsa_signature_to_fixed(der: &[u8]) -> Option<[u8; 64]> {
    let (body, rest) = read_tlv(der, SEQUENCE).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let (r, body) = read_tlv(body, INTEGER).ok()?;
    let (s, body) = read_tlv(body, INTEGER).ok()?;
    if !body.is_empty() {
        return None;
    }
    let mut out = [0u8; 64];
    put_unsigned(&mut out[..32], r)?;
    put_unsigned(&mut out[32..], s)?;
    Some(out)
}

/// The DER form of a fixed `r` ‖ `s` ECDSA signature.
pub(crate) fn ecdsa_signature_to_der(fixed: &[u8; 64]) -> Vec<u8> {
    let mut body = Vec::with_capacity(70);
    for half in [&fixed[..32], &fixed[32..]] {
        let start = half.iter().position(|&b| b != 0).unwrap_or(half.len() - 1);
        let mut int = Vec::with_capacity(33);
        if half[start] & 0x80 != 0 {
            int.push(0);
        }
        int.extend_from_slice(&half[start..]);
        write_tlv(&mut body, INTEGER, &int);
    }
    let mut out = Vec::with_capacity(body.len() + 2);
    write_tlv(&mut out, SEQUENCE, &body);
    out
}

/// Checks that `int` is a minimal, non-negative DER integer of at most `out.len()` bytes of
/// magnitude, and writes it right-aligned into `out`.
fn put_unsigned(out: &mut [u8], int: &[u8]) -> Option<()> {
    let (&first, _) = int.split_first()?;
    if first & 0x80 != 0 {
        return None; // negative
    }
    let magnitude = if first == 0 && int.len() > 1 {
        if int[1] & 0x80 == 0 {
            return None; // a leading zero that is not needed
        }
        &int[1..]
    } else {
        int
    };
    if magnitude.len() > out.len() {
        return None;
    }
    let offset = out.len() - magnitude.len();
    out[offset..].copy_from_slice(magnitude);
    Some(())
}

/// Splits `SEQUENCE { SEQUENCE algorithm, BIT STRING key }` into the algorithm's contents and
/// the key bytes (a bit string with no unused bits).
fn split_spki(spki: &[u8]) -> Result<(&[u8], &[u8]), DerError> {
    let (body, rest) = read_tlv(spki, SEQUENCE)?;
    if !rest.is_empty() {
        return Err(DerError::Malformed);
    }
    let (algorithm, body) = read_tlv(body, SEQUENCE)?;
    let (bits, body) = read_tlv(body, BIT_STRING)?;
    if !body.is_empty() {
        return Err(DerError::Malformed);
    }
    match bits.split_first() {
        Some((0, key)) => Ok((algorithm, key)),
        _ => Err(DerError::Malformed),
    }
}

fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(key.len() + 1);
    bits.push(0);
    bits.extend_from_slice(key);
    let mut body = Vec::with_capacity(algorithm.len() + bits.len() + 8);
    write_tlv(&mut body, SEQUENCE, algorithm);
    write_tlv(&mut body, BIT_STRING, &bits);
    let mut out = Vec::with_capacity(body.len() + 4);
    write_tlv(&mut out, SEQUENCE, &body);
    out
}

/// Reads one element with `tag`: its contents and the bytes after it. Lengths must be
/// definite and minimal, and at most three bytes long (16 MiB, far past any key).
fn read_tlv(bytes: &[u8], tag: u8) -> Result<(&[u8], &[u8]), DerError> {
    let [t, first, rest @ ..] = bytes else {
        return Err(DerError::Malformed);
    };
    if *t != tag {
        return Err(DerError::Malformed);
    }
    let (len, rest) = match *first {
        n if n < 0x80 => (usize::from(n), rest),
        0x81..=0x83 => {
            let n = usize::from(first - 0x80);
            if rest.len() < n || rest[0] == 0 {
                return Err(DerError::Malformed);
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return Err(DerError::Malformed); // the short form was required
            }
            (len, &rest[n..])
        }
        _ => return Err(DerError::Malformed),
    };
    if len > rest.len() {
        return Err(DerError::Malformed);
    }
    Ok(rest.split_at(len))
}

use crate::transport::certificate::write as write_tlv;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lengths_must_be_minimal() {
        assert!(read_tlv(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5], 0x04).is_err());
        assert!(read_tlv(&[0x04, 0x82, 0x00, 0x80], 0x04).is_err());
        assert!(read_tlv(&[0x04, 0x80], 0x04).is_err());
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend_from_slice(&[7; 0x80]);
        assert_eq!(read_tlv(&long, 0x04).expect("long form").0.len(), 0x80);
    }

    #[test]
    fn integers_must_be_minimal_and_positive() {
        // 0x00 0x01 is not minimal; 0x80 is negative; 0x00 0x80 is fine.
        assert!(
            ecdsa_signature_to_fixed(&[0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01])
                .is_none()
        );
        assert!(
            ecdsa_signature_to_fixed(&[0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x01]).is_none()
        );
        let fixed =
            ecdsa_signature_to_fixed(&[0x30, 0x07, 0x02, 0x02, 0x00, 0x80, 0x02, 0x01, 0x01])
                .expect("valid");
        assert_eq!((fixed[31], fixed[63]), (0x80, 0x01));
    }

    proptest! {
        #[test]
        fn signatures_round_trip(fixed in any::<[u8; 32]>(), other in any::<[u8; 32]>()) {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(&fixed);
            sig[32..].copy_from_slice(&other);
            let der = ecdsa_signature_to_der(&sig);
            prop_assert_eq!(ecdsa_signature_to_fixed(&der), Some(sig));
        }

        #[test]
        fn p256_spki_round_trips(xy in proptest::collection::vec(any::<u8>(), 64)) {
            let mut point = [4u8; P256_POINT_LEN];
            point[1..].copy_from_slice(&xy);
            prop_assert_eq!(p256_point_from_spki(&p256_spki(&point)), Ok(point));
        }

        #[test]
        fn rsa_spki_round_trips(key in proptest::collection::vec(any::<u8>(), 1..700)) {
            let spki = rsa_spki(&key);
            prop_assert_eq!(rsa_pkcs1_from_spki(&spki), Ok(&key[..]));
        }

        #[test]
        fn readers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = rsa_pkcs1_from_spki(&data);
            let _ = p256_point_from_spki(&data);
            let _ = ecdsa_signature_to_fixed(&data);
        }
    }
}
