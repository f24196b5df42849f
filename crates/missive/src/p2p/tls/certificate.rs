//! The libp2p-tls certificate: a self-signed X.509 certificate that carries the host's identity
//! key in the libp2p Public Key Extension, and its parsing and verification.
//!
//! Only the fields libp2p-tls needs are read (see [`parse`]); everything else in the certificate
//! is skipped as opaque DER. The checks follow the libp2p TLS spec: one certificate, within its
//! validity period, a valid self-signature by a key type TLS 1.3 can verify, exactly one libp2p
//! extension whose signature by the host key covers `libp2p-tls-handshake:` ‖ the certificate's
//! SubjectPublicKeyInfo, and no critical extension we do not understand.

// The same verification algorithms from either library: aws-lc-rs's ECDSA is about twice as
// fast as ring's, and every handshake verifies two signatures with the certificate key.
#[cfg(feature = "aws-lc")]
use aws_lc_rs::signature::{self, VerificationAlgorithm};
#[cfg(not(feature = "aws-lc"))]
use ring::signature::{self, VerificationAlgorithm};
use rustls::SignatureScheme;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, alg_id};

use super::der::{self, DerError, Reader};
use crate::p2p::{DecodeKeyError, Keypair, PeerId, PublicKey};
use crate::transport::{
    CertificateError as CertificateGenerationError, CertificateParams, EcdsaKey, Extension,
};

/// Arcs of the libp2p Public Key Extension's OID, 1.3.6.1.4.1.53594.1.1.
#[cfg(test)]
const EXTENSION_ARCS: &[u64] = &[1, 3, 6, 1, 4, 1, 53594, 1, 1];
/// The same OID as DER content (what follows `06 0a`).
const EXTENSION_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xa2, 0x5a, 0x01, 0x01];
/// What the host key signs, before the certificate's SubjectPublicKeyInfo.
const SIGNING_PREFIX: &[u8] = b"libp2p-tls-handshake:";
/// The certificate key type in tests: the one rust-libp2p and go-libp2p generate.
#[cfg(test)]
static CERTIFICATE_ALGORITHM: &rcgen::SignatureAlgorithm = &rcgen::PKCS_ECDSA_P256_SHA256;

/// Why a peer's certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The bytes are not a DER X.509 certificate.
    #[error("malformed certificate: {0}")]
    Malformed(#[source] DerError),
    /// The certificate is not X.509 version 3 (the only one with extensions).
    #[error("certificate is not X.509 v3")]
    UnsupportedVersion,
    /// The certificate names two different signature algorithms (inside and outside the signed
    /// part).
    #[error("certificate's signature algorithm fields disagree")]
    AlgorithmMismatch,
    /// The certificate key, or its pairing with the signature algorithm, is not one libp2p-tls
    /// verifies (ECDSA P-256/SHA-256, P-384/SHA-384, Ed25519, RSA PKCS#1 SHA-256/384/512).
    #[error("unsupported certificate key or signature algorithm")]
    UnsupportedAlgorithm,
    /// The certificate's self-signature does not verify with its own key.
    #[error("certificate's self-signature is invalid")]
    BadSelfSignature,
    /// The certificate is not valid yet, or no longer, at the time it was received.
    #[error("certificate is outside its validity period ({not_before}..{not_after}, now {now})")]
    NotValidNow {
        /// NotBefore, Unix seconds.
        not_before: i64,
        /// NotAfter, Unix seconds.
        not_after: i64,
        /// The time of the check, Unix seconds.
        now: i64,
    },
    /// The libp2p Public Key Extension is missing.
    #[error("certificate lacks the libp2p public key extension")]
    MissingExtension,
    /// The libp2p Public Key Extension appears more than once.
    #[error("certificate carries the libp2p public key extension twice")]
    DuplicateExtension,
    /// An extension marked critical that libp2p-tls does not know.
    #[error("certificate carries an unknown critical extension")]
    UnknownCriticalExtension,
    /// The extension's value is not a DER `SignedKey`.
    #[error("malformed libp2p public key extension: {0}")]
    MalformedExtension(#[source] DerError),
    /// The host key in the extension is not one this node can use.
    #[error("host key in the certificate was refused: {0}")]
    HostKey(#[source] DecodeKeyError),
    /// The host key's signature over the certificate key does not verify.
    #[error("host key's signature over the certificate key is invalid")]
    BadExtensionSignature,
    /// A TLS handshake signature whose scheme does not fit the certificate key, or that does
    /// not verify.
    #[error("TLS handshake signature is invalid for the certificate key")]
    BadHandshakeSignature,
}

impl From<DerError> for CertificateError {
    fn from(e: DerError) -> Self {
        Self::Malformed(e)
    }
}

/// The kinds of certificate key that libp2p-tls verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CertificateKey {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa,
}

/// A certificate's fields that libp2p-tls reads, borrowed from its DER; nothing is verified yet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Certificate<'a> {
    /// The signed part, TBSCertificate, as encoded.
    tbs: &'a [u8],
    /// The outer signatureAlgorithm (AlgorithmIdentifier content).
    signature_algorithm: &'a [u8],
    signature: &'a [u8],
    not_before: i64,
    not_after: i64,
    /// SubjectPublicKeyInfo as encoded, what the host key signs.
    spki: &'a [u8],
    key: CertificateKey,
    /// The certificate key's bytes (the BIT STRING of the SubjectPublicKeyInfo).
    public_key: &'a [u8],
    /// The extension's `publicKey`: the host key's protobuf encoding.
    host_key: &'a [u8],
    /// The extension's `signature`.
    host_signature: &'a [u8],
}

