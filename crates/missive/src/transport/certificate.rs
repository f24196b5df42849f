//! Self-signed X.509 v3 certificates with ECDSA P-256 keys, written directly as DER.
//!
//! Three kinds of certificate are made here: the queue's and rpc's self-signed TLS certificates
//! for tests and demos, the libp2p-tls certificate (an extension signed by the node's identity
//! key) and short-lived certificates whose hash a browser pins. They differ only in names,
//! validity and extensions, which is all [`CertificateParams`] holds; the rest of the
//! certificate is fixed, so a few lines of DER replace a general certificate builder.

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, alg_id};

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const BOOLEAN_TRUE: &[u8] = &[0x01, 0x01, 0xff];
/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectAltName, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// GeneralName tags: dNSName `[2]` and iPAddress `[7]`, both primitive.
const DNS_NAME: u8 = 0x82;
const IP_ADDRESS: u8 = 0x87;
/// The common name of certificates that carry names.
const SELF_SIGNED_CN: &str = "missive self-signed";

/// Why a certificate could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The system's random source or the signing key failed.
    #[error("the ECDSA P-256 key could not be generated or used")]
    Key,
    /// A name is neither a DNS name nor an IP address.
    #[error("{0:?} is not a DNS name or an IP address")]
    InvalidName(String),
    /// The validity period ends before it starts, or lies outside years 0000–9999.
    #[error("invalid validity period {not_before}..{not_after} (Unix seconds)")]
    InvalidValidity {
        /// NotBefore, Unix seconds.
        not_before: i64,
        /// NotAfter, Unix seconds.
        not_after: i64,
    },
}

/// An extension of a certificate, by the DER content of its OID.
#[derive(Debug, Clone)]
pub(crate) struct Extension<'a> {
    pub(crate) oid: &'a [u8],
    pub(crate) critical: bool,
    pub(crate) value: &'a [u8],
}

/// What varies between the certificates missive makes.
#[derive(Debug, Clone)]
pub(crate) struct CertificateParams<'a> {
    /// DNS names and IP addresses for the subjectAltName; none gives an empty subject.
    pub(crate) names: &'a [&'a str],
    /// NotBefore and NotAfter, Unix seconds.
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
    pub(crate) extensions: &'a [Extension<'a>],
}

/// -62135596800 is 0001-01-01, 253402300799 is 9999-12-31T23:59:59: the range GeneralizedTime's
/// four-digit year can hold.
const EARLIEST: i64 = -62_135_596_800;
const LATEST: i64 = 253_402_300_799;

/// A fresh ECDSA P-256 key pair.
pub(crate) struct EcdsaKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    spki: Vec<u8>,
}

impl std::fmt::Debug for EcdsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcdsaKey").finish_non_exhaustive()
    }
}

