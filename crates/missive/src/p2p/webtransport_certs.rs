//! The short-lived certificates of the WebTransport listener and the rustls resolver that
//! picks, by ALPN, between them (`h3`) and the node's libp2p-tls certificate (`libp2p`).
//!
//! A browser accepts a self-signed certificate only through `serverCertificateHashes`, and
//! only one that is X.509v3, ECDSA (not RSA) and valid for at most 14 days. So the node makes
//! ECDSA P-256 certificates of 14 days, starting an hour early for clocks that lag, and
//! announces the SHA-256 multihashes of two: the one it presents now and the next one, valid
//! from two hours before the current one expires. An hour before that expiry it switches to
//! the next one and makes the one after it; the hash of the retired one is still sent in the
//! Noise extensions for a while, for clients that dialed an address read before the switch.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::transport::certificate::{CertificateError, CertificateParams, EcdsaKey};

/// Longest validity a browser accepts for a certificate named by hash.
pub(crate) const VALIDITY: Duration = Duration::from_secs(14 * 24 * 3600);
/// How early a certificate's validity starts, for clients whose clock lags ours.
pub(crate) const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// ALPN of HTTP/3, which WebTransport sessions use.
pub(crate) const ALPN_H3: &[u8] = b"h3";

/// One certificate, its key and the multihash (`12 20` ‖ SHA-256 of the DER) announced for it.
#[derive(Clone)]
pub(crate) struct Certificate {
    pub(crate) certified: Arc<CertifiedKey>,
    pub(crate) hash: Vec<u8>,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("hash", &self.hash)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The multihash of a certificate's DER as a certhash carries it.
pub(crate) fn certhash(der: &[u8]) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut hash = vec![0x12, 0x20];
    hash.extend_from_slice(digest.as_ref());
    hash
}

impl Certificate {
    /// Makes a certificate valid from `not_before` for [`VALIDITY`]: ECDSA P-256 with
    /// SHA-256, X.509v3, an empty subject.
    pub(crate) fn generate(not_before: SystemTime) -> Result<Self, CertificateError> {
        let key = EcdsaKey::generate()?;
        let not_after = not_before + VALIDITY;
        let der = key.self_signed(&CertificateParams {
            names: &[],
            not_before: unix_secs(not_before) as i64,
            not_after: unix_secs(not_after) as i64,
            extensions: &[],
        })?;
        let hash = certhash(&der);
        let signer = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(key.private_key())
            .map_err(|_| CertificateError::Key)?;
        Ok(Self {
            certified: Arc::new(CertifiedKey::new(vec![der], signer)),
            hash,
            not_before,
            not_after,
        })
    }
}

/// The certificates of one moment: the one presented, the next, and the one retired last.
#[derive(Debug, Clone)]
struct Rotation {
    retired: Option<Certificate>,
    current: Certificate,
    next: Certificate,
}

/// The WebTransport certificates of a node, rotated before they expire.
#[derive(Debug)]
pub(crate) struct Certificates {
    rotation: RwLock<Rotation>,
}