/// Parses a certificate, refusing what libp2p-tls cannot accept whatever the signatures:
/// malformed DER, a version other than 3, unsupported key or signature algorithms, a missing or
/// duplicated libp2p extension, and unknown critical extensions.
pub(crate) fn parse(der_bytes: &[u8]) -> Result<Certificate<'_>, CertificateError> {
    let mut outer = Reader::new(der_bytes);
    let mut cert = outer.nested(der::SEQUENCE)?;
    outer.finish()?;
    let tbs_element = cert.expect(der::SEQUENCE)?;
    let signature_algorithm = cert.content(der::SEQUENCE)?;
    let signature = cert.bit_string_bytes()?;
    cert.finish()?;

    let mut tbs = Reader::new(tbs_element.content);
    let mut version = tbs
        .optional(der::explicit(0))?
        .map(|e| Reader::new(e.content))
        .ok_or(CertificateError::UnsupportedVersion)?;
    if version.content(der::INTEGER)? != [2] {
        return Err(CertificateError::UnsupportedVersion);
    }
    version.finish()?;
    tbs.content(der::INTEGER)?; // serialNumber
    if tbs.content(der::SEQUENCE)? != signature_algorithm {
        return Err(CertificateError::AlgorithmMismatch);
    }
    tbs.content(der::SEQUENCE)?; // issuer
    let mut validity = tbs.nested(der::SEQUENCE)?;
    let not_before = validity.time()?;
    let not_after = validity.time()?;
    validity.finish()?;
    tbs.content(der::SEQUENCE)?; // subject
    let spki_element = tbs.expect(der::SEQUENCE)?;
    let mut spki = Reader::new(spki_element.content);
    let key_algorithm = spki.content(der::SEQUENCE)?;
    let public_key = spki.bit_string_bytes()?;
    spki.finish()?;
    let key = certificate_key(key_algorithm).ok_or(CertificateError::UnsupportedAlgorithm)?;
    // issuerUniqueID and subjectUniqueID are not used by libp2p; skipped if present.
    tbs.optional(der::implicit(1))?;
    tbs.optional(der::implicit(2))?;
    let mut extensions = tbs
        .optional(der::explicit(3))?
        .map(|e| Reader::new(e.content))
        .ok_or(CertificateError::MissingExtension)?;
    tbs.finish()?;
    let mut list = extensions.nested(der::SEQUENCE)?;
    extensions.finish()?;

    let mut libp2p = None;
    while !list.is_empty() {
        let mut ext = list.nested(der::SEQUENCE)?;
        let oid = ext.content(der::OID)?;
        let critical = ext.boolean_or_false()?;
        let value = ext.content(der::OCTET_STRING)?;
        ext.finish()?;
        if oid == EXTENSION_OID {
            if libp2p.is_some() {
                return Err(CertificateError::DuplicateExtension);
            }
            libp2p = Some(signed_key(value).map_err(CertificateError::MalformedExtension)?);
        } else if critical {
            return Err(CertificateError::UnknownCriticalExtension);
        }
    }
    let (host_key, host_signature) = libp2p.ok_or(CertificateError::MissingExtension)?;
    Ok(Certificate {
        tbs: tbs_element.raw,
        signature_algorithm,
        signature,
        not_before,
        not_after,
        spki: spki_element.raw,
        key,
        public_key,
        host_key,
        host_signature,
    })
}