impl EcdsaKey {
    pub(crate) fn generate() -> Result<Self, CertificateError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| CertificateError::Key)?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| CertificateError::Key)?;
        let mut algorithm = Vec::new();
        write(&mut algorithm, SEQUENCE, &alg_id::ECDSA_P256);
        let mut point = vec![0u8];
        point.extend_from_slice(pair.public_key().as_ref());
        let mut fields = algorithm;
        write(&mut fields, BIT_STRING, &point);
        let mut spki = Vec::new();
        write(&mut spki, SEQUENCE, &fields);
        Ok(EcdsaKey {
            pair,
            pkcs8: pkcs8.as_ref().to_vec(),
            spki,
        })
    }

    /// The SubjectPublicKeyInfo, DER.
    #[cfg(feature = "p2p")]
    pub(crate) fn subject_public_key_info(&self) -> &[u8] {
        &self.spki
    }

    /// The private key, PKCS#8 DER.
    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.clone()))
    }

    /// The certificate for this key described by `params`, signed by this key.
    pub(crate) fn self_signed(
        &self,
        params: &CertificateParams<'_>,
    ) -> Result<CertificateDer<'static>, CertificateError> {
        let (not_before, not_after) = (params.not_before, params.not_after);
        if not_before > not_after || not_before < EARLIEST || not_after > LATEST {
            return Err(CertificateError::InvalidValidity {
                not_before,
                not_after,
            });
        }
        let mut signature_algorithm = Vec::new();
        write(&mut signature_algorithm, SEQUENCE, &alg_id::ECDSA_SHA256);
        let name = distinguished_name(params.names);

        let mut tbs = Vec::with_capacity(512);
        write(&mut tbs, 0xa0, &[INTEGER, 1, 2]); // [0] version v3
        write(&mut tbs, INTEGER, &serial_number()?);
        tbs.extend_from_slice(&signature_algorithm);
        tbs.extend_from_slice(&name);
        let mut validity = Vec::new();
        write_time(&mut validity, not_before);
        write_time(&mut validity, not_after);
        write(&mut tbs, SEQUENCE, &validity);
        tbs.extend_from_slice(&name);
        tbs.extend_from_slice(&self.spki);
        let extensions = extensions(params)?;
        if !extensions.is_empty() {
            let mut list = Vec::new();
            write(&mut list, SEQUENCE, &extensions);
            write(&mut tbs, 0xa3, &list); // [3] extensions
        }
        let mut tbs_certificate = Vec::with_capacity(tbs.len() + 4);
        write(&mut tbs_certificate, SEQUENCE, &tbs);

        let signature = self
            .pair
            .sign(&SystemRandom::new(), &tbs_certificate)
            .map_err(|_| CertificateError::Key)?;
        let mut bits = vec![0u8];
        bits.extend_from_slice(signature.as_ref());
        let mut certificate = tbs_certificate;
        certificate.extend_from_slice(&signature_algorithm);
        write(&mut certificate, BIT_STRING, &bits);
        let mut der = Vec::with_capacity(certificate.len() + 4);
        write(&mut der, SEQUENCE, &certificate);
        Ok(CertificateDer::from(der))
    }
}

/// A positive 16-byte serial number, minimally encoded (its first byte is 0x01–0x7f).
fn serial_number() -> Result<[u8; 16], CertificateError> {
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut serial)
        .map_err(|_| CertificateError::Key)?;
    serial[0] = (serial[0] & 0x7f).max(1);
    Ok(serial)
}

/// `CN=missive self-signed` when the certificate names hosts, else the empty name (libp2p-tls
/// and pinned certificates name nobody).
fn distinguished_name(names: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    if names.is_empty() {
        write(&mut out, SEQUENCE, &[]);
        return out;
    }
    let mut attribute = Vec::new();
    write(&mut attribute, OID, COMMON_NAME);
    write(&mut attribute, UTF8_STRING, SELF_SIGNED_CN.as_bytes());
    let mut type_and_value = Vec::new();
    write(&mut type_and_value, SEQUENCE, &attribute);
    let mut rdn = Vec::new();
    write(&mut rdn, SET, &type_and_value);
    write(&mut out, SEQUENCE, &rdn);
    out
}

/// The extensions' DER, one after another (without the enclosing SEQUENCE).
fn extensions(params: &CertificateParams<'_>) -> Result<Vec<u8>, CertificateError> {
    let mut out = Vec::new();
    if !params.names.is_empty() {
        let mut general_names = Vec::new();
        for name in params.names {
            match name.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(ip)) => write(&mut general_names, IP_ADDRESS, &ip.octets()),
                Ok(std::net::IpAddr::V6(ip)) => write(&mut general_names, IP_ADDRESS, &ip.octets()),
                Err(_) if rustls_pki_types::DnsName::try_from(*name).is_ok() => {
                    write(&mut general_names, DNS_NAME, name.as_bytes())
                }
                Err(_) => return Err(CertificateError::InvalidName((*name).to_owned())),
            }
        }
        let mut value = Vec::new();
        write(&mut value, SEQUENCE, &general_names);
        write_extension(&mut out, SUBJECT_ALT_NAME, false, &value);
    }
    for e in params.extensions {
        write_extension(&mut out, e.oid, e.critical, e.value);
    }
    Ok(out)
}

fn write_extension(out: &mut Vec<u8>, oid: &[u8], critical: bool, value: &[u8]) {
    let mut fields = Vec::with_capacity(value.len() + oid.len() + 8);
    write(&mut fields, OID, oid);
    if critical {
        fields.extend_from_slice(BOOLEAN_TRUE);
    }
    write(&mut fields, OCTET_STRING, value);
    write(out, SEQUENCE, &fields);
}