impl Certificates {
    /// The first certificate valid from an hour before `now`, and the next one.
    pub(crate) fn new(now: SystemTime) -> Result<Self, CertificateError> {
        let current = Certificate::generate(now - CLOCK_SKEW)?;
        let next = Certificate::generate(next_start(&current))?;
        Ok(Self {
            rotation: RwLock::new(Rotation {
                retired: None,
                current,
                next,
            }),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Rotation> {
        self.rotation.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The hashes a listen address announces: the presented certificate's and the next's.
    pub(crate) fn announced(&self) -> Vec<Vec<u8>> {
        let r = self.read();
        vec![r.current.hash.clone(), r.next.hash.clone()]
    }

    /// The hashes the Noise handshake lists: the announced ones and the one retired last.
    pub(crate) fn for_handshake(&self) -> Vec<Vec<u8>> {
        let r = self.read();
        r.retired
            .iter()
            .chain([&r.current, &r.next])
            .map(|c| c.hash.clone())
            .collect()
    }

    /// The certificate presented now.
    pub(crate) fn current(&self) -> Certificate {
        self.read().current.clone()
    }

    /// When the presented certificate is replaced: an hour before it expires.
    pub(crate) fn rotation_due(&self) -> SystemTime {
        self.read().current.not_after - CLOCK_SKEW
    }

    /// Switches to the next certificate and makes the one after it, if `now` is past
    /// [`Certificates::rotation_due`]; `true` when it did (the announced hashes changed).
    pub(crate) fn rotate_if_due(&self, now: SystemTime) -> Result<bool, CertificateError> {
        if now < self.rotation_due() {
            return Ok(false);
        }
        // Made before taking the lock: handshakes keep reading the old set meanwhile.
        let next_start = next_start(&self.read().next);
        let after = Certificate::generate(next_start)?;
        let mut r = self.rotation.write().unwrap_or_else(|e| e.into_inner());
        let current = std::mem::replace(&mut r.next, after);
        r.retired = Some(std::mem::replace(&mut r.current, current));
        Ok(true)
    }
}

/// The start of the certificate that follows `c`: valid before `c` is retired, with the same
/// allowance for lagging clocks.
fn next_start(c: &Certificate) -> SystemTime {
    c.not_after - 2 * CLOCK_SKEW
}

/// Presents, by the ALPN a client offers, the node's libp2p-tls certificate (`libp2p`) or the
/// current WebTransport certificate (`h3` alone).
#[derive(Debug)]
pub(crate) struct AlpnResolver {
    pub(crate) libp2p: Arc<CertifiedKey>,
    pub(crate) webtransport: Arc<Certificates>,
}

impl ResolvesServerCert for AlpnResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let offers = |alpn: &[u8]| hello.alpn().into_iter().flatten().any(|p| p == alpn);
        // The server prefers `libp2p` (its ALPN list puts it first), so a client offering
        // both gets the libp2p-tls certificate.
        if offers(ALPN_H3) && !offers(super::tls::ALPN) {
            Some(self.webtransport.current().certified)
        } else {
            Some(self.libp2p.clone())
        }
    }
}

/// Seconds since the Unix epoch of `t` (0 before it).
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(n: u64) -> Duration {
        Duration::from_secs(n * 24 * 3600)
    }

    #[test]
    fn certificates_are_short_lived_ecdsa_named_by_their_sha256() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let c = Certificates::new(now).expect("certificates");
        let current = c.current();
        assert_eq!(current.not_before, now - CLOCK_SKEW);
        assert_eq!(current.not_after - VALIDITY, current.not_before);
        assert!(VALIDITY <= days(14));
        assert_eq!(
            current.certified.key.algorithm(),
            rustls::SignatureAlgorithm::ECDSA
        );
        let der = current.certified.cert[0].as_ref();
        assert_eq!(current.hash, certhash(der));
        assert_eq!(current.hash[..2], [0x12, 0x20]);
        assert_eq!(
            current.hash[2..],
            *ring::digest::digest(&ring::digest::SHA256, der).as_ref()
        );
        // X.509v3: the explicit [0] version field holds 2.
        // (after the two SEQUENCE headers, whose lengths vary).
        assert!(
            der[..12]
                .windows(5)
                .any(|w| w == [0xa0, 0x03, 0x02, 0x01, 0x02]),
            "{:02x?}",
            &der[..12]
        );
    }

    #[test]
    fn rotation_switches_before_expiry_and_keeps_the_retired_hash_for_the_handshake() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let c = Certificates::new(now).expect("certificates");
        let [a, b]: [Vec<u8>; 2] = c.announced().try_into().expect("two hashes");
        assert_eq!(c.for_handshake(), [a.clone(), b.clone()]);
        let due = c.rotation_due();
        assert_eq!(due, c.current().not_after - CLOCK_SKEW);
        assert!(!c.rotate_if_due(now + days(1)).expect("no rotation yet"));
        assert!(
            !c.rotate_if_due(due - Duration::from_secs(1))
                .expect("not yet")
        );
        assert!(c.rotate_if_due(due).expect("rotation"));
        let announced = c.announced();
        assert_eq!(announced[0], b, "the next one is presented now");
        assert_ne!(announced[1], a);
        assert_ne!(announced[1], b);
        assert_eq!(c.for_handshake(), [a, b.clone(), announced[1].clone()]);
        // The new current one has been valid, with the skew allowance, since before the switch.
        let current = c.current();
        assert_eq!(current.hash, b);
        assert!(current.not_before + CLOCK_SKEW <= due);
        assert!(current.not_after > due + days(13));
    }
}