/// Parses and verifies a certificate at `now` (Unix seconds) and returns the PeerId it proves.
pub(crate) fn verify(der_bytes: &[u8], now: i64) -> Result<PeerId, CertificateError> {
    parse(der_bytes)?.verify(now)
}

impl Certificate<'_> {
    /// Checks the validity period, the self-signature and the host key's signature, and returns
    /// the PeerId of the host key.
    pub(crate) fn verify(&self, now: i64) -> Result<PeerId, CertificateError> {
        if now < self.not_before || now > self.not_after {
            return Err(CertificateError::NotValidNow {
                not_before: self.not_before,
                not_after: self.not_after,
                now,
            });
        }
        let algorithm = self_signature_algorithm(self.key, self.signature_algorithm)
            .ok_or(CertificateError::UnsupportedAlgorithm)?;
        signature::UnparsedPublicKey::new(algorithm, self.public_key)
            .verify(self.tbs, self.signature)
            .map_err(|_| CertificateError::BadSelfSignature)?;
        let host = self.host_key()?;
        let mut signed = Vec::with_capacity(SIGNING_PREFIX.len() + self.spki.len());
        signed.extend_from_slice(SIGNING_PREFIX);
        signed.extend_from_slice(self.spki);
        if !host.verify(&signed, self.host_signature) {
            return Err(CertificateError::BadExtensionSignature);
        }
        Ok(host.to_peer_id())
    }

    /// The host key the extension names (its signature not checked).
    pub(crate) fn host_key(&self) -> Result<PublicKey, CertificateError> {
        PublicKey::from_protobuf_encoding(self.host_key).map_err(CertificateError::HostKey)
    }

    /// Checks a TLS 1.3 handshake signature (CertificateVerify) made with the certificate key:
    /// the scheme must be the one TLS 1.3 defines for this key.
    pub(crate) fn verify_tls13_signature(
        &self,
        scheme: SignatureScheme,
        message: &[u8],
        sig: &[u8],
    ) -> Result<(), CertificateError> {
        let algorithm =
            handshake_algorithm(self.key, scheme).ok_or(CertificateError::BadHandshakeSignature)?;
        signature::UnparsedPublicKey::new(algorithm, self.public_key)
            .verify(message, sig)
            .map_err(|_| CertificateError::BadHandshakeSignature)
    }
}

/// The schemes accepted for TLS handshake signatures, most preferred first (rust-libp2p's
/// list; the RSA PKCS#1 ones are listed for the certificates' own signatures, TLS 1.3 uses PSS
/// in the handshake).
pub(crate) fn signature_schemes() -> Vec<SignatureScheme> {
    vec![
        SignatureScheme::ECDSA_NISTP384_SHA384,
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::ED25519,
        SignatureScheme::RSA_PSS_SHA512,
        SignatureScheme::RSA_PSS_SHA384,
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::RSA_PKCS1_SHA512,
        SignatureScheme::RSA_PKCS1_SHA384,
        SignatureScheme::RSA_PKCS1_SHA256,
    ]
}