/// UTCTime for the years 1950–2049 and GeneralizedTime otherwise, as RFC 5280 §4.1.2.5 asks.
fn write_time(out: &mut Vec<u8>, unix: i64) {
    let (days, seconds) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if (1950..2050).contains(&year) {
        let text = format!("{:02}{month:02}{day:02}{h:02}{m:02}{s:02}Z", year % 100);
        write(out, UTC_TIME, text.as_bytes());
    } else {
        let text = format!("{year:04}{month:02}{day:02}{h:02}{m:02}{s:02}Z");
        write(out, GENERALIZED_TIME, text.as_bytes());
    }
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// One DER element: tag, definite minimal length, content.
pub(crate) fn write(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// Base64 (RFC 4648, with padding) in lines of 64, between PEM's BEGIN and END lines.
#[cfg(feature = "tls")]
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                text.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params<'a>(names: &'a [&'a str]) -> CertificateParams<'a> {
        CertificateParams {
            names,
            not_before: 1_700_000_000,
            not_after: 1_700_000_000 + 14 * 86_400,
            extensions: &[],
        }
    }

    #[test]
    fn times_are_utc_until_2049_then_generalized() {
        let mut out = Vec::new();
        write_time(&mut out, 0);
        assert_eq!(out, b"\x17\x0d700101000000Z");
        out.clear();
        write_time(&mut out, 2_524_608_000); // 2050-01-01
        assert_eq!(out, b"\x18\x0f20500101000000Z");
        out.clear();
        write_time(&mut out, -157_766_400); // 1965-01-01
        assert_eq!(out, b"\x17\x0d650101000000Z");
        out.clear();
        write_time(&mut out, LATEST);
        assert_eq!(out, b"\x18\x0f99991231235959Z");
    }

    #[test]
    fn a_certificate_with_names_is_accepted_by_rustls_for_those_names() {
        let key = EcdsaKey::generate().expect("key");
        let cert = key
            .self_signed(&params(&["localhost", "127.0.0.1", "::1"]))
            .expect("certificate");
        // rustls's own parser takes it as a trust anchor and as an end-entity certificate.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.clone()).expect("a trust anchor");
        let server = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key.private_key());
        assert!(server.is_ok(), "{server:?}");
    }

    #[test]
    fn bad_names_and_validity_are_refused() {
        let key = EcdsaKey::generate().expect("key");
        assert_eq!(
            key.self_signed(&params(&["not a name!"])),
            Err(CertificateError::InvalidName("not a name!".into()))
        );
        let mut p = params(&[]);
        p.not_after = p.not_before - 1;
        assert!(matches!(
            key.self_signed(&p),
            Err(CertificateError::InvalidValidity { .. })
        ));
    }

    #[cfg(feature = "tls")]
    #[test]
    fn pem_is_base64_in_lines_of_64() {
        assert_eq!(
            pem("X", b"Man"),
            "-----BEGIN X-----\nTWFu\n-----END X-----\n"
        );
        assert_eq!(
            pem("X", b"Ma"),
            "-----BEGIN X-----\nTWE=\n-----END X-----\n"
        );
        assert_eq!(pem("X", b"M"), "-----BEGIN X-----\nTQ==\n-----END X-----\n");
        let long = pem("X", &[0u8; 100]);
        assert!(long.lines().all(|l| l.len() <= 64));
    }

    proptest! {
        /// The PEM text reads back to the same bytes with rustls's PEM reader.
        #[cfg(feature = "tls")]
        #[test]
        fn pem_reads_back(der in proptest::collection::vec(any::<u8>(), 1..600)) {
            use rustls_pki_types::pem::PemObject as _;
            let text = pem("CERTIFICATE", &der);
            let back = CertificateDer::from_pem_slice(text.as_bytes()).expect("pem");
            prop_assert_eq!(back.as_ref(), &der[..]);
        }

        /// Every day maps to a valid date, and consecutive days to consecutive dates.
        #[test]
        fn civil_dates_are_consistent(days in -700_000i64..2_900_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            let (y2, m2, d2) = civil_from_days(days + 1);
            prop_assert!((y2, m2, d2) > (y, m, d));
        }
    }
}