/// Generates a fresh ECDSA P-256 certificate key and the self-signed certificate for
/// `identity`: empty subject, validity 1975-01-01 to 4096-01-01, the libp2p extension marked
/// critical (as rust-libp2p makes them).
pub(crate) fn generate(
    identity: &Keypair,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), CertificateGenerationError> {
    /// 1975-01-01 and 4096-01-01, Unix seconds.
    const NOT_BEFORE: i64 = 157_766_400;
    const NOT_AFTER: i64 = 67_090_176_000;
    let key = EcdsaKey::generate()?;
    let mut signed = SIGNING_PREFIX.to_vec();
    signed.extend_from_slice(key.subject_public_key_info());
    let signature = identity.sign(&signed);
    let mut fields = Vec::with_capacity(128);
    der::write(
        &mut fields,
        der::OCTET_STRING,
        &identity.public().to_protobuf_encoding(),
    );
    der::write(&mut fields, der::OCTET_STRING, &signature);
    let mut value = Vec::with_capacity(fields.len() + 4);
    der::write(&mut value, der::SEQUENCE, &fields);
    let cert = key.self_signed(&CertificateParams {
        names: &[],
        not_before: NOT_BEFORE,
        not_after: NOT_AFTER,
        extensions: &[Extension {
            oid: EXTENSION_OID,
            critical: true,
            value: &value,
        }],
    })?;
    Ok((cert, key.private_key()))
}

/// `SignedKey ::= SEQUENCE { publicKey OCTET STRING, signature OCTET STRING }`.
fn signed_key(value: &[u8]) -> Result<(&[u8], &[u8]), DerError> {
    let mut outer = Reader::new(value);
    let mut fields = outer.nested(der::SEQUENCE)?;
    outer.finish()?;
    let key = fields.content(der::OCTET_STRING)?;
    let sig = fields.content(der::OCTET_STRING)?;
    fields.finish()?;
    Ok((key, sig))
}

fn certificate_key(algorithm: &[u8]) -> Option<CertificateKey> {
    Some(match algorithm {
        a if a == &*alg_id::ECDSA_P256 => CertificateKey::EcdsaP256,
        a if a == &*alg_id::ECDSA_P384 => CertificateKey::EcdsaP384,
        a if a == &*alg_id::ED25519 => CertificateKey::Ed25519,
        a if a == &*alg_id::RSA_ENCRYPTION => CertificateKey::Rsa,
        _ => return None,
    })
}

/// The verification of a certificate's own signature, for its key and signature algorithm.
/// As in rust-libp2p, each curve goes with its own hash: P-256 with SHA-256, P-384 with SHA-384.
fn self_signature_algorithm(
    key: CertificateKey,
    algorithm: &[u8],
) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match key {
        CertificateKey::EcdsaP256 if algorithm == &*alg_id::ECDSA_SHA256 => {
            &signature::ECDSA_P256_SHA256_ASN1
        }
        CertificateKey::EcdsaP384 if algorithm == &*alg_id::ECDSA_SHA384 => {
            &signature::ECDSA_P384_SHA384_ASN1
        }
        CertificateKey::Ed25519 if algorithm == &*alg_id::ED25519 => &signature::ED25519,
        CertificateKey::Rsa if algorithm == &*alg_id::RSA_PKCS1_SHA256 => {
            &signature::RSA_PKCS1_2048_8192_SHA256
        }
        CertificateKey::Rsa if algorithm == &*alg_id::RSA_PKCS1_SHA384 => {
            &signature::RSA_PKCS1_2048_8192_SHA384
        }
        CertificateKey::Rsa if algorithm == &*alg_id::RSA_PKCS1_SHA512 => {
            &signature::RSA_PKCS1_2048_8192_SHA512
        }
        CertificateKey::Rsa if algorithm == &*alg_id::RSA_PSS_SHA256 => {
            &signature::RSA_PSS_2048_8192_SHA256
        }
        CertificateKey::Rsa if algorithm == &*alg_id::RSA_PSS_SHA384 => {
            &signature::RSA_PSS_2048_8192_SHA384
        }
        CertificateKey::Rsa if algorithm == &*alg_id::RSA_PSS_SHA512 => {
            &signature::RSA_PSS_2048_8192_SHA512
        }
        _ => return None,
    })
}

/// The verification of a TLS 1.3 CertificateVerify signature by `key` under `scheme`.
fn handshake_algorithm(
    key: CertificateKey,
    scheme: SignatureScheme,
) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match (key, scheme) {
        (CertificateKey::EcdsaP256, SignatureScheme::ECDSA_NISTP256_SHA256) => {
            &signature::ECDSA_P256_SHA256_ASN1
        }
        (CertificateKey::EcdsaP384, SignatureScheme::ECDSA_NISTP384_SHA384) => {
            &signature::ECDSA_P384_SHA384_ASN1
        }
        (CertificateKey::Ed25519, SignatureScheme::ED25519) => &signature::ED25519,
        (CertificateKey::Rsa, SignatureScheme::RSA_PSS_SHA256) => {
            &signature::RSA_PSS_2048_8192_SHA256
        }
        (CertificateKey::Rsa, SignatureScheme::RSA_PSS_SHA384) => {
            &signature::RSA_PSS_2048_8192_SHA384
        }
        (CertificateKey::Rsa, SignatureScheme::RSA_PSS_SHA512) => {
            &signature::RSA_PSS_2048_8192_SHA512
        }
        _ => return None,
    })
}

/// Decodes and verifies arbitrary bytes as a certificate, at a time inside the validity of
/// the spec's test vectors; for the fuzz target.
#[doc(hidden)]
pub fn verify_for_fuzzing(data: &[u8]) -> Option<PeerId> {
    parse(data).ok()?.verify(1_700_000_000).ok()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
            .collect()
    }

    /// 2023-11-14, inside the vectors' validity.
    const NOW: i64 = 1_700_000_000;

    // The four test vectors of the libp2p TLS spec (tls/tls.md, "Test vectors").
    const SPEC_ED25519: &str = "308201ae30820156a0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea37c307a3078060a2b0601040183a25a0101046a3068042408011220a77f1d92fedb59dddaea5a1c4abd1ac2fbde7d7b879ed364501809923d7c11b90440d90d2769db992d5e6195dbb08e706b6651e024fda6cfb8846694a435519941cac215a8207792e42849cccc6cd8136c6e4bde92a58c5e08cfd4206eb5fe0bf909300a06082a8648ce3d0403020346003043021f50f6b6c52711a881778718238f650c9fb48943ae6ee6d28427dc6071ae55e702203625f116a7a454db9c56986c82a25682f7248ea1cb764d322ea983ed36a31b77";
    const SPEC_ECDSA: &str = "308201f63082019da0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea381c23081bf3081bc060a2b0601040183a25a01010481ad3081aa045f0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004bf30511f909414ebdd3242178fd290f093a551cf75c973155de0bb5a96fedf6cb5d52da7563e794b512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f2044730450220064ea8124774caf8f50e57f436aa62350ce652418c019df5d98a3ac666c9386a022100aa59d704a931b5f72fb9222cb6cc51f954d04a4e2e5450f8805fe8918f71eaae300a06082a8648ce3d04030203470030440220799395b0b6c1e940a7e4484705f610ab51ed376f19ff9d7c16757cfbf61b8d4302206205c03fbb0f95205c779be86581d3e31c01871ad5d1f3435bcf375cb0e5088a";
    const SPEC_SECP256K1: &str = "308201ba3082015fa0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea38184308181307f060a2b0601040183a25a01010471306f0425080212210206dc6968726765b820f050263ececf7f71e4955892776c0970542efd689d2382044630440220145e15a991961f0d08cd15425bb95ec93f6ffa03c5a385eedc34ecf464c7a8ab022026b3109b8a3f40ef833169777eb2aa337cfb6282f188de0666d1bcec2a4690dd300a06082a8648ce3d0403020349003046022100e1a217eeef9ec9204b3f774a08b70849646b6a1e6b8b27f93dc00ed58545d9fe022100b00dafa549d0f03547878338c7b15e7502888f6d45db387e5ae6b5d46899cef0";
    const SPEC_INVALID: &str = "308201f73082019da0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea381c23081bf3081bc060a2b0601040183a25a01010481ad3081aa045f0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004bf30511f909414ebdd3242178fd290f093a551cf75c973155de0bb5a96fedf6cb5d52da7563e794b512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f204473045022100bb6e03577b7cc7a3cd1558df0da2b117dfdcc0399bc2504ebe7de6f65cade72802206de96e2a5be9b6202adba24ee0362e490641ac45c240db71fe955f2c5cf8df6e300a06082a8648ce3d0403020348003045022100e847f267f43717358f850355bdcabbefb2cfbf8a3c043b203a14788a092fe8db022027c1d04a2d41fd6b57a7e8b3989e470325de4406e52e084e34a3fd56eef0d0df";

    /// A vector whose host key type this node may not verify yet: it must prove `expected`, or
    /// be refused for its key type and nothing else (its self-signature is checked either way).
    fn check_other_key_type_vector(vector: &str, expected: &str, key_type: u64) {
        let der_bytes = hex(vector);
        let cert = parse(&der_bytes).expect("the spec's certificate parses");
        let algorithm = self_signature_algorithm(cert.key, cert.signature_algorithm)
            .expect("ECDSA P-256 with SHA-256");
        signature::UnparsedPublicKey::new(algorithm, cert.public_key)
            .verify(cert.tbs, cert.signature)
            .expect("the self-signature verifies");
        match cert.verify(NOW) {
            Ok(peer) => assert_eq!(peer.to_string(), expected),
            Err(CertificateError::HostKey(DecodeKeyError::UnsupportedKeyType(t))) => {
                assert_eq!(t, key_type)
            }
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }

    #[test]
    fn spec_vector_ed25519_proves_its_peer_id() {
        let peer = verify(&hex(SPEC_ED25519), NOW).expect("valid vector");
        assert_eq!(
            peer.to_string(),
            "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv"
        );
    }

    #[test]
    fn spec_vector_ecdsa_proves_its_peer_id_or_is_refused_for_its_key_type() {
        check_other_key_type_vector(
            SPEC_ECDSA,
            "QmfXbAwNjJLXfesgztEHe8HwgVDCMMpZ9Eax1HYq6hn9uE",
            3,
        );
    }

    #[test]
    fn spec_vector_secp256k1_proves_its_peer_id_or_is_refused_for_its_key_type() {
        check_other_key_type_vector(
            SPEC_SECP256K1,
            "16Uiu2HAkutTMoTzDw1tCvSRtu6YoixJwS46S1ZFxW8hSx9fWHiPs",
            2,
        );
    }

    #[test]
    fn spec_vector_invalid_is_refused() {
        let der_bytes = hex(SPEC_INVALID);
        let cert = parse(&der_bytes).expect("it is well formed");
        match cert.verify(NOW) {
            Err(CertificateError::BadExtensionSignature)
            | Err(CertificateError::HostKey(DecodeKeyError::UnsupportedKeyType(3))) => {}
            other => panic!("the invalid vector must be refused, got {other:?}"),
        }
    }

    #[test]
    fn spec_vector_outside_its_validity_is_refused() {
        let der_bytes = hex(SPEC_ED25519);
        for now in [157_813_199, 67_090_165_201] {
            assert!(matches!(
                verify(&der_bytes, now),
                Err(CertificateError::NotValidNow { .. })
            ));
        }
        assert!(verify(&der_bytes, 157_813_200).is_ok());
    }

    #[test]
    fn own_certificate_round_trips() {
        let identity = Keypair::generate();
        let (cert, _) = generate(&identity).expect("generate");
        assert_eq!(verify(&cert, NOW), Ok(identity.peer_id()));
        let parsed = parse(&cert).expect("parse");
        assert_eq!(parsed.key, CertificateKey::EcdsaP256);
        assert_eq!(parsed.not_before, 157_766_400);
        assert_eq!(parsed.host_key(), Ok(identity.public()));
    }

    #[test]
    fn certificate_without_extension_is_refused() {
        let key = rcgen::KeyPair::generate_for(CERTIFICATE_ALGORITHM).expect("key");
        let cert = rcgen::CertificateParams::default()
            .self_signed(&key)
            .expect("cert");
        assert_eq!(
            parse(cert.der()).err(),
            Some(CertificateError::MissingExtension)
        );
    }

    #[test]
    fn extension_signed_by_another_key_is_refused() {
        let (cert, _) = forged(&Keypair::generate(), &Keypair::generate(), |_| {});
        assert_eq!(
            verify(&cert, NOW),
            Err(CertificateError::BadExtensionSignature)
        );
    }

    #[test]
    fn unknown_critical_extension_is_refused_and_unknown_other_ones_ignored() {
        let identity = Keypair::generate();
        let with = |critical: bool| {
            forged(&identity, &identity, |params| {
                let mut ext = rcgen::CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![5, 0]);
                ext.set_criticality(critical);
                params.custom_extensions.push(ext);
            })
            .0
        };
        assert_eq!(
            parse(&with(true)).err(),
            Some(CertificateError::UnknownCriticalExtension)
        );
        assert_eq!(verify(&with(false), NOW), Ok(identity.peer_id()));
    }

    #[test]
    fn duplicated_extension_is_refused() {
        let identity = Keypair::generate();
        let (cert, _) = forged(&identity, &identity, |params| {
            let again = params.custom_extensions[0].clone();
            params.custom_extensions.push(again);
        });
        assert_eq!(
            parse(&cert).err(),
            Some(CertificateError::DuplicateExtension)
        );
    }

    #[test]
    fn tampered_certificate_fails_its_self_signature() {
        let identity = Keypair::generate();
        let (cert, _) = generate(&identity).expect("generate");
        let mut bytes = cert.to_vec();
        // Flip a bit inside the host key's signature: the TBS changes, the outer signature stays.
        let at = bytes
            .windows(EXTENSION_OID.len())
            .position(|w| w == EXTENSION_OID)
            .expect("extension present")
            + 60;
        bytes[at] ^= 1;
        assert_eq!(verify(&bytes, NOW), Err(CertificateError::BadSelfSignature));
    }

    #[test]
    fn handshake_signature_must_fit_the_certificate_key() {
        let identity = Keypair::generate();
        let (cert, key) = generate(&identity).expect("generate");
        let signer = rustls::crypto::ring::sign::any_ecdsa_type(&key).expect("p-256 key");
        let signer = signer
            .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
            .expect("scheme");
        let sig = signer.sign(b"transcript").expect("sign");
        let parsed = parse(&cert).expect("parse");
        assert_eq!(
            parsed.verify_tls13_signature(
                SignatureScheme::ECDSA_NISTP256_SHA256,
                b"transcript",
                &sig
            ),
            Ok(())
        );
        for (scheme, msg) in [
            (SignatureScheme::ECDSA_NISTP256_SHA256, &b"other"[..]),
            (SignatureScheme::ECDSA_NISTP384_SHA384, b"transcript"),
            (SignatureScheme::ED25519, b"transcript"),
        ] {
            assert_eq!(
                parsed.verify_tls13_signature(scheme, msg, &sig),
                Err(CertificateError::BadHandshakeSignature)
            );
        }
    }

    /// A certificate for `certified` whose extension `signer` signed, with `edit` applied to
    /// the parameters after the extension was added, and its key.
    pub(in crate::p2p::tls) fn forged(
        certified: &Keypair,
        signer: &Keypair,
        edit: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> (Vec<u8>, PrivateKeyDer<'static>) {
        use rcgen::PublicKeyData as _;
        let key = rcgen::KeyPair::generate_for(CERTIFICATE_ALGORITHM).expect("key");
        let mut signed = SIGNING_PREFIX.to_vec();
        signed.extend_from_slice(&key.subject_public_key_info());
        let mut fields = Vec::new();
        der::write(
            &mut fields,
            der::OCTET_STRING,
            &certified.public().to_protobuf_encoding(),
        );
        der::write(&mut fields, der::OCTET_STRING, &signer.sign(&signed));
        let mut value = Vec::new();
        der::write(&mut value, der::SEQUENCE, &fields);
        let mut params = rcgen::CertificateParams::default();
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                EXTENSION_ARCS,
                value,
            ));
        edit(&mut params);
        let cert = params.self_signed(&key).expect("cert").der().to_vec();
        (cert, PrivateKeyDer::Pkcs8(key.serialize_der().into()))
    }

    proptest! {
        #[test]
        fn parser_never_panics_on_mutated_certificates(
            at in 0usize..430,
            byte in any::<u8>(),
            cut in 0usize..430,
        ) {
            let mut bytes = hex(SPEC_ED25519);
            let at = at % bytes.len();
            bytes[at] = byte;
            let _ = verify(&bytes, NOW);
            bytes.truncate(cut);
            let _ = verify(&bytes, NOW);
        }

        #[test]
        fn generated_certificates_verify(seed in any::<[u8; 32]>()) {
            let identity = Keypair::from_secret_bytes(seed);
            let (cert, _) = generate(&identity).expect("generate");
            prop_assert_eq!(verify(&cert, NOW), Ok(identity.peer_id()));
        }

        #[test]
        fn parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = verify(&data, NOW);
        }
    }
}
